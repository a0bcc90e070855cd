"""How the CLI shows response messages to people: rich tables for lists, `key: value` lines for single objects and a
confusion matrix for evaluations. (With `--json` the CLI prints the messages themselves; see `to_json`.)"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import timezone

from google.protobuf.json_format import MessageToJson
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from rich.console import Console
from rich.table import Table
from rich.text import Text

from tuneserve_client.cli.tasks import task_metrics, task_name
from tuneserve_client.proto.tuneserve.v1.common_pb2 import Modality, Task
from tuneserve_client.proto.tuneserve.v1.models_pb2 import (
    EvaluateResponse,
    EvaluationReport,
    ListModelsResponse,
    Model,
    ModelVersionState,
)
from tuneserve_client.proto.tuneserve.v1.prediction_pb2 import PredictResponse
from tuneserve_client.proto.tuneserve.v1.training_pb2 import (
    Hyperparameters,
    Job,
    JobResult,
    JobState,
    ListBackbonesResponse,
    ListJobsResponse,
    TrialState,
)


def to_json(message: Message, *, indent: int | None = 2) -> str:
    """The message in proto3 JSON with proto field names and every field present (int64 values are strings)."""
    return MessageToJson(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True, indent=indent
    )


# Small formatters


def state_name(state: JobState) -> str:
    return JobState.Name(state).removeprefix("JOB_STATE_").lower()


def _enum(name: str, prefix: str) -> str:
    return name.removeprefix(prefix).lower()


def _time(ts: Timestamp) -> str:
    if not ts.seconds and not ts.nanos:
        return "-"
    return ts.ToDatetime(tzinfo=timezone.utc).strftime("%Y-%m-%d %H:%M")


def size(num_bytes: int) -> str:
    if num_bytes < 1024:
        return f"{num_bytes} B"
    value = num_bytes / 1024
    for unit in ("KiB", "MiB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def _count(n: int) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1_000_000 else f"{n:,}"


def _metrics(metrics: Mapping[str, float], names: Sequence[str] | None = None) -> str:
    shown = sorted(metrics.items()) if names is None else [(n, metrics[n]) for n in names if n in metrics]
    return "  ".join(f"{name} {value:.4f}" for name, value in shown) or "-"


def _hyperparameters(hp: Hyperparameters) -> str:
    return (
        " ".join(
            f"{field.name}={value:g}" if isinstance(value, float) else f"{field.name}={value}"
            for field, value in hp.ListFields()
        )
        or "server defaults"
    )


_METRIC_HEADERS = {"macro_f1": "MACRO F1", "micro_f1": "MICRO F1", "accuracy": "ACCURACY", "rmse": "RMSE", "mae": "MAE"}


def _labels(labels: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(labels[:limit])
    return shown + (f" (+{len(labels) - limit} more)" if len(labels) > limit else "")


def progress_text(step: int, total: int, epoch: float) -> str:
    return f"{step}/{total} (epoch {epoch:.2f})" if total else "-"


# Output primitives


def fields(console: Console, rows: Iterable[tuple[str, str]]) -> None:
    rows = list(rows)
    width = max((len(key) for key, _ in rows), default=0) + 1
    for key, value in rows:
        console.print(Text.assemble((f"{key + ':':<{width}} ", "bold"), value), soft_wrap=True)


def _table(*columns: str) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in columns:
        table.add_column(column)
    return table


_UNBOUNDED = 10_000


def _print_table(console: Console, table: Table) -> None:
    # Never squeeze a table below its natural width (rich would fold "succeeded" into a column of letters): a row
    # wider than the terminal wraps there instead, and stays whole in a pipe.
    natural = console.measure(table, options=console.options.update_width(_UNBOUNDED)).maximum
    width = console.width
    console.width = max(width, natural)
    try:
        console.print(table, crop=False)
    finally:
        console.width = width


def _next_page(console: Console, token: str) -> None:
    if token:
        console.print(f"more results: --page-token {token}", soft_wrap=True, markup=False)


# One renderer per response type


def _job_result(job: Job) -> str:
    r = job.result
    best = f"{r.best_metric_name} {r.best_metric:.4f} at step {r.best_step}" if r.best_metric_name else ""
    early = ", stopped early" if r.stopped_early else ""
    where = f" on {r.device} ({r.precision})" if r.device else ""
    return f"{best}{early}; trained {r.train_seconds:.1f} s{where}, {r.train_examples} examples"


def job(console: Console, job: Job) -> None:
    p = job.progress
    rows = [
        ("id", job.id),
        ("state", state_name(job.state)),
        (
            "dataset",
            job.dataset_id + (f" (validation {job.validation_dataset_id})" if job.validation_dataset_id else ""),
        ),
        ("backbone", job.backbone or "-"),
        ("task", task_name(job.task, job.text_pairs)),
        ("model", f"{job.model_id} v{job.model_version}" if job.model_id else "-"),
        ("progress", progress_text(p.step, p.total_steps, p.epoch)),
        ("hyperparameters", _hyperparameters(job.hyperparameters)),
    ]
    if job.HasField("result"):
        names = task_metrics(job.task)
        validation = job.result.validation_metrics
        # NOTE: the task's headline metrics first, then the rest by name
        shown = [*names, *sorted(set(validation) - set(names))]
        rows += [("result", _job_result(job)), ("validation", _metrics(validation, shown))]
        rows += _task_rows(job.result)
        rows.append(("onnx parity", f"max |diff| {job.result.parity_max_abs_diff:.2e}"))
        rows += _transfer_rows(job.result, names)
    if job.error:
        rows.append(("error", job.error))
    if job.restarts:
        rows.append(("restarts", f"{job.restarts} (resumed from its last checkpoint)"))
    rows += [("created", _time(job.create_time)), ("started", _time(job.start_time)), ("ended", _time(job.end_time))]
    fields(console, rows)
    if job.result.learning_curve:
        learning_curve(console, job.result, task_metrics(job.task)[:2])
    if job.result.trials:
        trials(console, job.result)


def trials(console: Console, r: JobResult) -> None:
    """A search's trials, in the order started; the best one (the model version) marked *."""
    table = _table("trial", "state", r.best_metric_name or "metric", "steps", "seconds", "parameters", "reason")
    for t in r.trials:
        state = TrialState.Name(t.state).removeprefix("TRIAL_STATE_").lower()
        params = " ".join(f"{name}={value}" for name, value in sorted(t.params.items()))
        table.add_row(f"{t.number}{' *' if t.best else ''}", state, f"{t.metric:.4f}", str(t.steps),
                      f"{t.duration_seconds:.1f}", params, t.reason)
    _print_table(console, table)


def _task_rows(r: JobResult) -> list[tuple[str, str]]:
    """The int8 guard's metric per variant, and a multi-label model's tuned thresholds."""
    rows = []
    if r.variant_metrics:
        rows.append(("variants", f"{r.variant_metric or 'macro_f1'}: " + _metrics(r.variant_metrics)))
    if r.label_thresholds:
        rows.append(("thresholds", "  ".join(f"{label} {t:.2f}" for label, t in sorted(r.label_thresholds.items()))))
    if r.auto_hyperparameters:
        rows.append(("auto", ", ".join(r.auto_hyperparameters) + " (chosen from the data)"))
    c = r.calibration
    if c.temperature:
        bias = f" bias {' '.join(f'{b:.3g}' for b in c.bias)}" if c.bias else ""
        rows.append(("calibration", f"temperature {' '.join(f'{t:.3g}' for t in c.temperature)}{bias}: validation "
                                    f"ECE {c.ece_before:.4f} -> {c.ece_after:.4f}, NLL {c.nll_before:.4f} -> "
                                    f"{c.nll_after:.4f}"
                                    + (f"; carried to the refit model: temperature "
                                       f"{' '.join(f'{t:.3g}' for t in c.refit_temperature)}"
                                       if c.refit_temperature else "")))
    if r.refit:
        rows.append(("refit", f"served model retrained on {r.refit_examples} train+validation rows for "
                              f"{r.refit_steps} steps ({r.refit_seconds:.1f} s){refit_soup(r.refit_members)}; the "
                              f"validation figures are the first run's best checkpoint (step {r.best_step})"))
    return rows


def _transfer_rows(r: JobResult, names: Sequence[str] = ("macro_f1", "accuracy")) -> list[tuple[str, str]]:
    rows = []
    if r.fit.verdict:
        rows.append(("fit", f"{r.fit.verdict}: {r.fit.rule}"))
    if r.fit.advice:
        rows.append(("advice", r.fit.advice))
    rows += [("auto did", action) for action in r.auto_actions]
    for b in r.baselines:
        metrics = _metrics(b.validation_metrics, names[:2])
        rows.append((f"baseline {b.kind}", f"model {b.model_id}  {metrics}  ({b.train_seconds:.1f} s)"))
    if r.transfer_verdict:
        rows.append(("transfer", r.transfer_verdict))
    return rows


def learning_curve(console: Console, r: JobResult, names: Sequence[str] = ("macro_f1", "accuracy")) -> None:
    console.print("learning curve (train loss: mean since the previous evaluation)", soft_wrap=True)
    headers = (f"VAL {_METRIC_HEADERS.get(name, name.upper())}" for name in names)
    table = _table("STEP", "EPOCH", "TRAIN LOSS", "VAL LOSS", *headers)
    for point in r.learning_curve:
        values = [point.metrics.get(name) for name in names]
        table.add_row(
            str(point.step), f"{point.epoch:.2f}", f"{point.train_loss:.4f}", f"{point.validation_loss:.4f}",
            *("-" if value is None else f"{value:.4f}" for value in values),
        )
    _print_table(console, table)


def jobs(console: Console, response: ListJobsResponse) -> None:
    # the long, rarely needed columns last (`jobs get` shows everything)
    table = _table("ID", "STATE", "MODEL", "STEPS", "CREATED", "DATASET", "BACKBONE")
    for j in response.jobs:
        model = f"{j.model_id} v{j.model_version}" if j.model_id else "-"
        steps = f"{j.progress.step}/{j.progress.total_steps}" if j.progress.total_steps else "-"
        table.add_row(j.id, state_name(j.state), model, steps, _time(j.create_time), j.dataset_id, j.backbone)
    _print_table(console, table)
    _next_page(console, response.next_page_token)


def model(console: Console, m: Model) -> None:
    fields(
        console,
        [
            ("id", m.id),
            ("name", m.name),
            ("modality", _enum(Modality.Name(m.modality), "MODALITY_")),
            ("backbone", m.backbone),
            ("labels", _labels(m.labels, 50)),
            ("latest version", str(m.latest_version or "-")),
            ("kind", m.kind + (f" (trained by job {m.source_job_id})" if m.source_job_id else "")),
            ("aliases", ", ".join(f"{name} -> v{n}" for name, n in sorted(m.aliases.items())) or "-"),
            ("created", _time(m.create_time)),
        ],
    )
    table = _table("VERSION", "STATE", "VALIDATION", "ONNX", "VARIANTS", "SERVING", "CREATED", "JOB")
    for v in m.versions:
        serving = f"yes ({v.execution_provider})" if v.loaded else "no"
        state = _enum(ModelVersionState.Name(v.state), "MODEL_VERSION_STATE_")
        metrics = _metrics(v.validation_metrics, ("macro_f1", "accuracy"))
        onnx = size(v.onnx_size_bytes) if v.onnx_size_bytes else "-"
        variants = ", ".join(v.variants) or "-"
        table.add_row(str(v.version), state, metrics, onnx, variants, serving, _time(v.create_time), v.job_id)
    if m.versions:
        _print_table(console, table)


def models(console: Console, response: ListModelsResponse) -> None:
    table = _table("ID", "NAME", "LATEST", "CREATED", "LABELS", "BACKBONE")
    for m in response.models:
        latest = str(m.latest_version or "-")
        table.add_row(m.id, m.name, latest, _time(m.create_time), _labels(m.labels, 4), m.backbone)
    _print_table(console, table)
    _next_page(console, response.next_page_token)


def evaluation(console: Console, report: EvaluationReport) -> None:
    fields(
        console,
        [
            ("model", f"{report.model_id} v{report.model_version}"),
            (
                "dataset",
                f"{report.dataset_id} ({report.num_examples} examples, {report.num_unknown_labels} unknown labels)",
            ),
            ("accuracy", f"{report.accuracy:.4f}"),
            (
                "macro",
                f"precision {report.macro_precision:.4f}  recall {report.macro_recall:.4f}  f1 {report.macro_f1:.4f}",
            ),
            (
                "weighted",
                f"precision {report.weighted_precision:.4f}  recall {report.weighted_recall:.4f}  "
                f"f1 {report.weighted_f1:.4f}",
            ),
            *([("calibration", calibration_text(report))] if report.HasField("ece") else []),
            ("runtime", f"{report.runtime} ({report.duration_seconds:.2f} s)"),
        ],
    )
    per_class = _table("LABEL", "PRECISION", "RECALL", "F1", "SUPPORT")
    for c in report.per_class:
        per_class.add_row(c.label, f"{c.precision:.4f}", f"{c.recall:.4f}", f"{c.f1:.4f}", str(c.support))
    _print_table(console, per_class)
    confusion_matrix(console, report)


def calibration_text(report: EvaluationReport) -> str:
    """ECE of the served scores beside what a perfectly calibrated model would show on as many rows, and the
    consistency test's verdict."""
    text = f"ECE {report.ece:.4f}"
    if not report.HasField("ece_p_value"):
        return text
    verdict = ("miscalibrated beyond these rows' sampling noise" if report.ece_p_value < 0.05
               else "within these rows' sampling noise")
    return (f"{text} (a perfectly calibrated model would show about {report.ece_if_calibrated:.4f} on these rows; "
            f"p = {report.ece_p_value:.3g}: {verdict})")


def evaluation_response(console: Console, response: EvaluateResponse) -> None:
    evaluation(console, response.report)
    if response.comparisons:
        comparisons(console, response)


def comparisons(console: Console, response: EvaluateResponse) -> None:
    """The evaluated model beside each compared one: its metrics, the deltas (first minus compared) and McNemar."""
    r = response.report
    console.print(f"compared on {r.dataset_id} with {r.model_id} v{r.model_version} (delta = it minus the other)")
    table = _table("MODEL", "MACRO F1", "ACCURACY", "Δ MACRO F1", "Δ ACCURACY", "ONLY IT RIGHT", "ONLY OTHER RIGHT",
                   "P (MCNEMAR)", "SIGNIFICANT")
    table.add_row(f"{r.model_id} v{r.model_version}", f"{r.macro_f1:.4f}", f"{r.accuracy:.4f}", *["-"] * 6)
    for other, c in zip(response.compared, response.comparisons, strict=False):
        deltas = {d.metric: d.delta for d in c.deltas}
        table.add_row(
            f"{c.model_id} v{c.model_version}", f"{other.macro_f1:.4f}", f"{other.accuracy:.4f}",
            f"{deltas.get('macro_f1', 0.0):+.4f}", f"{deltas.get('accuracy', 0.0):+.4f}", str(c.only_first_correct),
            str(c.only_second_correct), f"{c.p_value:.3g}", "yes" if c.significant else "no",
        )
    _print_table(console, table)
    for c in response.comparisons:
        console.print(f"{c.model_id} v{c.model_version}: {c.verdict}", soft_wrap=True)


def confusion_matrix(console: Console, report: EvaluationReport) -> None:
    matrix = report.confusion_matrix
    console.print("confusion matrix (rows: true label, columns: predicted label)", soft_wrap=True)
    table = Table(box=None, header_style="bold")
    table.add_column("", style="bold")
    for label in matrix.labels:
        table.add_column(label, justify="right")
    for label, row in zip(matrix.labels, matrix.rows, strict=False):
        table.add_row(label, *(str(count) for count in row.counts))
    _print_table(console, table)


def predictions(
    console: Console, response: PredictResponse, texts: Sequence[str], header: str = "TEXT",
    task: Task = Task.TASK_CLASSIFICATION,
) -> None:
    """`texts` are what each row shows first: the texts, or the image file names (`header` "IMAGE"). The model's
    `task` picks the columns: the top label and its score (classification), the labels over their thresholds
    (multi-label), the value (regression), or one row per entity (token classification)."""
    variant = f" ({response.variant})" if response.variant else ""
    console.print(f"model {response.model_id} v{response.model_version}{variant}", markup=False)
    if task == Task.TASK_TOKEN_CLASSIFICATION:
        entities(console, response, texts)
        return
    if task == Task.TASK_REGRESSION:
        table = _table(header, "VALUE")
    elif task == Task.TASK_MULTI_LABEL:
        table = _table(header, "LABELS", "SCORES")
    else:
        table = _table(header, "LABEL", "SCORE", "SCORES")
    table.columns[0].max_width = 48
    for text, p in zip(texts, response.predictions, strict=False):
        shown = Text(text, overflow="ellipsis", no_wrap=True)
        scores = ", ".join(f"{s.label} {s.score:.3f}" for s in p.scores)
        if task == Task.TASK_REGRESSION:
            table.add_row(shown, f"{p.value:.4g}")
        elif task == Task.TASK_MULTI_LABEL:
            table.add_row(shown, ", ".join(p.labels) or "-", scores)
        else:
            table.add_row(shown, p.label, f"{p.score:.3f}", scores)
    _print_table(console, table)


def entities(console: Console, response: PredictResponse, texts: Sequence[str]) -> None:
    """A token-classification answer: one row per entity (its text, type, character offsets start-end into the
    input, score), the input shown on its first entity's row; "-" for an input with none."""
    table = _table("TEXT", "ENTITY", "TYPE", "START-END", "SCORE")
    table.columns[0].max_width = 40
    for text, p in zip(texts, response.predictions, strict=False):
        shown = Text(text, overflow="ellipsis", no_wrap=True)
        if not p.entities:
            table.add_row(shown, "-", "-", "-", "-")
        for i, entity in enumerate(p.entities):
            table.add_row(shown if i == 0 else "", Text(entity.text), Text(entity.type), f"{entity.start}-{entity.end}",
                          f"{entity.score:.3f}")
    _print_table(console, table)


def backbones(console: Console, response: ListBackbonesResponse) -> None:
    # hidden size and weight source are in --json
    table = _table("NAME", "MODALITY", "PARAMS", "MAX LEN", "CPU MS", "AVAILABLE", "DESCRIPTION")
    for b in response.backbones:
        name = b.name + (" *" if b.is_default else "")
        modality = _enum(Modality.Name(b.modality), "MODALITY_")
        available = "yes" if b.available else "no"
        params, max_len = _count(b.parameter_count), str(b.max_sequence_length)
        latency = f"{b.cpu_latency_ms:.1f}" if b.cpu_latency_ms else "-"
        table.add_row(name, modality, params, max_len, latency, available, b.description)
    table.columns[-1].max_width = 60
    _print_table(console, table)
    console.print("* the default backbone", soft_wrap=True)
    if any(b.cpu_latency_ms for b in response.backbones):
        console.print(
            "CPU MS: median forward of the backbone alone, batch 1, at its input size (--json latency_measured_on "
            "says on what)",
            soft_wrap=True,
        )


def refit_soup(members: int) -> str:
    """A search's refit soup in words (empty for the plain refit)."""
    return f", {members} refits in their own row orders averaged" if members > 1 else ""
