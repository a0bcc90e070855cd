"""FineTune's admission under a burst (issue 16, item 6): the bound on queued jobs holds however many requests arrive
together, on a real `tuneserve serve` process."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.fixtures import write_text_dataset
from tests.integration.conftest import QUICK, TRAIN_COUNTS
from tests.integration.server_process import ServerProcess, wait_until
from tuneserve_client import AsyncClient, Client, JobState, ResourceExhausted

BURST = 60
MAX_QUEUED = 5


def test_a_burst_of_concurrent_finetunes_admits_exactly_max_queued_jobs(tiny_bert: Path, tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data", tiny_bert.parent, TUNESERVE_TRAINING__MAX_QUEUED_JOBS=str(MAX_QUEUED))
    server.start()
    try:
        with Client(server.target, timeout=60) as client:
            train = client.upload_dataset(write_text_dataset(tmp_path / "train.jsonl", TRAIN_COUNTS, seed=1))
            # NOTE: a job holding the one training slot, so that every admitted job stays QUEUED
            running = client.fine_tune(train.id, backbone=str(tiny_bert), model_name="running",
                                       hyperparameters={**QUICK, "max_steps": 20000, "eval_steps": 10000})
            wait_until(lambda: client.get_job(running.id).state == JobState.JOB_STATE_RUNNING, 60, "the job to run")

        async def burst() -> list[object]:
            async with AsyncClient(server.target, timeout=120) as client:
                return await asyncio.gather(*(
                    client.fine_tune(train.id, backbone=str(tiny_bert), model_name=f"burst-{i}", hyperparameters=QUICK)
                    for i in range(BURST)
                ), return_exceptions=True)

        results = asyncio.run(burst())
        refused = [r for r in results if isinstance(r, ResourceExhausted)]
        admitted = [r for r in results if not isinstance(r, BaseException)]
        assert len(admitted) == MAX_QUEUED and len(refused) == BURST - MAX_QUEUED, results
        assert f"{MAX_QUEUED} jobs are already queued (limit max_queued_jobs)" in str(refused[0])
        with Client(server.target, timeout=60) as client:
            queued = client.list_jobs(state=JobState.JOB_STATE_QUEUED).jobs
            assert sorted(j.id for j in queued) == sorted(j.id for j in admitted)  # type: ignore[attr-defined]
            # a refused FineTune registers nothing: only the admitted jobs' models exist besides the running one
            assert len(client.list_models().models) == 1 + MAX_QUEUED
            for job in [*queued, running]:
                client.cancel_job(job.id)
    finally:
        server.stop()
