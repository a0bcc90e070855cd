"""FineTune(search=N): N trials of the single-run training (`pipeline.run_training`) over the hyperparameters the
caller left unset, with Optuna; the best trial's artifacts become the model version (nothing is trained again, but
for a refit: then its refit soup is the model).

- **Export once**: a trial trains, tunes its task parameters (calibration, thresholds) and reports its metric, and
  keeps its model, tokenizer and task parameters (`run_training(export=False)`); only the best trial is exported
  (ONNX, parity, variants, metrics.json: `pipeline.export_saved`), once, when the search ends.

- **Sampler**: TPE, seeded with the job's seed (SearchSpec.seed), from its model after max(2, N/3) start-up trials.
  The first trial is the job's own hyperparameters (the `auto` values and the caller's), queued before TPE samples
  anything, so the search starts from what the job would have trained without it, the trials after it have that run
  to beat, and it is the pruner's first reference.
  It stays the served trial unless another beats it by more than the validation noise (`served_trial`).
- **Pruner**: `MedianPruner(n_startup_trials=2, n_warmup_steps=2)`. A trial reports its best-model metric at each
  evaluation (step = the evaluation's number, from 1: trials with other epochs or batch sizes still line up); from
  its second evaluation on it is stopped when it is worse than the median of the earlier trials at the same
  evaluation. The first evaluation is never judged: after one epoch the metric says more about a trial's warm-up and
  schedule length than about how well it will end.
  Median rather than successive halving: a search here has few trials (8 is typical) with few evaluations each, and
  the median rule needs no resource schedule to be tuned to them (successive halving's rungs assume many trials and
  a minimum resource that fits every dataset size).
- **Budget**: no trial starts once the budget is spent (study.optimize's timeout), and the trial running at its end
  is stopped there after one last evaluation, which counts (`_TrialCallback`). Worker time is counted across restarts
  (the study's user attribute "spent_seconds"), not the time the job waited.
- **Refit soup**: with refit "true" the served trial is refit once the trials are over, as the average of as many
  refits, each in its own order of the rows, as the budget they left pays for (`_soup_members`, engines/training/soup.py).
- **Resume**: the study lives in JOB_DIR/search.db (Optuna RDB storage), each trial in JOB_DIR/trials/<n>/. A worker
  started again (server restart, preemption, crash) keeps the finished trials; a trial that was interrupted mid-way
  is marked FAILED in the study (user attribute "interrupted") and run again as a new trial with the same parameters
  that resumes from the interrupted one's last checkpoint; the job result lists only the rerun. Interrupted trials do
  not count towards N.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
from pathlib import Path
from typing import Any

import optuna
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from tuneserve.engines.backbones import num_layers
from tuneserve.engines.training import refit, soup
from tuneserve.engines.training.events import (
    CancelledEvent,
    EventWriter,
    PreemptedEvent,
    PrefixedWriter,
    ResultEvent,
    TrialEvent,
)
from tuneserve.engines.training.pipeline import export_saved, run_training
from tuneserve.engines.training.search_space import own_params, suggest
from tuneserve.engines.training.spec import ARTIFACTS, SearchSpec, StopRequests, TrainingSpec
from tuneserve.tasks import TaskParams, get_task

STUDY_NAME = "search"
_STATES = {
    optuna.trial.TrialState.RUNNING: "TRIAL_STATE_RUNNING",
    optuna.trial.TrialState.COMPLETE: "TRIAL_STATE_COMPLETE",
    optuna.trial.TrialState.PRUNED: "TRIAL_STATE_PRUNED",
    optuna.trial.TrialState.FAIL: "TRIAL_STATE_FAILED",
}


def open_study(spec: TrainingSpec, scratch_dir: Path) -> optuna.Study:
    """The job's study (created on the first run, loaded on the next ones)."""
    metric = spec.best_metric()
    return optuna.create_study(
        study_name=STUDY_NAME,
        storage=f"sqlite:///{scratch_dir / 'search.db'}",
        load_if_exists=True,
        direction="maximize" if get_task(spec.task).greater_is_better(metric) else "minimize",
        # NOTE: Optuna's default of 10 random start-up trials is more than a typical N (8), which made every trial
        # after trial 0 a random draw; a third of N leaves TPE the rest to sample from its model of the earlier ones.
        sampler=optuna.samplers.TPESampler(seed=spec.search.seed, n_startup_trials=max(2, spec.search.trials // 3)),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=2),
    )


class _TrialCallback(TrainerCallback):
    """Reports each evaluation's best-model metric to the trial and stops it when the pruner says so (raising
    optuna.TrialPruned out of the Trainer); stops it after one last evaluation when the search's budget ends."""

    def __init__(self, trial: optuna.Trial, metric: str, deadline: float) -> None:
        self._trial = trial
        self._metric = metric
        self._deadline = deadline
        self._evaluations = 0

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                       **kwargs: Any) -> None:
        # NOTE: a trial resuming an interrupted one's checkpoint goes on counting its evaluations
        self._evaluations = sum(1 for entry in state.log_history if "eval_loss" in entry)

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                    **kwargs: Any) -> None:
        if time.monotonic() >= self._deadline and not control.should_training_stop:
            self._trial.set_user_attr("reason", f"stopped at the search budget after step {state.global_step}")
            control.should_training_stop = True
            control.should_evaluate = control.should_save = True  # NOTE: its last evaluation counts

    def on_evaluate(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                    metrics: dict[str, float] | None = None, **kwargs: Any) -> None:
        value = (metrics or {}).get(f"eval_{self._metric}")
        if value is None or not math.isfinite(value):
            return
        self._evaluations += 1
        self._trial.set_user_attr("steps", state.global_step)
        self._trial.report(float(value), self._evaluations)
        if self._trial.should_prune():
            self._trial.set_user_attr(
                "reason", f"{self._metric} {value:.4f} at evaluation {self._evaluations} (step {state.global_step}) "
                "was worse than the median of the earlier trials there"
            )
            raise optuna.TrialPruned()


class _Stopped(Exception):
    def __init__(self, event: CancelledEvent | PreemptedEvent) -> None:
        super().__init__(event.kind)
        self.event = event


class _TrialFailed(Exception):
    pass


def run_search(
    spec: TrainingSpec, writer: EventWriter, stop: StopRequests, *, scratch_dir: Path
) -> ResultEvent | CancelledEvent | PreemptedEvent | None:
    search, metric = spec.search, spec.best_metric()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = open_study(spec, scratch_dir)
    fixed, layers = set(search.fixed), num_layers(spec.backbone)
    if not study.trials:
        study.enqueue_trial(own_params(spec.hyperparameters, fixed, layers), user_attrs={"own": True})
    _recover(study)
    started = time.monotonic()
    remaining_budget = search.budget_seconds - float(study.user_attrs.get("spent_seconds", 0.0))
    deadline = started + remaining_budget

    def objective(trial: optuna.Trial) -> float:
        directory = scratch_dir / "trials" / str(trial.user_attrs.get("resumes", trial.number))
        # NOTE: no trial refits: only the best one does, once the search is over (_refit_best)
        hp = dataclasses.replace(suggest(trial, spec.hyperparameters, fixed, layers), refit="false")
        writer.write(TrialEvent(number=trial.number, state="TRIAL_STATE_RUNNING", params=_as_text(trial.params),
                                message=f"trial {trial.number} started: {_describe(trial.params)}"
                                        + (" (the job's own hyperparameters)" if trial.user_attrs.get("own") else "")))
        trial_spec = dataclasses.replace(
            spec, hyperparameters=hp, output_dir=str(directory / "output"),
            checkpoint_dir=str(directory / "checkpoints"), search=SearchSpec(),
        )
        try:
            outcome = run_training(trial_spec, PrefixedWriter(writer, f"[trial {trial.number}] "), stop,
                                   scratch_dir=directory, callbacks=[_TrialCallback(trial, metric, deadline)],
                                   export=False)
        except optuna.TrialPruned:
            raise
        except Exception as error:
            trial.set_user_attr("reason", " ".join(f"{type(error).__name__}: {error}".split())[:500])
            raise _TrialFailed() from error
        if isinstance(outcome, CancelledEvent | PreemptedEvent):
            trial.set_user_attr("interrupted", True)
            raise _Stopped(outcome)
        assert isinstance(outcome, ResultEvent), "a search runs on one process"
        (directory / "result.json").write_text(json.dumps(outcome.fields()))
        trial.set_user_attr("steps", outcome.best_step if not outcome.learning_curve else
                            int(outcome.learning_curve[-1]["step"]))
        if trial.user_attrs.get("own"):
            trial.set_user_attr("margin", selection_margin(metric, outcome.best_metric, outcome.validation_examples))
        return outcome.best_metric

    def ended(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        study.set_user_attr("spent_seconds", search.budget_seconds - (deadline - time.monotonic()))
        if trial.user_attrs.get("interrupted"):
            return
        event = _trial_event(study, trial, metric)
        writer.write(dataclasses.replace(event, message=f"trial {trial.number} {_summary(event, metric)}"))
        _keep_best_output(study, scratch_dir)

    try:
        if remaining_budget > 0 and _counted(study) < search.trials:
            study.optimize(objective, n_trials=search.trials - _counted(study), timeout=remaining_budget,
                           catch=(_TrialFailed,), callbacks=[ended])
    except _Stopped as stopped:
        study.set_user_attr("spent_seconds", search.budget_seconds - (deadline - time.monotonic()))
        return stopped.event
    best = served_trial(study)
    if spec.hyperparameters.refit == "true" and best is not None:
        members = _soup_members(study, best, scratch_dir, deadline)
        refitted = _refit_best(spec, best, scratch_dir, writer, stop, fixed, layers, members)
        if isinstance(refitted, CancelledEvent | PreemptedEvent):
            return refitted
    result = _result(study, spec, writer, scratch_dir, metric)
    # NOTE: a cancel that arrives during the export still wins, as in a single run
    return CancelledEvent(step=result.best_step, message="cancelled") if stop.cancel.is_set() else result


def _soup_members(study: optuna.Study, best: optuna.trial.FrozenTrial, scratch_dir: Path, deadline: float) -> int:
    """How many refits the served trial's refit soup averages (engines/training/soup.py): as many as the budget the
    trials left pays for, each costed at the trial's own duration scaled to the training + validation rows, at least 1
    (the plain refit, which runs even when the trials spent the budget), at most soup.MAX_MEMBERS. Decided once and
    kept in the study, so that a worker started again trains the same soup."""
    if "soup_members" in study.user_attrs:
        return int(study.user_attrs["soup_members"])
    fields = json.loads((_trial_dir(scratch_dir, best) / "result.json").read_text())
    rows = (fields["train_examples"] + fields["validation_examples"]) / max(1, fields["train_examples"])
    cost = (best.duration.total_seconds() if best.duration else 0.0) * rows
    left = deadline - time.monotonic()
    members = max(1, min(soup.MAX_MEMBERS, int(left // cost) if cost > 0 else 1))
    study.set_user_attr("soup_members", members)
    return members


def _refit_best(
    spec: TrainingSpec, best: optuna.trial.FrozenTrial, scratch_dir: Path, writer: EventWriter, stop: StopRequests,
    fixed: set[str], layers: int | None, members: int,
) -> ResultEvent | CancelledEvent | PreemptedEvent | None:
    """Refit the best trial (engines/training/refit.py) with its hyperparameters, `members` times averaged
    (engines/training/soup.py): its result.json and task.json stand for the first run's outcome, and the refit model
    replaces its artifacts and result.json (None: an earlier worker refit it already)."""
    directory = _trial_dir(scratch_dir, best)
    fields = json.loads((directory / "result.json").read_text())
    if fields.get("refit"):
        return None
    hp = suggest(optuna.trial.FixedTrial(best.params), spec.hyperparameters, fixed, layers)
    trial_spec = dataclasses.replace(
        spec, hyperparameters=dataclasses.replace(hp, refit="true"), output_dir=str(directory / "output"),
        checkpoint_dir=str(directory / "checkpoints"), search=SearchSpec(),
    )
    refit_dir = refit.directory(Path(trial_spec.checkpoint_dir))
    if refit.load(refit_dir) is None:
        first = refit.FirstRun(ResultEvent(**fields), TaskParams.load(directory / "output"), best.user_attrs["steps"])
        refit.save(refit_dir, first)
    outcome = run_training(trial_spec, PrefixedWriter(writer, f"[trial {best.number}] "), stop,
                           scratch_dir=directory, export=False, refit_members=members)
    if isinstance(outcome, ResultEvent):
        (directory / "result.json").write_text(json.dumps(outcome.fields()))
    return outcome


def _recover(study: optuna.Study) -> None:
    """Trials cut short by the worker's end (killed: still RUNNING; preempted or cancelled: FAILED "interrupted") are
    marked FAILED "interrupted" and queued again with the same parameters, resuming their checkpoint directory."""
    retried = set(study.user_attrs.get("retried", []))
    for trial in study.get_trials(deepcopy=False):
        interrupted = trial.state is optuna.trial.TrialState.RUNNING or (
            trial.state is optuna.trial.TrialState.FAIL and trial.user_attrs.get("interrupted")
        )
        if not interrupted or trial.number in retried:
            continue
        if trial.state is optuna.trial.TrialState.RUNNING:
            storage = study._storage  # NOTE: Optuna has no public call to fail a trial a killed process left RUNNING
            storage.set_trial_user_attr(trial._trial_id, "interrupted", True)
            storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
        again = {"resumes": trial.user_attrs.get("resumes", trial.number),
                 **({"own": True} if trial.user_attrs.get("own") else {})}
        study.enqueue_trial(trial.params, user_attrs=again, skip_if_exists=False)
        retried.add(trial.number)
    study.set_user_attr("retried", sorted(retried))


def _counted(study: optuna.Study) -> int:
    """Trials that count towards N: those that ended on their own (complete, pruned, failed), not interrupted ones."""
    ended = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)
    return sum(1 for t in study.get_trials(deepcopy=False, states=ended) if not t.user_attrs.get("interrupted"))


# Metrics that are shares of the validation rows or behave like one (at most 1, higher is better), for which
# `selection_margin` has a standard error.
_PROPORTION_METRICS = frozenset({"accuracy", "macro_f1", "micro_f1", "samples_f1", "entity_f1"})


def selection_margin(metric: str, value: float, rows: int) -> float:
    """How far a trial must beat the job's own hyperparameters on the validation split to be served instead: one
    standard error of `value` on `rows` rows, sqrt(v (1 - v) / rows), for a proportion-like metric (the
    one-standard-error rule of model selection); 0 for the others (loss, rmse, correlations), where the best wins."""
    if metric not in _PROPORTION_METRICS or rows <= 0 or not 0.0 <= value <= 1.0:
        return 0.0
    return math.sqrt(value * (1.0 - value) / rows)


def served_trial(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    """The trial the job serves: the best complete one, except that the job's own hyperparameters (trial 0) keep
    their place unless another trial beats them by more than `selection_margin`. On a small validation split the
    best of N trials is partly the luckiest: a point of macro F1 on 60 rows is one row, and a trial picked for it
    served worse than the job's own run on held-out rows (bench/RESULTS.md)."""
    try:
        best = study.best_trial
    except ValueError:  # no complete trial yet
        return None
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    own = next((t for t in complete if t.user_attrs.get("own")), None)
    if own is None or own.number == best.number or own.value is None or best.value is None:
        return best
    sign = 1.0 if study.direction is optuna.study.StudyDirection.MAXIMIZE else -1.0
    return best if sign * (best.value - own.value) > float(own.user_attrs.get("margin", 0.0)) else own


def _trial_dir(scratch_dir: Path, trial: optuna.trial.FrozenTrial) -> Path:
    return scratch_dir / "trials" / str(trial.user_attrs.get("resumes", trial.number))


def _keep_best_output(study: optuna.Study, scratch_dir: Path) -> None:
    """Only the best trial so far keeps its artifacts (a pruned or failed trial has none worth keeping)."""
    best = served_trial(study)
    for trial in study.get_trials(deepcopy=False):
        if trial.state is optuna.trial.TrialState.RUNNING or (best is not None and trial.number == best.number):
            continue
        if trial.state is optuna.trial.TrialState.FAIL and trial.user_attrs.get("interrupted"):
            continue  # NOTE: its rerun resumes from this directory
        if trial.state is optuna.trial.TrialState.WAITING:
            continue
        shutil.rmtree(_trial_dir(scratch_dir, trial) / "output", ignore_errors=True)
        shutil.rmtree(_trial_dir(scratch_dir, trial) / "checkpoints", ignore_errors=True)


def _trial_event(study: optuna.Study, trial: optuna.trial.FrozenTrial, metric: str) -> TrialEvent:
    best = served_trial(study)
    values = list(trial.intermediate_values.values())
    value = trial.value if trial.value is not None else (
        (max(values) if study.direction is optuna.study.StudyDirection.MAXIMIZE else min(values)) if values else None
    )
    duration = trial.duration.total_seconds() if trial.duration else 0.0
    return TrialEvent(
        number=trial.number, state=_STATES.get(trial.state, "TRIAL_STATE_UNSPECIFIED"), params=_as_text(trial.params),
        metric=value, duration_seconds=duration, steps=int(trial.user_attrs.get("steps", 0)),
        best=best is not None and best.number == trial.number, reason=str(trial.user_attrs.get("reason", "")),
    )


def _result(
    study: optuna.Study, spec: TrainingSpec, writer: EventWriter, scratch_dir: Path, metric: str
) -> ResultEvent:
    """The best trial's result and artifacts, exported, as the job's, with every trial (interrupted ones left out)."""
    best = served_trial(study)
    trials = [t for t in study.get_trials(deepcopy=False) if not t.user_attrs.get("interrupted")
              and t.state in _STATES and t.state is not optuna.trial.TrialState.RUNNING]
    if best is None:
        reasons = "; ".join(f"trial {t.number}: {t.user_attrs.get('reason', _STATES[t.state])}" for t in trials)
        raise RuntimeError(f"no search trial completed ({reasons or 'the budget ran out before the first'})")
    directory = _trial_dir(scratch_dir, best)
    output_dir = Path(spec.output_dir)
    if not output_dir.exists():  # NOTE: a rerun after the move found it there already
        shutil.move(directory / "output", output_dir)
    metrics_path = output_dir / ARTIFACTS["metrics"]
    if metrics_path.exists():  # NOTE: written last by the export: a rerun after it exports nothing again
        result = ResultEvent(**json.loads(metrics_path.read_text()))
    else:
        result = export_saved(spec, writer, ResultEvent(**json.loads((directory / "result.json").read_text())))
    result.trials = [_trial_event(study, t, metric).fields() for t in trials]
    metrics = json.loads(metrics_path.read_text())
    metrics["trials"] = result.trials
    metrics_path.write_text(json.dumps(metrics, indent=2) + "\n")
    result.message = (f"search: best trial {best.number} of {len(trials)}, {metric} {best.value:.4f} "
                      f"({_describe(best.params)})")
    if result.refit:
        result.message += f"; {refit.served(result)}"
    return result


def _as_text(params: dict[str, Any]) -> dict[str, str]:
    return {name: f"{value:.4g}" if isinstance(value, float) else str(value) for name, value in params.items()}


def _describe(params: dict[str, Any]) -> str:
    return ", ".join(f"{name} {text}" for name, text in _as_text(params).items())


def _summary(event: TrialEvent, metric: str) -> str:
    state = event.state.removeprefix("TRIAL_STATE_").lower()
    value = "" if event.metric is None else f" {metric} {event.metric:.4f}"
    reason = f": {event.reason}" if event.reason else ""
    return f"{state}{value} in {event.duration_seconds:.1f} s{reason}"
