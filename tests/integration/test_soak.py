"""A bounded soak (the short version of bench/soak.py): 32 concurrent callers Predict for 15 s through the real client
while a fine-tune trains, on a `tuneserve serve` process. No request may fail and the server's resident memory may
grow by less than 10% from the end of the warm-up to the end."""

from __future__ import annotations

from pathlib import Path

from bench.soak import COUNTS, soak, train_ready_model
from tests.fixtures import write_text_dataset
from tests.integration.server_process import ServerProcess


def test_32_callers_for_15_seconds_beside_a_fine_tune(tiny_bert: Path, tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data", tiny_bert.parent).start()
    try:
        model_id, dataset_id = train_ready_model(
            server, write_text_dataset(tmp_path / "train.jsonl", COUNTS, seed=1), tiny_bert
        )
        report = soak(server, model_id, dataset_id, str(tiny_bert), seconds=15, callers=32, warmup=3)
    finally:
        server.stop()
    assert report.errors == 0, report.error_samples
    assert report.requests >= 32, report
    assert report.job_running_throughout and report.worker_cpu_seconds > 0, report
    assert report.rss_growth < 0.10, report
