"""Refit (hyperparameters.refit "true") through the training worker (a subprocess, as the job manager runs it) on tiny
random-init backbones: a fresh model trained on train+validation for the scaled best step is the one exported, with
the first run's figures and task parameters; a preemption during the refit resumes it without the first run; a cancel
stops it within seconds; every task and images refit."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from transformers import AutoTokenizer

from tests.engines.training.test_task_training import succeeded
from tests.engines.training.test_task_training import write_spec as write_task_spec
from tests.engines.training.test_vision_training import write_image_spec
from tests.engines.training.test_worker import IMBALANCED, WORKER, WorkerRun, run_worker, write_spec
from tests.fixtures import build_tiny_bert, make_texts, tiny_efficientnet
from tests.tagging_fixtures import NER_LABELS, ner_sentences, write_sentences
from tests.task_fixtures import TAGS, multi_label_rows, pair_rows, write_rows
from tuneserve.engines.export.quantize import onnx_logits
from tuneserve.engines.training import refit
from tuneserve.engines.training.data import EncodedDataset, make_splits, read_examples
from tuneserve.engines.training.events import ResultEvent
from tuneserve.engines.training.spec import ARTIFACTS, TrainingSpec
from tuneserve.tasks import TaskParams, get_task
from tuneserve.tasks.calibration import logit_scale

# NOTE: 40 training rows (5 steps an epoch) and a separate validation set 4.5 times larger: the refit trains about 5.5
# times the first run's best step, long enough to be stopped in the middle.
SMALL_TRAIN = {"sport": 16, "business": 12, "tech": 12}
LARGE_VALIDATION = {"sport": 60, "business": 60, "tech": 60}


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("backbone") / "tiny-bert")


def refit_events(run: WorkerRun) -> list[dict[str, Any]]:
    """The events after the "refit" event (the refit phase and the export)."""
    start = run.kinds.index("refit")
    return run.events[start + 1:]


def test_refit_serves_a_fresh_model_trained_on_train_and_validation(tmp_path: Path, tiny_bert: Path) -> None:
    common: dict[str, Any] = {"epochs": 3, "warmup_ratio": 0.0}
    plain = run_worker(write_spec(tmp_path / "plain", tiny_bert, refit="false", **common))
    refitted = run_worker(write_spec(tmp_path / "refit", tiny_bert, refit="true", **common))
    first, result = succeeded(plain), succeeded(refitted)
    train, validation = result["train_examples"], result["validation_examples"]
    assert train + validation == sum(IMBALANCED.values())

    # the first run is the plain run, step for step: the same evaluations, best step and every validation figure
    assert [e for e in refitted.events[: refitted.kinds.index("refit")] if e["kind"] == "evaluation"] == [
        e for e in plain.events if e["kind"] == "evaluation"
    ]
    for name in ("validation_metrics", "best_step", "best_metric", "learning_curve", "fit",
                 "validation_confusion_matrix", "validation_per_class", "variant_metrics"):
        assert result[name] == first[name], name
    # the first run's calibration figures, and its temperature carried to the refit model (below)
    carried = result["calibration"].pop("refit_temperature")
    assert result["calibration"] == first["calibration"] and "refit_temperature" not in first["calibration"]
    served_params, first_params = TaskParams.load(refitted.output_dir), TaskParams.load(plain.output_dir)
    assert served_params == replace(first_params, temperature=carried)

    # then a refit on every row for the best step scaled to the rows, with no evaluation
    steps = math.ceil(first["best_step"] * (train + validation) / train)
    (event,) = [e for e in refitted.events if e["kind"] == "refit"]
    assert (event["steps"], event["examples"], event["best_step"]) == (steps, train + validation, first["best_step"])
    assert event["message"].startswith(f"refit: a fresh model trains on the {train + validation} training and ")
    after = refit_events(refitted)
    assert "evaluation" not in {e["kind"] for e in after}
    progress = [e for e in after if e["kind"] == "progress"]
    assert progress[-1]["step"] == progress[-1]["total_steps"] == steps
    assert all(e["message"].startswith("[refit] ") for e in progress)
    # the schedule is the first run's stretched by the same ratio: its last step has about the best step's learning
    # rate (the backbone's, 1e-3 at its peak; within a step of either schedule)
    at_best = next(e for e in plain.events if e["kind"] == "progress" and e["step"] == first["best_step"])
    first_steps = plain.last("progress")["total_steps"]
    assert progress[-1]["learning_rate"] == pytest.approx(at_best["learning_rate"], abs=2e-3 / first_steps)
    assert (result["refit"], result["refit_steps"], result["refit_examples"]) == (True, steps, train + validation)
    assert result["refit_seconds"] > 0 and first["refit"] is False and first["refit_steps"] == 0
    assert "(first run, validation); served: refit on" in result["message"]
    metrics = json.loads((refitted.output_dir / ARTIFACTS["metrics"]).read_text())
    assert metrics["refit"] is True and metrics["refit_steps"] == steps

    # the served model is not the best checkpoint: its ONNX graph answers differently, and passed its parity check
    assert refitted.last("export")["parity_max_abs_diff"] <= 1e-4
    texts = [text for text, _ in make_texts({"sport": 4, "tech": 4}, seed=9)]
    tokenizer = AutoTokenizer.from_pretrained(refitted.output_dir / "tokenizer")
    served = onnx_logits(refitted.output_dir / ARTIFACTS["onnx"], tokenizer, texts, max_seq_length=128)
    best_checkpoint = onnx_logits(plain.output_dir / ARTIFACTS["onnx"], tokenizer, texts, max_seq_length=128)
    assert not np.allclose(served, best_checkpoint, atol=1e-3)
    assert sorted(p.name for p in (tmp_path / "refit").iterdir()) == ["output", "spec.json", "train.jsonl"]

    # the carried temperature: the first run's x the two models' logit scales on the same training rows (the
    # training split's, all of them here: fewer than the sample's 512), measured here on their ONNX graphs
    spec, task = TrainingSpec.load(tmp_path / "refit" / "spec.json"), get_task("classification")
    rows = make_splits(read_examples(Path(spec.train_path), task), None, spec.labels, task,
                       fraction=spec.hyperparameters.validation_fraction, seed=spec.hyperparameters.seed).train
    texts = [row.text for row in rows]
    refit_scale, first_scale = (
        logit_scale(onnx_logits(run.output_dir / ARTIFACTS["onnx"], tokenizer, texts, max_seq_length=128))
        for run in (refitted, plain)
    )
    assert first["calibration"]["logit_scale"] == pytest.approx([first_scale], rel=1e-3)
    assert abs(refit_scale / first_scale - 1.0) > 0.01, "the logits must differ in scale for this to test anything"
    assert carried == pytest.approx([first_params.temperature[0] * refit_scale / first_scale], rel=1e-3)


def signal_when(spec_path: Path, sig: signal.Signals, when: Callable[[dict[str, Any]], bool]) -> tuple[WorkerRun, float]:
    """Run the worker, send it `sig` at the first event `when` accepts; the run and the seconds it took to end."""
    worker = subprocess.Popen([*WORKER, str(spec_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert worker.stdout is not None and worker.stderr is not None
    events: list[dict[str, Any]] = []
    sent = 0.0
    try:
        for line in worker.stdout:
            events.append(json.loads(line))
            if when(events[-1]):
                worker.send_signal(sig)
                sent = time.monotonic()
                break
        events += [json.loads(line) for line in worker.stdout]
        returncode = worker.wait(timeout=60)
        took = time.monotonic() - sent
    finally:
        worker.kill()
    run = WorkerRun(returncode, events, worker.stderr.read(), Path(TrainingSpec.load(spec_path).output_dir))
    return run, took


def in_refit(at_least: int) -> Callable[[dict[str, Any]], bool]:
    return lambda e: e["kind"] == "progress" and e["message"].startswith("[refit] ") and e["step"] >= at_least


def small_refit_spec(job_dir: Path, backbone: Path) -> Path:
    return write_spec(job_dir, backbone, train_counts=SMALL_TRAIN, validation_counts=LARGE_VALIDATION, refit="true")


def test_sigterm_during_the_refit_resumes_the_refit_and_not_the_first_run(tmp_path: Path, tiny_bert: Path) -> None:
    spec_path = small_refit_spec(tmp_path, tiny_bert)
    stopped, _ = signal_when(spec_path, signal.SIGTERM, in_refit(4))
    assert stopped.returncode == 75, stopped.stderr[-2000:]
    preempted = stopped.events[-1]
    assert preempted["kind"] == "preempted", stopped.kinds
    steps = next(e for e in stopped.events if e["kind"] == "refit")["steps"]
    assert 4 <= preempted["step"] < steps
    saved = Path(preempted["checkpoint"])
    assert saved == tmp_path / "checkpoints-refit" / f"checkpoint-{preempted['step']}"
    assert (saved / "optimizer.pt").is_file() and (tmp_path / "checkpoints-refit" / refit.FIRST_RUN).is_file()
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "output").exists()

    resumed = run_worker(spec_path)
    result = succeeded(resumed)
    # no first run again (no evaluation), no new refit: the refit goes on from its checkpoint, no step trained twice
    assert "evaluation" not in resumed.kinds and "refit" not in resumed.kinds
    first = resumed.events[0]
    assert first["kind"] == "progress" and first["message"].startswith(
        f"[refit] resumed from the checkpoint at step {preempted['step']}/{steps}"
    )
    refit_steps = [e["step"] for e in resumed.events if e["kind"] == "progress"]
    assert min(refit_steps) == preempted["step"] and refit_steps[-1] == steps
    # the result is the first run's, as the stopped worker saw it, and the refit's
    evaluations = [e for e in stopped.events if e["kind"] == "evaluation"]
    assert [p["step"] for p in result["learning_curve"]] == [e["step"] for e in evaluations]
    assert result["best_metric"] == max(e["metrics"]["macro_f1"] for e in evaluations)
    assert (result["refit"], result["refit_steps"], result["refit_examples"]) == (True, steps, 220)
    assert not (tmp_path / "checkpoints-refit").exists()
    assert (tmp_path / "output" / ARTIFACTS["onnx"]).is_file()


def test_sigint_during_the_refit_cancels_within_seconds(tmp_path: Path, tiny_bert: Path) -> None:
    run, took = signal_when(small_refit_spec(tmp_path, tiny_bert), signal.SIGINT, in_refit(1))
    assert run.returncode == 0, run.stderr[-2000:]
    assert took < 10  # NOTE: seconds; slack for a loaded CI
    cancelled = run.events[-1]
    assert cancelled["kind"] == "cancelled" and cancelled["message"] == "cancelled during the refit"
    assert cancelled["step"] < next(e for e in run.events if e["kind"] == "refit")["steps"]
    assert "result" not in run.kinds and not (tmp_path / "output" / ARTIFACTS["onnx"]).exists()


def test_first_run_outcome_round_trips(tmp_path: Path) -> None:
    result = ResultEvent(
        validation_metrics={"macro_f1": 0.5}, best_metric_name="macro_f1", best_metric=0.5, best_step=7,
        stopped_early=True, train_seconds=1.0, samples_per_second=2.0, train_examples=40, validation_examples=180,
        parity_max_abs_diff=0.0, device="cpu", precision="fp32", final_train_loss=0.3, message="best macro_f1",
    )
    params = TaskParams(task="multi_label", thresholds=[0.3, 0.6], temperature=[1.5, 0.9])
    path = refit.directory(tmp_path / "checkpoints")
    assert path == tmp_path / "checkpoints-refit" and refit.load(path) is None
    refit.save(path, refit.FirstRun(result, params, steps=9))
    loaded = refit.load(path)
    assert loaded is not None and (loaded.result, loaded.params, loaded.steps) == (result, params, 9)
    assert refit.scaled(7, 40, 180) == 39 and refit.scaled(8, 40, 10) == 10


def test_schedule_steps_stretch_warmup_and_decay(tiny_bert: Path) -> None:
    """The refit's Trainer trains fewer steps than its schedule runs over: at step 10 of a 40-step linear schedule with
    a 10% warm-up, the learning rate is 1 - 6/36 of its peak."""
    from tuneserve.engines.training.model import TextClassifier
    from tuneserve.engines.training.spec import Hyperparameters
    from tuneserve.engines.training.trainer import build_trainer, choose_device

    model = TextClassifier.from_backbone(str(tiny_bert), 3, dropout=0.1)
    hp = Hyperparameters(max_steps=10, learning_rate=1e-3, warmup_ratio=0.1, early_stopping_patience=0)
    trainer = build_trainer(
        model, None, hp=hp, labels=["a", "b", "c"], train_set=EncodedDataset([]), validation_set=None,
        checkpoint_dir=tiny_bert.parent / "unused", device=choose_device("cpu"), callbacks=[], schedule_steps=40,
    )
    trainer.create_optimizer_and_scheduler(num_training_steps=10)
    assert trainer.lr_scheduler is not None
    for _ in range(10):
        trainer.optimizer.step()
        trainer.lr_scheduler.step()
    assert trainer.lr_scheduler.get_last_lr()[0] == pytest.approx(1e-3 * (1 - 6 / 36))
    assert trainer.args.eval_strategy == "no" and not trainer.args.load_best_model_at_end


@pytest.fixture(scope="module")
def efficientnet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_efficientnet(tmp_path_factory.mktemp("backbone") / "tiny-efficientnet")


def _text_task(job: Path, backbone: Path, task: str) -> Path:
    if task == "multi_label":
        train = write_rows(job / "train.jsonl", multi_label_rows(60))
        return write_task_spec(job, backbone, task, train, TAGS, refit="true")
    if task == "regression_pairs":
        train = write_rows(job / "train.jsonl", pair_rows(48, regression=True))
        return write_task_spec(job, backbone, "regression", train, [], pairs=True, refit="true")
    train = write_sentences(job / "train.jsonl", ner_sentences(48))
    return write_task_spec(job, backbone, "token_classification", train, NER_LABELS, refit="true")


@pytest.mark.parametrize("task", ["multi_label", "regression_pairs", "token_classification", "image"])
def test_every_task_refits(tmp_path: Path, tiny_bert: Path, efficientnet: Path, task: str) -> None:
    spec = write_image_spec(tmp_path, efficientnet, refit="true") if task == "image" else _text_task(
        tmp_path, tiny_bert, task
    )
    run = run_worker(spec, timeout=300)
    result = succeeded(run)
    rows = result["train_examples"] + result["validation_examples"]
    assert (result["refit"], result["refit_examples"]) == (True, rows)
    assert result["refit_steps"] == math.ceil(result["best_step"] * rows / result["train_examples"])
    assert [e["step"] for e in refit_events(run) if e["kind"] == "progress"][-1] == result["refit_steps"]
    params = TaskParams.load(run.output_dir)
    assert result["label_thresholds"] == dict(zip(TrainingSpec.load(spec).labels, params.thresholds, strict=False))
