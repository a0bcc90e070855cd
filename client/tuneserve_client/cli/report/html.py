"""`tuneserve jobs report`: one self-contained HTML file about a finished fine-tune (learning curves, search trials, confusion
matrices, per-class metrics, baselines, verdicts, hyperparameters, backbone, times and the ONNX export).

Pictures are drawn with matplotlib (the `report` extra) through its Agg canvas and embedded as base64 PNG; the page
links to nothing. Every string that comes from the server (labels, names, verdicts) is HTML-escaped: labels are user
data. Nothing here talks to the server: `_cli_report` gathers a `ReportInput` and `render_html` turns it into a page.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

from google.protobuf.timestamp_pb2 import Timestamp

from tuneserve_client.cli import render
from tuneserve_client.cli.report import pictures, tasks, trials
from tuneserve_client.cli.report.blocks import e as _e
from tuneserve_client.cli.report.blocks import fields as _fields
from tuneserve_client.cli.report.blocks import image as _image
from tuneserve_client.cli.report.blocks import note as _note
from tuneserve_client.cli.report.blocks import num as _num
from tuneserve_client.cli.report.blocks import section as _section
from tuneserve_client.cli.report.blocks import table as _table
from tuneserve_client.proto.tuneserve.v1.models_pb2 import ClassMetrics, ConfusionMatrix, EvaluateResponse, Model
from tuneserve_client.proto.tuneserve.v1.training_pb2 import Backbone, ExportDone, Job, JobEvent

MATPLOTLIB_MISSING = (
    "error: `tuneserve jobs report` draws its pictures with matplotlib, which is not installed; "
    "install it with: pip install 'tuneserve[report]'"
)
# NOTE: the events of a job's baseline runs start with this prefix (core/training/jobs.py); the rest are the fine-tune's own.
_BASELINE_PREFIX = "[baseline "
_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 72em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; border-bottom: 1px solid #ccc; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.5em 0 1em; } th, td { padding: 0.2em 0.8em; text-align: left; }
th { background: #f2f2f2; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; } .note { color: #666; }
"""


def require_matplotlib() -> None:
    """Raise ImportError (with MATPLOTLIB_MISSING as its message) when matplotlib cannot be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ImportError(MATPLOTLIB_MISSING) from None


@dataclass
class ReportInput:
    job: Job
    events: Sequence[JobEvent] = ()
    backbone: Backbone | None = None          # the catalog entry of job.backbone, when it is one
    evaluation: EvaluateResponse | None = None  # Evaluate of the model (and its baselines) on `dataset_id`
    model: Model | None = None                # job.model_id as GetModel shows it (a multi-label job's thresholds)
    notes: list[str] = field(default_factory=list)  # what the report had to leave out, and why
    generated: datetime = field(default_factory=lambda: datetime.now(timezone.utc))


def _time(ts: Timestamp) -> str:
    if not ts.seconds and not ts.nanos:
        return "-"
    return ts.ToDatetime(tzinfo=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


# Sections


def _summary(data: ReportInput) -> str:
    job, r = data.job, data.job.result
    rows: list[tuple[str, object]] = [
        ("job", job.id),
        ("state", render.state_name(job.state)),
        ("model", f"{job.model_id} v{job.model_version}"),
        ("dataset", job.dataset_id + (f" (validation {job.validation_dataset_id})" if job.validation_dataset_id
                                      else " (validation: a stratified split of it)")),
        (f"best {r.best_metric_name}", f"{_num(r.best_metric)} at step {r.best_step}"
                                       + (" (stopped early)" if r.stopped_early else "")),
        ("examples", f"{r.train_examples} train, {r.validation_examples} validation"),
        ("trained on", f"{r.device} ({r.precision})"),
        ("train time", f"{r.train_seconds:.1f} s ({r.samples_per_second:.1f} samples/s)"),
        ("final train loss", _num(r.final_train_loss)),
        *([("refit", f"the served model was retrained on {r.refit_examples} train+validation rows for "
                     f"{r.refit_steps} steps ({r.refit_seconds:.1f} s){render.refit_soup(r.refit_members)}; the job's "
                     "validation figures are the first run's best checkpoint")] if r.refit else []),
        ("created", _time(job.create_time)),
        ("started", _time(job.start_time)),
        ("ended", _time(job.end_time)),
    ]
    if job.HasField("start_time") and job.HasField("end_time"):
        rows.append(("job wall time", f"{(job.end_time.ToNanoseconds() - job.start_time.ToNanoseconds()) / 1e9:.1f} s (training, export, baselines)"))
    return _section("summary", "Summary", _fields(rows), *(_note(n) for n in data.notes))


def _backbone(data: ReportInput) -> str:
    rows: list[tuple[str, object]] = [("name", data.job.backbone or "(the default)")]
    b = data.backbone
    if b is not None:
        rows += [
            ("description", b.description),
            ("parameters", f"{b.parameter_count:,}"),
            ("hidden size", b.hidden_size),
            ("longest input", f"{b.max_sequence_length} tokens" if b.max_sequence_length else "see the description"),
            ("licence", b.license),
            ("source", b.source),
        ]
        if b.cpu_latency_ms:
            rows.append(("CPU latency", f"{b.cpu_latency_ms:.1f} ms ({b.latency_measured_on})"))
    return _section("backbone", "Backbone", _fields(rows))


def _learning_curves(job: Job) -> str:
    curve = job.result.learning_curve
    if not curve:
        return _section("learning-curves", "Learning curves", _note("the job recorded no evaluations"))
    names = sorted({name for p in curve for name in p.metrics})
    rows = [
        [p.step, _num(p.epoch, 2), _num(p.train_loss), _num(p.validation_loss),
         *(_num(p.metrics[n]) if n in p.metrics else "-" for n in names)]
        for p in curve
    ]  # fmt: skip
    return _section(
        "learning-curves",
        "Learning curves",
        _image(pictures.learning_curve(job), "train and validation loss, validation metrics per evaluation"),
        _note("train loss: the mean since the previous evaluation; the dashed line marks the kept checkpoint"),
        _table(["step", "epoch", "train loss", "validation loss", *(f"validation {n}" for n in names)], rows),
    )


def _class_figures(
    section_id: str, title: str, lead: str, matrix: ConfusionMatrix, per_class: Sequence[ClassMetrics], intro: str
) -> str:
    parts = [lead, _note(intro)]
    if matrix.labels:
        parts.append(_image(pictures.confusion(matrix, title), f"confusion matrix: {title}"))
        header = ["true \\ predicted", *matrix.labels]
        parts.append(_table(header, ([label, *row.counts] for label, row in zip(matrix.labels, matrix.rows,
                                                                                strict=False))))
    if per_class:
        parts.append(_image(pictures.per_class(per_class, title), f"per-class metrics: {title}"))
        parts.append(_table(["label", "precision", "recall", "f1", "support"],
                            ([c.label, _num(c.precision), _num(c.recall), _num(c.f1), c.support]
                             for c in per_class)))  # fmt: skip
    return _section(section_id, title, *parts)


def _validation(job: Job) -> str:
    r = job.result
    metrics = _table(["metric", "value"], sorted((k, _num(v)) for k, v in r.validation_metrics.items()))
    if not r.validation_per_class:
        missing = [_note("this server's job result carries no per-class validation figures")]
        return _section("validation", "Validation (best checkpoint)", metrics,
                        *(missing if tasks.has_labels(job.task) else []))
    return _class_figures(
        "validation", "Validation (best checkpoint)", metrics, r.validation_confusion_matrix, r.validation_per_class,
        f"the kept checkpoint on the job's {r.validation_examples} validation rows",
    )


def _test_evaluation(data: ReportInput) -> str:
    if data.evaluation is None:
        return ""
    report = data.evaluation.report
    own = tasks.evaluation(report)  # multi-label and regression have sections of their own
    if own:
        return own
    summary = _fields([
        ("dataset", f"{report.dataset_id} ({report.num_examples} examples, {report.num_unknown_labels} unknown labels)"),
        ("accuracy", _num(report.accuracy)),
        ("macro", f"precision {_num(report.macro_precision)}  recall {_num(report.macro_recall)}  "
                  f"f1 {_num(report.macro_f1)}"),
        ("weighted f1", _num(report.weighted_f1)),
        ("runtime", f"{report.runtime} ({report.duration_seconds:.2f} s)"),
    ])  # fmt: skip
    return _class_figures(
        "test-evaluation", f"Evaluation on dataset {report.dataset_id}", summary, report.confusion_matrix,
        report.per_class, f"Evaluate of model {report.model_id} v{report.model_version} (the served ONNX model)",
    )


def _baselines(data: ReportInput) -> str:
    r = data.job.result
    if not r.baselines:
        return _section("baselines", "Baselines", _note("the job trained no baselines (finetune --baselines "
                                                        "frozen,scratch trains them under the same budget)"))
    metrics = tasks.headline(data.job.task)
    names = ["fine-tuned", *(b.kind for b in r.baselines)]
    all_metrics = [r.validation_metrics, *(b.validation_metrics for b in r.baselines)]
    series = {m: [values.get(m, 0.0) for values in all_metrics] for m in metrics}
    rows = [["fine-tuned", data.job.model_id, *(_num(series[m][0]) for m in metrics), f"{r.train_seconds:.1f}"]]
    rows += [[b.kind, b.model_id, *(_num(b.validation_metrics.get(m, 0.0)) for m in metrics), f"{b.train_seconds:.1f}"]
             for b in r.baselines]  # fmt: skip
    parts = [
        _image(pictures.bars(names, series, "validation: fine-tuned vs baselines"), "baseline comparison"),
        _table(["run", "model", *(f"validation {m}" for m in metrics), "train seconds"], rows, numeric_from=2),
    ]
    if data.evaluation is not None and data.evaluation.comparisons:
        parts.append(_comparisons(data.evaluation))
    return _section("baselines", "Baselines", *parts)


def _comparisons(evaluation: EvaluateResponse) -> str:
    report = evaluation.report
    metrics, better = tasks.headline(report.task), tasks.better(report.task)
    column, described = tasks.TESTS.get(evaluation.comparisons[0].test, (evaluation.comparisons[0].test,) * 2)
    names = [f"{report.model_id} v{report.model_version}"]
    names += [f"{c.model_id} v{c.model_version}" for c in evaluation.comparisons]
    series = {m: [tasks.value(r, m) for r in (report, *evaluation.compared)] for m in metrics}
    rows = []
    for other, c in zip(evaluation.compared, evaluation.comparisons, strict=False):
        deltas = {d.metric: d.delta for d in c.deltas}
        figures = [x for m in metrics for x in (_num(tasks.value(other, m)), f"{deltas.get(m, 0.0):+.4f}")]
        rows.append([f"{c.model_id} v{c.model_version}", *figures, c.only_first_correct, c.only_second_correct,
                     f"{c.p_value:.3g}", "yes" if c.significant else "no"])  # fmt: skip
    verdicts = "".join(f'<li>{_e(c.verdict)}</li>' for c in evaluation.comparisons)
    return (
        f"<h3>On dataset {_e(report.dataset_id)} ({report.num_examples} examples; {_e(described)})</h3>"
        + _image(pictures.bars(names, series, f"dataset {report.dataset_id}"), "comparison on the dataset")
        + _table(["compared model", *(x for m in metrics for x in (m, f"Δ {m}")), f"only fine-tuned {better}",
                  f"only compared {better}", f"p ({column})", "significant"], rows)
        + f"<ul>{verdicts}</ul>"
        + _note(f"Δ = {report.model_id} v{report.model_version} minus the compared model; significant: p < 0.05")
    )


def _verdicts(job: Job) -> str:
    r = job.result
    rows: list[tuple[str, object]] = []
    if r.fit.verdict:
        rows += [("fit", r.fit.verdict), ("fit rule", r.fit.rule),
                 ("train - validation gap", f"{r.fit.train_validation_gap:+.4f}")]
        if r.fit.advice:
            rows.append(("what to try next", r.fit.advice))
    rows += [("what auto did", action) for action in r.auto_actions]
    if r.transfer_verdict:
        rows.append(("transfer", r.transfer_verdict))
    if not rows:
        return _section("verdicts", "Verdicts", _note("the job result holds no fit or transfer verdict"))
    return _section("verdicts", "Verdicts", _fields(rows))


def _hyperparameters(job: Job) -> str:
    rows = [(f.name, f"{v:g}" if isinstance(v, float) else v) for f, v in job.hyperparameters.ListFields()]
    return _section("hyperparameters", "Hyperparameters", _table(["name", "value"], rows or [("-", "server defaults")], numeric_from=2))


def _export(data: ReportInput) -> str:
    r = data.job.result
    rows: list[tuple[str, object]] = [("parity max |logit diff|", f"{r.parity_max_abs_diff:.3g}")]
    export = _own_export(data.events)
    if export is not None:
        rows = [
            ("format", export.format),
            ("size", render.size(export.size_bytes)),
            ("parity max |logit diff|", f"{export.parity_max_abs_diff:.3g}"),
            ("parity examples", export.parity_examples),
        ]
    if r.variant_metrics:
        rows += [(f"{variant} validation {r.variant_metric}", _num(value)) for variant, value in
                 sorted(r.variant_metrics.items())]  # fmt: skip
    else:
        rows += [(f"{variant} validation macro_f1", _num(f1)) for variant, f1 in sorted(r.variant_macro_f1.items())]
    return _section("export", "ONNX export", _fields(rows),
                    _note("parity: ONNX Runtime vs PyTorch logits of the kept checkpoint on validation rows"))


def _own_export(events: Sequence[JobEvent]) -> ExportDone | None:
    for event in events:
        if event.message.startswith(_BASELINE_PREFIX):
            return None
        if event.HasField("export"):
            return event.export
    return None


def render_html(data: ReportInput) -> str:
    """The whole report as one HTML page."""
    require_matplotlib()
    from matplotlib import rc_context

    job = data.job
    # NOTE: labels are user data: "$x$" must not become mathtext (or fail to parse as it).
    with rc_context({"text.parse_math": False}):
        sections = [
            _summary(data), _verdicts(job), _learning_curves(job), trials.trials(job), _validation(job),
            tasks.thresholds(job, data.model),
            tasks.calibration(job, data.evaluation.report if data.evaluation else None),
            _baselines(data),
            _test_evaluation(data), _hyperparameters(job), _backbone(data), _export(data),
        ]  # fmt: skip
    generated = data.generated.strftime("%Y-%m-%d %H:%M UTC")
    title = f"tuneserve job {job.id}"
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
        f"<style>{_STYLE}</style></head><body><h1>{_e(title)}</h1>"
        f"<p class=\"note\">fine-tune report generated {_e(generated)}</p>{''.join(sections)}</body></html>\n"
    )
