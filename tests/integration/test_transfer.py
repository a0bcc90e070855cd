"""Transfer learning through the real client and server: baselines in the same job, fit diagnostics, Evaluate with
compare, cancelling a job during a baseline, and strategy combinations the server refuses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import QUICK, TEST_COUNTS
from tuneserve_client import Client, InvalidArgument, JobEvent, JobState, ModelVersionState, NotFound

READY = ModelVersionState.MODEL_VERSION_STATE_READY
FAILED = ModelVersionState.MODEL_VERSION_STATE_FAILED
# NOTE: three worker runs in one job; two evaluations each are enough for a learning curve.
BUDGET = {**QUICK, "max_steps": 16}


def test_baselines_are_trained_registered_and_compared(
    client: Client, tiny_bert: Path, train_file: Path, test_file: Path
) -> None:
    train, test = client.upload_dataset(train_file), client.upload_dataset(test_file)
    job = client.fine_tune(train.id, backbone=str(tiny_bert), model_name="topics", hyperparameters=BUDGET,
                           baselines=["scratch", "frozen"])
    events: list[JobEvent] = []
    done = client.wait_for_job(job.id, on_event=events.append, timeout=300)
    assert done.state == JobState.JOB_STATE_SUCCEEDED, done.error

    # the job result: the fine-tune's own figures, its learning curve and fit, and one entry per baseline
    result = done.result
    assert [b.kind for b in result.baselines] == ["frozen", "scratch"]
    assert [p.step for p in result.learning_curve] == [8, 16]
    assert result.fit.verdict in ("good_fit", "overfitting", "underfitting") and "train macro F1" in result.fit.rule
    for baseline in result.baselines:
        assert set(baseline.validation_metrics) >= {"macro_f1", "accuracy", "loss"} and baseline.train_seconds > 0
    # one sentence per baseline, scratch first, tested on how many of the same validation rows each got right (the
    # rule of tuneserve.core.evaluation.verdict, as Evaluate's below)
    verdict = result.transfer_verdict
    assert verdict.startswith(("transfer ", "whether transfer helped"))
    assert verdict.index(f"the scratch baseline {result.baselines[1].model_id} (validation macro F1 ") < verdict.index(
        f"the frozen baseline {result.baselines[0].model_id} (validation macro F1 "
    )
    assert f"vs {result.baselines[1].validation_metrics['macro_f1']:.4f}, " in verdict
    assert verdict.count(f"of the same {result.validation_examples} rows; McNemar p ") == 2

    # events say which run is in progress
    messages = [e.message for e in events]
    for kind in ("frozen", "scratch"):
        runs = [m for m in messages if m.startswith(f"[baseline {kind}] ")]
        assert runs[0].startswith(f"[baseline {kind}] training") and any("exported ONNX" in m for m in runs)
    assert messages.index(next(m for m in messages if m.startswith("[baseline frozen]"))) > next(
        i for i, e in enumerate(events) if e.HasField("export")
    )

    # three models, each marked with what it is, all READY and servable
    models = {m.kind: m for m in client.list_models().models}
    assert set(models) == {"finetuned", "frozen", "scratch"}
    assert models["finetuned"].id == done.model_id
    for kind, model in models.items():
        assert model.source_job_id == job.id and model.versions[0].state == READY, kind
    assert models["frozen"].id == result.baselines[0].model_id and models["scratch"].id == result.baselines[1].model_id
    assert client.predict(models["scratch"].id, ["a late goal won the cup"]).predictions[0].label

    # Evaluate side by side: deltas and McNemar's test on the paired predictions
    response = client.evaluate(done.model_id, test.id, compare=[models["frozen"].id, (models["scratch"].id, 1)])
    assert response.report.model_id == done.model_id
    assert [r.model_id for r in response.compared] == [models["frozen"].id, models["scratch"].id]
    for other, comparison in zip(response.compared, response.comparisons, strict=True):
        assert other.num_examples == sum(TEST_COUNTS.values())
        deltas = {d.metric: d.delta for d in comparison.deltas}
        assert deltas["macro_f1"] == pytest.approx(response.report.macro_f1 - other.macro_f1)
        assert deltas["accuracy"] == pytest.approx(response.report.accuracy - other.accuracy)
        assert comparison.test == "mcnemar" and 0 < comparison.p_value <= 1
        assert comparison.significant == (comparison.p_value < 0.05)
        # accuracy difference = (b - c) / n, which is what McNemar's discordant pairs count
        n = other.num_examples
        assert deltas["accuracy"] == pytest.approx((comparison.only_first_correct - comparison.only_second_correct) / n)
        question = "transfer" if other.model_id == models["scratch"].id else "fine-tuning the backbone"
        assert comparison.verdict.startswith(question) and f"p={comparison.p_value:.3g}" in comparison.verdict

    with pytest.raises(InvalidArgument, match=r"compare\[0\] is the same version as model_id"):
        client.evaluate(done.model_id, test.id, compare=[done.model_id])
    with pytest.raises(InvalidArgument, match=r"compare\[1\]\.version must be >= 0"):
        client.evaluate(done.model_id, test.id, compare=[models["frozen"].id, (models["scratch"].id, -1)])
    with pytest.raises(NotFound):
        client.evaluate(done.model_id, test.id, compare=["model-missing"])


def test_cancel_during_a_baseline_cancels_the_whole_job(client: Client, tiny_bert: Path, train_file: Path) -> None:
    train = client.upload_dataset(train_file)
    job = client.fine_tune(train.id, backbone=str(tiny_bert), hyperparameters=BUDGET, baselines=["frozen"])
    for event in client.watch_job(job.id):
        if event.message.startswith("[baseline frozen]"):
            break
    client.cancel_job(job.id)
    done = client.wait_for_job(job.id, timeout=60)
    assert done.state == JobState.JOB_STATE_CANCELLED
    # a job is one unit: none of its models became servable
    for model in client.list_models().models:
        assert model.source_job_id == job.id and model.versions[0].state == FAILED, model.kind


@pytest.mark.parametrize(
    ("hyperparameters", "baselines", "message"),
    [
        ({"freeze": "top_k"}, [], "freeze=top_k needs trainable_layers >= 1"),
        ({"freeze": "top_k", "trainable_layers": 3}, [], "the backbone has 2 blocks"),
        ({"trainable_layers": 1}, [], "trainable_layers applies only to freeze=top_k"),
        ({"freeze": "all", "gradual_unfreezing": True}, [], "gradual_unfreezing contradicts freeze=all"),
        ({"freeze": "all", "layer_lr_decay": 0.8}, [], "layer_lr_decay has no effect with freeze=all"),
        ({"freeze": "some"}, [], "freeze must be one of none, all, top_k, not 'some'"),
        ({"lr_scheduler": "step"}, [], "lr_scheduler must be one of linear, cosine, constant"),
        ({"layer_lr_decay": 1.5}, [], r"layer_lr_decay = 1.5 is out of range \(0, 1\]"),
        ({"gradient_accumulation_steps": 0}, [], r"gradient_accumulation_steps = 0 is out of range \[1, 1024\]"),
        ({}, ["frozen", "pretrained"], r"unknown baselines \['pretrained'\]: choose from frozen, scratch"),
        ({}, ["scratch", "scratch"], r"baselines \['scratch'\] are listed more than once"),
        ({"freeze": "all"}, ["frozen"], "freeze=all already trains the head only"),
    ],
)
def test_contradictory_strategies_are_refused(
    client: Client, tiny_bert: Path, train_file: Path, hyperparameters: dict[str, Any], baselines: list[str],
    message: str,
) -> None:
    train = client.upload_dataset(train_file)
    with pytest.raises(InvalidArgument, match=message):
        client.fine_tune(train.id, backbone=str(tiny_bert), hyperparameters=hyperparameters, baselines=baselines)
    assert not client.list_jobs().jobs and not client.list_models().models
