"""Fine-tuning strategies on the tiny EfficientNet-Lite: the "blocks" are the 7 MBConv stages (stem = embeddings,
final 1x1 conv with the top stage); exactly the intended parameters train and move, pretrained BatchNorm statistics stay,
layer-wise learning rates follow the stages, and gradual unfreezing opens one stage per epoch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.engines.training.test_strategies import EpochRecorder, changed, trainable, weights
from tests.fixtures import IMAGE_LABELS, pretrained_tiny_efficientnet, write_image_dataset
from tuneserve.engines.training.spec import Hyperparameters
from tuneserve.engines.training.strategies import layer_map
from tuneserve.engines.training.trainer import DeviceChoice, TransferTrainer, build_trainer
from tuneserve.engines.training.vision import ImageClassifier, stage_of_blocks
from tuneserve.engines.training.vision_data import ImageDataset, read_image_examples

LABELS = sorted(IMAGE_LABELS)
CPU = DeviceChoice("cpu", "fp32")
STEM = ("backbone._conv_stem.", "backbone._bn0.")
TOP = ("backbone._conv_head.", "backbone._bn1.")
HEAD = ("head.",)


@dataclass
class Data:
    backbone: Path
    train: ImageDataset


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Data:
    root = tmp_path_factory.mktemp("vision-strategies")
    # NOTE: with estimated BatchNorm statistics, as a pretrained checkpoint has (random-init ones would train them)
    backbone = pretrained_tiny_efficientnet(root / "tiny", steps=2)
    examples = read_image_examples(write_image_dataset(root / "dataset", {label: 8 for label in LABELS}))
    model = ImageClassifier.from_backbone(str(backbone), len(LABELS), dropout=0.1)
    return Data(backbone, ImageDataset(examples, LABELS, model.preprocessing))


def model_for(data: Data) -> ImageClassifier:
    torch.manual_seed(0)
    return ImageClassifier.from_backbone(str(data.backbone), len(LABELS), dropout=0.1)


def trainer_for(data: Data, tmp_path: Path, report: Any = None, **hp: Any) -> TransferTrainer:
    settings = {
        "epochs": 1,
        "batch_size": 8,
        "learning_rate": 1e-2,
        "head_learning_rate": 1e-2,
        "weight_decay": 0.0,
        "early_stopping_patience": 0,
    } | hp
    return build_trainer(
        model_for(data),
        None,
        hp=Hyperparameters(**settings),
        labels=LABELS,
        train_set=data.train,
        validation_set=data.train,
        checkpoint_dir=tmp_path / "checkpoints",
        device=CPU,
        callbacks=[],
        **({"report": report} if report else {}),
    )


def stage_prefixes(model: ImageClassifier, *stages: int) -> tuple[str, ...]:
    return tuple(f"backbone._blocks.{i}." for i, stage in enumerate(stage_of_blocks(model.backbone)) if stage in stages)


def names(model: torch.nn.Module, *prefixes: str) -> set[str]:
    return {name for name, _ in model.named_parameters() if name.startswith(prefixes)}


def batch_norm_stats(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: b.clone() for name, b in model.named_buffers() if "running_" in name}


def test_stages_are_the_blocks(data: Data) -> None:
    model = model_for(data)
    layers = layer_map(model)
    assert layers.num_blocks == 7
    assert stage_of_blocks(model.backbone) == [0, 1, 2, 3, 3, 4, 4, 5, 5, 6]
    assert {layers.depth[n] for n in names(model, *STEM)} == {7}
    assert {layers.depth[n] for n in names(model, *TOP)} == {0}
    assert {layers.depth[n] for n in names(model, *stage_prefixes(model, 6))} == {0}
    assert {layers.depth[n] for n in names(model, *stage_prefixes(model, 3))} == {3}
    assert set(layers.depth) == names(model, "backbone.")


@pytest.mark.parametrize(
    ("hp", "stages", "stem"),
    [
        ({"freeze": "all"}, (), False),
        ({"freeze": "top_k", "trainable_layers": 2}, (5, 6), False),
        ({"freeze": "none"}, (0, 1, 2, 3, 4, 5, 6), True),
    ],
    ids=["all", "top_2", "none"],
)
def test_freeze_trains_exactly_the_intended_parameters(
    data: Data, tmp_path: Path, hp: dict[str, Any], stages: tuple[int, ...], stem: bool
) -> None:
    trainer = trainer_for(data, tmp_path, max_steps=3, **hp)
    model = trainer.model
    assert isinstance(model, ImageClassifier)
    prefixes = (*HEAD, *stage_prefixes(model, *stages), *(TOP if stages else ()), *(STEM if stem else ()))
    intended = names(model, *prefixes)
    assert trainable(model) == intended
    before, stats_before = weights(model), batch_norm_stats(model)

    trainer.train()

    moved = changed(before, model)
    assert moved <= intended, f"frozen weights changed: {sorted(moved - intended)}"
    assert intended <= moved, f"trainable weights did not change: {sorted(intended - moved)}"
    # pretrained BatchNorm statistics never move (inference mode), whether the stage trains or not
    stats_moved = {n for n, b in batch_norm_stats(model).items() if not torch.equal(stats_before[n], b)}
    assert not stats_moved, sorted(stats_moved)


def test_from_scratch_batch_norm_learns_its_statistics(data: Data, tmp_path: Path) -> None:
    torch.manual_seed(0)
    scratch = ImageClassifier.from_backbone(str(data.backbone), len(LABELS), dropout=0.1, pretrained=False)
    assert {m.momentum for m in scratch.modules() if isinstance(m, torch.nn.BatchNorm2d)} == {0.1}
    scratch.train()
    assert all(m.training for m in scratch.modules() if isinstance(m, torch.nn.BatchNorm2d))
    before = batch_norm_stats(scratch)
    scratch(torch.stack([data.train[i]["pixel_values"] for i in range(8)]))  # type: ignore[misc]
    moved = {n for n, b in batch_norm_stats(scratch).items() if not torch.equal(before[n], b)}
    assert moved == set(before)
    pretrained = model_for(data).train()
    assert not any(m.training for m in pretrained.modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_layer_lr_decay_follows_the_stages(data: Data, tmp_path: Path) -> None:
    trainer = trainer_for(data, tmp_path, layer_lr_decay=0.5, learning_rate=1e-3, head_learning_rate=1e-2)
    optimizer = trainer.create_optimizer()
    model = trainer.model
    assert isinstance(model, ImageClassifier)
    lr_of = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
    expected = {
        **dict.fromkeys(HEAD, 1e-2),
        **dict.fromkeys(TOP, 1e-3),
        **dict.fromkeys(stage_prefixes(model, 6), 1e-3),
        **dict.fromkeys(stage_prefixes(model, 5), 5e-4),
        **dict.fromkeys(stage_prefixes(model, 0), 1e-3 * 0.5**6),
        **dict.fromkeys(STEM, 1e-3 * 0.5**7),
    }
    for name, parameter in model.named_parameters():
        prefix = next((p for p in expected if name.startswith(p)), None)
        if prefix is not None:
            assert lr_of[id(parameter)] == pytest.approx(expected[prefix]), name
    assert sorted(lr_of) == sorted(id(p) for p in model.parameters())


def test_gradual_unfreezing_opens_one_stage_per_epoch(data: Data, tmp_path: Path) -> None:
    reported: list[Any] = []
    trainer = trainer_for(data, tmp_path, reported.append, epochs=3, gradual_unfreezing=True)
    model = trainer.model
    assert isinstance(model, ImageClassifier)
    recorder = EpochRecorder(model)
    trainer.add_callback(recorder)
    trainer.train()
    assert [(e.epoch, e.trainable_blocks, e.embeddings) for e in reported] == [(0, 0, False), (1, 1, False),
                                                                                (2, 2, False)]
    assert recorder.trainable[0] == names(model, *HEAD)
    assert recorder.trainable[1] == names(model, *HEAD, *TOP, *stage_prefixes(model, 6))
    assert recorder.trainable[2] == names(model, *HEAD, *TOP, *stage_prefixes(model, 5, 6))
    # epoch 0 moved the head alone
    assert recorder.moved[0] == names(model, *HEAD)
