"""FineTune(search=N) in the worker: Optuna trials of the single-run training, pruned, resumable, the best trial's
artifacts as the version."""

from __future__ import annotations

import dataclasses
import json
import math
import signal
import subprocess
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch

from tests.engines.training.test_worker import WORKER, run_worker, write_spec
from tests.fixtures import build_tiny_bert
from tuneserve.engines.training.model import TextClassifier
from tuneserve.engines.training.search import STUDY_NAME, open_study, selection_margin, served_trial
from tuneserve.engines.training.search_space import own_params, suggest
from tuneserve.engines.training.spec import ARTIFACTS, Hyperparameters, SearchSpec, TrainingSpec
from tuneserve.tasks import TaskParams

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


def _preempt_at(path: Path, message: str) -> list[dict[str, Any]]:
    """Run the worker on path and SIGTERM it at the first refit event whose message holds `message`: it stops after
    that refit's first step, with a checkpoint."""
    process = subprocess.Popen([*WORKER, str(path)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert process.stdout is not None
    events = []
    for line in process.stdout:
        events.append(json.loads(line))
        if events[-1]["kind"] == "refit" and message in events[-1]["message"]:
            process.send_signal(signal.SIGTERM)
            break
    events += [json.loads(line) for line in process.stdout]
    assert process.wait(60) == 75
    return events


def _refit_search(tmp_path: Path, tiny_bert: Path) -> Path:
    path = search_spec(tmp_path, tiny_bert, trials=2)  # NOTE: a 600 s budget: trials of seconds leave it for 4 refits
    spec = TrainingSpec.load(path)
    spec.hyperparameters.refit = "true"
    spec.save(path)
    enqueue(path, GOOD, {"learning_rate": 5e-4, "head_learning_rate": 5e-3})
    return path


def test_the_best_trial_is_refit_as_a_soup_of_row_orders_that_resumes_member_by_member(
    tmp_path: Path, tiny_bert: Path
) -> None:
    path = _refit_search(tmp_path, tiny_bert)
    before = _preempt_at(path, "refit: ")  # the first refit, as it starts
    ended = [e for e in before if e["kind"] == "trial" and e["state"] != "TRIAL_STATE_RUNNING"]
    best = min(ended, key=lambda e: e["metric"])  # metric_for_best_model loss: lower is better
    refit_event = next(e for e in before if e["kind"] == "refit")
    assert refit_event["message"].startswith(f"[trial {best['number']}] refit: ")
    assert before[-1]["kind"] == "preempted" and before[-1]["step"] == 1
    refit_dir = tmp_path / "trials" / str(best["number"]) / "checkpoints-refit"
    assert Path(before[-1]["checkpoint"]) == refit_dir / "checkpoint-1"

    # the first refit resumes from its checkpoint; the soup's third member is preempted as it starts
    middle = _preempt_at(path, "soup member 3")
    assert {"trial", "evaluation"}.isdisjoint(e["kind"] for e in middle)
    assert middle[0]["message"].startswith(
        f"[trial {best['number']}] [refit] resumed from the checkpoint at step 1/{refit_event['steps']}"
    )
    assert [e["steps"] for e in middle if e["kind"] == "refit"] == [refit_event["steps"]] * 2
    assert sorted(p.name for p in refit_dir.glob("member-*.pt")) == ["member-1.pt", "member-2.pt"]

    run = run_worker(path, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    trained = {e["message"].split("] ")[1] + "]" for e in run.events if e["kind"] == "progress"}
    assert trained == {"[refit 3]", "[refit 4]"}, trained  # members 1 and 2 are not trained again
    assert run.events[0]["message"].startswith(f"[trial {best['number']}] [refit 3] resumed from the checkpoint at step 1/")
    soup_event = [e for e in run.events if e["kind"] == "refit"][-1]
    assert soup_event["message"].startswith(f"[trial {best['number']}] refit soup: 4 refits averaged"), soup_event
    result = run.last("result")
    assert [t["number"] for t in result["trials"]] == [0, 1]
    assert result["best_metric"] == pytest.approx(best["metric"])  # the figures are the best trial's first run
    assert (result["refit"], result["refit_examples"], result["refit_steps"], result["refit_members"]) == (
        True, 28, refit_event["steps"], 4
    )
    assert result["refit_steps"] == math.ceil(result["best_step"] * 28 / result["train_examples"])
    assert result["message"].endswith(
        f"; served: refit on 28 training and validation rows for {result['refit_steps']} steps, 4 data orders averaged"
    )
    metrics = json.loads((run.output_dir / ARTIFACTS["metrics"]).read_text())
    assert metrics["refit"] is True and metrics["refit_members"] == 4 and len(metrics["trials"]) == 2
    # the best trial's temperature, carried to the soup by its logit scale (refit.carry_calibration), is served
    calibration = result["calibration"]
    assert calibration["logit_scale"][0] > 0 and calibration["refit_temperature"] != calibration["temperature"]
    assert TaskParams.load(run.output_dir).temperature == calibration["refit_temperature"]
    assert (run.output_dir / ARTIFACTS["onnx"]).is_file() and not list((tmp_path / "trials").glob("*/checkpoints*"))


def test_a_soup_that_no_longer_fits_its_rows_serves_the_first_refit(tmp_path: Path, tiny_bert: Path) -> None:
    path = _refit_search(tmp_path, tiny_bert)
    before = _preempt_at(path, "soup member 2")
    best = min((e for e in before if e["kind"] == "trial" and e["state"] != "TRIAL_STATE_RUNNING"),
               key=lambda e: e["metric"])
    refit_dir = tmp_path / "trials" / str(best["number"]) / "checkpoints-refit"
    first = torch.load(refit_dir / "member-1.pt", weights_only=True)
    generator = torch.Generator().manual_seed(0)
    for member in (2, 3, 4):  # members from another basin: the first one's weights, each scrambled
        scrambled = {name: torch.randn(t.shape, generator=generator) * 2 if t.is_floating_point() else t
                     for name, t in first["weights"].items()}
        torch.save({**first, "weights": scrambled}, refit_dir / f"member-{member}.pt")

    run = run_worker(path, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert not [e for e in run.events if e["kind"] == "progress"]  # every member was on disk
    rejected = [e for e in run.events if e["kind"] == "refit"][-1]
    assert "refit soup not served: the average of 4 refits fits" in rejected["message"], rejected
    result = run.last("result")
    assert (result["refit"], result["refit_members"]) == (True, 1)
    served = TextClassifier.from_checkpoint(run.output_dir / ARTIFACTS["checkpoint"]).state_dict()
    assert all(torch.equal(served[name], tensor) for name, tensor in first["weights"].items())


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
