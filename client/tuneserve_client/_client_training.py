"""TrainingService calls of `AsyncClient`: fine-tune, jobs (get, list, watch, cancel, wait) and backbones (list,
recommend)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, cast

from ._client_base import ServiceCalls, enum_name
from ._exceptions import DeadlineExceeded, Unavailable, map_rpc_errors
from .proto.tuneserve.v1.training_pb2 import (
    CancelJobRequest,
    ExportOptions,
    FineTuneRequest,
    GetJobRequest,
    Hyperparameters,
    Job,
    JobEvent,
    JobState,
    ListBackbonesRequest,
    ListBackbonesResponse,
    ListJobsRequest,
    ListJobsResponse,
    RecommendBackboneRequest,
    RecommendBackboneResponse,
    WatchJobRequest,
)

TERMINAL_JOB_STATES = frozenset({JobState.JOB_STATE_SUCCEEDED, JobState.JOB_STATE_FAILED, JobState.JOB_STATE_CANCELLED})
# wait_for_job: reconnects after a broken event stream, backing off 0.5, 1, 2, 4, 5, 5... s, and gives up after this
# many consecutive attempts that deliver no event (about 40 s: long enough for a server restart).
_MAX_RECONNECTS = 10
# recommend_backbone: the call's deadline is its time budget (the server's default when 0) plus this margin, unless
# the client's own timeout is longer; the server keeps within the deadline and reports unscored candidates as such.
_RECOMMEND_DEFAULT_BUDGET = 300.0
_RECOMMEND_DEADLINE_MARGIN = 60.0


def job_state(value: JobState | str) -> JobState:
    """`JobState.JOB_STATE_RUNNING`, `"JOB_STATE_RUNNING"` or `"running"` -> the enum value."""
    return cast(JobState, JobState.Value(enum_name("JOB_STATE_", value))) if isinstance(value, str) else value


def _hyperparameters(value: Hyperparameters | Mapping[str, Any] | None) -> Hyperparameters | None:
    if value is None or isinstance(value, Hyperparameters):
        return value
    # None in a mapping means "unset" (the server's default), which is how the CLI passes flags it was not given.
    return Hyperparameters(**{key: v for key, v in value.items() if v is not None})


def _export_options(value: ExportOptions | Mapping[str, Any] | None) -> ExportOptions | None:
    if value is None or isinstance(value, ExportOptions):
        return value
    return ExportOptions(**{key: v for key, v in value.items() if v is not None})


def _backoff(attempt: int) -> float:
    return float(min(0.25 * 2**attempt, 5.0))


class TrainingCalls(ServiceCalls):
    async def fine_tune(
        self,
        dataset_id: str,
        *,
        validation_dataset_id: str = "",
        backbone: str = "",
        model_name: str = "",
        model_id: str = "",
        hyperparameters: Hyperparameters | Mapping[str, Any] | None = None,
        export: ExportOptions | Mapping[str, Any] | None = None,
        baselines: Sequence[str] = (),
        search: int = 0,
        search_budget_seconds: float = 0.0,
    ) -> Job:
        """Queues a fine-tuning job and returns it at once (see `wait_for_job`). Unset hyperparameters (or None
        values in a mapping) take the server's defaults; an unknown key raises ValueError.

        `baselines=["frozen", "scratch"]` also trains, under the same budget, the backbone frozen (head only) and the
        same architecture from random weights; the result's `baselines` and `transfer_verdict` compare them.

        `export={"int8": True}` also builds an int8 variant, served only if its validation macro F1 is at most
        `int8_max_f1_drop` (default 0.01) below fp32's; the job result's `variant_macro_f1` has both scores.

        `search=N` runs N trials (Optuna TPE, pruned) over the hyperparameters left unset, within
        `search_budget_seconds` (0 = the server's default); the best trial becomes the version, the result's `trials`
        lists them all."""
        request = FineTuneRequest(
            dataset_id=dataset_id,
            validation_dataset_id=validation_dataset_id,
            backbone=backbone,
            model_name=model_name,
            model_id=model_id,
            hyperparameters=_hyperparameters(hyperparameters),
            export=_export_options(export),
            baselines=list(baselines),
            search=search,
            search_budget_seconds=search_budget_seconds,
        )
        return await self._unary(self._training.FineTune, request, Job)

    async def get_job(self, id: str) -> Job:
        return await self._unary(self._training.GetJob, GetJobRequest(id=id), Job)

    async def list_jobs(
        self, *, state: JobState | str | None = None, page_size: int = 0, page_token: str = ""
    ) -> ListJobsResponse:
        """`state` filters by state: a `JobState` or its short name ("running")."""
        state_value = JobState.JOB_STATE_UNSPECIFIED if state is None else job_state(state)
        request = ListJobsRequest(state=state_value, page_size=page_size, page_token=page_token)
        return await self._unary(self._training.ListJobs, request, ListJobsResponse)

    async def watch_job(self, id: str, *, after_sequence: int = 0) -> AsyncIterator[JobEvent]:
        """The job's events after `after_sequence` (0: all of them), then live ones; ends after the terminal state."""
        request = WatchJobRequest(id=id, after_sequence=after_sequence)
        call = self._training.WatchJob(request, metadata=self._metadata)
        try:
            with map_rpc_errors():
                async for event in call:
                    yield event
        finally:
            call.cancel()  # a no-op when the stream ended; stops it when the caller stopped iterating early

    async def cancel_job(self, id: str) -> Job:
        return await self._unary(self._training.CancelJob, CancelJobRequest(id=id), Job)

    async def wait_for_job(
        self, id: str, *, on_event: Callable[[JobEvent], None] | None = None, timeout: float | None = None
    ) -> Job:
        """Follows the job's events (calling `on_event` for each) until it ends, and returns the final Job.

        A stream broken by UNAVAILABLE (e.g. a server restart) is resumed after the last event seen. Raises
        `DeadlineExceeded` when `timeout` seconds pass first; the job itself keeps running.
        """
        try:
            return await asyncio.wait_for(self._follow(id, on_event), timeout)
        except asyncio.TimeoutError:
            raise DeadlineExceeded(f"job {id!r} did not finish within {timeout:g} s") from None

    async def _follow(self, id: str, on_event: Callable[[JobEvent], None] | None) -> Job:
        after_sequence, attempts = 0, 0
        while True:
            try:
                async for event in self.watch_job(id, after_sequence=after_sequence):
                    after_sequence, attempts = event.sequence, 0
                    if on_event is not None:
                        on_event(event)
                job = await self.get_job(id)
                if job.state in TERMINAL_JOB_STATES:
                    return job
                # The stream ended before the job did (a server shutting down may do that): resume it as well.
            except Unavailable:
                if attempts >= _MAX_RECONNECTS:
                    raise
            else:
                if attempts >= _MAX_RECONNECTS:
                    raise Unavailable(f"the event stream of job {id!r} keeps ending before the job does")
            attempts += 1
            await asyncio.sleep(_backoff(attempts))

    async def list_backbones(self) -> ListBackbonesResponse:
        return await self._unary(self._training.ListBackbones, ListBackbonesRequest(), ListBackbonesResponse)

    async def recommend_backbone(
        self,
        dataset_id: str,
        *,
        backbones: Sequence[str] = (),
        max_examples: int = 0,
        time_budget_seconds: float = 0.0,
        max_seq_length: int = 0,
        timeout: float | None = None,
    ) -> RecommendBackboneResponse:
        """Rank `backbones` (default: every catalog backbone of the dataset's modality) by LogME on a stratified
        sample of at most `max_examples` rows, within `time_budget_seconds` (0: the server's defaults). `timeout`
        defaults to the budget plus a minute, or the client's timeout if that is longer."""
        request = RecommendBackboneRequest(
            dataset_id=dataset_id, backbones=list(backbones), max_examples=max_examples,
            time_budget_seconds=time_budget_seconds, max_seq_length=max_seq_length,
        )
        if timeout is None and self._timeout is not None:
            budget = time_budget_seconds if time_budget_seconds > 0 else _RECOMMEND_DEFAULT_BUDGET
            timeout = max(self._timeout, budget + _RECOMMEND_DEADLINE_MARGIN)
        with map_rpc_errors():
            response = await self._training.RecommendBackbone(request, timeout=timeout, metadata=self._metadata)
        return cast(RecommendBackboneResponse, response)
