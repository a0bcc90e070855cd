"""The GPU check's task heads (check.py stage `heads_*`): multi-label, regression and a bi-encoder text pair, each a
few steps of the real worker on the synthetic MiniLM-shaped backbone and corpus (synth.py), with its ONNX export and
parity gate; the pair job also refits, so the refit path runs on the device too, and a search of 2 trials that
refits serves a refit soup (engines/training/soup.py: members trained, averaged and checked on the device)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from bench.gpu import synth as gpu_synth

# name -> (task, text_pairs, extra hyperparameters)
HEADS: dict[str, tuple[str, bool, dict[str, Any]]] = {
    "multi_label": ("multi_label", False, {}),
    "regression": ("regression", False, {}),
    "pairs_bi_refit": ("regression", True, {"pair_encoding": "bi", "refit": "true"}),
    "search_refit_soup": ("classification", False, {"refit": "true"}),
}
SEARCH = {"search_refit_soup": 2}   # head -> trials (a budget of 600 s leaves the soup its 4 members)


def rows(corpus: gpu_synth.Corpus, head: str, count: int, seed: int) -> list[dict[str, Any]]:
    """Learnable rows for `head` from the corpus' single-label rows: multi-label tags each row with its label and,
    for every other row, the next one; regression scores a row by its label's index; a pair's score is 1 when both
    sides share a label, else 0."""
    base = corpus.rows(count, seed=seed, min_words=40, max_words=80)
    index = {label: i for i, label in enumerate(gpu_synth.LABELS)}
    rng = random.Random(seed)
    if head == "multi_label":
        nxt = {label: gpu_synth.LABELS[(i + 1) % len(gpu_synth.LABELS)] for label, i in index.items()}
        return [{"text": r["text"], "labels": [r["label"], *([nxt[r["label"]]] if i % 2 else [])]}
                for i, r in enumerate(base)]
    if head in SEARCH:
        return base
    if head == "regression":
        return [{"text": r["text"], "target": float(index[r["label"]])} for r in base]
    others = [base[rng.randrange(len(base))] for _ in base]
    return [{"text": a["text"], "text_pair": b["text"], "target": float(a["label"] == b["label"])}
            for a, b in zip(base, others, strict=True)]


def spec(head: str, backbone: Path, work: Path, device: str, steps: int, batch: int, train_rows: int) -> Any:
    from tuneserve.engines.training.spec import BackboneRef, Hyperparameters, SearchSpec, TrainingSpec

    task, pairs, extra = HEADS[head]
    corpus = gpu_synth.Corpus(seed=0)
    data = work / head
    data.mkdir(parents=True, exist_ok=True)
    gpu_synth.write_jsonl(data / "train.jsonl", rows(corpus, head, train_rows, seed=5))
    gpu_synth.write_jsonl(data / "validation.jsonl", rows(corpus, head, max(16, train_rows // 4), seed=6))
    return TrainingSpec(
        job_id=f"gpu-check-{head}",
        backbone=BackboneRef(name="synthetic-minilm-l6", path=str(backbone)),
        train_path=str(data / "train.jsonl"),
        validation_path=str(data / "validation.jsonl"),
        labels=list(gpu_synth.LABELS) if task in ("multi_label", "classification") else [],
        output_dir=str(data / "job" / "version"),
        device="cuda" if device == "cuda" else "cpu",
        task=task,
        text_pairs=pairs,
        hyperparameters=Hyperparameters(
            max_steps=steps, batch_size=batch, max_seq_length=96, learning_rate=2e-4, eval_steps=max(1, steps // 2),
            early_stopping_patience=0, warmup_ratio=0.1, **extra,
        ),
        search=SearchSpec(trials=SEARCH[head], budget_seconds=600.0, seed=0) if head in SEARCH else SearchSpec(),
    )
