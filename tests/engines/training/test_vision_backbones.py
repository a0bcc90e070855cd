"""The vision catalog and local EfficientNet-Lite directories, resolved without torch in the serving process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures import tiny_efficientnet
from tuneserve.engines.backbones import list_backbones, num_layers, resolve_backbone
from tuneserve.errors import InvalidArgument


@pytest.mark.parametrize(
    ("name", "size"), [("efficientnet-lite0", 224), ("efficientnet-lite1", 240), ("efficientnet-lite2", 260)]
)
def test_catalog_lists_the_efficientnet_lite_packages(name: str, size: int) -> None:
    info = next(b for b in list_backbones() if b.name == name)
    assert (info.modality, info.available, info.hidden_size) == ("image", True, 1280)
    assert f"{size}x{size}" in info.description
    ref = resolve_backbone(name, allowed_dirs=[], allow_hub=False)
    assert ref.modality == "image" and ref.path.endswith(".pth") and Path(ref.path).is_file()
    assert num_layers(ref) == 7


def test_catalog_parameter_counts_match_the_weights() -> None:
    import torch

    for info in list_backbones():
        if info.modality != "image":
            continue
        ref = resolve_backbone(info.name, allowed_dirs=[], allow_hub=False)
        state = torch.load(ref.path, map_location="cpu", weights_only=True)
        counted = sum(
            t.numel()
            for k, t in state.items()
            if not k.startswith("_fc.") and t.is_floating_point() and "running_" not in k
        )
        assert info.parameter_count == counted


def test_listing_the_catalog_does_not_import_torch() -> None:
    code = "import sys; from tuneserve.engines.backbones import list_backbones; list_backbones(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_local_efficientnet_directory_is_an_image_backbone(tmp_path: Path) -> None:
    backbone = tiny_efficientnet(tmp_path / "tiny")
    ref = resolve_backbone(str(backbone), allowed_dirs=[tmp_path], allow_hub=False)
    assert (ref.modality, ref.path) == ("image", str(backbone.resolve()))


def test_unknown_model_type_is_refused_with_both_kinds_named(tmp_path: Path) -> None:
    (tmp_path / "resnet").mkdir()
    (tmp_path / "resnet" / "config.json").write_text(json.dumps({"model_type": "resnet"}))
    with pytest.raises(InvalidArgument, match="neither a text model.*nor an image model"):
        resolve_backbone(str(tmp_path / "resnet"), allowed_dirs=[tmp_path], allow_hub=False)
