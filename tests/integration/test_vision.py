"""Image classification transfer learning through the real client and server: a zip of class folders fine-tunes a
tiny random-init EfficientNet-Lite with a CNN fine-tuning strategy and both baselines; Predict takes PNG/JPEG bytes
(the fine-tuned model and its baselines), Evaluate scores a held-out upload; and the real packaged EfficientNet-Lite0
fine-tunes a few steps end to end."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from tests.fixtures import IMAGE_LABELS, make_image
from tuneserve_client import Client, JobEvent, JobState, Modality, ModelVersionState

LABELS = sorted(IMAGE_LABELS)
READY = ModelVersionState.MODEL_VERSION_STATE_READY
# NOTE: 3 worker runs in one job (fine-tune + 2 baselines), each 2 epochs of 3 steps on 32x32 inputs.
QUICK_IMAGES = {"epochs": 2, "batch_size": 8, "learning_rate": 3e-3, "head_learning_rate": 1e-2, "refit": "false"}


def zip_of(counts: dict[str, int], *, seed: int, fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for label, count in counts.items():
            for i in range(count):
                archive.writestr(f"{label}/{i:03d}.{fmt.lower()}", make_image(label, seed=seed * 1000 + i, fmt=fmt))
    return out.getvalue()


def test_image_fine_tune_with_strategy_and_baselines(client: Client, tiny_efficientnet: Path) -> None:
    train = client.upload_dataset_bytes(zip_of({label: 10 for label in LABELS}, seed=1), name="shapes.zip")
    test = client.upload_dataset_bytes(zip_of({label: 4 for label in LABELS}, seed=2, fmt="JPEG"), name="held.zip")
    assert train.modality == Modality.MODALITY_IMAGE and sorted(train.labels) == LABELS
    hyperparameters = {
        **QUICK_IMAGES,
        "freeze": "top_k",
        "trainable_layers": 3,
        "gradual_unfreezing": True,
        "layer_lr_decay": 0.8,
        "augment_flip": False,
    }
    job = client.fine_tune(
        train.id,
        backbone=str(tiny_efficientnet),
        model_name="shapes",
        hyperparameters=hyperparameters,
        baselines=["frozen", "scratch"],
    )
    assert job.hyperparameters.augment_flip is False and job.hyperparameters.augment_random_resized_crop is True
    events: list[JobEvent] = []
    done = client.wait_for_job(job.id, on_event=events.append, timeout=600)
    assert done.state == JobState.JOB_STATE_SUCCEEDED, done.error

    # gradual unfreezing over the MBConv stages: the head alone in epoch 0, then the top stage
    unfrozen = [e.message for e in events if "gradual unfreezing" in e.message and not e.message.startswith("[")]
    assert unfrozen == [
        "gradual unfreezing: epoch 0 trains the head only",
        "gradual unfreezing: epoch 1 trains the top 1 of 7 blocks + head",
    ]
    result = done.result
    assert result.parity_max_abs_diff <= 1e-4 and result.fit.verdict
    assert [b.kind for b in result.baselines] == ["frozen", "scratch"] and result.transfer_verdict
    assert dict(result.variant_macro_f1).keys() == {"fp32"}

    # Predict: PNG and JPEG bytes, on the fine-tuned model and on both baselines (image models too)
    images = [make_image(label, seed=500, fmt=fmt) for label, fmt in zip(LABELS, ["PNG", "JPEG", "PNG"], strict=True)]
    models = {m.kind: m for m in client.list_models().models if m.source_job_id == job.id}
    assert set(models) == {"finetuned", "frozen", "scratch"}
    for kind, model in models.items():
        assert model.modality == Modality.MODALITY_IMAGE and model.versions[0].state == READY, kind
        predictions = client.predict(model.id, images=images).predictions
        assert len(predictions) == 3
        for prediction in predictions:
            assert prediction.label in LABELS
            assert abs(sum(s.score for s in prediction.scores) - 1.0) < 1e-4

    # Evaluate on the held-out JPEG upload, side by side with the scratch baseline
    response = client.evaluate(done.model_id, test.id, compare=[models["scratch"].id])
    report = response.report
    assert report.num_examples == 12 and 0.0 <= report.accuracy <= 1.0
    assert sum(sum(row.counts) for row in report.confusion_matrix.rows) == 12
    assert len(response.compared) == 1


@pytest.mark.slow
def test_real_efficientnet_lite0_fine_tunes_and_serves(client: Client) -> None:
    """The packaged ImageNet EfficientNet-Lite0 (224x224) through the whole service, a few steps on 12 images (about
    a minute on 2 idle CPU cores: upload, 2 steps, 1 evaluation, fit diagnosis, ONNX export + parity, warm-up)."""
    train = client.upload_dataset_bytes(zip_of({label: 4 for label in LABELS}, seed=3), name="lite0.zip")
    job = client.fine_tune(
        train.id,
        backbone="efficientnet-lite0",
        hyperparameters={"max_steps": 2, "batch_size": 4, "eval_steps": 2, "validation_fraction": 0.25},
    )
    done = client.wait_for_job(job.id, timeout=300)
    assert done.state == JobState.JOB_STATE_SUCCEEDED, done.error
    assert done.result.parity_max_abs_diff <= 1e-4 and done.result.validation_examples == 3
    model = client.get_model(done.model_id)
    assert model.backbone == "efficientnet-lite0" and model.modality == Modality.MODALITY_IMAGE
    prediction = client.predict(done.model_id, images=[make_image("red_square", seed=1, fmt="JPEG")]).predictions[0]
    assert prediction.label in LABELS
