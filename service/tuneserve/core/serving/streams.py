"""Answering a stream of requests concurrently: each request is handled as soon as it is read (so requests of one
stream share batches with each other and with every other caller), answers come back in completion order, and at
most `window` requests are in flight (read but not yet answered and taken by the caller) at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

Request = TypeVar("Request")
Result = TypeVar("Result")


@dataclass(frozen=True)
class Answer(Generic[Request, Result]):
    request: Request
    result: Result | None = None
    error: Exception | None = None     # set instead of `result` when the request failed


@dataclass(frozen=True)
class _End:
    error: Exception | None


async def answer_concurrently(
    requests: AsyncIterable[Request], handle: Callable[[Request], Awaitable[Result]], window: int
) -> AsyncIterator[Answer[Request, Result]]:
    """Yield one `Answer` per request in completion order; ends once `requests` ends and every answer was yielded.
    A failed request is an answer (its `error`), not the end of the stream; a failure to read `requests` ends it
    with that error."""
    answers: asyncio.Queue[Answer[Request, Result] | _End] = asyncio.Queue()
    slots = asyncio.Semaphore(max(1, window))
    tasks: set[asyncio.Task[None]] = set()

    async def answer(request: Request) -> None:
        try:
            answers.put_nowait(Answer(request, result=await handle(request)))
        except Exception as exc:  # NOTE: one request's failure is its answer; the stream goes on
            answers.put_nowait(Answer(request, error=exc))

    async def read() -> None:
        try:
            async for request in requests:
                await slots.acquire()
                task = asyncio.ensure_future(answer(request))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            await asyncio.gather(*tasks)
            answers.put_nowait(_End(None))
        except Exception as exc:
            answers.put_nowait(_End(exc))

    reader = asyncio.ensure_future(read())
    try:
        while not isinstance(item := await answers.get(), _End):
            slots.release()
            yield item
        if item.error is not None:
            raise item.error
    finally:
        reader.cancel()
        for task in list(tasks):
            task.cancel()
