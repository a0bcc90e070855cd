"""Image fine-tuning in the training worker (a subprocess, as the job manager runs it) on a tiny random-init
EfficientNet-Lite: events, artifacts, ONNX parity, and the checkpoint reloading to the same logits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch

from tests.engines.training.test_worker import WorkerRun, run_worker
from tests.fixtures import IMAGE_LABELS, make_image, tiny_efficientnet, write_image_dataset
from tuneserve.engines.imaging import Preprocessing, decode_image, preprocess
from tuneserve.engines.training.spec import ARTIFACTS, BackboneRef, Hyperparameters, TrainingSpec
from tuneserve.engines.training.vision import ImageClassifier

LABELS = sorted(IMAGE_LABELS)
COUNTS = {"red_square": 16, "green_circle": 12, "blue_bar": 8}


def write_image_spec(job_dir: Path, backbone: Path, **hyperparameters: Any) -> Path:
    defaults: dict[str, Any] = {"epochs": 2, "batch_size": 8, "learning_rate": 3e-3, "head_learning_rate": 1e-2}
    spec = TrainingSpec(
        job_id=job_dir.name,
        backbone=BackboneRef(name=backbone.name, path=str(backbone), modality="image"),
        train_path=str(write_image_dataset(job_dir / "dataset", COUNTS, seed=3)),
        labels=LABELS,
        output_dir=str(job_dir / "output"),
        hyperparameters=Hyperparameters(**(defaults | hyperparameters)),
        device="cpu",
        threads=2,
    )
    spec.save(job_dir / "spec.json")
    return job_dir / "spec.json"


@pytest.fixture(scope="module")
def backbone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_efficientnet(tmp_path_factory.mktemp("backbone") / "tiny-efficientnet")


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory, backbone: Path) -> WorkerRun:
    return run_worker(write_image_spec(tmp_path_factory.mktemp("job"), backbone), timeout=300)


def test_image_job_reports_like_a_text_job(finished: WorkerRun) -> None:
    assert finished.returncode == 0, finished.stderr
    assert finished.kinds[-2:] == ["export", "result"]
    assert finished.kinds.count("evaluation") == 2
    export = finished.last("export")
    assert export["format"] == "onnx" and export["parity_max_abs_diff"] <= 1e-4
    result = finished.last("result")
    assert result["train_examples"] + result["validation_examples"] == sum(COUNTS.values())
    assert result["fit"]["verdict"] in {"good_fit", "overfitting", "underfitting"}
    assert set(result["variant_macro_f1"]) == {"fp32"}


def test_image_artifacts_follow_the_contract(finished: WorkerRun) -> None:
    out = finished.output_dir
    prep = json.loads((out / ARTIFACTS["preprocessing"]).read_text())
    assert prep["modality"] == "image" and prep["input_name"] == "pixel_values"
    assert Preprocessing.from_json(prep) == Preprocessing.for_input_size(32)
    assert json.loads((out / ARTIFACTS["labels"]).read_text()) == {"labels": LABELS}
    session = ort.InferenceSession(str(out / ARTIFACTS["onnx"]), providers=["CPUExecutionProvider"])
    (feed,) = session.get_inputs()
    assert (feed.name, feed.type, feed.shape[1:]) == ("pixel_values", "tensor(float)", [3, 32, 32])
    assert not isinstance(feed.shape[0], int)  # dynamic batch
    assert [o.name for o in session.get_outputs()] == ["logits"]
    assert not list(out.glob("*.onnx.data"))


def test_checkpoint_reloads_to_the_onnx_logits(finished: WorkerRun) -> None:
    out = finished.output_dir
    model = ImageClassifier.from_checkpoint(out / ARTIFACTS["checkpoint"])
    prep = Preprocessing.for_input_size(32)
    pixels = np.stack(
        [preprocess(decode_image(make_image(label, seed=99, fmt="JPEG"), max_pixels=10**6), prep) for label in LABELS]
    )
    session = ort.InferenceSession(str(out / ARTIFACTS["onnx"]), providers=["CPUExecutionProvider"])
    onnx_logits = session.run(["logits"], {"pixel_values": pixels})[0]
    with torch.no_grad():
        torch_logits = model(torch.from_numpy(pixels)).logits.numpy()
    assert onnx_logits.shape == (3, 3)
    assert np.abs(onnx_logits - torch_logits).max() <= 1e-4


def test_unreadable_image_fails_the_job_naming_the_file(tmp_path: Path, backbone: Path) -> None:
    spec_path = write_image_spec(tmp_path, backbone, max_steps=2)
    rows = (tmp_path / "dataset" / "data.jsonl").read_text().splitlines()
    broken = json.loads(rows[0])["image"]
    (tmp_path / "dataset" / broken).write_bytes(b"not an image")
    run = run_worker(spec_path, timeout=300)
    assert run.returncode == 1
    reason = run.last("failed")["reason"]
    assert Path(broken).name in reason and "not a supported image" in reason


def test_batchnorm_statistics_are_kept_only_when_the_checkpoint_has_some(tmp_path: Path, backbone: Path) -> None:
    """A local directory of random weights has never-estimated statistics (mean 0, variance 1): kept fixed, BatchNorm
    would stay the identity and the model learn nothing, so they train; estimated ones (ImageNet's) stay fixed."""
    from tests.fixtures import pretrained_tiny_efficientnet

    random_init = ImageClassifier.from_backbone(str(backbone), len(IMAGE_LABELS), dropout=0.0)
    assert not random_init.pretrained_statistics
    pretrained = pretrained_tiny_efficientnet(tmp_path / "pretrained", steps=2)
    assert ImageClassifier.from_backbone(str(pretrained), len(IMAGE_LABELS), dropout=0.0).pretrained_statistics
    random_init.train()
    assert all(m.training for m in random_init.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d))
