"""Feature worker: `python -m tuneserve.engines.recommend.worker SPEC_PATH` embeds a dataset sample with one frozen backbone and
scores the features (LogME, and a cross-validated linear probe), for RecommendBackbone.

It runs in its own process, like a training worker, so that torch never enters the serving process and a crash or
an out-of-memory kill costs one candidate, not the server. The contract with `tuneserve.core.recommend.recommender`:

    in:  SPEC_PATH, a `FeatureSpec` as JSON; the sample rows are JSONL {"text": ..., "label": ...} or
         {"image": "/absolute/path.png", "label": ...}
    out: one JSON line on standard output (everything else that would print there goes to stderr), then exit 0/1:
         {"kind": "result", "logme": -0.71, "probe_accuracy": 0.93, "examples": 1000, "feature_dim": 384,
          "extract_seconds": 12.3, "device": "cpu"}
         {"kind": "failed", "reason": "OSError: ..."}

The serving process enforces the time budget by killing the worker's process group.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from tuneserve.engines.training.batchnorm import estimate_missing_statistics
from tuneserve.engines.training.spec import BackboneRef

if TYPE_CHECKING:
    import numpy as np

_MAX_REASON_CHARS = 2000


@dataclass
class FeatureSpec:
    backbone: BackboneRef
    rows_path: str                      # JSONL rows of the sample, as the dataset stores them (data.jsonl)
    labels: list[str]                   # label index order ([] for regression)
    task: str = "classification"        # tuneserve.tasks name: what the rows' targets are
    text_pairs: bool = False            # rows carry "text_pair": embedded together with "text", as a cross-encoder
    max_seq_length: int = 128           # text: tokens per example (clipped to what the backbone supports)
    batch_size: int = 32
    device: str = "auto"                # auto | cpu | cuda
    threads: int = 0                    # torch intra-op threads; 0 = torch's default
    probe: bool = True                  # also score a cross-validated logistic-regression probe

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> FeatureSpec:
        raw: dict[str, Any] = json.loads(text)
        raw["backbone"] = BackboneRef(**raw["backbone"])
        return cls(**raw)


def score(spec: FeatureSpec) -> dict[str, Any]:
    """Embed the sample and score it; the fields of the "result" line."""
    import numpy as np
    import torch

    from tuneserve.engines.recommend.scores import logme_columns, probe_accuracy
    from tuneserve.tasks import get_task

    if spec.threads > 0:
        torch.set_num_threads(spec.threads)
    device = "cuda" if spec.device == "cuda" or (spec.device == "auto" and torch.cuda.is_available()) else "cpu"
    rows = [json.loads(line) for line in Path(spec.rows_path).read_text(encoding="utf-8").splitlines() if line]
    task = get_task(spec.task)
    columns = task.evidence_columns([task.stored_target(row[task.target_field]) for row in rows], spec.labels)
    started = time.perf_counter()
    if spec.backbone.modality == "image":
        features = image_features(spec, [Path(row["image"]) for row in rows], device)
    else:
        pairs = [row["text_pair"] for row in rows] if spec.text_pairs else None
        features = text_features(spec, [row["text"] for row in rows], device, pairs)
    extract_seconds = time.perf_counter() - started
    # NOTE: the logistic-regression probe scores single-label classes; the other tasks have LogME only.
    probe = spec.probe and task.stratified
    return {
        "logme": logme_columns(features, columns),
        "probe_accuracy": probe_accuracy(features, np.asarray(columns.argmax(axis=1))) if probe else None,
        "examples": int(features.shape[0]),
        "feature_dim": int(features.shape[1]),
        "extract_seconds": round(extract_seconds, 3),
        "device": device,
    }


def text_features(spec: FeatureSpec, texts: list[str], device: str, pairs: list[str] | None = None) -> np.ndarray:
    """One vector per text (or per (text, pair) encoded together, as fine-tuning encodes pairs): the backbone's last
    hidden states pooled as it was pretrained to pool them (mean for sentence-transformers checkpoints that say so in
    1_Pooling, else the CLS token), as float64."""
    import numpy as np
    import torch
    from transformers import AutoModel, AutoTokenizer

    from tuneserve.engines.training.model import read_pooling

    path = spec.backbone.path
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path, dtype=torch.float32).to(device).eval()
    pooling = read_pooling(Path(path)) if Path(path).is_dir() else "cls"
    max_length = _max_length(spec.max_seq_length, model.config, tokenizer)
    # NOTE: batches of similar lengths pad less; the vectors are put back in row order afterwards
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = np.empty((len(texts), model.config.hidden_size), dtype=np.float64)
    with torch.inference_mode():
        for start in range(0, len(order), spec.batch_size):
            batch = order[start : start + spec.batch_size]
            second = [pairs[i] for i in batch] if pairs is not None else None
            encoded = tokenizer(
                [texts[i] for i in batch], second, truncation=True, max_length=max_length, padding=True,
                return_tensors="pt",
            ).to(device)
            hidden = model(**encoded).last_hidden_state
            if pooling == "cls":
                pooled = hidden[:, 0]
            else:
                mask = encoded["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            out[batch] = pooled.double().cpu().numpy()
    return out


def image_features(spec: FeatureSpec, paths: list[Path], device: str) -> np.ndarray:
    """One vector per image: EfficientNet-Lite's last feature map, global-average pooled (what the classification
    head of a fine-tune sees), after the backbone's deterministic evaluation preprocessing, as float64.

    BatchNorm normalises with the checkpoint's running statistics, as a fine-tune of pretrained weights keeps them;
    layers whose statistics were never estimated (a randomly initialised network) get them from the sample first,
    see `estimate_missing_statistics`."""
    import numpy as np
    import torch
    from torch.utils.data import DataLoader

    from tuneserve.engines.training.vision import load_backbone, preprocessing_for
    from tuneserve.engines.training.vision_data import ImageDataset, ImageExample

    model, config = load_backbone(spec.backbone.path, pretrained=True)
    model = model.to(device).eval()
    # NOTE: the labels only satisfy ImageDataset; with augment=None it yields the serving-time preprocessing
    examples = [ImageExample(image=path, target=spec.labels[0]) for path in paths]
    loader = DataLoader(ImageDataset(examples, spec.labels, preprocessing_for(config)), batch_size=spec.batch_size)
    estimated = estimate_missing_statistics(model, (batch["pixel_values"].to(device) for batch in loader))
    if estimated:
        print(f"{estimated} BatchNorm layers had no running statistics; estimated them on the sample", file=sys.stderr)
    out = []
    with torch.inference_mode():
        for batch in loader:
            maps = model.extract_features(batch["pixel_values"].to(device))
            out.append(maps.mean(dim=(2, 3)).double().cpu().numpy())
    return np.concatenate(out)


def _max_length(requested: int, config: Any, tokenizer: Any) -> int:
    """The requested length, clipped to the backbone's position embeddings and the tokenizer's own maximum."""
    limits = [requested, int(getattr(config, "max_position_embeddings", requested) or requested)]
    if isinstance(tokenizer.model_max_length, int) and tokenizer.model_max_length < 10**6:
        limits.append(tokenizer.model_max_length)
    return min(limits)


def main(argv: list[str]) -> int:
    events = _take_event_stream()
    try:
        if len(argv) != 1:
            raise ValueError("usage: python -m tuneserve.engines.recommend.worker SPEC_PATH")
        result = {"kind": "result", **score(FeatureSpec.from_json(Path(argv[0]).read_text()))}
    except Exception as error:
        traceback.print_exc()
        reason = " ".join(f"{type(error).__name__}: {error}".split())[:_MAX_REASON_CHARS]
        result, status = {"kind": "failed", "reason": reason}, 1
    else:
        status = 0
    events.write(json.dumps(result) + "\n")
    events.flush()
    return status


def _take_event_stream() -> TextIO:
    """Keep the real stdout for the result line and point file descriptor 1 (print, C libraries) at stderr."""
    events_fd = os.dup(1)
    os.dup2(2, 1)
    return os.fdopen(events_fd, "w", encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
