"""auto's overfitting stop (engines/training/auto_stop.py) in the training worker: a run that overfits is stopped at the
first evaluation that shows it when early stopping was chosen automatically, and only then."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from tests.engines.training.test_worker import LABELS, WorkerRun, run_worker, write_spec
from tests.fixtures import build_tiny_bert, make_texts
from tuneserve.engines.training.diagnostics import MAX_LOSS_RISE
from tuneserve.engines.training.spec import TrainingSpec

# NOTE: clean training rows and a validation set with half its labels drawn at random: at these learning rates the
# model learns the keywords within a few epochs, then grows confident, so the validation loss on the mislabelled rows
# climbs while the train loss keeps falling and macro F1 stalls (the tiny model overfits from its third epoch)
TRAIN = {"sport": 16, "business": 16, "tech": 16}
VALIDATION = {"sport": 6, "business": 6, "tech": 6}
OVERFITTING = {"epochs": 12, "batch_size": 8, "learning_rate": 5e-3, "head_learning_rate": 5e-2, "warmup_ratio": 0.0,
               "early_stopping_patience": 2}


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("backbone") / "tiny-bert")


def overfitting_run(job_dir: Path, backbone: Path, *, stop_on_overfit: bool) -> WorkerRun:
    path = write_spec(job_dir, backbone, train_counts=TRAIN, **OVERFITTING)
    rng = random.Random(1)
    rows = [(text, rng.choice(LABELS) if rng.random() < 0.5 else label) for text, label in make_texts(VALIDATION, seed=1)]
    validation = job_dir / "validation.jsonl"
    validation.write_text("".join(json.dumps({"text": text, "label": label}) + "\n" for text, label in rows))
    spec = TrainingSpec.load(path)
    spec.validation_path, spec.stop_on_overfit = str(validation), stop_on_overfit
    spec.save(path)
    run = run_worker(path, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    return run


def test_an_overfitting_run_stops_at_once_when_early_stopping_was_chosen_automatically(
    tmp_path: Path, tiny_bert: Path
) -> None:
    run = overfitting_run(tmp_path, tiny_bert, stop_on_overfit=True)
    result, stopped = run.last("result"), run.last("early_stopped")
    curve = result["learning_curve"]
    # the rule held at the last evaluation: the validation loss rose more than MAX_LOSS_RISE over its minimum while
    # the train loss fell, and the best checkpoint (kept) is not after that minimum
    lowest = min(curve, key=lambda point: point["validation_loss"])
    assert curve[-1]["validation_loss"] > lowest["validation_loss"] * (1 + MAX_LOSS_RISE)
    assert curve[-1]["train_loss"] < lowest["train_loss"] and result["best_step"] <= lowest["step"]
    # one evaluation after the best: the patience of 2 would have run one more
    assert [point["step"] for point in curve].index(result["best_step"]) == len(curve) - 2
    assert result["stopped_early"] is True and stopped["step"] == curve[-1]["step"]
    assert result["auto_actions"] == [stopped["reason"]]
    assert stopped["reason"].startswith(f"stopped at step {curve[-1]['step']} of ")
    assert "first sign of overfitting" in stopped["reason"] and f"since step {result['best_step']}" in stopped["reason"]


def test_a_caller_s_patience_wins_over_the_automatic_stop(tmp_path: Path, tiny_bert: Path) -> None:
    # NOTE: stop_on_overfit is off when the caller set early_stopping_patience (core/training/specs.py)
    run = overfitting_run(tmp_path, tiny_bert, stop_on_overfit=False)
    result = run.last("result")
    steps = [point["step"] for point in result["learning_curve"]]
    assert result["auto_actions"] == []
    assert run.last("early_stopped")["reason"] == "macro_f1 did not improve for 2 evaluations"
    # the same run went on past the evaluation where the rule stops it (the third), until the patience ran out
    assert len(steps) > 3 and len(steps) - 1 - steps.index(result["best_step"]) == 2
