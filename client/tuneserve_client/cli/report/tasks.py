"""The report's sections that differ by task (the Task enum of the job and of Evaluate's report): which metrics stand
for a model in tables and bars, how its paired test is named, and the evaluation of a multi-label model (its figures,
per-label bars and table) or of a regression model (its figures, predicted-vs-true scatter, residual histogram and
summary) or of a token-classification model (entity figures, per-type bars and table, the confusion of entity
types, examples of missed and spurious entities), and a multi-label model's tuned decision thresholds. Single-label classification keeps `html`'s sections."""

from __future__ import annotations

from collections.abc import Mapping

from tuneserve_client.cli import render
from tuneserve_client.cli.report import pictures
from tuneserve_client.cli.report.blocks import fields, image, note, num, section, table
from tuneserve_client.proto.tuneserve.v1.common_pb2 import (
    TASK_MULTI_LABEL,
    TASK_REGRESSION,
    TASK_TOKEN_CLASSIFICATION,
    Task,
)
from tuneserve_client.proto.tuneserve.v1.models_pb2 import EvaluationReport, Model
from tuneserve_client.proto.tuneserve.v1.training_pb2 import Job

# The two metrics that stand for a model in the baseline and comparison tables and bars, by task.
_CLASSIFICATION = ("macro_f1", "accuracy")
HEADLINE = {
    TASK_MULTI_LABEL: ("micro_f1", "subset_accuracy"), TASK_REGRESSION: ("rmse", "spearman"),
    TASK_TOKEN_CLASSIFICATION: ("entity_f1", "token_accuracy"),
}
# Comparison.test: how a column names it, and how a heading describes it.
TESTS = {
    "mcnemar": ("McNemar", "McNemar's test on the paired predictions"),
    "mcnemar-holm": ("McNemar per label, Holm", "McNemar's test on each label's paired decisions, Holm-corrected"),
    "wilcoxon": ("Wilcoxon", "Wilcoxon's signed-rank test on the paired absolute errors"),
    "randomization": ("randomization", "approximate randomization on entity F1 (sentences swapped between models)"),
}
# What a paired test's discordant counts count: rows a model gets right, or rows where it is closer.
_CLOSER = {TASK_REGRESSION: "closer", TASK_TOKEN_CLASSIFICATION: "higher sentence F1"}
MAX_ERRORS = 20   # missed and spurious entities the report lists of each


def headline(task: Task) -> tuple[str, str]:
    return HEADLINE.get(task, _CLASSIFICATION)


def has_labels(task: Task) -> bool:
    return task != TASK_REGRESSION


def better(task: Task) -> str:
    return _CLOSER.get(task, "right")


def value(report: EvaluationReport, metric: str) -> float:
    """A metric of the report: from `metrics`, or a single-label field (a server from before tasks fills only those)."""
    return report.metrics[metric] if metric in report.metrics else float(getattr(report, metric, 0.0))


def evaluation(report: EvaluationReport) -> str:
    """The Evaluate section of a multi-label, regression or token-classification model ("" for single-label
    classification)."""
    draw = _EVALUATIONS.get(report.task)
    return draw(report) if draw is not None else ""


def thresholds(job: Job, model: Model | None) -> str:
    """A multi-label model's decision threshold per label (its version's, else the job result's); "" for others."""
    if job.task != TASK_MULTI_LABEL:
        return ""
    tuned: Mapping[str, float] = job.result.label_thresholds
    version = next((v for v in model.versions if v.version == job.model_version), None) if model else None
    if version is not None and version.label_thresholds:
        tuned = version.label_thresholds
    if not tuned:
        return section("thresholds", "Decision thresholds", note("the model records no tuned thresholds: each label "
                                                                 "is decided at 0.5"))
    labels = sorted(tuned)
    return section(
        "thresholds", "Decision thresholds",
        note("each label's threshold, tuned on the job's validation rows for that label's F1: a label is predicted "
             "when its probability is at least its threshold"),
        image(pictures.thresholds(labels, [tuned[label] for label in labels], "tuned decision thresholds"),
              "decision threshold per label"),
        table(["label", "threshold"], ([label, num(tuned[label], 2)] for label in labels)),
    )  # fmt: skip


def calibration(job: Job, report: EvaluationReport | None) -> str:
    """The temperatures (multi-label: and biases) fitted on the validation rows and what they did to the ECE and NLL,
    and the reliability diagram of Evaluate's served scores ("" when the job fitted none and Evaluate gave no bins)."""
    c = job.result.calibration
    bins = list(report.reliability) if report is not None else []
    if not c.temperature and not bins:
        return ""
    parts = []
    if c.temperature:
        parts.append(fields([
            ("temperature", " ".join(num(t, 3) for t in c.temperature)),
            *([("refit temperature", " ".join(num(t, 3) for t in c.refit_temperature) + " (carried to the refit "
                "model by its logit scale)")] if c.refit_temperature else []),
            *([("bias", " ".join(num(b, 3) for b in c.bias))] if c.bias else []),
            ("validation ECE", f"{num(c.ece_before)} before, {num(c.ece_after)} after"),
            ("validation NLL", f"{num(c.nll_before)} before, {num(c.nll_after)} after"),
        ]))  # fmt: skip
    if bins and report is not None:
        parts.append(image(pictures.reliability(bins, f"reliability on {report.dataset_id} (ECE {num(report.ece)})"),
                           "reliability diagram"))
        parts.append(fields([("held-out ECE", render.calibration_text(report))]))
    return section(
        "calibration", "Calibration",
        note("fitted on the job's validation rows (temperature scaling; multi-label: Platt scaling, a temperature "
             "and a bias per label): a score of 0.9 should be right about 9 times in 10; the diagram plots "
             "Evaluate's served scores (15 equal-width bins), each with the band a perfectly calibrated model's "
             "accuracy would fall in on that many rows"),
        *parts,
    )


def _lead(report: EvaluationReport) -> str:
    return note(f"Evaluate of model {report.model_id} v{report.model_version} (the served ONNX model)")


def _multi_label(report: EvaluationReport) -> str:
    m = report.metrics
    title = f"Evaluation on dataset {report.dataset_id}"
    parts = [
        fields([
            ("dataset", f"{report.dataset_id} ({report.num_examples} examples, {report.num_unknown_labels} with labels "
                        "the model does not know)"),
            ("micro", f"precision {num(m.get('micro_precision', 0.0))}  recall {num(m.get('micro_recall', 0.0))}  "
                      f"f1 {num(m.get('micro_f1', 0.0))}"),
            ("macro f1", num(m.get("macro_f1", 0.0))),
            ("samples f1", num(m.get("samples_f1", 0.0))),
            ("subset accuracy", num(m.get("subset_accuracy", 0.0))),
            ("hamming loss", num(m.get("hamming_loss", 0.0))),
            ("runtime", f"{report.runtime} ({report.duration_seconds:.2f} s)"),
        ]),
        _lead(report),
    ]  # fmt: skip
    if report.per_class:
        parts.append(image(pictures.per_class(report.per_class, title), f"per-label metrics: {title}"))
        parts.append(table(["label", "precision", "recall", "f1", "support"],
                           ([c.label, num(c.precision), num(c.recall), num(c.f1), c.support]
                            for c in report.per_class)))  # fmt: skip
    return section("test-evaluation", title, *parts)


def _regression(report: EvaluationReport) -> str:
    m, r = report.metrics, report.residuals
    title = f"Evaluation on dataset {report.dataset_id}"
    parts = [
        fields([
            ("dataset", f"{report.dataset_id} ({report.num_examples} examples)"),
            ("rmse", num(m.get("rmse", 0.0))),
            ("mae", num(m.get("mae", 0.0))),
            ("r²", num(m.get("r2", 0.0))),
            ("pearson", num(m.get("pearson", 0.0))),
            ("spearman", num(m.get("spearman", 0.0))),
            ("runtime", f"{report.runtime} ({report.duration_seconds:.2f} s)"),
        ]),
        _lead(report),
        table(["residual (predicted - true)", "mean", "std", "median |r|", "p90 |r|", "max |r|"],
              [["all rows", f"{r.mean:+.4f}", num(r.std), num(r.median_abs), num(r.p90_abs), num(r.max_abs)]]),
    ]  # fmt: skip
    if report.points:
        shown = f"{len(report.points)} of the {report.num_examples} rows"
        parts += [
            image(pictures.scatter(report.points, f"predicted vs true ({shown})"), f"predicted vs true: {title}"),
            image(pictures.residuals(report.points, f"residuals ({shown})"), f"residual histogram: {title}"),
        ]
    return section("test-evaluation", title, *parts)


def _token_classification(report: EvaluationReport) -> str:
    m, errors = report.metrics, report.entity_errors
    title = f"Evaluation on dataset {report.dataset_id}"
    parts = [
        fields([
            ("dataset", f"{report.dataset_id} ({report.num_examples} sentences)"),
            ("entity", f"precision {num(m.get('entity_precision', 0.0))}  recall {num(m.get('entity_recall', 0.0))}  "
                       f"f1 {num(m.get('entity_f1', 0.0))}  (exact span and type)"),
            ("token accuracy", num(m.get("token_accuracy", 0.0))),
            ("errors", f"{errors.num_missed} missed, {errors.num_spurious} spurious, {errors.num_wrong_type} of the "
                       "wrong type (exact span)"),
            ("runtime", f"{report.runtime} ({report.duration_seconds:.2f} s)"),
        ]),
        _lead(report),
    ]  # fmt: skip
    if report.per_class:
        parts.append(image(pictures.per_class(report.per_class, title), f"per-type metrics: {title}"))
        parts.append(table(["entity type", "precision", "recall", "f1", "support"],
                           ([c.label, num(c.precision), num(c.recall), num(c.f1), c.support]
                            for c in report.per_class)))  # fmt: skip
    matrix = report.confusion_matrix
    if matrix.labels:
        parts.append(note("entity types by exact span: rows the true type, columns the predicted one, O where the "
                          "other side has no entity over those words"))
        parts.append(image(pictures.confusion(matrix, title), f"confusion of entity types: {title}"))
        parts.append(table(["true \\ predicted", *matrix.labels],
                           ([label, *row.counts] for label, row in zip(matrix.labels, matrix.rows, strict=False))))
    for kind, shown, total, described in (
        ("missed", errors.missed, errors.num_missed, "true entities no prediction has exactly"),
        ("spurious", errors.spurious, errors.num_spurious, "predicted entities no true entity has exactly"),
    ):
        if shown:
            parts.append(note(f"{kind} ({described}): the first {min(len(shown), MAX_ERRORS)} of {total}"))
            parts.append(table(["row", "type", "words", "text", "the other side"],
                               ([e.row, e.type, f"{e.start}-{e.end}", e.text, e.other or "nothing"]
                                for e in list(shown)[:MAX_ERRORS]), numeric_from=5))  # fmt: skip
    return section("test-evaluation", title, *parts)


_EVALUATIONS = {
    TASK_MULTI_LABEL: _multi_label, TASK_REGRESSION: _regression, TASK_TOKEN_CLASSIFICATION: _token_classification,
}
