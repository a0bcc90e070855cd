"""Watch the metadata database: ping it, report when it stops or starts answering (gRPC health follows), and while
it is down ping again with a backoff rather than on a fixed beat."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from tuneserve.errors import TuneServeError
from tuneserve.store.metadata import MetadataStore

log = logging.getLogger(__name__)

OnChange = Callable[[bool, str], Awaitable[None]]


class DatabaseWatch:
    def __init__(self, store: MetadataStore, on_change: OnChange, interval: float = 2.0, timeout: float = 5.0) -> None:
        self._store = store
        self._on_change = on_change
        self._interval = interval
        self._timeout = timeout
        self._task: asyncio.Task[None] | None = None
        self.available = True

    def start(self) -> None:
        self._task = asyncio.create_task(self._watch(), name="database-watch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def check(self) -> tuple[bool, str]:
        """One ping: (answered, why not)."""
        try:
            await asyncio.wait_for(self._store.ping(), self._timeout)
        except TuneServeError as exc:
            return False, exc.message
        except TimeoutError:
            return False, f"the metadata database {self._store.describe()} did not answer within {self._timeout:g}s"
        except Exception as exc:  # NOTE: whatever the driver raises, the watch goes on
            return False, f"the metadata database {self._store.describe()} failed: {exc}"
        return True, ""

    async def _watch(self) -> None:
        backoff = 0.0
        while True:
            available, reason = await self.check()
            if available != self.available:
                self.available = available
                if available:
                    log.warning("the metadata database %s answers again", self._store.describe())
                else:
                    log.error("%s", reason)
                await self._on_change(available, reason)
            backoff = 0.0 if available else min(max(2 * backoff, 0.5), 5.0)
            await asyncio.sleep(self._interval if available else backoff)
