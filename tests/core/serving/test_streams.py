"""answer_concurrently: completion order, failures as answers, the in-flight window, a broken request stream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tuneserve.core.serving.streams import answer_concurrently


async def _items(*values: float) -> AsyncIterator[float]:
    for value in values:
        yield value


async def test_answers_come_in_completion_order_and_failures_are_answers() -> None:
    async def handle(delay: float) -> float:
        await asyncio.sleep(delay)
        if delay == 0.02:
            raise ValueError("bad request")
        return delay * 2

    answers = [a async for a in answer_concurrently(_items(0.06, 0.0, 0.02), handle, window=8)]
    assert [a.request for a in answers] == [0.0, 0.02, 0.06]
    assert [a.result for a in answers] == [0.0, None, 0.12]
    assert isinstance(answers[1].error, ValueError)


async def test_at_most_window_requests_are_in_flight() -> None:
    running = peak = 0

    async def handle(value: float) -> float:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.005)
        running -= 1
        return value

    answers = [a async for a in answer_concurrently(_items(*range(12)), handle, window=3)]
    assert sorted(a.result for a in answers) == list(range(12))
    assert peak == 3


async def test_a_broken_request_stream_ends_the_answers_with_its_error() -> None:
    async def broken() -> AsyncIterator[float]:
        yield 1.0
        raise ConnectionError("client went away")

    async def handle(value: float) -> float:
        return value

    with pytest.raises(ConnectionError, match="client went away"):
        async for _ in answer_concurrently(broken(), handle, window=2):
            pass
