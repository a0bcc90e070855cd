"""How the CLI shows datasets (`datasets upload|get|list`): the task and input shape, and each task's statistics."""

from __future__ import annotations

from rich.console import Console

from tuneserve_client.cli.render import _enum, _labels, _next_page, _print_table, _table, _time, fields, size
from tuneserve_client.cli.tasks import task_name
from tuneserve_client.proto.tuneserve.v1.common_pb2 import Modality
from tuneserve_client.proto.tuneserve.v1.datasets_pb2 import Dataset, DatasetFormat, ListDatasetsResponse


def _dataset_stats(ds: Dataset) -> list[tuple[str, str]]:
    """The per-task lines: labels (rows carrying each, for multi-label) and labels per row, or the target's spread."""
    rows = []
    if ds.labels or not ds.HasField("target_stats"):
        if ds.HasField("tagging"):  # NOTE: label_counts holds entity spans per type
            spans = ", ".join(f"{kind} {count}" for kind, count in sorted(ds.label_counts.items()))
            rows.append(("entity types", f"{len(ds.label_counts)}: {spans} spans"))
        else:
            counts = ", ".join(f"{label} {ds.label_counts[label]}" for label in ds.labels)
            rows.append(("labels", f"{len(ds.labels)}: {counts}"))
    if ds.HasField("labels_per_row"):
        per_row = ds.labels_per_row
        rows.append(("labels per row", f"mean {per_row.mean:.2f}, max {per_row.max}, "
                                       f"{per_row.rows_without_labels} rows without labels"))
    if ds.HasField("target_stats"):
        t = ds.target_stats
        rows.append(("target", f"min {t.min:g}, max {t.max:g}, mean {t.mean:g}, std {t.std:g}"))
        rows.append(("quantiles", f"p05 {t.p05:g}, p25 {t.p25:g}, median {t.median:g}, p75 {t.p75:g}, p95 {t.p95:g}"))
    if ds.HasField("tagging"):
        tagging = ds.tagging
        rows.append(("sentences", f"{tagging.sentences} ({tagging.tokens} tokens, longest {tagging.max_sentence_tokens})"))
        rows.append(("tag scheme", f"{tagging.scheme} (stored as IOB2), {tagging.repaired_tags} stray I- tags repaired"))
    return rows


def dataset(console: Console, ds: Dataset) -> None:
    fields(
        console,
        [
            ("id", ds.id),
            ("name", ds.name),
            ("format", _enum(DatasetFormat.Name(ds.format), "DATASET_FORMAT_")),
            ("modality", _enum(Modality.Name(ds.modality), "MODALITY_")),
            ("task", task_name(ds.task, ds.text_pairs)),
            ("rows", f"{ds.num_rows} ({ds.num_duplicates} duplicates)"),
            *_dataset_stats(ds),
            ("size", size(ds.size_bytes)),
            ("sha256", ds.sha256),
            ("created", _time(ds.create_time)),
        ],
    )


def datasets(console: Console, response: ListDatasetsResponse) -> None:
    table = _table("ID", "NAME", "FORMAT", "TASK", "ROWS", "CREATED", "LABELS")
    for ds in response.datasets:
        fmt = _enum(DatasetFormat.Name(ds.format), "DATASET_FORMAT_")
        target = _labels(ds.labels, 4) if ds.labels else (
            f"target {ds.target_stats.min:g}..{ds.target_stats.max:g}" if ds.HasField("target_stats") else "-"
        )
        table.add_row(
            ds.id, ds.name, fmt, task_name(ds.task, ds.text_pairs), str(ds.num_rows), _time(ds.create_time), target
        )
    _print_table(console, table)
    _next_page(console, response.next_page_token)
