"""The CLI's transfer-learning options against the fake server: strategy flags and baselines reach FineTune, compare
reaches Evaluate, and people see comparisons, fit and baseline verdicts."""

from __future__ import annotations

import json

import pytest

from tuneserve_client import JobResult
from tuneserve_client.cli.main import main

from .conftest import FakeTuneServe


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_finetune_strategy_flags_and_baselines(capsys: pytest.CaptureFixture[str], fake: FakeTuneServe) -> None:
    argv = ["--target", fake.target, "--json", "finetune", "--dataset", "ds-1", "--freeze", "top_k"]
    argv += ["--trainable-layers", "2", "--layer-lr-decay", "0.9", "--gradual-unfreezing", "--grad-accum", "4"]
    argv += ["--lr-scheduler", "cosine", "--baselines", "frozen,scratch"]
    code, _, err = run(capsys, *argv)
    assert code == 0, err
    request = fake.requests["FineTune"][0]
    hp = request.hyperparameters
    assert {f.name: v for f, v in hp.ListFields()} == {
        "freeze": "top_k", "trainable_layers": 2, "layer_lr_decay": 0.9, "gradual_unfreezing": True,
        "gradient_accumulation_steps": 4, "lr_scheduler": "cosine",
    }  # fmt: skip
    assert list(request.baselines) == ["frozen", "scratch"]


def test_finetune_without_strategy_flags_leaves_them_to_the_server(
    capsys: pytest.CaptureFixture[str], fake: FakeTuneServe
) -> None:
    assert run(capsys, "--target", fake.target, "--json", "finetune", "--dataset", "ds-1")[0] == 0
    request = fake.requests["FineTune"][0]
    assert not request.hyperparameters.ListFields() and not request.baselines


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--no-augment-flip"], {"augment_flip": False}),
        (["--no-augment-crop", "--augment-flip"], {"augment_random_resized_crop": False, "augment_flip": True}),
    ],
)
def test_finetune_augmentation_flags(
    capsys: pytest.CaptureFixture[str], fake: FakeTuneServe, flags: list[str], expected: dict[str, bool]
) -> None:
    code, _, err = run(capsys, "--target", fake.target, "--json", "finetune", "--dataset", "ds-1", *flags)
    assert code == 0, err
    # NOTE: proto3 `optional` fields: an explicit False is sent (and turns augmentation off); an absent flag is unset.
    assert {f.name: v for f, v in fake.requests["FineTune"][0].hyperparameters.ListFields()} == expected


@pytest.mark.parametrize("flag", [["--freeze", "some"], ["--lr-scheduler", "step"], ["--grad-accum", "x"]])
def test_finetune_bad_strategy_flags_are_usage_errors(
    capsys: pytest.CaptureFixture[str], fake: FakeTuneServe, flag: list[str]
) -> None:
    code, _, err = run(capsys, "--target", fake.target, "finetune", "--dataset", "ds-1", *flag)
    assert code == 2 and "usage: tuneserve finetune" in err
    assert "FineTune" not in fake.requests


def test_evaluate_compare(capsys: pytest.CaptureFixture[str], fake: FakeTuneServe) -> None:
    argv = ["--target", fake.target, "evaluate", "--model", "model-1", "--dataset", "ds-1"]
    code, out, err = run(capsys, *argv, "--compare", "model-2,model-3:4")
    assert code == 0, err
    compare = fake.requests["Evaluate"][0].compare
    assert [(ref.model_id, ref.version) for ref in compare] == [("model-2", 0), ("model-3", 4)]
    assert "confusion matrix" in out
    assert "model-3 v4" in out and "+0.1000" in out and "0.0312" in out and "yes" in out
    assert "model-2 v1: transfer helped: ..." in out

    code, out, _ = run(capsys, "--target", fake.target, "--json", *argv[2:], "--compare", "model-2")
    response = json.loads(out)
    assert code == 0 and response["comparisons"][0]["p_value"] == 0.03125
    assert response["compared"][0]["model_id"] == "model-2"


def test_evaluate_compare_bad_version_is_a_usage_error(capsys: pytest.CaptureFixture[str], fake: FakeTuneServe) -> None:
    code, _, err = run(capsys, "--target", fake.target, "evaluate", "--model", "m", "--dataset", "d", "--compare", "m2:x")
    assert code == 2 and "'m2:x': write ID or ID:VERSION" in err
    assert "Evaluate" not in fake.requests


def test_jobs_get_shows_fit_baselines_verdict_and_learning_curve(
    capsys: pytest.CaptureFixture[str], fake: FakeTuneServe
) -> None:
    fake.final_job.result.CopyFrom(JobResult(
        validation_metrics={"macro_f1": 0.95}, best_metric_name="macro_f1", best_metric=0.95,
        fit={"verdict": "good_fit", "rule": "train macro F1 0.99 vs validation 0.95", "train_validation_gap": 0.04},
        baselines=[{"kind": "scratch", "model_id": "model-9", "validation_metrics": {"macro_f1": 0.41},
                    "train_seconds": 12.5}],
        transfer_verdict="transfer helped: validation macro F1 0.9500 fine-tuned vs 0.4100 from scratch",
        learning_curve=[{"step": 10, "epoch": 1.0, "train_loss": 0.8, "validation_loss": 0.6,
                         "metrics": {"macro_f1": 0.95}}],
        auto_actions=["stopped at step 30 of 80 at the first sign of overfitting"],
    ))  # fmt: skip
    code, out, _ = run(capsys, "--target", fake.target, "jobs", "get", "job-1")
    assert code == 0
    assert "fit:" in out and "good_fit: train macro F1 0.99 vs validation 0.95" in out
    assert "auto did:" in out and "stopped at step 30 of 80 at the first sign of overfitting" in out
    assert "baseline scratch: model model-9  macro_f1 0.4100  (12.5 s)" in out
    assert "transfer:" in out and "0.4100 from scratch" in out
    assert "learning curve" in out and "0.6000" in out


def test_finetune_task_flags(capsys: pytest.CaptureFixture[str], fake: FakeTuneServe) -> None:
    argv = ["--target", fake.target, "--json", "finetune", "--dataset", "ds-1", "--regression-loss", "huber"]
    assert run(capsys, *argv, "--metric", "spearman", "--pair-encoding", "bi")[0] == 0
    hp = fake.requests["FineTune"][0].hyperparameters
    assert {f.name: v for f, v in hp.ListFields()} == {
        "regression_loss": "huber", "metric_for_best_model": "spearman", "pair_encoding": "bi",
    }


def test_finetune_refit_flag_and_jobs_get_shows_the_refit(
    capsys: pytest.CaptureFixture[str], fake: FakeTuneServe
) -> None:
    assert run(capsys, "--target", fake.target, "--json", "finetune", "--dataset", "ds-1", "--refit", "true")[0] == 0
    hp = fake.requests["FineTune"][0].hyperparameters
    assert {f.name: v for f, v in hp.ListFields()} == {"refit": "true"}
    fake.final_job.result.CopyFrom(JobResult(
        validation_metrics={"macro_f1": 0.9}, best_metric_name="macro_f1", best_metric=0.9, best_step=30,
        refit=True, refit_steps=38, refit_examples=64, refit_seconds=4.25,
    ))  # fmt: skip
    code, out, _ = run(capsys, "--target", fake.target, "jobs", "get", "job-1")
    assert code == 0
    assert "served model retrained on 64 train+validation rows for 38 steps (4.2 s); the validation figures are " \
           "the first run's best checkpoint (step 30)" in " ".join(out.split())


def test_jobs_get_shows_the_tasks_metrics_thresholds_and_variants(
    capsys: pytest.CaptureFixture[str], fake: FakeTuneServe
) -> None:
    fake.final_job.task = 2  # TASK_MULTI_LABEL
    fake.final_job.result.CopyFrom(JobResult(
        validation_metrics={"micro_f1": 0.81, "hamming_loss": 0.07, "macro_f1": 0.7, "micro_recall": 0.8},
        best_metric_name="micro_f1", best_metric=0.8, variant_metric="micro_f1",
        variant_metrics={"fp32": 0.81, "int8": 0.8}, label_thresholds={"water": 0.3, "aid": 0.55},
        calibration={"temperature": [1.2, 0.8], "bias": [-1.5, -0.25], "ece_before": 0.2, "ece_after": 0.03,
                     "nll_before": 0.5, "nll_after": 0.3},
        learning_curve=[{"step": 10, "epoch": 1.0, "train_loss": 0.8, "validation_loss": 0.6,
                         "metrics": {"micro_f1": 0.8, "macro_f1": 0.7}}],
    ))  # fmt: skip
    code, out, _ = run(capsys, "--target", fake.target, "jobs", "get", "job-1")
    assert code == 0
    assert "task:" in out and "multi-label" in out
    assert "micro_f1 0.8100  macro_f1 0.7000  hamming_loss 0.0700  micro_recall 0.8000" in out
    assert "micro_f1: fp32 0.8100  int8 0.8000" in out and "aid 0.55  water 0.30" in out
    assert "VAL MICRO F1  VAL MACRO F1" in out
    assert "temperature 1.2 0.8 bias -1.5 -0.25: validation ECE 0.2000 -> 0.0300, NLL 0.5000 -> 0.3000" in out
