"""Dynamic batching: one `Batcher` per loaded model version and variant, in front of its `Runtime`.

Requests put their encoded texts in a bounded queue and wait on a future. A task on the event loop forms batches:
the oldest waiting text always goes first (nothing starves), joined by the texts whose length is closest to it, up to
`max_batch_size` texts and `max_batch_tokens` (batch size x longest length, the padded shape that really runs). The
batch runs on the runtime's own executor thread, never on the event loop, and the rows go back to their requests; a
request larger than a batch is split across runs. Before a batch runs, texts of requests whose deadline has passed
(DEADLINE_EXCEEDED) or that were cancelled are dropped. A failed run fails every request that had a text in it.

    batcher = Batcher(runtime, settings.batching, name="model-1/2/fp32")
    probs = await batcher.submit(runtime.encode(texts), time_remaining=2.5)     # [len(texts), C]
    await batcher.close()                                                       # also closes the runtime
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from tuneserve.engines.runtime import Encoded, Runtime
from tuneserve.errors import DeadlineExceeded, ResourceExhausted, Unavailable
from tuneserve.settings import BatchingSettings

log = logging.getLogger(__name__)


class BatchObserver(Protocol):
    """Receives timings (the metrics of `tuneserve_inference_*`); every method is called on the event loop."""

    def queued(self, seconds: float) -> None:
        """Once per request: how long it waited before the first batch holding its texts started."""

    def ran(self, size: int, seconds: float) -> None:
        """Once per batch run: its number of texts and how long the run took."""


@dataclass(eq=False)
class _Request:
    future: asyncio.Future[np.ndarray]
    rows: list[np.ndarray | None]
    deadline: float | None           # loop.time() after which it is dropped
    enqueued: float
    remaining: int
    started: bool = False


@dataclass(eq=False, slots=True)
class _Item:
    request: _Request
    index: int                       # row of the request's result
    encoded: Encoded
    length: int
    seq: int                         # arrival order


@dataclass
class _State:
    pending: list[_Item] = field(default_factory=list)   # arrival order
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    more: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


class Batcher:
    def __init__(
        self, runtime: Runtime, settings: BatchingSettings, *, name: str, observer: BatchObserver | None = None
    ) -> None:
        self.runtime = runtime
        self.name = name
        self._max_size = max(1, settings.max_batch_size)
        self._max_tokens = max(1, settings.max_batch_tokens)
        self._max_queue = max(1, settings.max_queue_size)
        self._delay = max(0.0, settings.max_queue_delay_ms) / 1000
        self._observer = observer
        # NOTE: one thread per runtime: runs of a session never overlap (each already uses every intra-op thread),
        # and a slow model cannot hold up another model's batches.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"ort-{name}")
        self._state: _State | None = None
        self._seq = 0
        self._closed = False

    @property
    def queued(self) -> int:
        """Texts waiting for a batch."""
        return len(self._state.pending) if self._state else 0

    async def submit(self, items: Sequence[Encoded], time_remaining: float | None = None) -> np.ndarray:
        """Probabilities of `items` in order, [len(items), C]. `time_remaining` is the caller's deadline in seconds
        (None: none). Raises ResourceExhausted when the queue is full, DeadlineExceeded when the deadline passes
        before the texts run, Unavailable when the batcher is closing, or what the runtime raised."""
        self.admit(len(items), time_remaining)
        state = self._started()
        loop = asyncio.get_running_loop()
        now = loop.time()
        deadline = None if time_remaining is None else now + time_remaining
        request = _Request(loop.create_future(), [None] * len(items), deadline, now, len(items))
        for index, encoded in enumerate(items):
            self._seq += 1
            state.pending.append(_Item(request, index, encoded, encoded.length, self._seq))
        state.wake.set()
        state.more.set()
        try:
            return await request.future
        except asyncio.CancelledError:
            # NOTE: the caller went away (RPC cancelled): its texts leave the queue now instead of being computed
            self._forget({request})
            raise

    def admit(self, count: int, time_remaining: float | None = None) -> None:
        """Raise now what `submit` would refuse `count` more inputs with (closing, deadline passed, queue full), so a
        caller checks before it spends time encoding them; `submit` checks again."""
        if self._closed:
            raise Unavailable(f"{self.name} is being unloaded; retry")
        if time_remaining is not None and time_remaining <= 0:
            raise DeadlineExceeded("the deadline passed before the request was queued")
        if self.queued + count > self._max_queue:
            raise ResourceExhausted(
                f"{self.name} has {self.queued} inputs (texts or images) waiting; {count} more would "
                f"exceed batching.max_queue_size = {self._max_queue}; retry with backoff"
            )

    async def close(self) -> None:
        """Fails what is still queued (UNAVAILABLE), lets a running batch finish, then closes the runtime on its
        own thread. Owners close a batcher only once no request uses it (see ModelCache)."""
        self._closed = True
        state = self._state
        if state is not None:
            for request in {item.request for item in state.pending}:
                _fail(request, Unavailable(f"{self.name} was unloaded before the request ran; retry"))
            state.pending.clear()
            state.wake.set()
            state.more.set()
            if state.task is not None:
                await asyncio.gather(state.task, return_exceptions=True)
        await asyncio.get_running_loop().run_in_executor(self._executor, self.runtime.close)
        self._executor.shutdown(wait=False)

    def _started(self) -> _State:
        # NOTE: the queue, its events and the task are created on first use, so they belong to the running loop
        # (the batcher itself may be built in a worker thread while a model loads).
        if self._state is None:
            self._state = _State()
            self._state.task = asyncio.get_running_loop().create_task(self._serve(self._state), name=self.name)
        return self._state

    async def _serve(self, state: _State) -> None:
        loop = asyncio.get_running_loop()
        while not self._closed:
            await state.wake.wait()
            if self._delay and state.pending:
                await self._fill(state, loop)
            batch = self._take(state, loop.time())
            if not state.pending:
                state.wake.clear()
            if batch:
                await self._run(batch, loop)

    async def _fill(self, state: _State, loop: asyncio.AbstractEventLoop) -> None:
        """Wait until a full batch is queued or the oldest text has waited max_queue_delay_ms."""
        until = state.pending[0].request.enqueued + self._delay
        while len(state.pending) < self._max_size and (left := until - loop.time()) > 0 and not self._closed:
            state.more.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(state.more.wait(), left)

    def _take(self, state: _State, now: float) -> list[_Item]:
        state.pending = [item for item in state.pending if _alive(item.request, now)]
        if not state.pending:
            return []
        oldest = state.pending[0].length
        batch: list[_Item] = []
        longest = 0
        for item in sorted(state.pending, key=lambda it: (abs(it.length - oldest), it.seq)):
            if len(batch) == self._max_size:
                break
            top = max(longest, item.length)
            if batch and top * (len(batch) + 1) > self._max_tokens:
                continue  # a shorter text further down the order may still fit
            batch.append(item)
            longest = top
        taken = {id(item) for item in batch}
        state.pending = [item for item in state.pending if id(item) not in taken]
        return batch

    async def _run(self, batch: list[_Item], loop: asyncio.AbstractEventLoop) -> None:
        started = loop.time()
        requests = {item.request for item in batch}
        for request in requests:
            if not request.started:
                request.started = True
                if self._observer is not None:
                    self._observer.queued(started - request.enqueued)
        try:
            probs = await loop.run_in_executor(self._executor, self.runtime.run, [item.encoded for item in batch])
            if len(probs) != len(batch):
                raise RuntimeError(f"{self.name} returned {len(probs)} rows for a batch of {len(batch)}")
        except Exception as exc:
            log.warning("%s: a batch of %d texts failed: %r", self.name, len(batch), exc)
            for request in requests:
                _fail(request, exc)
            self._forget(requests)
            return
        if self._observer is not None:
            self._observer.ran(len(batch), loop.time() - started)
        for item, row in zip(batch, probs, strict=True):  # lengths checked above
            _deliver(item, row)

    def _forget(self, requests: set[_Request]) -> None:
        if self._state is not None:
            self._state.pending = [item for item in self._state.pending if item.request not in requests]


def _alive(request: _Request, now: float) -> bool:
    if request.future.done():  # cancelled, or failed by an earlier batch
        return False
    if request.deadline is not None and now >= request.deadline:
        request.future.set_exception(DeadlineExceeded("the deadline passed while the request waited for a batch"))
        return False
    return True


def _fail(request: _Request, exc: BaseException) -> None:
    if not request.future.done():
        request.future.set_exception(exc)


def _deliver(item: _Item, row: np.ndarray) -> None:
    request = item.request
    if request.future.done():
        return
    request.rows[item.index] = row
    request.remaining -= 1
    if request.remaining == 0:
        request.future.set_result(stack_rows(request.rows))  # type: ignore[arg-type]


def stack_rows(rows: Sequence[np.ndarray]) -> np.ndarray:
    """Rows of one request stacked; rows of different lengths (a per-token model's [W, L] rows from batches padded to
    different widths) are zero-padded to the longest first (a reader slices each row to its own words)."""
    shapes = {row.shape for row in rows}
    if len(shapes) <= 1:
        return np.stack(rows)
    longest = max(row.shape[0] for row in rows)
    stacked = np.zeros((len(rows), longest, *rows[0].shape[1:]), dtype=rows[0].dtype)
    for index, row in enumerate(rows):
        stacked[index, : row.shape[0]] = row
    return stacked
