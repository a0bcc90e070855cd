"""Fine-tuning strategies on the tiny BERT: exactly the intended parameters train (requires_grad and which weights
moved), layer-wise learning rates, gradual unfreezing one block per epoch, and the scratch initialisation."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoTokenizer, PreTrainedTokenizerBase, TrainerCallback

from tests.engines.training.test_worker import run_worker, write_spec
from tests.fixtures import build_tiny_bert, write_text_dataset
from tuneserve.engines.training.data import EncodedDataset, encode, read_examples
from tuneserve.engines.training.events import UnfrozenEvent
from tuneserve.engines.training.model import TextClassifier
from tuneserve.engines.training.spec import Hyperparameters
from tuneserve.engines.training.trainer import DeviceChoice, TransferTrainer, build_trainer
from tuneserve.tasks import TaskParams, get_task

LABELS = ["business", "sport", "tech"]
CPU = DeviceChoice("cpu", "fp32")
EMBEDDINGS = "backbone.embeddings."
BLOCK = "backbone.encoder.layer.{}."
HEAD = "head."
POOLER = "backbone.pooler."  # BERT's pooler: TextClassifier pools itself, so it never trains
# NOTE: softmax is shift-invariant, so the key bias gets a zero gradient up to rounding: whether rounding moves it
# says nothing about the strategy.
NO_GRADIENT = ".attention.self.key.bias"


@dataclass
class Data:
    backbone: Path
    tokenizer: PreTrainedTokenizerBase
    train: EncodedDataset


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Data:
    root = tmp_path_factory.mktemp("strategies")
    backbone = build_tiny_bert(root / "tiny-bert")
    tokenizer = AutoTokenizer.from_pretrained(backbone)
    task = get_task("classification")
    examples = read_examples(write_text_dataset(root / "train.jsonl", {"sport": 8, "business": 8, "tech": 8}), task)
    names = ["input_ids", "attention_mask", "token_type_ids"]
    encoded = encode(
        examples, tokenizer, LABELS, task=task, params=TaskParams(), input_names=names, max_seq_length=32
    )
    return Data(backbone, tokenizer, encoded)


def trainer_for(data: Data, tmp_path: Path, report: Any = None, **hp: Any) -> TransferTrainer:
    torch.manual_seed(0)
    model = TextClassifier.from_backbone(str(data.backbone), len(LABELS), dropout=0.1)
    settings = {"epochs": 1, "batch_size": 8, "learning_rate": 1e-3, "head_learning_rate": 1e-2,
                "early_stopping_patience": 0} | hp
    return build_trainer(
        model, data.tokenizer, hp=Hyperparameters(**settings), labels=LABELS, train_set=data.train, validation_set=data.train,
        checkpoint_dir=tmp_path / "checkpoints", device=CPU, callbacks=[],
        **({"report": report} if report else {}),
    )


def weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def changed(before: dict[str, torch.Tensor], model: torch.nn.Module) -> set[str]:
    return {name for name, p in model.named_parameters() if not torch.equal(before[name], p.detach())}


def trainable(model: torch.nn.Module) -> set[str]:
    return {name for name, p in model.named_parameters() if p.requires_grad}


def names(model: torch.nn.Module, *prefixes: str) -> set[str]:
    return {name for name, _ in model.named_parameters() if name.startswith(prefixes)}


@pytest.mark.parametrize(
    ("hp", "expected"),
    [
        ({"freeze": "none"}, (EMBEDDINGS, BLOCK.format(0), BLOCK.format(1), HEAD)),
        ({"freeze": "all"}, (HEAD,)),
        ({"freeze": "top_k", "trainable_layers": 1}, (BLOCK.format(1), HEAD)),
        ({"freeze": "top_k", "trainable_layers": 2}, (BLOCK.format(0), BLOCK.format(1), HEAD)),
    ],
    ids=["none", "all", "top_1", "top_2"],
)
def test_freeze_trains_exactly_the_intended_parameters(
    data: Data, tmp_path: Path, hp: dict[str, Any], expected: tuple[str, ...]
) -> None:
    trainer = trainer_for(data, tmp_path, max_steps=3, **hp)
    model = trainer.model
    assert model is not None
    before = weights(model)
    intended = names(model, *expected)
    assert trainable(model) == intended
    assert not names(model, POOLER) & trainable(model)

    trainer.train()

    moved = changed(before, model)
    assert moved <= intended, f"frozen weights changed: {sorted(moved - intended)}"
    assert {name for name in intended if not name.endswith(NO_GRADIENT)} <= moved, "trainable weights did not change"


def test_layer_lr_decay_gives_each_block_its_learning_rate(data: Data, tmp_path: Path) -> None:
    trainer = trainer_for(data, tmp_path, layer_lr_decay=0.5, learning_rate=1e-3, head_learning_rate=1e-2)
    optimizer = trainer.create_optimizer()
    model = trainer.model
    assert model is not None
    lr_of = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
    decay_of = {id(p): group["weight_decay"] for group in optimizer.param_groups for p in group["params"]}
    expected = {HEAD: 1e-2, BLOCK.format(1): 1e-3, BLOCK.format(0): 5e-4, EMBEDDINGS: 2.5e-4}
    for name, parameter in model.named_parameters():
        prefix = next((p for p in expected if name.startswith(p)), None)
        if prefix is not None:
            assert lr_of[id(parameter)] == pytest.approx(expected[prefix]), name
        if name.endswith("bias") or "LayerNorm" in name:
            assert decay_of[id(parameter)] == 0.0, name
    # every parameter is in the optimizer exactly once, frozen or not
    assert sorted(lr_of) == sorted(id(p) for p in model.parameters())
    # the Trainer logs the first group's rate: the top block's, i.e. learning_rate itself
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-3)


class EpochRecorder(TrainerCallback):
    """At each epoch's start: which parameters train; at its end: which have moved since training began."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self.initial = weights(model)
        self.trainable: list[set[str]] = []
        self.moved: list[set[str]] = []

    def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.trainable.append(trainable(self.model))

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.moved.append(changed(self.initial, self.model))


def test_gradual_unfreezing_opens_one_block_per_epoch(data: Data, tmp_path: Path) -> None:
    reported: list[UnfrozenEvent] = []
    trainer = trainer_for(data, tmp_path, reported.append, epochs=4, gradual_unfreezing=True)
    model = trainer.model
    assert model is not None
    recorder = EpochRecorder(model)
    trainer.add_callback(recorder)  # NOTE: after GradualUnfreezing, which build_trainer puts first

    trainer.train()

    levels = [(HEAD,), (HEAD, BLOCK.format(1)), (HEAD, BLOCK.format(1), BLOCK.format(0)),
              (HEAD, BLOCK.format(1), BLOCK.format(0), EMBEDDINGS)]
    assert recorder.trainable == [names(model, *prefixes) for prefixes in levels]
    for epoch, prefixes in enumerate(levels):
        opened = names(model, *prefixes)
        assert recorder.moved[epoch] <= opened, f"epoch {epoch}: frozen weights changed"
        assert {n for n in opened if not n.endswith(NO_GRADIENT)} <= recorder.moved[epoch]
    assert [(e.epoch, e.trainable_blocks, e.embeddings) for e in reported] == [
        (0, 0, False), (1, 1, False), (2, 2, False), (3, 2, True)
    ]
    assert reported[1].message == "gradual unfreezing: epoch 1 trains the top 1 of 2 blocks + head"


def test_gradual_unfreezing_stops_at_top_k(data: Data, tmp_path: Path) -> None:
    trainer = trainer_for(data, tmp_path, epochs=3, gradual_unfreezing=True, freeze="top_k", trainable_layers=1)
    model = trainer.model
    assert model is not None
    recorder = EpochRecorder(model)
    trainer.add_callback(recorder)
    trainer.train()
    top = names(model, HEAD, BLOCK.format(1))
    assert recorder.trainable == [names(model, HEAD), top, top]


def test_scratch_has_the_architecture_but_not_the_weights(data: Data) -> None:
    pretrained = load_file(data.backbone / "model.safetensors")
    scratch = TextClassifier.from_backbone(str(data.backbone), len(LABELS), dropout=0.1, pretrained=False)
    loaded = TextClassifier.from_backbone(str(data.backbone), len(LABELS), dropout=0.1)
    backbone = {name: p for name, p in scratch.backbone.state_dict().items()}
    assert set(backbone) == set(loaded.backbone.state_dict())
    shared = [name for name in pretrained if name in backbone and name.endswith("weight") and "LayerNorm" not in name]
    assert shared
    for name in shared:
        assert backbone[name].shape == pretrained[name].shape
        assert not torch.equal(backbone[name], pretrained[name]), name
        assert torch.equal(loaded.backbone.state_dict()[name], pretrained[name]), name


def test_worker_keeps_frozen_weights_and_reports_fit(tmp_path: Path, data: Data) -> None:
    run = run_worker(write_spec(tmp_path, data.backbone, freeze="top_k", trainable_layers=1))
    assert run.returncode == 0, run.stderr
    checkpoint = load_file(run.output_dir / "checkpoint" / "model.safetensors")
    pretrained = load_file(data.backbone / "model.safetensors")
    for name, tensor in pretrained.items():
        if name.startswith(("embeddings.", "encoder.layer.0.")):
            assert torch.equal(checkpoint[f"backbone.{name}"], tensor), name
    assert not torch.equal(checkpoint["backbone.encoder.layer.1.output.dense.weight"],
                           pretrained["encoder.layer.1.output.dense.weight"])
    result = run.last("result")
    evaluations = [event for event in run.events if event["kind"] == "evaluation"]
    assert [(p["step"], p["validation_loss"]) for p in result["learning_curve"]] == [
        (e["step"], e["validation_loss"]) for e in evaluations
    ]
    assert all(p["train_loss"] > 0 and "macro_f1" in p["metrics"] for p in result["learning_curve"])
    fit = result["fit"]
    assert fit["verdict"] in ("good_fit", "overfitting", "underfitting")
    assert f"vs validation {result['validation_metrics']['macro_f1']:.4f}, gap {fit['train_validation_gap']:+.4f}" in (
        fit["rule"]
    )
    assert json.loads((run.output_dir / "metrics.json").read_text())["fit"] == fit
