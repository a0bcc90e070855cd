"""What a bi-encoder of text pairs needs besides the model (model.TextClassifier with pair_encoding "bi"): the cosine
of the two texts' pooled vectors, a collator that pads each text's ids on their own, and the start of the regression
head, an affine map of that cosine.

The head starts where the backbone already is: a least-squares fit of the standardised training targets on the
zero-shot cosines (`fit_cosine_map`), so that the first step predicts what the pretrained embeddings' similarity
predicts, at the target's scale, and training moves the encoder from there (sentence-transformers' CosineSimilarityLoss
trains cosine against targets in [0, 1]; the affine map lets any target scale and offset in).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from tuneserve.engines.training.data import EncodedDataset
from tuneserve.engines.training.spec import PAIR_INPUT_SUFFIX

if TYPE_CHECKING:
    from tuneserve.engines.training.model import TextClassifier

# NOTE: enough rows for two parameters' least-squares fit; more only costs forward passes before training starts.
FIT_ROWS = 512
_FIT_BATCH = 32


def cosine(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Row-wise cosine similarity [batch]; a zero vector's is 0 (the clamp keeps it finite)."""
    # NOTE: written out rather than F.cosine_similarity so the ONNX graph holds plain ReduceSum/Sqrt/Div ops.
    norms = (u.norm(dim=-1) * v.norm(dim=-1)).clamp(min=1e-8)
    similarity: torch.Tensor = (u * v).sum(dim=-1) / norms
    return similarity


class PairCollator:
    """Pads a batch of bi-encoder features: the first text's inputs and the second's (PAIR_INPUT_SUFFIX) each to
    their own longest row, and stacks the targets ("labels")."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase) -> None:
        self._tokenizer = tokenizer

    def __call__(self, features: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        first = [{k: v for k, v in f.items() if k != "labels" and not k.endswith(PAIR_INPUT_SUFFIX)} for f in features]
        second = [
            {k[: -len(PAIR_INPUT_SUFFIX)]: v for k, v in f.items() if k.endswith(PAIR_INPUT_SUFFIX)} for f in features
        ]
        batch = dict(self._tokenizer.pad(first, return_tensors="pt"))
        batch.update({k + PAIR_INPUT_SUFFIX: v for k, v in self._tokenizer.pad(second, return_tensors="pt").items()})
        if "labels" in features[0]:
            batch["labels"] = torch.tensor([f["labels"] for f in features])
        return batch


def fit_cosine_map(model: TextClassifier, features: EncodedDataset, collator: PairCollator) -> None:
    """Set the bi-encoder regression head (standardised target = a * cosine + b) to the least-squares fit of the
    first FIT_ROWS training rows' encoded targets on their zero-shot cosines; a = 1, b = 0 where the cosines do not
    vary (nothing to fit)."""
    rows = [features[index] for index in range(min(len(features), FIT_ROWS))]
    was_training = model.training
    device = next(model.parameters()).device
    cosines: list[np.ndarray] = []
    with torch.no_grad():
        model.head.weight.fill_(1.0)  # NOTE: the identity map: the model's outputs are the cosines themselves
        model.head.bias.fill_(0.0)
        model.eval()
        for start in range(0, len(rows), _FIT_BATCH):
            batch = collator([{k: v for k, v in row.items() if k != "labels"} for row in rows[start : start + _FIT_BATCH]])
            logits = model(**{name: tensor.to(device) for name, tensor in batch.items()}).logits
            cosines.append(logits.float().reshape(-1).cpu().numpy())
    model.train(was_training)
    x = np.concatenate(cosines).astype(np.float64)
    y = np.asarray([row["labels"] for row in rows], dtype=np.float64)
    if x.var() <= 1e-12:
        return
    slope = float(np.mean((x - x.mean()) * (y - y.mean())) / x.var())
    with torch.no_grad():
        model.head.weight.fill_(slope)
        model.head.bias.fill_(float(y.mean() - slope * x.mean()))
