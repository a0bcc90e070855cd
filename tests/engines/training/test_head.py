"""The head both task models share (`head.TransferClassifier`): its state-dict keys (what exported and checkpointed
weights load by), its checkpoint round trip and its class-weighted, label-smoothed loss, for the text and image model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from tests.fixtures import build_tiny_bert, tiny_efficientnet
from tuneserve.engines.training.head import TransferClassifier
from tuneserve.engines.training.model import TextClassifier
from tuneserve.engines.training.vision import ImageClassifier

WEIGHTS = torch.tensor([1.0, 3.0, 0.5])
LABELS = torch.tensor([0, 1, 2, 1])


def build(kind: str, root: Path) -> tuple[TransferClassifier, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    if kind == "text":
        backbone = build_tiny_bert(root / "tiny-bert")
        model: TransferClassifier = TextClassifier.from_backbone(
            str(backbone), 3, dropout=0.2, class_weights=WEIGHTS, label_smoothing=0.1
        )
        ids = torch.randint(5, 90, (4, 7), generator=torch.Generator().manual_seed(1))
        return model, {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    backbone = tiny_efficientnet(root / "tiny-efficientnet")
    model = ImageClassifier.from_backbone(str(backbone), 3, dropout=0.2, class_weights=WEIGHTS, label_smoothing=0.1)
    return model, {"pixel_values": torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))}


@pytest.mark.parametrize("kind", ["text", "image"])
def test_head_keys_checkpoint_and_loss(tmp_path: Path, kind: str) -> None:
    model, inputs = build(kind, tmp_path)
    keys = list(model.state_dict())
    assert [k for k in keys if not k.startswith("backbone.")] == ["head.weight", "head.bias"]
    assert "class_weights" not in keys and torch.equal(model.class_weights, WEIGHTS)  # type: ignore[arg-type]

    model.eval()
    with torch.no_grad():
        output = model(**inputs, labels=LABELS)
    expected = nn.functional.cross_entropy(output.logits, LABELS, weight=WEIGHTS, label_smoothing=0.1)
    assert output.loss is not None and torch.allclose(output.loss, expected)
    assert not torch.allclose(expected, nn.functional.cross_entropy(output.logits, LABELS))

    model.save_checkpoint(tmp_path / "checkpoint")
    meta = json.loads((tmp_path / "checkpoint" / "classifier.json").read_text())
    assert (meta["num_labels"], meta["dropout"]) == (3, 0.2) and "backbone_config" in meta
    reloaded = type(model).from_checkpoint(tmp_path / "checkpoint")
    assert not reloaded.training and reloaded.class_weights is None
    with torch.no_grad():
        assert torch.equal(reloaded(**inputs).logits, output.logits)
