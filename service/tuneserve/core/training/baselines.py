"""Baselines a fine-tuning job also trains, under the same budget, and the verdict on whether transfer helped.

- frozen:  the same pretrained backbone, frozen; only the new head trains (a linear probe).
- scratch: the same architecture from random weights (same tokenizer and head); everything trains.

Each runs the job's own spec after the fine-tune, changing only what defines it: same data and validation split,
epochs / max_steps, batch size, learning rates, schedule, seed and early stopping. The strategy options of the
fine-tune (top_k, layer-wise decay, gradual unfreezing) are dropped: they concern pretrained layers, and a baseline is
never refit on train+validation (hyperparameters.refit: the verdict reads only validation figures). Each baseline is a
model of its own (kind frozen | scratch, source_job_id = the job), exported and servable like any other, and becomes
READY together with the fine-tuned model when the whole job succeeds.

The verdict compares the runs on the task's metric (`Task.default_metric`: macro F1, micro F1, RMSE) and follows the
one rule of `tuneserve.core.evaluation.verdict` (McNemar, p < 0.05), the same as Evaluate's comparison. The job keeps
no per-row predictions, only how many of the same validation rows each run got wholly right (the task's
`correctness_metric` x validation_examples: accuracy for single-label, subset accuracy for multi-label, where McNemar
then tests subset correctness; every run scores the job's own validation split), which bound the test. Regression has
no such count: its verdict gives the figures and says that no test was possible; Evaluate with compare tests the
models' paired absolute errors (Wilcoxon) on rows of your choice.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tuneserve.core.evaluation import verdict as rule
from tuneserve.core.registry import ModelRegistry
from tuneserve.engines.training.spec import BackboneRef, ExportSpec, Hyperparameters, SearchSpec, TrainingSpec
from tuneserve.errors import InvalidArgument
from tuneserve.store import ArtifactStore
from tuneserve.tasks import Task
from tuneserve.types import DatasetRecord, ModelRecord

KINDS = ("frozen", "scratch")  # also the order they run in: the cheap probe first
DESCRIPTIONS = {
    "frozen": "training the head on the frozen backbone (linear probe), same budget",
    "scratch": "training the same architecture from random weights, same budget",
}


def validate(names: Sequence[str], hp: Hyperparameters) -> list[str]:
    """The requested baselines in run order; INVALID_ARGUMENT for unknown, repeated or pointless ones."""
    unknown = sorted(set(names) - set(KINDS))
    if unknown:
        raise InvalidArgument(f"unknown baselines {unknown}: choose from {', '.join(KINDS)}")
    repeated = sorted({name for name in names if list(names).count(name) > 1})
    if repeated:
        raise InvalidArgument(f"baselines {repeated} are listed more than once")
    if "frozen" in names and hp.freeze == "all":
        raise InvalidArgument(
            "baseline 'frozen' would repeat this job: freeze=all already trains the head only; drop the baseline "
            "or fine-tune more of the backbone (freeze=none or top_k)"
        )
    return [kind for kind in KINDS if kind in names]


async def register(
    registry: ModelRegistry, kinds: list[str], *, name: str, backbone: BackboneRef, train: DatasetRecord, job_id: str,
) -> None:
    """A model with one TRAINING version for each baseline (READY once the job succeeds), of the job's modality, task
    and input shape."""
    for kind in kinds:
        model = await registry.create(
            f"{name} ({kind} baseline)", backbone.name, train.labels, backbone.modality, kind=kind,
            source_job_id=job_id, task=train.task, text_pairs=train.text_pairs,
        )
        await registry.add_version(model, job_id)


async def of_job(registry: ModelRegistry, job_id: str) -> list[ModelRecord]:
    """The job's baseline models, in run order."""
    models = [model for model in await registry.from_job(job_id) if model.kind in KINDS]
    return sorted(models, key=lambda model: KINDS.index(model.kind))


def output_dir(job_dir: Path, kind: str) -> Path:
    return job_dir / f"output-{kind}"


def write_spec(job_dir: Path, kind: str) -> Path:
    """Derive the baseline's spec from the job's own spec.json and write it beside it."""
    spec = TrainingSpec.load(job_dir / "spec.json")
    hp = dataclasses.replace(
        spec.hyperparameters,
        freeze="all" if kind == "frozen" else "none",
        trainable_layers=0,
        layer_lr_decay=1.0,
        gradual_unfreezing=False,
        # NOTE: a baseline is never refit: the verdict reads validation figures, which a refit leaves as they were,
        # so it would double the baseline's cost for nothing the job reports.
        refit="false",
    )
    baseline = dataclasses.replace(
        spec,
        hyperparameters=hp,
        output_dir=str(output_dir(job_dir, kind)),
        checkpoint_dir=str(job_dir / f"checkpoints-{kind}"),
        init="scratch" if kind == "scratch" else spec.init,
        search=SearchSpec(),  # NOTE: a baseline is one run with the job's hyperparameters, never a search
        # NOTE: a baseline is a yardstick: the fp32 graph serves it; no int8 variant to build and judge.
        export=ExportSpec(),
    )
    path = job_dir / f"spec.{kind}.json"
    baseline.save(path)
    return path


def entry(kind: str, model_id: str, result: dict[str, Any]) -> dict[str, Any]:
    """A tuneserve.v1.BaselineResult from the baseline worker's result."""
    return {
        "kind": kind,
        "model_id": model_id,
        "validation_metrics": dict(result.get("validation_metrics", {})),
        "train_seconds": float(result.get("train_seconds", 0.0)),
    }


def verdict(fine_tuned: dict[str, Any], entries: list[dict[str, Any]], task: Task) -> str:
    """Whether transfer helped, on the validation rows: the fine-tune (its worker result) against scratch, then against
    the frozen probe, on the task's metric; one sentence each (`tuneserve.core.evaluation.verdict`), joined by "; "."""
    mine = dict(fine_tuned.get("validation_metrics", {}))
    rows = int(fine_tuned.get("validation_examples", 0))
    metric = task.default_metric
    found = {e["kind"]: e for e in entries}
    parts = []
    for kind in ("scratch", "frozen"):
        if kind not in found:
            continue
        theirs = dict(found[kind]["validation_metrics"])
        first = rule.Side(rule.name("finetuned"), float(mine.get(metric, 0.0)))
        second = rule.Side(rule.name(kind, str(found[kind].get("model_id", ""))), float(theirs.get(metric, 0.0)))
        if task.greater_is_better(metric):
            judged = rule.judge(
                first, second, _evidence(rows, mine, theirs, task.correctness_metric), asked=rule.QUESTIONS[kind],
                metric=f"validation {_NAMES.get(metric, metric)}",
            )
            parts.append(judged.text)
        else:
            parts.append(_untested(first, second, rule.QUESTIONS[kind], metric))
    return "; ".join(parts)


async def publish(
    registry: ModelRegistry, artifacts: ArtifactStore, job_dir: Path, models: list[ModelRecord], result: dict[str, Any]
) -> None:
    """Move each baseline's artifacts into the registry and mark its version READY (raises OSError). Idempotent: a
    baseline already moved into place is only marked READY."""
    metrics = {e["model_id"]: e["validation_metrics"] for e in result.get("baselines", [])}
    for model in models:
        version = model.versions[-1].version
        await asyncio.to_thread(
            artifacts.publish_dir, output_dir(job_dir, model.kind), artifacts.version_dir(model.id, version)
        )
        await registry.mark_ready(model.id, version, {k: float(v) for k, v in metrics.get(model.id, {}).items()})


async def discard(registry: ModelRegistry, artifacts: ArtifactStore, job_dir: Path, models: list[ModelRecord]) -> None:
    """The job did not succeed: no baseline becomes servable (its files go, even those already moved into place)."""
    for model in models:
        version = model.versions[-1].version
        artifacts.remove(output_dir(job_dir, model.kind))
        artifacts.remove(artifacts.version_dir(model.id, version))
        await registry.mark_failed(model.id, version)


def _evidence(rows: int, mine: dict[str, Any], theirs: dict[str, Any], correctness: str | None) -> rule.Evidence:
    """How many of the validation rows each run got wholly right, from its `correctness` metric (accuracy, subset
    accuracy)."""
    if correctness is None:
        return rule.NoCounts("the task gives no count of rows right")
    if correctness not in mine or correctness not in theirs:
        return rule.NoCounts(f"the results do not give both runs' validation {correctness}")
    if rows <= 0:
        return rule.NoCounts("the result does not give the number of validation rows")
    first, second = rule.right_count(rows, float(mine[correctness])), rule.right_count(rows, float(theirs[correctness]))
    if first is None or second is None:
        return rule.NoCounts(f"the validation {correctness} figures are not counts of the same {rows} rows")
    return rule.Counts(rows, first, second)


def _untested(first: rule.Side, second: rule.Side, asked: str, metric: str) -> str:
    """The sentence for a lower-is-better metric (an error in the target's units), which no count of rows right goes
    with: the figures and the relative difference, undetermined (the verdict module's wording)."""
    change = (first.macro_f1 - second.macro_f1) / second.macro_f1 if second.macro_f1 > 0 else 0.0
    figures = (
        f"validation {_NAMES.get(metric, metric)} {first.macro_f1:.4g} vs {second.macro_f1:.4g}, "
        f"{abs(change):.1%} {'lower' if change <= 0 else 'higher'}"
    )
    return (
        f"whether {asked} helped is undetermined: {first.name} vs {second.name} ({figures}; no significance test "
        "possible: the job keeps no per-row errors; Evaluate with compare tests the models' paired absolute errors "
        "(Wilcoxon))"
    )


_NAMES = rule.METRIC_WORDS
