"""Fine-tuning strategies: which backbone parameters train (freeze none | all | top_k, gradual unfreezing) and at what
learning rate (layer-wise decay). They act through `requires_grad` and the optimizer's parameter groups only.

The backbone is read as a stack of levels counted from the top: the last transformer block is depth 0, the first
block depth L-1 and the embeddings depth L (L = the blocks, the `nn.ModuleList` with `config.num_hidden_layers`
entries). Parameters registered before the first block are the embeddings; those after the last block (a final norm)
count as depth 0. A model may define its own levels with `layer_levels() -> (depth by parameter name, blocks)`:
ImageClassifier (EfficientNet-Lite) does, with its 7 MBConv stages as the blocks and the stem as the embeddings.
A strategy trains the top `n` levels: none = all L+1, all = 0, top_k = k, and gradual unfreezing
grows n by one per epoch (head only in epoch 0) up to that ceiling. The new head always trains.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from tuneserve.engines.training.events import UnfrozenEvent
from tuneserve.engines.training.spec import Hyperparameters

# NOTE: BERT's pooler (a dense layer over the CLS state) never runs: TextClassifier pools the hidden states itself.
# It stays frozen so that requires_grad says truthfully what trains.
_UNUSED_PREFIXES = ("backbone.pooler.",)
_BACKBONE = "backbone."


@dataclass(frozen=True)
class LayerMap:
    """Depth from the top of each backbone parameter (0 = last block ... num_blocks = embeddings)."""

    depth: dict[str, int]
    num_blocks: int


def uses_layers(hp: Hyperparameters) -> bool:
    """Whether the strategy needs the backbone's block structure (the defaults do not, so any backbone trains)."""
    return hp.freeze != "none" or hp.layer_lr_decay != 1.0 or hp.gradual_unfreezing


def layer_map(model: nn.Module) -> LayerMap:
    own_levels = getattr(model, "layer_levels", None)
    if callable(own_levels):
        depth_by_name, num_blocks = own_levels()
        return LayerMap(depth_by_name, num_blocks)
    blocks_path, blocks = _find_blocks(model)
    prefix = f"{_BACKBONE}{blocks_path}."
    depth: dict[str, int] = {}
    seen_block = False
    for name, _ in model.named_parameters():
        if not name.startswith(_BACKBONE):
            continue
        if name.startswith(prefix):
            index = int(name[len(prefix):].split(".", 1)[0])
            depth[name] = len(blocks) - 1 - index
            seen_block = True
        else:
            # NOTE: registration order puts the embeddings before the blocks and a final norm/pooler after them.
            depth[name] = 0 if seen_block else len(blocks)
    return LayerMap(depth, len(blocks))


def trainable_levels(hp: Hyperparameters, num_blocks: int, epoch: int | None = None) -> int:
    """How many levels from the top train: in general (epoch None), or in `epoch` under gradual unfreezing."""
    ceiling = {"none": num_blocks + 1, "all": 0, "top_k": hp.trainable_layers}[hp.freeze]
    if hp.freeze == "top_k" and not 1 <= ceiling <= num_blocks:
        raise ValueError(
            f"trainable_layers = {hp.trainable_layers} but the backbone has {num_blocks} blocks; "
            f"choose 1..{num_blocks}"
        )
    if hp.gradual_unfreezing and epoch is not None:
        return min(epoch, ceiling)
    return ceiling


def apply_freeze(model: nn.Module, hp: Hyperparameters) -> LayerMap | None:
    """Set requires_grad for the start of training; returns the layer map when the strategy uses one."""
    if not uses_layers(hp):
        _set_trainable(model, None, levels=0)
        return None
    layers = layer_map(model)
    _set_trainable(model, layers, trainable_levels(hp, layers.num_blocks, 0 if hp.gradual_unfreezing else None))
    return layers


def parameter_groups(
    model: nn.Module, hp: Hyperparameters, layers: LayerMap | None, decay_names: set[str]
) -> list[dict[str, Any]]:
    """AdamW groups over every parameter, frozen ones included, so that a block gradual unfreezing opens later is
    already in the optimizer (AdamW skips parameters without a gradient). Backbone groups come first, top level first,
    so the Trainer's logged learning rate (group 0) is `learning_rate` itself."""
    groups: dict[tuple[int, bool], list[nn.Parameter]] = {}
    for name, parameter in model.named_parameters():
        level = -1 if not name.startswith(_BACKBONE) else (layers.depth[name] if layers else 0)
        groups.setdefault((level, name in decay_names), []).append(parameter)
    ordered = sorted(groups.items(), key=lambda item: (item[0][0] < 0, item[0][0], not item[0][1]))
    return [
        {
            "params": params,
            "lr": hp.head_learning_rate if level < 0 else hp.learning_rate * hp.layer_lr_decay**level,
            "weight_decay": hp.weight_decay if decays else 0.0,
        }
        for (level, decays), params in ordered
    ]


class GradualUnfreezing(TrainerCallback):
    """ULMFiT's gradual unfreezing: at the start of epoch e the top e levels of the backbone train (epoch 0: the head
    alone), up to the freeze strategy's ceiling. The optimizer already holds every parameter (`parameter_groups`)."""

    def __init__(
        self, model: nn.Module, hp: Hyperparameters, layers: LayerMap, report: Callable[[UnfrozenEvent], None]
    ) -> None:
        self._model = model
        self._hp = hp
        self._layers = layers
        self._report = report
        self._levels = -1

    def on_epoch_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        # NOTE: floor, not round: a run resumed mid-epoch begins its epoch with state.epoch at e.g. 1.5.
        epoch = math.floor((state.epoch or 0.0) + 1e-6)
        levels = trainable_levels(self._hp, self._layers.num_blocks, epoch)
        if levels == self._levels:
            return
        self._levels = levels
        _set_trainable(self._model, self._layers, levels)
        self._report(_unfrozen_event(epoch, levels, self._layers.num_blocks))


def _set_trainable(model: nn.Module, layers: LayerMap | None, levels: int) -> None:
    for name, parameter in model.named_parameters():
        if name.startswith(_UNUSED_PREFIXES):
            parameter.requires_grad_(False)
        elif not name.startswith(_BACKBONE) or layers is None:
            parameter.requires_grad_(True)
        else:
            parameter.requires_grad_(layers.depth[name] < levels)


def _find_blocks(model: nn.Module) -> tuple[str, nn.ModuleList]:
    backbone = getattr(model, "backbone", None)
    if backbone is None:
        raise ValueError("the model has no backbone to apply a fine-tuning strategy to")
    count = getattr(backbone.config, "num_hidden_layers", None)
    for path, module in backbone.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) == count and count:
            return path, module
    raise ValueError(
        f"cannot find the {count} transformer blocks of backbone {type(backbone).__name__}; freeze, layer_lr_decay "
        "and gradual_unfreezing need them (train it with freeze=none, layer_lr_decay=1)"
    )


def _unfrozen_event(epoch: int, levels: int, num_blocks: int) -> UnfrozenEvent:
    blocks = min(levels, num_blocks)
    embeddings = " and the embeddings" if levels > num_blocks else ""
    what = f"the top {blocks} of {num_blocks} blocks{embeddings} + head" if levels else "the head only"
    return UnfrozenEvent(
        epoch=epoch,
        trainable_blocks=blocks,
        total_blocks=num_blocks,
        embeddings=levels > num_blocks,
        message=f"gradual unfreezing: epoch {epoch} trains {what}",
    )
