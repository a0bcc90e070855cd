"""FineTune with export.int8 through the real client and server: the int8 variant is built, judged and reported."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tests.conftest import ServerThread
from tests.integration.conftest import QUICK
from tuneserve_client import Client, InvalidArgument, JobState


def test_int8_export_reports_both_variants(
    server: ServerThread, client: Client, tiny_bert: Path, train_file: Path
) -> None:
    train = client.upload_dataset(train_file)
    job = client.fine_tune(
        train.id, backbone=str(tiny_bert), hyperparameters=QUICK, export={"int8": True, "int8_max_f1_drop": 0.0}
    )
    spec = json.loads((server.settings.storage.data_dir / "jobs" / job.id / "spec.json").read_text())
    assert spec["export"] == {"int8": True, "int8_max_f1_drop": 0.0}  # an explicit 0 is not the default 0.01
    events = []
    done = client.wait_for_job(job.id, on_event=events.append, timeout=300)
    assert done.state == JobState.JOB_STATE_SUCCEEDED, done.error

    fp32, int8 = (e.export for e in events if e.HasField("export"))
    assert (fp32.format, int8.format) == ("onnx", "onnx_int8")
    assert 0 < int8.size_bytes < fp32.size_bytes / 3
    assert int8.parity_examples == done.result.validation_examples
    scores = dict(done.result.variant_macro_f1)
    assert set(scores) == {"fp32", "int8"} and all(0 <= f1 <= 1 for f1 in scores.values())
    int8_event = next(e for e in events if e.HasField("export") and e.export.format == "onnx_int8")
    verdict = "served" if scores["int8"] >= scores["fp32"] else "NOT served"
    assert f") {verdict}: int8 macro F1 {scores['int8']:.4f} vs fp32 {scores['fp32']:.4f}" in int8_event.message


@pytest.mark.parametrize("limit", [1.5, -0.01, math.nan])
def test_int8_limit_out_of_range_is_invalid(client: Client, train_file: Path, limit: float) -> None:
    train = client.upload_dataset(train_file)
    with pytest.raises(InvalidArgument, match=r"export.int8_max_f1_drop = \S+ is out of range \[0, 1\]"):
        client.fine_tune(train.id, export={"int8": True, "int8_max_f1_drop": limit})
    assert client.list_jobs().jobs == []
    assert client.list_models().models == []
