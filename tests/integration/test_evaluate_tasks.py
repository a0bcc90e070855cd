"""Evaluate of every task end to end through the real client (and CLI) on a real server: multi-label micro/macro/
samples F1, subset accuracy and Hamming loss at the model's tuned thresholds, regression RMSE, MAE, R², Pearson,
Spearman and residuals in the target's units, text pairs read as (text, text_pair); comparisons by McNemar per label
with Holm's correction and by Wilcoxon on absolute errors, with their verdicts; a dataset of another task or input
shape refused naming both. The models are tiny exported heads of each task (tests/serving_models.py) published as
READY versions; the datasets are uploaded as users upload them. What Evaluate must report is worked out here from the
same heads run in torch, with scipy's tests."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pytest
from scipy.stats import binomtest, wilcoxon

from tests.conftest import ServerThread, make_settings
from tests.fixtures import make_texts
from tests.serving_models import TinyVersion, publish
from tuneserve.tasks import TaskParams, get_task
from tuneserve_client import Client, InvalidArgument
from tuneserve_client.cli.main import main as cli

TEXTS = [text for text, _ in make_texts({"sport": 12, "politics": 12, "tech": 12}, seed=5)]
PAIRS = TEXTS[7:] + TEXTS[:7]
TAGS = ["aid", "medical", "shelter", "water"]
THRESHOLDS = [0.3, 0.45, 0.55, 0.7]
# name -> (params, labels, seed); "*_off" are the same heads decoded badly, to compare with
MODELS = {
    "multi_label": (TaskParams("multi_label", thresholds=THRESHOLDS), TAGS, 1),
    "multi_label_off": (TaskParams("multi_label", thresholds=[0.99] * 4), TAGS, 1),
    "regression": (TaskParams("regression", target_mean=3.0, target_std=0.5), [], 2),
    "regression_off": (TaskParams("regression", target_mean=4.0, target_std=0.5), [], 2),
    "pair_regression": (TaskParams("regression", text_pairs=True, target_mean=2.5, target_std=1.25), [], 3),
}


@dataclass(frozen=True)
class World:
    server: ServerThread
    models: dict[str, tuple[str, TinyVersion]]
    datasets: dict[str, str]              # task name -> dataset id
    targets: dict[str, list[object]]      # task name -> each row's target

    @property
    def target(self) -> str:
        return self.server.target

    def id(self, name: str) -> str:
        return self.models[name][0]

    def scores(self, name: str) -> np.ndarray:
        """What the model serves for the rows, run in torch."""
        version = self.models[name][1]
        return version.scores(list(zip(TEXTS, PAIRS, strict=True)) if version.params.text_pairs else TEXTS)

    def expected(self, name: str, dataset: str) -> dict[str, float]:
        version = self.models[name][1]
        task = get_task(version.params.task)
        return task.report(self.scores(name), self.targets[dataset], version.labels, version.params).metrics


def _rows(name: str, targets: list[object]) -> bytes:
    field = get_task(MODELS[name][0].task).target_field
    pairs = MODELS[name][0].text_pairs
    rows = [{"text": t, **({"text_pair": p} if pairs else {}), field: y} for t, p, y in zip(TEXTS, PAIRS, targets,
                                                                                          strict=True)]
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("evaluate-tasks")
    settings = make_settings(root / "data", tmp_path_factory.getbasetemp())
    server = ServerThread(settings).start()
    try:
        assert server.app is not None
        models = {}
        for name, (params, labels, seed) in MODELS.items():
            model, version = server.call(publish(server.app.store, settings.storage.data_dir, params, labels,
                                                 name=name, seed=seed))
            models[name] = (model.id, version)
        world = World(server, models, {}, {})
        rng = np.random.default_rng(0)
        # multi-label: the well-decoded head's own decisions, with one label of every fifth row flipped
        decided = world.scores("multi_label") >= np.array(THRESHOLDS)
        for i in range(0, len(TEXTS), 5):
            decided[i, i % len(TAGS)] ^= True
        world.targets["multi_label"] = [[TAGS[j] for j in np.flatnonzero(row)] for row in decided]
        # regression: the well-decoded head's values plus noise; pairs: the pair head's
        for name in ("regression", "pair_regression"):
            values = world.scores(name)[:, 0] + rng.normal(0.0, 0.05, len(TEXTS))
            world.targets[name] = [round(float(v), 6) for v in values]
        with Client(server.target) as client:
            for name, targets in world.targets.items():
                world.datasets[name] = client.upload_dataset_bytes(_rows(name, targets), name=f"{name}.jsonl").id
        yield world
    finally:
        server.close()


def test_multi_label_evaluate_reports_its_metrics_at_the_tuned_thresholds(world: World) -> None:
    with Client(world.target) as client:
        report = client.evaluate(world.id("multi_label"), world.datasets["multi_label"]).report
    expected = world.expected("multi_label", "multi_label")
    assert report.task == 2 and report.num_examples == len(TEXTS)
    assert set(report.metrics) == {"micro_f1", "micro_precision", "micro_recall", "macro_f1", "samples_f1",
                                   "subset_accuracy", "hamming_loss", "ece"}  # fmt: skip
    assert dict(report.metrics) == pytest.approx(expected, abs=1e-6)
    # one label of every fifth row is flipped: those rows are the only wrong ones
    assert report.metrics["subset_accuracy"] == pytest.approx(1 - 8 / len(TEXTS))
    assert report.metrics["hamming_loss"] == pytest.approx(8 / (len(TEXTS) * len(TAGS)))
    assert report.macro_f1 == report.metrics["macro_f1"] and not report.confusion_matrix.labels
    supports = {c.label: c.support for c in report.per_class}
    assert supports == {tag: sum(tag in t for t in world.targets["multi_label"]) for tag in TAGS}  # type: ignore[operator]


def test_multi_label_comparison_is_mcnemar_per_label_with_holm(world: World) -> None:
    with Client(world.target) as client:
        response = client.evaluate(world.id("multi_label"), world.datasets["multi_label"],
                                   compare=[world.id("multi_label_off")])
    c = response.comparisons[0]
    truth = np.array([[tag in t for tag in TAGS] for t in world.targets["multi_label"]])  # type: ignore[operator]
    right = (world.scores("multi_label") >= np.array(THRESHOLDS)) == truth
    off = (world.scores("multi_label_off") >= 0.99) == truth
    raw = [1.0 if not np.any(right[:, j] != off[:, j]) else
           binomtest(int(np.sum(right[:, j] & ~off[:, j])), int(np.sum(right[:, j] != off[:, j])), 0.5).pvalue
           for j in range(len(TAGS))]  # fmt: skip
    holm = min(1.0, len(raw) * min(raw))  # Holm's smallest adjusted p: Bonferroni's of the smallest
    assert c.test == "mcnemar-holm" and c.p_value == pytest.approx(holm, rel=1e-9) and c.significant
    assert (c.only_first_correct, c.only_second_correct) == (int(np.sum(right.all(1) & ~off.all(1))),
                                                             int(np.sum(off.all(1) & ~right.all(1))))
    micro = response.report.metrics["micro_f1"], response.compared[0].metrics["micro_f1"]
    assert c.verdict.startswith(
        f"the fine-tuned model {world.id('multi_label')} v1 beats the fine-tuned model {world.id('multi_label_off')} "
        f"v1 (micro F1 {micro[0]:.4f} vs {micro[1]:.4f}, {(micro[0] - micro[1]) * 100:+.1f} points; every label right"
    )
    assert c.verdict.endswith(f"McNemar per label, Holm-corrected p={c.p_value:.3g} < 0.05)")
    assert {d.metric for d in c.deltas} == set(response.report.metrics)


def test_regression_evaluate_reports_errors_correlations_and_residuals(world: World) -> None:
    with Client(world.target) as client:
        report = client.evaluate(world.id("regression"), world.datasets["regression"]).report
    expected = world.expected("regression", "regression")
    assert report.task == 3 and set(report.metrics) == {"rmse", "mae", "r2", "pearson", "spearman"}
    assert dict(report.metrics) == pytest.approx(expected, rel=1e-4, abs=1e-6)
    assert 0.02 < report.metrics["rmse"] < 0.1  # the noise's 0.05, in the target's units
    residuals = world.scores("regression")[:, 0] - np.array(world.targets["regression"])
    assert report.residuals.mean == pytest.approx(residuals.mean(), abs=1e-5)
    assert report.residuals.max_abs == pytest.approx(np.abs(residuals).max(), abs=1e-5)
    points = np.array([(p.true_value, p.predicted) for p in report.points])
    np.testing.assert_allclose(points, np.stack([world.targets["regression"], world.scores("regression")[:, 0]], 1),
                               atol=1e-5)
    assert not report.per_class and report.macro_f1 == 0.0


def test_regression_comparison_is_wilcoxon_on_absolute_errors(world: World) -> None:
    with Client(world.target) as client:
        response = client.evaluate(world.id("regression"), world.datasets["regression"],
                                   compare=[world.id("regression_off")])
    c = response.comparisons[0]
    truth = np.array(world.targets["regression"])
    mine, theirs = np.abs(world.scores("regression")[:, 0] - truth), np.abs(world.scores("regression_off")[:, 0] - truth)
    assert c.test == "wilcoxon" and c.p_value == pytest.approx(wilcoxon(mine, theirs).pvalue, rel=1e-6)
    assert (c.only_first_correct, c.only_second_correct, c.significant) == (len(TEXTS), 0, True)  # off by 1 everywhere
    rmse = response.report.metrics["rmse"], response.compared[0].metrics["rmse"]
    assert c.verdict == (
        f"the fine-tuned model {world.id('regression')} v1 beats the fine-tuned model {world.id('regression_off')} v1 "
        f"(RMSE {rmse[0]:.4f} vs {rmse[1]:.4f}, {rmse[0] - rmse[1]:+.4f}; closer on {len(TEXTS)} rows, farther on 0; "
        f"Wilcoxon signed-rank on absolute errors p={c.p_value:.3g} < 0.05)"
    )
    assert {d.metric: d.delta for d in c.deltas}["rmse"] == pytest.approx(rmse[0] - rmse[1])


def test_pair_regression_reads_each_text_with_its_pair(world: World) -> None:
    with Client(world.target) as client:
        report = client.evaluate(world.id("pair_regression"), world.datasets["pair_regression"]).report
    assert dict(report.metrics) == pytest.approx(world.expected("pair_regression", "pair_regression"), rel=1e-4,
                                                 abs=1e-6)  # fmt: skip
    assert report.metrics["rmse"] < 0.1  # read in the wrong order, the pair head would be far off


@pytest.mark.parametrize(("model", "dataset", "reason"), [
    ("multi_label", "regression", r"dataset '.+' is a regression dataset but model '.+' was trained for multi_label"),
    ("regression", "multi_label", r"is a multi_label dataset but model '.+' was trained for regression"),
    ("regression", "pair_regression", r"holds text pairs \(text and text_pair\) but model '.+' takes single texts"),
    ("pair_regression", "regression", r"holds single texts but model '.+' takes text pairs"),
])  # fmt: skip
def test_a_dataset_of_another_task_or_shape_is_invalid_argument_naming_both(
    world: World, model: str, dataset: str, reason: str
) -> None:
    with Client(world.target) as client, pytest.raises(InvalidArgument, match=reason):
        client.evaluate(world.id(model), world.datasets[dataset])
    # a compared model is checked as the first one is
    fits = {"regression": "regression_off", "multi_label": "multi_label_off", "pair_regression": "pair_regression"}
    with Client(world.target) as client, pytest.raises(InvalidArgument, match=reason):
        client.evaluate(world.id(fits[dataset]), world.datasets[dataset], compare=[world.id(model)])


def test_cli_evaluate_shows_each_tasks_tables(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--target", world.target, "evaluate"]
    assert cli([*base, "--model", world.id("multi_label"), "--dataset", world.datasets["multi_label"], "--compare",
                world.id("multi_label_off")]) == 0
    out = capsys.readouterr().out
    assert "subset accuracy:" in out and "hamming loss:" in out and "P (MCNEMAR, HOLM)" in out
    assert all(tag in out for tag in TAGS) and "confusion matrix" not in out
    assert re.search(r"calibration: +ECE \d\.\d{4} \(a perfectly calibrated model would show about \d\.\d{4} on these "
                     r"rows; p = [\d.e-]+: (within|miscalibrated beyond) these rows' sampling noise\)", out)
    assert cli([*base, "--model", world.id("regression"), "--dataset", world.datasets["regression"]]) == 0
    out = capsys.readouterr().out
    assert "rmse:" in out and "spearman:" in out and "residuals:" in out and "LABEL" not in out
    assert "calibration:" not in out   # regression has no calibration
