"""The feature worker's image features: BatchNorm statistics a random-init checkpoint never had are estimated on the
sample (evaluation-mode BatchNorm with torch's initial statistics is the identity, and the random network's
features then shrink towards zero and amount to a random projection of the pixels), while a checkpoint's own
statistics are used as they are."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.fixtures import IMAGE_LABELS, TINY_EFFICIENTNET, tiny_efficientnet, write_image_dataset
from tuneserve.engines.recommend.worker import FeatureSpec, image_features, score
from tuneserve.engines.training.batchnorm import estimate_missing_statistics
from tuneserve.engines.training.spec import BackboneRef
from tuneserve.engines.training.vision import build_efficientnet, load_backbone, preprocessing_for
from tuneserve.engines.training.vision_data import ImageDataset, ImageExample


def _batch_norms(model: torch.nn.Module) -> list[torch.nn.BatchNorm2d]:
    return [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]


def _random_model(seed: int = 0) -> torch.nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return build_efficientnet(TINY_EFFICIENTNET).eval()


def _pixels(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def test_statistics_a_random_init_network_lacks_come_from_the_sample() -> None:
    model = _random_model()
    pixels = _pixels(12)

    filled = estimate_missing_statistics(model, [pixels[:6], pixels[6:]])

    layers = _batch_norms(model)
    assert filled == len(layers) > 0
    # the stem's BatchNorm sees the stem convolution's output: its running mean is that output's channel mean
    with torch.no_grad():
        stem = model._conv_stem(pixels)
    assert torch.allclose(layers[0].running_mean, stem.mean(dim=(0, 2, 3)), atol=1e-5)
    assert all(m.running_var.min() > 0 and not torch.all(m.running_var == 1) for m in layers)
    # the modes and momenta are put back: evaluation mode, the package's momentum
    assert not any(m.training for m in model.modules())
    assert all(m.momentum == pytest.approx(0.01) for m in layers)


def test_a_checkpoints_own_statistics_are_left_alone() -> None:
    model = _random_model()
    layers = _batch_norms(model)
    for i, layer in enumerate(layers[1:]):  # all but the first have statistics, as a trained network's do
        layer.running_mean.fill_(0.1 * (i + 1))
        layer.running_var.fill_(2.0 + i)
    before = {name: b.clone() for name, b in model.named_buffers()}

    filled = estimate_missing_statistics(model, [_pixels(8)])

    assert filled == 1
    after = dict(model.named_buffers())
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    assert changed and all(name.startswith("_bn0.") for name in changed)
    assert estimate_missing_statistics(model, [_pixels(8)]) == 0


def _absolute_rows(tmp_path: Path) -> tuple[Path, list[Path]]:
    """A stored shapes dataset's rows with absolute image paths, as the recommender hands them to the worker."""
    rows = write_image_dataset(tmp_path / "data", {label: 6 for label in IMAGE_LABELS})
    absolute = rows.parent / "absolute.jsonl"
    absolute.write_text(rows.read_text().replace('"images/', f'"{rows.parent}/images/'))
    return absolute, [Path(json.loads(line)["image"]) for line in absolute.read_text().splitlines()]


def test_random_init_image_features_are_not_vanishingly_small(tmp_path: Path) -> None:
    """The defect this guards against: with the initial statistics the features of this 10-block network came out
    orders of magnitude smaller than with estimated ones, a degenerate random projection of the pixels that LogME
    and the probe scored as if it were a representation (on digits, above ImageNet EfficientNet-Lite features)."""
    backbone = tiny_efficientnet(tmp_path / "tiny")
    rows, paths = _absolute_rows(tmp_path)
    spec = FeatureSpec(
        backbone=BackboneRef(name="tiny", path=str(backbone), modality="image"), rows_path=str(rows),
        labels=list(IMAGE_LABELS), batch_size=8,
    )

    features = image_features(spec, paths, "cpu")

    model, _ = load_backbone(str(backbone), pretrained=True)
    data = ImageDataset([ImageExample(p, spec.labels[0]) for p in paths], spec.labels, preprocessing_for(TINY_EFFICIENTNET))
    pixels = torch.stack([data[i]["pixel_values"] for i in range(len(data))])  # type: ignore[misc]
    with torch.inference_mode():  # the same images through the checkpoint's initial statistics
        unestimated = model.eval().extract_features(pixels).mean(dim=(2, 3)).double().numpy()
    assert features.shape == (18, unestimated.shape[1]) and np.isfinite(features).all()
    assert np.abs(features).mean() > 0.05
    assert np.abs(features).mean() > 100 * np.abs(unestimated).mean()


def test_score_runs_the_whole_image_path(tmp_path: Path) -> None:
    backbone = tiny_efficientnet(tmp_path / "tiny")
    rows, _ = _absolute_rows(tmp_path)
    spec = FeatureSpec(
        backbone=BackboneRef(name="tiny", path=str(backbone), modality="image"), rows_path=str(rows),
        labels=list(IMAGE_LABELS), device="cpu",
    )

    result = score(spec)

    assert (result["examples"], result["device"]) == (18, "cpu") and result["feature_dim"] > 0
    assert np.isfinite(result["logme"]) and 0 <= result["probe_accuracy"] <= 1
