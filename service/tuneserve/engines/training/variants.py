"""The ONNX variants of a model version after the fp32 export: variants.json always, and with `ExportSpec.int8` the
dynamically quantised graph, judged on the validation set (see `tuneserve.engines.export.quantize`)."""

from __future__ import annotations

from pathlib import Path

from transformers import PreTrainedTokenizerBase

from tuneserve.engines.export.quantize import judge_int8, quantize_int8
from tuneserve.engines.training.artifacts import write_variants
from tuneserve.engines.training.data import Example
from tuneserve.engines.training.events import EventWriter, ExportEvent
from tuneserve.engines.training.spec import ARTIFACTS, TrainingSpec


def export_variants(
    spec: TrainingSpec,
    output_dir: Path,
    writer: EventWriter,
    tokenizer: PreTrainedTokenizerBase,
    validation: list[Example],
    *,
    max_seq_length: int,
    fp32_macro_f1: float,
) -> dict[str, float]:
    """Write variants.json (and model.int8.onnx when asked); return each variant's validation macro F1.

    fp32_macro_f1 is the best checkpoint's, used as is when there is no int8 variant; with one, the guard scores
    both ONNX graphs itself so that the two numbers it compares come from the same code.
    """
    if not spec.export.int8:
        write_variants(output_dir, {"fp32": {"macro_f1": fp32_macro_f1, "served": True}})
        return {"fp32": fp32_macro_f1}
    fp32_path, int8_path = output_dir / ARTIFACTS["onnx"], output_dir / ARTIFACTS["onnx_int8"]
    size_bytes = quantize_int8(fp32_path, int8_path, modality=spec.backbone.modality)
    index = {label: i for i, label in enumerate(spec.labels)}
    verdict = judge_int8(
        fp32_path,
        int8_path,
        tokenizer,
        [example.text for example in validation],
        [index[example.label] for example in validation],
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
            "fp32": {"macro_f1": verdict.fp32_macro_f1, "served": True},
            "int8": {"macro_f1": verdict.int8_macro_f1, "served": verdict.served, "reason": verdict.reason},
        },
    )
    return {"fp32": verdict.fp32_macro_f1, "int8": verdict.int8_macro_f1}
