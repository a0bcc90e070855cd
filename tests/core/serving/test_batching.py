"""The dynamic batcher with a real (numpy) runtime: merging, splitting, the queue limit, deadlines, cancellation,
failure fan-out, the token budget and the queue delay."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest

from tests.core.fakes import NumpyRuntime, words
from tuneserve.core.serving.batching import Batcher
from tuneserve.errors import DeadlineExceeded, ResourceExhausted, Unavailable
from tuneserve.settings import BatchingSettings


@pytest.fixture
def runtime() -> NumpyRuntime:
    return NumpyRuntime()


@contextlib.asynccontextmanager
async def _batcher(runtime: NumpyRuntime, **settings: Any) -> AsyncIterator[Batcher]:
    batcher = Batcher(runtime, BatchingSettings(**settings), name="test/1/fp32")
    try:
        yield batcher
    finally:
        runtime.release()
        await batcher.close()


async def _held(runtime: NumpyRuntime, batcher: Batcher) -> asyncio.Future[np.ndarray]:
    """Start a one-text request and wait until its batch is running (and held) on the runtime's thread."""
    runtime.hold()
    first = asyncio.ensure_future(batcher.submit(runtime.encode(["first"])))
    assert await asyncio.to_thread(runtime.running.wait, 5)
    return first


def _submit(batcher: Batcher, runtime: NumpyRuntime, texts: list[str], **kwargs: float) -> asyncio.Task[np.ndarray]:
    return asyncio.ensure_future(batcher.submit(runtime.encode(texts), **kwargs))


async def test_concurrent_requests_merge_into_one_batch_equal_to_unbatched(runtime: NumpyRuntime) -> None:
    texts = [words(n + 1, f"t{n}") for n in range(8)]
    alone = [runtime.predict([t])[0] for t in texts]
    runtime.batches.clear()
    async with _batcher(runtime, max_batch_size=16) as batcher:
        first = await _held(runtime, batcher)
        tasks = [_submit(batcher, runtime, [t]) for t in texts]
        await asyncio.sleep(0.01)
        assert batcher.queued == 8
        runtime.release()
        results = await asyncio.gather(first, *tasks)
    assert [len(b) for b in runtime.batches] == [1, 8]
    for result, expected in zip(results[1:], alone, strict=True):
        assert result.shape == (1, 3)
        np.testing.assert_allclose(result[0], expected, atol=1e-6)


async def test_a_request_larger_than_a_batch_is_split_and_reassembled_in_order(runtime: NumpyRuntime) -> None:
    texts = [words(3, f"x{i}") for i in range(10)]
    expected = runtime.predict(texts)
    runtime.batches.clear()
    async with _batcher(runtime, max_batch_size=4) as batcher:
        result = await batcher.submit(runtime.encode(texts))
    assert [len(b) for b in runtime.batches] == [4, 4, 2]
    np.testing.assert_allclose(result, expected, atol=1e-6)


async def test_a_full_queue_answers_resource_exhausted(runtime: NumpyRuntime) -> None:
    async with _batcher(runtime, max_queue_size=4) as batcher:
        first = await _held(runtime, batcher)
        queued = _submit(batcher, runtime, ["a", "b", "c"])
        await asyncio.sleep(0)
        with pytest.raises(ResourceExhausted, match=r"3 inputs \(texts or images\) waiting; 2 more would exceed batching.max_queue_size = 4"):
            await batcher.submit(runtime.encode(["d", "e"]))
        with pytest.raises(ResourceExhausted, match="2 more would exceed"):
            batcher.admit(2)   # what callers ask before they encode
        with pytest.raises(DeadlineExceeded):
            batcher.admit(1, time_remaining=0.0)
        batcher.admit(1)
        tail = _submit(batcher, runtime, ["d"])  # exactly at the limit is fine
        runtime.release()
        assert [len(r) for r in await asyncio.gather(first, queued, tail)] == [1, 3, 1]


async def test_expired_deadlines_are_dropped_before_compute(runtime: NumpyRuntime) -> None:
    async with _batcher(runtime) as batcher:
        with pytest.raises(DeadlineExceeded):
            await batcher.submit(runtime.encode(["late"]), time_remaining=0.0)
        first = await _held(runtime, batcher)
        expiring = _submit(batcher, runtime, ["expiring"], time_remaining=0.05)
        patient = _submit(batcher, runtime, ["patient"], time_remaining=30.0)
        await asyncio.sleep(0.1)
        runtime.release()
        with pytest.raises(DeadlineExceeded, match="deadline passed while the request waited"):
            await expiring
        await asyncio.gather(first, patient)
    assert runtime.batches == [["first"], ["patient"]]


async def test_cancelled_requests_are_dropped_before_compute(runtime: NumpyRuntime) -> None:
    async with _batcher(runtime) as batcher:
        first = await _held(runtime, batcher)
        cancelled = _submit(batcher, runtime, ["gone", "also gone"])
        kept = _submit(batcher, runtime, ["kept"])
        await asyncio.sleep(0)
        assert batcher.queued == 3
        cancelled.cancel()
        await asyncio.sleep(0)
        assert batcher.queued == 1
        runtime.release()
        await asyncio.gather(first, kept)
        assert cancelled.cancelled()
    assert runtime.batches == [["first"], ["kept"]]


async def test_a_failed_batch_fails_every_request_in_it_and_the_next_batch_runs(runtime: NumpyRuntime) -> None:
    async with _batcher(runtime) as batcher:
        first = await _held(runtime, batcher)
        innocent = _submit(batcher, runtime, ["innocent"])
        culprit = _submit(batcher, runtime, ["boom"])
        split = _submit(batcher, runtime, ["x"] * 40)  # more than one batch: its second part must not run
        await asyncio.sleep(0)
        runtime.release()
        await first
        for task in (innocent, culprit, split):
            with pytest.raises(RuntimeError, match="boom"):
                await task
        assert batcher.queued == 0
        assert (await batcher.submit(runtime.encode(["after"]))).shape == (1, 3)
    assert [len(b) for b in runtime.batches] == [1, 32, 1]


async def test_token_budget_groups_similar_lengths_and_is_never_exceeded(runtime: NumpyRuntime) -> None:
    lengths = [2, 10, 2, 10, 3, 10, 2, 3]
    async with _batcher(runtime, max_batch_size=8, max_batch_tokens=40) as batcher:
        first = await _held(runtime, batcher)
        tasks = [_submit(batcher, runtime, [words(n, f"r{i}-")]) for i, n in enumerate(lengths)]
        huge = _submit(batcher, runtime, [words(50, "huge")])  # longer than the budget: runs alone
        await asyncio.sleep(0)
        runtime.release()
        await asyncio.gather(first, huge, *tasks)
    shapes = [[len(text.split()) for text in batch] for batch in runtime.batches[1:]]
    assert shapes == [[2, 2, 2, 3, 3], [10, 10, 10], [50]]
    for batch in shapes[:-1]:
        assert len(batch) * max(batch) <= 40


async def test_queue_delay_waits_for_a_fuller_batch(runtime: NumpyRuntime) -> None:
    async with _batcher(runtime, max_queue_delay_ms=200, max_batch_size=3) as batcher:
        early = _submit(batcher, runtime, ["early"])
        await asyncio.sleep(0.03)
        late = _submit(batcher, runtime, ["late"])
        await asyncio.gather(early, late)
        assert runtime.batches == [["early", "late"]]
        # a full batch does not wait for the delay
        loop = asyncio.get_running_loop()
        started = loop.time()
        await batcher.submit(runtime.encode(["a", "b", "c"]))
        assert loop.time() - started < 0.15


async def test_batches_run_on_one_dedicated_thread_never_the_event_loop(runtime: NumpyRuntime) -> None:
    async with _batcher(runtime, max_batch_size=2) as batcher:
        await batcher.submit(runtime.encode(["a", "b", "c", "d", "e"]))
    assert len(runtime.threads) == 1
    assert threading.get_ident() not in runtime.threads


async def test_close_fails_what_is_queued_and_closes_the_runtime(runtime: NumpyRuntime) -> None:
    batcher = Batcher(runtime, BatchingSettings(), name="test/1/fp32")
    first = await _held(runtime, batcher)
    queued = _submit(batcher, runtime, ["queued"])
    await asyncio.sleep(0)
    closing = asyncio.ensure_future(batcher.close())
    await asyncio.sleep(0.01)
    assert not runtime.closed  # the running batch finishes first
    runtime.release()
    await closing
    assert (await first).shape == (1, 3)
    with pytest.raises(Unavailable, match="unloaded before the request ran"):
        await queued
    assert runtime.closed
    with pytest.raises(Unavailable):
        await batcher.submit(runtime.encode(["after"]))
