"""Refit soup: a search's served model when it refits (engines/training/search.py). The refit (refit.py) trains K times
("members"), each on the same training and validation rows, with the same hyperparameters, seed, starting weights and
step count, but its own order of the rows (TrainingArguments.data_seed = seed + k for member k; member 1 is the plain
refit); the members' weights are averaged, tensor by tensor, into the one model that is served: a uniform model soup
(Wortsman et al., 2022, "Model soups"), at one model's cost in Predict.

- **Why**: on a small training set the order the rows come in moves the held-out score by several points: four orders
  of the same digits run scored held-out macro F1 0.760 to 0.811, more than a search on 60 validation rows can tell
  its trials apart by. Models fine-tuned from the same weights with the same recipe stay in one basin of the loss, so
  their average keeps what they share and loses what each order added by chance: it scored 0.807 there, like the
  ensemble of the four (bench/RESULTS.md). A search spends the budget its trials left on these members.
- **How many**: as many as the search's remaining budget pays for, at most MAX_MEMBERS (4: in the measurement above
  the third member added what a fourth did not); 1 is the plain refit.
- **Check**: averaging models from different basins gives a model that fits nothing. The soup is served only if its
  fit metric (the task's `fit_metric`) on a sample of the rows the members trained on is at most TOLERANCE below the
  worst member's; otherwise the first member (the plain refit) is, and the result's message says why.
- **Resume**: each finished member's weights are saved in the refit directory (member-<k>.pt, by rename); a worker
  started again (a server restart, a preemption) trains only the members missing, each from its own newest
  checkpoint (member 1's under the refit directory as a plain refit's, member k's under member-<k>/).
"""

from __future__ import annotations

import gc
import os
from pathlib import Path
from typing import Any

import torch

from tuneserve.engines.training import refit
from tuneserve.engines.training.data import targets
from tuneserve.engines.training.diagnostics import train_sample
from tuneserve.engines.training.events import CancelledEvent, EventWriter, PreemptedEvent, RefitEvent
from tuneserve.engines.training.head import TransferClassifier
from tuneserve.engines.training.spec import StopRequests, TrainingSpec
from tuneserve.engines.training.trainer import DeviceChoice, model_logits

MAX_MEMBERS = 4
TOLERANCE = 0.02


def retrain(
    spec: TrainingSpec, prepared: Any, first: refit.FirstRun, writer: EventWriter, stop: StopRequests, *,
    device: DeviceChoice, path: Path, members: int,
) -> refit.Refitted | CancelledEvent | PreemptedEvent:
    """refit.retrain `members` times (at most MAX_MEMBERS), each member in its own order of the rows, and leave their
    average in prepared.model (or the first member's weights, when the average fails the check); `prepared` is a
    text_pipeline.PreparedText or vision_pipeline.PreparedImages with a fresh model."""
    members = max(1, min(members, MAX_MEMBERS))
    if members == 1:
        return refit.retrain(spec, prepared, first, writer, stop, device=device, path=path)
    rows = [*prepared.splits.train, *prepared.splits.validation]
    sample = train_sample(rows, spec.hyperparameters.seed)
    encoded = prepared.encode(sample)
    paths = [_weights_path(path, member) for member in range(members)]
    for member, saved in enumerate(paths):
        if saved.is_file():  # NOTE: trained by an earlier worker
            continue
        model = prepared if member == 0 else prepared.with_fresh_model(spec, rows)
        outcome = refit.retrain(spec, model, first, writer, stop, device=device,
                                path=path if member == 0 else path / f"member-{member + 1}", member=member)
        if not isinstance(outcome, refit.Refitted):
            return outcome
        _save(model.model, saved, fit=_fit(spec, prepared, model.model, sample, encoded, device, first),
              seconds=outcome.seconds, steps=outcome.steps)
        del model
        gc.collect()
    figures = _average(prepared.model, paths)
    scores = [float(f["fit"]) for f in figures]
    seconds, steps = sum(float(f["seconds"]) for f in figures), int(figures[0]["steps"])
    soup_fit = _fit(spec, prepared, prepared.model, sample, encoded, device, first)
    metric = prepared.task.fit_metric
    if soup_fit < min(scores) - TOLERANCE:
        prepared.model.load_state_dict(torch.load(paths[0], map_location="cpu", weights_only=True)["weights"])
        writer.write(RefitEvent(
            steps=steps, examples=len(rows), best_step=first.result.best_step,
            message=f"refit soup not served: the average of {members} refits fits {metric} {soup_fit:.4f} on "
            f"{len(sample)} of the rows they trained on, against {min(scores):.4f} for the worst of them (more than "
            f"{TOLERANCE} below); the first refit is served",
        ))
        return refit.Refitted(steps=steps, examples=len(rows), seconds=seconds, members=1)
    writer.write(RefitEvent(
        steps=steps, examples=len(rows), best_step=first.result.best_step,
        message=f"refit soup: {members} refits averaged, each in its own order of the rows; {metric} on {len(sample)} "
        f"of those rows {soup_fit:.4f} (members {', '.join(f'{s:.4f}' for s in scores)})",
    ))
    return refit.Refitted(steps=steps, examples=len(rows), seconds=seconds, members=members)


def _weights_path(path: Path, member: int) -> Path:
    return path / f"member-{member + 1}.pt"


def _save(model: TransferClassifier, saved: Path, **figures: float) -> None:
    """A finished member: its weights (on the CPU) and figures, written whole (by rename)."""
    weights = {name: tensor.detach().cpu().clone() for name, tensor in model.state_dict().items()}
    partial = saved.with_name(f"{saved.name}.partial")
    torch.save({"weights": weights, **figures}, partial)
    os.replace(partial, saved)


def _average(model: TransferClassifier, paths: list[Path]) -> list[dict[str, Any]]:
    """Load into `model` the mean of the members' floating-point tensors (the first member's integer buffers, such as
    BatchNorm's batch counts, as they are); return each member's figures (each file is read once)."""
    total: dict[str, torch.Tensor] = {}
    figures: list[dict[str, Any]] = []
    for path in paths:
        record = torch.load(path, map_location="cpu", weights_only=True)
        weights = record.pop("weights")
        figures.append(record)
        for name, tensor in weights.items():
            if not tensor.is_floating_point():
                total.setdefault(name, tensor)
            elif name in total:
                total[name] += tensor.double()
            else:
                total[name] = tensor.double()
        del weights
    reference = model.state_dict()
    model.load_state_dict({
        name: (tensor / len(paths)).to(reference[name].dtype) if tensor.is_floating_point() else tensor
        for name, tensor in total.items()
    })
    return figures


def _fit(
    spec: TrainingSpec, prepared: Any, model: TransferClassifier, sample: list[Any], encoded: Any,
    device: DeviceChoice, first: refit.FirstRun,
) -> float:
    """The task's fit metric of `model` on `sample` (rows it trained on; `encoded`: them as the model's inputs),
    decoded with the first run's parameters."""
    task = prepared.task
    logits = model_logits(model, prepared, spec.hyperparameters, spec.labels, first.params, encoded, device)
    outputs = task.outputs(logits, first.params)
    return float(task.metrics(outputs, targets(sample), list(spec.labels), first.params)[task.fit_metric])
