"""Job events: numbered per job, persisted, and fanned out to live watchers."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

from tuneserve.store import MetadataStore
from tuneserve.types import JobEventRecord, JobState

# A watcher that falls this far behind is dropped; it reconnects with after_sequence and replays from the store.
_WATCHER_QUEUE = 1000
# A quiet watcher reads the store this often: another server sharing the database may be running the job.
_POLL_SECONDS = 1.0


class EventBus:
    def __init__(self, store: MetadataStore) -> None:
        self._store = store
        self._next: dict[str, int] = {}
        self._watchers: dict[str, set[asyncio.Queue[JobEventRecord | None]]] = defaultdict(set)

    async def publish(self, job_id: str, kind: str, data: dict[str, Any], message: str = "") -> JobEventRecord:
        if job_id not in self._next:
            self._next[job_id] = await self._store.last_job_event_sequence(job_id) + 1
        event = JobEventRecord(job_id, self._next[job_id], time.time(), kind, data, message)
        self._next[job_id] += 1
        await self._store.add_job_event(event)
        for queue in list(self._watchers[job_id]):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                # NOTE: make room for the end-of-stream marker; the watcher ends and resumes from the store
                self._watchers[job_id].discard(queue)
                queue.get_nowait()
                queue.put_nowait(None)
        return event

    async def watch(self, job_id: str, after_sequence: int, is_terminal: bool) -> AsyncIterator[JobEventRecord]:
        """Replay stored events after `after_sequence`, then follow live ones until a terminal state event."""
        queue: asyncio.Queue[JobEventRecord | None] = asyncio.Queue(_WATCHER_QUEUE)
        self._watchers[job_id].add(queue)  # NOTE: subscribe before replaying so no event falls in between
        try:
            last = after_sequence
            for event in await self._store.job_events(job_id, after_sequence):
                last = event.sequence
                yield event
                if _ends_job(event):
                    return
            if is_terminal:
                return
            while True:
                try:
                    live = await asyncio.wait_for(queue.get(), _POLL_SECONDS)
                except TimeoutError:
                    for event in await self._store.job_events(job_id, last):
                        last = event.sequence
                        yield event
                        if _ends_job(event):
                            return
                    continue
                if live is None:
                    return  # too slow: the client resumes from its last sequence
                if live.sequence <= last:
                    continue
                last = live.sequence
                yield live
                if _ends_job(live):
                    return
        finally:
            self._watchers[job_id].discard(queue)
            if not self._watchers[job_id]:
                del self._watchers[job_id]


def _ends_job(event: JobEventRecord) -> bool:
    return event.kind == "state_changed" and JobState(event.data["state"]).terminal
