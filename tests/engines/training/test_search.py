"""FineTune(search=N) in the worker: Optuna trials of the single-run training, pruned, resumable, the best trial's
artifacts as the version."""

from __future__ import annotations

import dataclasses
import json
import math
import signal
import subprocess
from pathlib import Path

import optuna
import pytest

from tests.engines.training.test_worker import WORKER, run_worker, write_spec
from tests.fixtures import build_tiny_bert
from tuneserve.engines.training.search import STUDY_NAME, open_study, selection_margin, served_trial
from tuneserve.engines.training.search_space import own_params, suggest
from tuneserve.engines.training.spec import ARTIFACTS, Hyperparameters, SearchSpec, TrainingSpec

# NOTE: the caller's values stay fixed; only the learning rates are searched (and enqueued below)
FIXED = {"epochs": 3, "batch_size": 8, "head_dropout": 0.1, "weight_decay": 0.0, "warmup_ratio": 0.0,
         "freeze": "none", "layer_lr_decay": 1.0, "metric_for_best_model": "loss"}
GOOD = {"learning_rate": 1e-3, "head_learning_rate": 1e-2}
BAD = {"learning_rate": 1e-9, "head_learning_rate": 1e-9}
# NOTE: 22 train rows (3 steps an epoch, an evaluation after each), 6 validation rows: a trial is a few seconds
FEW = {"sport": 12, "business": 8, "tech": 8}


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("backbone") / "tiny-bert")


def search_spec(job_dir: Path, backbone: Path, trials: int, budget: float = 600.0) -> Path:
    path = write_spec(job_dir, backbone, train_counts=FEW, **FIXED)
    spec = TrainingSpec.load(path)
    spec.search = SearchSpec(trials=trials, budget_seconds=budget, seed=0, fixed=sorted(FIXED))
    spec.save(path)
    return path


def enqueue(path: Path, *params: dict[str, float]) -> None:
    spec = TrainingSpec.load(path)
    study = open_study(spec, path.parent)
    for p in params:
        study.enqueue_trial(p)


def test_a_bad_learning_rate_is_pruned_and_the_best_trial_is_the_version(tmp_path: Path, tiny_bert: Path) -> None:
    path = search_spec(tmp_path, tiny_bert, trials=3)
    enqueue(path, GOOD, {"learning_rate": 5e-4, "head_learning_rate": 5e-3}, BAD)
    run = run_worker(path, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    ended = [e for e in run.events if e["kind"] == "trial" and e["state"] != "TRIAL_STATE_RUNNING"]
    started = [e for e in run.events if e["kind"] == "trial" and e["state"] == "TRIAL_STATE_RUNNING"]
    assert [e["number"] for e in started] == [0, 1, 2] and [e["number"] for e in ended] == [0, 1, 2]
    result = run.last("result")
    states = [t["state"] for t in result["trials"]]
    assert states[:2] == ["TRIAL_STATE_COMPLETE"] * 2 and states[2] == "TRIAL_STATE_PRUNED", result["trials"]
    pruned = result["trials"][2]
    assert "median" in pruned["reason"] and pruned["steps"] < result["trials"][0]["steps"]
    best = [t for t in result["trials"] if t["best"]]
    assert len(best) == 1 and best[0]["metric"] == pytest.approx(result["best_metric"])
    assert best[0]["params"]["learning_rate"] in {"0.001", "0.0005"}
    # the best trial's artifacts are the job's output, nothing trained again; the others are gone
    assert (run.output_dir / ARTIFACTS["onnx"]).is_file()
    # exported once, at the end: no trial exports
    (export,) = [e for e in run.events if e["kind"] == "export"]
    assert export["message"].startswith("exported ONNX"), export
    assert sorted(p.name for p in run.output_dir.iterdir()) == sorted(
        name for key, name in ARTIFACTS.items() if key != "onnx_int8"
    )
    assert 0 < result["parity_max_abs_diff"] <= 1e-4 and set(result["variant_metrics"]) == {"fp32"}
    assert "trials" in (run.output_dir / ARTIFACTS["metrics"]).read_text()
    assert not any((tmp_path / "trials").glob("*/output"))


def test_a_search_interrupted_mid_trial_resumes_and_runs_every_trial(tmp_path: Path, tiny_bert: Path) -> None:
    path = search_spec(tmp_path, tiny_bert, trials=2)
    enqueue(path, GOOD)
    process = subprocess.Popen([*WORKER, str(path)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert process.stdout is not None
    for line in process.stdout:  # preempt the second trial at its first evaluation
        if '"kind": "evaluation"' in line and "[trial 1]" in line:
            process.send_signal(signal.SIGTERM)
            break
    process.stdout.read()
    assert process.wait(60) == 75
    run = run_worker(path, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    trials = run.last("result")["trials"]
    # the finished trial 0 is kept (not run again); the interrupted trial 1 is left out, its rerun 2 counts instead
    assert [t["number"] for t in trials] == [0, 2] and all(t["state"] != "TRIAL_STATE_FAILED" for t in trials), trials
    assert not [e for e in run.events if "[trial 0]" in e.get("message", "")]
    study = optuna.load_study(study_name=STUDY_NAME, storage=f"sqlite:///{tmp_path / 'search.db'}")
    interrupted = [t for t in study.trials if t.user_attrs.get("interrupted")]
    assert [t.number for t in interrupted] == [1] and interrupted[0].state is optuna.trial.TrialState.FAIL
    rerun = next(t for t in study.trials if t.user_attrs.get("resumes") == 1)
    assert rerun.number == 2 and rerun.params == interrupted[0].params
    resumed = [e for e in run.events if e.get("message", "").startswith("[trial 2] resumed from the checkpoint")]
    assert resumed, "the rerun resumes the interrupted trial's checkpoint"


def test_the_budget_stops_the_search(tmp_path: Path, tiny_bert: Path) -> None:
    # NOTE: a budget spent before the first step ends (loading the backbone alone takes longer): the first trial stops
    # at its first step, evaluated, and no other trial starts; a whole trial of this size can take under a second
    path = search_spec(tmp_path, tiny_bert, trials=5, budget=0.01)
    run = run_worker(path, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    trials = run.last("result")["trials"]
    assert len(trials) == 1 and "budget after step 1" in trials[0]["reason"], trials
    assert trials[0]["steps"] == 1 and trials[0]["state"] == "TRIAL_STATE_COMPLETE"
    # a worker started again after the search ended (its end was lost) trains and exports nothing again
    again = run_worker(path, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.kinds == ["result"] and again.last("result") == run.last("result")
    assert dataclasses.fields(SearchSpec)


def test_refit_retrains_only_the_best_trial_after_the_search_and_resumes_after_a_preemption(
    tmp_path: Path, tiny_bert: Path
) -> None:
    path = search_spec(tmp_path, tiny_bert, trials=2)
    spec = TrainingSpec.load(path)
    spec.hyperparameters.refit = "true"
    spec.save(path)
    enqueue(path, GOOD, {"learning_rate": 5e-4, "head_learning_rate": 5e-3})
    process = subprocess.Popen([*WORKER, str(path)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert process.stdout is not None
    before = []
    for line in process.stdout:  # preempt the refit as it starts: it stops after its first step, with a checkpoint
        before.append(json.loads(line))
        if before[-1]["kind"] == "refit":
            process.send_signal(signal.SIGTERM)
            break
    before += [json.loads(line) for line in process.stdout]
    assert process.wait(60) == 75
    ended = [e for e in before if e["kind"] == "trial" and e["state"] != "TRIAL_STATE_RUNNING"]
    best = min(ended, key=lambda e: e["metric"])  # metric_for_best_model loss: lower is better
    refit_event = next(e for e in before if e["kind"] == "refit")
    assert refit_event["message"].startswith(f"[trial {best['number']}] refit: ")
    assert before[-1]["kind"] == "preempted" and before[-1]["step"] == 1
    assert Path(before[-1]["checkpoint"]) == tmp_path / "trials" / str(best["number"]) / "checkpoints-refit" / "checkpoint-1"

    run = run_worker(path, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    # no trial runs again and the refit is not started afresh: it resumes from its checkpoint
    assert {"trial", "evaluation", "refit"}.isdisjoint(run.kinds)
    assert run.events[0]["message"].startswith(
        f"[trial {best['number']}] [refit] resumed from the checkpoint at step 1/{refit_event['steps']}"
    )
    result = run.last("result")
    assert [t["number"] for t in result["trials"]] == [0, 1]
    assert result["best_metric"] == pytest.approx(best["metric"])  # the figures are the best trial's first run
    assert (result["refit"], result["refit_examples"], result["refit_steps"]) == (True, 28, refit_event["steps"])
    assert result["refit_steps"] == math.ceil(result["best_step"] * 28 / result["train_examples"])
    assert result["message"].endswith(f"; served: refit on 28 training and validation rows for {result['refit_steps']} steps")
    metrics = json.loads((run.output_dir / ARTIFACTS["metrics"]).read_text())
    assert metrics["refit"] is True and len(metrics["trials"]) == 2
    assert (run.output_dir / ARTIFACTS["onnx"]).is_file() and not list((tmp_path / "trials").glob("*/checkpoints*"))


@pytest.mark.parametrize("hp", [
    Hyperparameters(),
    Hyperparameters(epochs=10, learning_rate=3e-5, head_dropout=0.2, freeze="top_k", trainable_layers=2),
    Hyperparameters(max_steps=40, layer_lr_decay=0.9),
])
def test_the_jobs_own_hyperparameters_are_a_point_of_the_search_space(hp: Hyperparameters) -> None:
    params = own_params(hp, {"weight_decay"}, layers=6)
    assert "weight_decay" not in params and ("epochs" in params) == (hp.max_steps == 0)
    assert suggest(optuna.trial.FixedTrial(params), hp, {"weight_decay"}, 6) == hp


def test_a_search_starts_with_the_jobs_own_hyperparameters(tmp_path: Path, tiny_bert: Path) -> None:
    path = write_spec(tmp_path, tiny_bert, train_counts=FEW, epochs=2, batch_size=8, learning_rate=2e-4)
    spec = TrainingSpec.load(path)
    spec.search = SearchSpec(trials=1, budget_seconds=600, seed=0, fixed=["batch_size"])
    spec.save(path)
    run = run_worker(path, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    (first,) = [e for e in run.events if e["kind"] == "trial" and e["state"] == "TRIAL_STATE_RUNNING"]
    assert first["message"].endswith("(the job's own hyperparameters)")
    own = own_params(spec.hyperparameters, {"batch_size"}, layers=2)
    assert first["params"] == {name: f"{v:.4g}" if isinstance(v, float) else str(v) for name, v in own.items()}
    assert first["params"]["learning_rate"] == "0.0002" and first["params"]["epochs"] == "2"


def _study(direction: str, own: float, margin: float, other: float) -> optuna.Study:
    study = optuna.create_study(direction=direction)
    distribution = {"x": optuna.distributions.FloatDistribution(0, 1)}
    study.add_trial(optuna.trial.create_trial(params={"x": 0.1}, distributions=distribution, value=own,
                                              user_attrs={"own": True, "margin": margin}))
    study.add_trial(optuna.trial.create_trial(params={"x": 0.9}, distributions=distribution, value=other))
    return study


def test_a_trial_replaces_the_jobs_own_run_only_when_it_beats_it_by_more_than_the_noise() -> None:
    # 60 validation rows at macro F1 0.86: one standard error is 0.045
    margin = selection_margin("macro_f1", 0.86, 60)
    assert margin == pytest.approx(math.sqrt(0.86 * 0.14 / 60))
    served = served_trial(_study("maximize", 0.86, margin, 0.87))
    assert served is not None and served.user_attrs.get("own")            # +1 point: within the noise
    served = served_trial(_study("maximize", 0.86, margin, 0.93))
    assert served is not None and served.number == 1                      # +7 points: served
    served = served_trial(_study("maximize", 0.86, margin, 0.80))
    assert served is not None and served.user_attrs.get("own")
    # metrics with no standard error here (loss, rmse, correlations): the best wins
    assert selection_margin("rmse", 0.5, 60) == selection_margin("loss", 0.3, 60) == 0.0
    served = served_trial(_study("minimize", 0.50, 0.0, 0.49))
    assert served is not None and served.number == 1
