"""The head both task models share (`head.TransferClassifier`): its state-dict keys (what exported and checkpointed
weights load by), its checkpoint round trip and its class-weighted, label-smoothed loss, for the text and image model;
and the head of every task (width, loss) on both."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from tests.fixtures import build_tiny_bert, tiny_efficientnet
from tuneserve.engines.training.head import TransferClassifier
from tuneserve.engines.training.model import TextClassifier
from tuneserve.engines.training.vision import ImageClassifier

WEIGHTS = torch.tensor([1.0, 3.0, 0.5])
LABELS = torch.tensor([0, 1, 2, 1])


def build(
    kind: str, root: Path, *, width: int = 3, task: str = "classification", weights: torch.Tensor | None = WEIGHTS,
    options: dict[str, Any] | None = None,
) -> tuple[TransferClassifier, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    loss = {"task": task, "loss_weights": weights, "loss_options": {"label_smoothing": 0.1} if options is None else options}
    if kind == "text":
        backbone = build_tiny_bert(root / "tiny-bert")
        model: TransferClassifier = TextClassifier.from_backbone(str(backbone), width, dropout=0.2, **loss)
        ids = torch.randint(5, 90, (4, 7), generator=torch.Generator().manual_seed(1))
        return model, {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    backbone = tiny_efficientnet(root / "tiny-efficientnet")
    model = ImageClassifier.from_backbone(str(backbone), width, dropout=0.2, **loss)
    return model, {"pixel_values": torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))}


@pytest.mark.parametrize("kind", ["text", "image"])
def test_head_keys_checkpoint_and_loss(tmp_path: Path, kind: str) -> None:
    model, inputs = build(kind, tmp_path)
    keys = list(model.state_dict())
    assert [k for k in keys if not k.startswith("backbone.")] == ["head.weight", "head.bias"]
    assert "loss_weights" not in keys and torch.equal(model.loss_weights, WEIGHTS)  # type: ignore[arg-type]

    model.eval()
    with torch.no_grad():
        output = model(**inputs, labels=LABELS)
    expected = nn.functional.cross_entropy(output.logits, LABELS, weight=WEIGHTS, label_smoothing=0.1)
    assert output.loss is not None and torch.allclose(output.loss, expected)
    assert not torch.allclose(expected, nn.functional.cross_entropy(output.logits, LABELS))

    model.save_checkpoint(tmp_path / "checkpoint")
    meta = json.loads((tmp_path / "checkpoint" / "classifier.json").read_text())
    assert (meta["num_labels"], meta["dropout"], meta["task"]) == (3, 0.2, "classification") and "backbone_config" in meta
    reloaded = type(model).from_checkpoint(tmp_path / "checkpoint")
    assert not reloaded.training and reloaded.loss_weights is None
    with torch.no_grad():
        assert torch.equal(reloaded(**inputs).logits, output.logits)


MULTI_HOT = torch.tensor([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
POS_WEIGHT = torch.tensor([3.0, 0.5])
STANDARDISED = torch.tensor([0.5, -1.2, 2.0, 0.0])


@pytest.mark.parametrize("kind", ["text", "image"])
def test_multi_label_head_is_one_sigmoid_per_label_with_pos_weight(tmp_path: Path, kind: str) -> None:
    model, inputs = build(kind, tmp_path, width=2, task="multi_label", weights=POS_WEIGHT, options={})
    model.eval()
    with torch.no_grad():
        output = model(**inputs, labels=MULTI_HOT)
    assert output.logits.shape == (4, 2)
    expected = nn.functional.binary_cross_entropy_with_logits(output.logits, MULTI_HOT, pos_weight=POS_WEIGHT)
    assert output.loss is not None and torch.allclose(output.loss, expected)
    model.save_checkpoint(tmp_path / "checkpoint")
    assert type(model).from_checkpoint(tmp_path / "checkpoint").task.name == "multi_label"


@pytest.mark.parametrize("kind", ["text", "image"])
@pytest.mark.parametrize("loss", ["mse", "huber"])
def test_regression_head_is_one_value_with_mse_or_huber(tmp_path: Path, kind: str, loss: str) -> None:
    model, inputs = build(kind, tmp_path, width=1, task="regression", weights=None, options={"regression_loss": loss})
    model.eval()
    with torch.no_grad():
        output = model(**inputs, labels=STANDARDISED)
    assert output.logits.shape == (4, 1)
    function = nn.functional.mse_loss if loss == "mse" else nn.functional.huber_loss
    assert output.loss is not None and torch.allclose(output.loss, function(output.logits[:, 0], STANDARDISED))
