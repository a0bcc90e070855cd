"""The report's trials section, for a FineTune(search=N) job (`JobResult.trials`): a table of every trial and a picture
of its metric by trial number, pruned trials marked apart and the best one (its checkpoint is the model version)
highlighted. A job without a search has no such section ("")."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from tuneserve_client.cli.report.blocks import image, note, num, section, table
from tuneserve_client.proto.tuneserve.v1.training_pb2 import Job, Trial, TrialState

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# How the picture draws a trial of each end state (FAILED trials have no metric: the table lists them).
_MARKERS = {  # (marker, colour, legend)
    TrialState.TRIAL_STATE_COMPLETE: ("o", "tab:blue", "complete"),
    TrialState.TRIAL_STATE_PRUNED: ("x", "tab:orange", "pruned (its best before the stop)"),
}


def state_name(state: TrialState) -> str:
    return TrialState.Name(state).removeprefix("TRIAL_STATE_").lower()


def has_metric(trial: Trial) -> bool:
    return trial.state in _MARKERS


def trials(job: Job) -> str:
    """The trials section; "" for a job that ran no search."""
    found = list(job.result.trials)
    if not found:
        return ""
    metric = job.result.best_metric_name or "metric"
    best = next((t for t in found if t.best), None)
    counts = ", ".join(f"{sum(1 for t in found if t.state == s)} {state_name(s)}"
                       for s in sorted({t.state for t in found}))  # fmt: skip
    lead = f"{len(found)} trials ({counts})"
    if best is not None:
        lead += (f"; trial {best.number} was the best ({metric} {num(best.metric)}): its checkpoint is the model "
                 "version (the Hyperparameters section shows the job's own, not its sampled ones)")
    rows = [
        [t.number, state_name(t.state), num(t.metric) if has_metric(t) else "-", f"{t.duration_seconds:.1f}", t.steps,
         "best" if t.best else "", ", ".join(f"{k} {v}" for k, v in sorted(t.params.items())), t.reason]
        for t in found
    ]  # fmt: skip
    parts = [note(lead)]
    if any(has_metric(t) for t in found):
        parts.append(image(picture(found, metric), f"validation {metric} by trial"))
    header = ["trial", "state", f"validation {metric}", "seconds", "steps", "best", "parameters", "reason"]
    parts.append(table(header, rows, numeric_from=len(header)))  # NOTE: the text columns would not read right-aligned
    return section("trials", "Search trials", *parts)


def picture(found: Sequence[Trial], metric: str) -> Figure:
    """Each trial's validation metric by its number: complete and pruned trials marked apart, the best one starred."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(min(max(6, 0.5 * len(found)), 24), 3.6), layout="constrained")
    axes = figure.subplots(1, 1)
    for state, (marker, colour, legend) in _MARKERS.items():
        shown = [t for t in found if t.state == state]
        if shown:
            axes.scatter([t.number for t in shown], [t.metric for t in shown], s=40, marker=marker, color=colour,
                         label=legend)
    for t in found:
        if t.best:
            axes.scatter([t.number], [t.metric], s=220, marker="*", color="gold", edgecolors="black", zorder=3,
                         label=f"best: trial {t.number}")
    axes.set_xticks([t.number for t in found])
    axes.set(xlabel="trial", ylabel=f"validation {metric}", title=f"validation {metric} by trial")
    axes.legend(fontsize="small")
    axes.grid(alpha=0.3)
    return figure
