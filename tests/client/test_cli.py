"""The `tuneserve` CLI, run in-process through `main(argv)` against the fake server of conftest.py."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import types
from pathlib import Path

import pytest

from tuneserve_client import JobState
from tuneserve_client.cli.main import main, resolve_target

from .conftest import FakeTuneServe, job_events

Run = tuple[int, str, str]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> Run:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


HELP = [
    [],
    ["datasets"], ["datasets", "upload"], ["datasets", "list"], ["datasets", "get"], ["datasets", "delete"],
    ["finetune"],
    ["jobs"], ["jobs", "list"], ["jobs", "get"], ["jobs", "watch"], ["jobs", "cancel"],
    ["evaluate"], ["predict"],
    ["models"], ["models", "list"], ["models", "get"], ["models", "delete"],
    ["backbones"],
]  # fmt: skip


@pytest.mark.parametrize("command", HELP, ids=lambda c: " ".join(c) or "tuneserve")
def test_help(capsys: pytest.CaptureFixture[str], command: list[str]) -> None:
    code, out, _ = run(capsys, *command, "--help")
    assert code == 0
    assert out.startswith(f"usage: {' '.join(['tuneserve', *command])}")


@pytest.mark.parametrize(
    "argv",
    [[], ["datasets"], ["bogus"], ["finetune"], ["jobs", "list", "--state", "done"], ["jobs", "get", "x", "--bogus"]],
)
def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert "usage: tuneserve" in err and out == ""


def test_serve_hands_every_argument_to_the_server(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    received: list[list[str]] = []

    def server_main(argv: list[str]) -> int:
        received.append(argv)
        return 3

    server = types.ModuleType("tuneserve.server")
    server.main = server_main  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tuneserve.server", server)
    assert run(capsys, "serve", "--port", "0", "--json", "--help", "x")[0] == 3
    assert received == [["--port", "0", "--json", "--help", "x"]]


def test_serve_without_the_server_extra(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tuneserve.server", None)  # makes the import fail
    code, _, err = run(capsys, "serve", "--port", "0")
    assert code == 1
    assert err.count("\n") == 1 and "pip install 'tuneserve[server,cpu]'" in err


def test_target_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_target(None, {}) == "localhost:50051"
    assert resolve_target(None, {"TUNESERVE_TARGET": "env:1"}) == "env:1"
    assert resolve_target("flag:2", {"TUNESERVE_TARGET": "env:1"}) == "flag:2"


def test_target_from_environment(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, fake: FakeTuneServe, closed_target: str
) -> None:
    monkeypatch.setenv("TUNESERVE_TARGET", fake.target)
    assert run(capsys, "datasets", "get", "ds-1")[0] == 0
    monkeypatch.setenv("TUNESERVE_TARGET", closed_target)
    assert run(capsys, "--target", fake.target, "datasets", "get", "ds-1")[0] == 0
    code, _, err = run(capsys, "datasets", "get", "ds-1")
    assert code == 1
    assert err.startswith(f"error: UNAVAILABLE: cannot reach the tuneserve server at {closed_target} (")


def test_not_found_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str], fake: FakeTuneServe) -> None:
    code, out, err = run(capsys, "--target", fake.target, "datasets", "get", "nope")
    assert (code, out, err) == (2, "", "error: NOT_FOUND: dataset 'nope' not found\n")


def test_unreadable_file_exit_2(capsys: pytest.CaptureFixture[str], fake: FakeTuneServe, tmp_path: Path) -> None:
    code, _, err = run(capsys, "--target", fake.target, "datasets", "upload", str(tmp_path / "none.csv"))
    assert code == 2 and err.startswith("error: ") and "none.csv" in err


def test_json_dataset(capsys: pytest.CaptureFixture[str], fake: FakeTuneServe) -> None:
    code, out, _ = run(capsys, "--target", fake.target, "--json", "datasets", "get", "ds-1")
    dataset = json.loads(out)
    assert code == 0
    assert (dataset["id"], dataset["num_rows"], dataset["labels"]) == ("ds-1", "3", ["neg", "pos"])  # int64: string
    assert dataset["num_duplicates"] == "0"  # fields with default values are printed too


def test_human_dataset_and_list(capsys: pytest.CaptureFixture[str], fake: FakeTuneServe) -> None:
    code, out, _ = run(capsys, "--target", fake.target, "datasets", "get", "ds-1")
    assert code == 0 and "id:" in out and "ds-1" in out and "neg 1, pos 2" in out
    code, out, _ = run(capsys, "--target", fake.target, "datasets", "list", "--page-size", "1")
    assert code == 0 and "ds-1" in out and "--page-token page-2" in out
    assert fake.requests["ListDatasets"][-1].page_size == 1


def test_upload(capsys: pytest.CaptureFixture[str], fake: FakeTuneServe, tmp_path: Path) -> None:
    path = tmp_path / "news.jsonl"
    path.write_text('{"text": "a", "label": "b"}\n')
    argv = ["--target", fake.target, "--json", "datasets", "upload", str(path), "--name", "N", "--format", "jsonl"]
    code, out, _ = run(capsys, *argv, "--text-column", "body")
    assert code == 0 and json.loads(out)["format"] == "DATASET_FORMAT_JSONL"
    metadata = fake.requests["UploadDataset"][0][0].metadata
    assert (metadata.name, metadata.text_column, metadata.label_column) == ("N", "body", "")


def test_finetune_flags(capsys: pytest.CaptureFixture[str], fake: FakeTuneServe) -> None:
    argv = ["--target", fake.target, "--json", "finetune", "--dataset", "ds-1", "--validation", "ds-2"]
    argv += ["--backbone", "minilm-l6", "--name", "news", "--epochs", "2", "--learning-rate", "3e-5", "--seed", "7"]
    code, out, _ = run(capsys, *argv)
    assert code == 0 and json.loads(out)["state"] == "JOB_STATE_QUEUED"
    request = fake.requests["FineTune"][0]
    assert (request.dataset_id, request.validation_dataset_id, request.model_name) == ("ds-1", "ds-2", "news")
    hp = request.hyperparameters
    assert {f.name for f, _ in hp.ListFields()} == {"epochs", "learning_rate", "seed"}
    assert (hp.epochs, hp.learning_rate, hp.seed) == (2, 3e-5, 7)


def test_finetune_int8_flags(capsys: pytest.CaptureFixture[str], fake: FakeTuneServe) -> None:
    base = ["--target", fake.target, "--json", "finetune", "--dataset", "ds-1"]
    assert run(capsys, *base, "--int8")[0] == 0
    assert run(capsys, *base, "--int8", "--int8-max-f1-drop", "0")[0] == 0
    assert run(capsys, *base)[0] == 0
    plain, with_limit, default = (request.export for request in fake.requests["FineTune"])
    assert plain.int8 and not plain.HasField("int8_max_f1_drop")
    assert with_limit.int8 and with_limit.HasField("int8_max_f1_drop") and with_limit.int8_max_f1_drop == 0.0
    assert not default.int8 and not default.HasField("int8_max_f1_drop")


def test_finetune_int8_limit_without_int8_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], fake: FakeTuneServe
) -> None:
    code, _, err = run(capsys, "--target", fake.target, "finetune", "--dataset", "ds-1", "--int8-max-f1-drop", "0.02")
    assert code == 2 and err == "error: --int8-max-f1-drop is the int8 variant's limit; add --int8 to build one\n"
    assert "FineTune" not in fake.requests


def test_finetune_wait_succeeded(capsys: pytest.CaptureFixture[str], fake: FakeTuneServe) -> None:
    code, out, err = run(capsys, "--target", fake.target, "finetune", "--dataset", "ds-1", "--wait")
    assert code == 0, err
    assert "checkpoint saved at step 5 (new best, 0.8000)" in out
    assert "exported onnx" in out and "job job-1 succeeded: model model-1 version 1" in out


def test_finetune_wait_json_prints_the_final_job(capsys: pytest.CaptureFixture[str], fake: FakeTuneServe) -> None:
    code, out, _ = run(capsys, "--target", fake.target, "--json", "finetune", "--dataset", "ds-1", "--wait")
    job = json.loads(out)
    assert code == 0 and (job["state"], job["model_id"]) == ("JOB_STATE_SUCCEEDED", "model-1")


def test_jobs_watch_failed(capsys: pytest.CaptureFixture[str], fake: FakeTuneServe) -> None:
    fake.events = job_events("job-1", JobState.JOB_STATE_FAILED, "out of memory")
    fake.final_job.state, fake.final_job.error = JobState.JOB_STATE_FAILED, "out of memory"
    code, out, err = run(capsys, "--target", fake.target, "jobs", "watch", "job-1")
    assert code == 1
    assert "state failed: out of memory" in out
    assert err == "error: job job-1 failed: out of memory\n"


def test_jobs_watch_json_one_event_per_line(capsys: pytest.CaptureFixture[str], fake: FakeTuneServe) -> None:
    code, out, _ = run(capsys, "--target", fake.target, "--json", "jobs", "watch", "job-1")
    events = [json.loads(line) for line in out.splitlines()]
    assert code == 0
    assert [e["sequence"] for e in events] == ["1", "2", "3", "4", "5", "6", "7"]
    assert events[-1]["state_changed"]["state"] == "JOB_STATE_SUCCEEDED"


def test_ctrl_c_while_waiting(capsys: pytest.CaptureFixture[str], fake: FakeTuneServe) -> None:
    fake.watch_hangs = True
    # NOTE: a runner started in the background may inherit SIGINT as ignored; Ctrl-C must raise KeyboardInterrupt here
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        code, _, err = run(capsys, "--target", fake.target, "jobs", "watch", "job-1")
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous)
    assert code == 130
    assert "job job-1 keeps running" in err and f"tuneserve --target {fake.target} jobs watch job-1" in err
    assert "Traceback" not in err


def test_jobs_list_get_cancel(capsys: pytest.CaptureFixture[str], fake: FakeTuneServe) -> None:
    code, out, _ = run(capsys, "--target", fake.target, "jobs", "list", "--state", "succeeded")
    assert code == 0 and "job-1" in out and "succeeded" in out
    assert fake.requests["ListJobs"][0].state == JobState.JOB_STATE_SUCCEEDED
    code, out, _ = run(capsys, "--target", fake.target, "jobs", "get", "job-1")
    assert code == 0 and "macro_f1 0.8000" in out
    code, out, _ = run(capsys, "--target", fake.target, "--json", "jobs", "cancel", "job-1")
    assert code == 0 and json.loads(out)["state"] == "JOB_STATE_CANCELLED"


def test_evaluate(capsys: pytest.CaptureFixture[str], fake: FakeTuneServe) -> None:
    code, out, _ = run(capsys, "--target", fake.target, "evaluate", "--model", "model-1", "--dataset", "ds-1")
    assert code == 0 and "confusion matrix" in out and "accuracy: 0.9000" in out
    code, out, _ = run(capsys, "--target", fake.target, "--json", "evaluate", "--model", "m", "--dataset", "d")
    report = json.loads(out)["report"]
    assert (report["accuracy"], report["macro_f1"]) == (0.9, 0.89)
    assert report["confusion_matrix"]["rows"][0]["counts"] == ["4", "1"]


def test_predict(capsys: pytest.CaptureFixture[str], fake: FakeTuneServe) -> None:
    argv = ["--target", fake.target, "--json", "predict", "--model", "model-1", "--top-k", "1", "good", "bad"]
    code, out, _ = run(capsys, *argv)
    predictions = json.loads(out)["predictions"]
    assert code == 0 and [p["label"] for p in predictions] == ["pos", "pos"]
    assert predictions[0]["scores"] == [{"label": "pos", "score": pytest.approx(0.9)}]
    assert fake.requests["Predict"][0].texts == ["good", "bad"]
    code, out, _ = run(capsys, "--target", fake.target, "predict", "--model", "model-1", "good")
    assert code == 0 and "pos" in out


def test_models_and_backbones(capsys: pytest.CaptureFixture[str], fake: FakeTuneServe) -> None:
    for argv in (["models", "list"], ["models", "get", "model-1"], ["backbones"]):
        code, out, _ = run(capsys, "--target", fake.target, *argv)
        assert code == 0 and "minilm-l6" in out
    code, out, _ = run(capsys, "--target", fake.target, "models", "delete", "model-1")
    assert (code, out) == (0, "deleted model model-1\n")
    code, out, _ = run(capsys, "--target", fake.target, "--json", "datasets", "delete", "ds-1")
    assert (code, json.loads(out)) == (0, {})
