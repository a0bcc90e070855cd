"""Writes a model version's artifacts (`spec.ARTIFACTS`) into the job's output directory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from transformers import PreTrainedTokenizerBase

from tuneserve.engines.training.events import ResultEvent
from tuneserve.engines.training.model import TextClassifier
from tuneserve.engines.training.spec import ARTIFACTS


def write_model_artifacts(
    output_dir: Path,
    model: TextClassifier,
    tokenizer: PreTrainedTokenizerBase,
    *,
    labels: list[str],
    input_names: list[str],
    max_seq_length: int,
) -> None:
    """The best checkpoint, its tokenizer, the label order and how to turn text into the ONNX inputs."""
    output_dir.mkdir(parents=True, exist_ok=True)
    model.save_checkpoint(output_dir / ARTIFACTS["checkpoint"])
    tokenizer.save_pretrained(str(output_dir / ARTIFACTS["tokenizer"]))
    _write_json(output_dir / ARTIFACTS["labels"], {"labels": labels})
    preprocessing = {
        "modality": "text",
        "tokenizer": ARTIFACTS["tokenizer"],
        "max_seq_length": max_seq_length,
        "input_names": input_names,
    }
    _write_json(output_dir / ARTIFACTS["preprocessing"], preprocessing)


def write_metrics(output_dir: Path, result: ResultEvent) -> None:
    """metrics.json: the JobResult fields, the learning curve included."""
    _write_json(output_dir / ARTIFACTS["metrics"], result.fields())


def write_variants(output_dir: Path, variants: dict[str, dict[str, Any]]) -> None:
    """variants.json: each ONNX variant's validation value of the task's guard metric and whether it may be served
    (schema in spec.py)."""
    _write_json(output_dir / ARTIFACTS["variants"], variants)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")
