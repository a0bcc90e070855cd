"""How `tuneserve evaluate` shows an EvaluateResponse, by the report's task: single-label classification as
`render.evaluation` (metrics, per-class table, confusion matrix) and `render.comparisons`; multi-label its micro,
macro and samples F1, subset accuracy, Hamming loss and a per-label table; regression RMSE, MAE, R², Pearson,
Spearman and the residual summary; token classification entity precision, recall and F1, token accuracy, the
per-type table, the confusion of entity types and examples of missed and spurious entities. With `--compare`, a table of the task's headline metrics, their deltas and its
paired test, then each verdict."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rich.console import Console
from rich.text import Text

from tuneserve_client.cli import render
from tuneserve_client.proto.tuneserve.v1.common_pb2 import TASK_MULTI_LABEL, TASK_REGRESSION, TASK_TOKEN_CLASSIFICATION
from tuneserve_client.proto.tuneserve.v1.models_pb2 import EvaluateResponse, EvaluationReport

# How each test of Comparison.test reads in a column header.
TEST_NAMES = {"mcnemar": "MCNEMAR", "mcnemar-holm": "MCNEMAR, HOLM", "wilcoxon": "WILCOXON",
              "randomization": "RANDOMIZATION"}
MAX_ERRORS = 10   # missed and spurious entities shown of each


@dataclass(frozen=True)
class _View:
    """What a task's evaluation shows."""

    summary: Callable[[EvaluationReport], list[tuple[str, str]]]   # its `key: value` lines
    per_label: bool                   # the per-label precision / recall / F1 / support table
    headline: tuple[str, ...]         # the metrics the comparison table shows, each with its delta
    better: str                       # what the discordant counts count: rows "RIGHT" (every label), "CLOSER" or
                                      # "HIGHER F1" (sentence entity F1)
    entities: bool = False            # the confusion of entity types and the missed and spurious entities


def evaluation_response(console: Console, response: EvaluateResponse) -> None:
    view = _VIEWS.get(response.report.task)
    if view is None:  # single-label classification, as before tasks
        render.evaluation_response(console, response)
        return
    report = response.report
    render.fields(console, [
        ("model", f"{report.model_id} v{report.model_version}"), *view.summary(report),
        ("runtime", f"{report.runtime} ({report.duration_seconds:.2f} s)"),
    ])  # fmt: skip
    if view.per_label:
        per_label(console, report)
    if view.entities:
        entity_errors(console, report)
    if response.comparisons:
        comparisons(console, response, view)


def per_label(console: Console, report: EvaluationReport) -> None:
    table = render._table("LABEL", "PRECISION", "RECALL", "F1", "SUPPORT")
    for c in report.per_class:
        table.add_row(c.label, f"{c.precision:.4f}", f"{c.recall:.4f}", f"{c.f1:.4f}", str(c.support))
    render._print_table(console, table)


def entity_errors(console: Console, report: EvaluationReport) -> None:
    """Token classification: the confusion of entity types (by exact span; "O" = no entity there) and the first
    missed and spurious entities."""
    if report.confusion_matrix.labels:
        render.confusion_matrix(console, report)
        console.print("entity types by exact span; O: no entity there", soft_wrap=True)
    errors = report.entity_errors
    console.print(f"missed {errors.num_missed}, spurious {errors.num_spurious}, wrong type {errors.num_wrong_type} "
                  "(exact span, other type)", soft_wrap=True)
    for kind, shown in (("MISSED", errors.missed), ("SPURIOUS", errors.spurious)):
        if not shown:
            continue
        table = render._table("ROW", kind, "TYPE", "WORDS", "OTHER SIDE")
        for e in list(shown)[:MAX_ERRORS]:
            table.add_row(str(e.row), Text(e.text), Text(e.type), f"{e.start}-{e.end}", Text(e.other or "-"))
        render._print_table(console, table)


def comparisons(console: Console, response: EvaluateResponse, view: _View) -> None:
    """The evaluated model beside each compared one: the task's headline metrics, their deltas (first minus
    compared) and the task's paired test."""
    r = response.report
    test = TEST_NAMES.get(response.comparisons[0].test, response.comparisons[0].test.upper())
    console.print(f"compared on {r.dataset_id} with {r.model_id} v{r.model_version} (delta = it minus the other)")
    names = [name.upper().replace("_", " ") for name in view.headline]
    table = render._table("MODEL", *names, *(f"Δ {name}" for name in names), f"ONLY IT {view.better}",
                          f"ONLY OTHER {view.better}", f"P ({test})", "SIGNIFICANT")  # fmt: skip
    table.add_row(f"{r.model_id} v{r.model_version}", *(_value(r, m) for m in view.headline),
                  *["-"] * (len(view.headline) + 4))  # fmt: skip
    for other, c in zip(response.compared, response.comparisons, strict=False):
        deltas = {d.metric: d.delta for d in c.deltas}
        table.add_row(
            f"{c.model_id} v{c.model_version}", *(_value(other, m) for m in view.headline),
            *(f"{deltas.get(m, 0.0):+.4f}" for m in view.headline), str(c.only_first_correct),
            str(c.only_second_correct), f"{c.p_value:.3g}", "yes" if c.significant else "no",
        )  # fmt: skip
    render._print_table(console, table)
    for c in response.comparisons:
        console.print(f"{c.model_id} v{c.model_version}: {c.verdict}", soft_wrap=True)


def _value(report: EvaluationReport, metric: str) -> str:
    return f"{report.metrics[metric]:.4f}" if metric in report.metrics else "-"


def _multi_label(report: EvaluationReport) -> list[tuple[str, str]]:
    m = report.metrics
    return [
        ("dataset", f"{report.dataset_id} ({report.num_examples} examples, {report.num_unknown_labels} with labels "
                    "the model does not know)"),
        ("micro", f"precision {m.get('micro_precision', 0.0):.4f}  recall {m.get('micro_recall', 0.0):.4f}  "
                  f"f1 {m.get('micro_f1', 0.0):.4f}"),
        ("macro f1", f"{m.get('macro_f1', 0.0):.4f}"),
        ("samples f1", f"{m.get('samples_f1', 0.0):.4f}"),
        ("subset accuracy", f"{m.get('subset_accuracy', 0.0):.4f}"),
        ("hamming loss", f"{m.get('hamming_loss', 0.0):.4f}"),
        *([("calibration", render.calibration_text(report))] if report.HasField("ece") else []),
    ]  # fmt: skip


def _regression(report: EvaluationReport) -> list[tuple[str, str]]:
    m, r = report.metrics, report.residuals
    return [
        ("dataset", f"{report.dataset_id} ({report.num_examples} examples)"),
        ("rmse", f"{m.get('rmse', 0.0):.4f}"),
        ("mae", f"{m.get('mae', 0.0):.4f}"),
        ("r²", f"{m.get('r2', 0.0):.4f}"),
        ("pearson", f"{m.get('pearson', 0.0):.4f}"),
        ("spearman", f"{m.get('spearman', 0.0):.4f}"),
        ("residuals", f"mean {r.mean:+.4f}  std {r.std:.4f}  |r| median {r.median_abs:.4f}  p90 {r.p90_abs:.4f}  "
                      f"max {r.max_abs:.4f}  (predicted - true)"),
    ]  # fmt: skip


def _token_classification(report: EvaluationReport) -> list[tuple[str, str]]:
    m = report.metrics
    return [
        ("dataset", f"{report.dataset_id} ({report.num_examples} sentences, {report.num_unknown_labels} with tags "
                    "the model does not know)"),
        ("entity", f"precision {m.get('entity_precision', 0.0):.4f}  recall {m.get('entity_recall', 0.0):.4f}  "
                   f"f1 {m.get('entity_f1', 0.0):.4f}  (exact span and type)"),
        ("token accuracy", f"{m.get('token_accuracy', 0.0):.4f}"),
    ]  # fmt: skip


_VIEWS = {
    TASK_MULTI_LABEL: _View(_multi_label, True, ("micro_f1", "subset_accuracy"), "RIGHT"),
    TASK_REGRESSION: _View(_regression, False, ("rmse", "spearman"), "CLOSER"),
    TASK_TOKEN_CLASSIFICATION: _View(_token_classification, True, ("entity_f1", "token_accuracy"), "HIGHER F1",
                                     entities=True),
}
