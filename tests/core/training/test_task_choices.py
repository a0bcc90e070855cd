"""What a job decides from its dataset's task: the metric for the best checkpoint (resolved and checked) and the
transfer verdict on the task's metric, with McNemar bounded by the task's count of rows right where it has one."""

from __future__ import annotations

import pytest

from tuneserve.core.training import baselines, hyperparameters
from tuneserve.errors import InvalidArgument
from tuneserve.tasks import get_task


@pytest.mark.parametrize(
    ("task", "default"), [("classification", "macro_f1"), ("multi_label", "micro_f1"), ("regression", "rmse")]
)
def test_metric_for_best_model_defaults_to_the_tasks(task: str, default: str) -> None:
    hp = hyperparameters.for_task(hyperparameters.resolve({}), get_task(task))
    assert hp.metric_for_best_model == default


def test_metric_for_best_model_must_be_one_the_task_reports() -> None:
    hp = hyperparameters.resolve({"metric_for_best_model": "spearman"})
    assert hyperparameters.for_task(hp, get_task("regression")).metric_for_best_model == "spearman"
    with pytest.raises(InvalidArgument) as error:
        hyperparameters.for_task(hp, get_task("multi_label"))
    assert error.value.message == (
        "hyperparameters.metric_for_best_model must be one of micro_f1, macro_f1, samples_f1, loss for a multi_label "
        "dataset, not 'spearman'"
    )
    with pytest.raises(InvalidArgument, match="regression_loss must be one of mse, huber, not 'l1'"):
        hyperparameters.resolve({"regression_loss": "l1"})


def entry(kind: str, metrics: dict[str, float]) -> dict[str, object]:
    return {"kind": kind, "model_id": f"model-{kind}", "validation_metrics": metrics, "train_seconds": 1.0}


def test_multi_label_verdict_is_on_micro_f1_with_mcnemar_on_subset_correctness() -> None:
    mine = {"validation_metrics": {"micro_f1": 0.9, "subset_accuracy": 0.9}, "validation_examples": 100}
    text = baselines.verdict(mine, [entry("scratch", {"micro_f1": 0.4, "subset_accuracy": 0.3})], get_task("multi_label"))
    assert text.startswith("transfer helped: the fine-tuned model beats the scratch baseline model-scratch (validation "
                           "micro F1 0.9000 vs 0.4000, +50.0 points; right on 90 vs 30 of the same 100 rows; McNemar")


def test_regression_verdict_gives_the_rmse_figures_and_no_test() -> None:
    mine = {"validation_metrics": {"rmse": 80.0}, "validation_examples": 40}
    text = baselines.verdict(mine, [entry("frozen", {"rmse": 100.0})], get_task("regression"))
    assert text == (
        "whether fine-tuning the backbone helped is undetermined: the fine-tuned model vs the frozen baseline "
        "model-frozen (validation RMSE 80 vs 100, 20.0% lower; no significance test possible: the job keeps no per-row "
        "errors; Evaluate with compare tests the models' paired absolute errors (Wilcoxon))"
    )


def test_classification_verdict_is_unchanged() -> None:
    mine = {"validation_metrics": {"macro_f1": 0.92, "accuracy": 0.92}, "validation_examples": 200}
    text = baselines.verdict(mine, [entry("scratch", {"macro_f1": 0.4, "accuracy": 0.4})], get_task("classification"))
    assert text.startswith("transfer helped: the fine-tuned model beats the scratch baseline model-scratch (validation "
                           "macro F1 0.9200 vs 0.4000, +52.0 points; right on 184 vs 80 of the same 200 rows")
