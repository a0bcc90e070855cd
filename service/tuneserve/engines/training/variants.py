"""The ONNX variants of a model version after the fp32 export: variants.json always, and with `ExportSpec.int8` the
dynamically quantised graph, judged on the validation set on the task's guard metric (see
`tuneserve.engines.export.quantize`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from transformers import PreTrainedTokenizerBase

from tuneserve.engines.export.quantize import judge_int8, quantize_int8
from tuneserve.engines.export.text import TextInput
from tuneserve.engines.training.artifacts import write_variants
from tuneserve.engines.training.events import EventWriter, ExportEvent
from tuneserve.engines.training.spec import ARTIFACTS, TrainingSpec
from tuneserve.tasks import Task, TaskParams


def export_variants(
    spec: TrainingSpec,
    output_dir: Path,
    writer: EventWriter,
    tokenizer: PreTrainedTokenizerBase,
    validation: tuple[Sequence[TextInput], Sequence[Any]],
    *,
    task: Task,
    params: TaskParams,
    max_seq_length: int,
    fp32_value: float,
) -> dict[str, float]:
    """Write variants.json (and model.int8.onnx when asked); return each variant's validation value of the task's guard
    metric. `validation`: the validation split's model inputs and targets.

    fp32_value is the best checkpoint's, used as is when there is no int8 variant; with one, the guard scores both ONNX
    graphs itself so that the two numbers it compares come from the same code.
    """
    metric = task.guard_metric
    if not spec.export.int8:
        write_variants(output_dir, {"fp32": {metric: fp32_value, "served": True}})
        return {"fp32": fp32_value}
    fp32_path, int8_path = output_dir / ARTIFACTS["onnx"], output_dir / ARTIFACTS["onnx_int8"]
    size_bytes = quantize_int8(fp32_path, int8_path, modality=spec.backbone.modality)
    texts, targets = validation
    verdict = judge_int8(
        fp32_path,
        int8_path,
        tokenizer,
        texts,
        targets,
        labels=spec.labels,
        task=task,
        params=params,
        max_seq_length=max_seq_length,
        max_f1_drop=spec.export.int8_max_f1_drop,
        threads=spec.threads,
    )
    ratio = fp32_path.stat().st_size / size_bytes
    writer.write(
        ExportEvent(
            format="onnx_int8",
            parity_max_abs_diff=verdict.max_abs_diff,
            parity_examples=verdict.examples,
            size_bytes=size_bytes,
            message=f"int8 variant ({size_bytes / 1e6:.1f} MB, {ratio:.1f}x smaller) "
            f"{'served' if verdict.served else 'NOT served'}: {verdict.reason}",
        )
    )
    write_variants(
        output_dir,
        {
            "fp32": {metric: verdict.fp32_value, "served": True},
            "int8": {metric: verdict.int8_value, "served": verdict.served, "reason": verdict.reason},
        },
    )
    return {"fp32": verdict.fp32_value, "int8": verdict.int8_value}
