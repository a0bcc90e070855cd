"""One-shot GPU check of tuneserve's training and serving engines, made to run on a bare GPU machine in minutes.

    bash bench/gpu_check.sh            # PYTHONPATH=service:client python3 bench/gpu_check.py; JSON to $OUT if set
    python bench/gpu_check.py --json /tmp/gpu_check.json

Needs only what the GPU image has (torch, transformers, tokenizers, onnx, onnxruntime, safetensors, scikit-learn,
accelerate) and this repository on PYTHONPATH: nothing is downloaded and tuneserve need not be installed. Stages,
each reported as ok / skipped / failed with the reason, so a missing package costs only what depends on it:

1. env: versions, missing packages, the GPU as torch sees it (bf16?), ONNX Runtime's listed providers and the
   provider a real session on a tiny graph uses (checked before and after torch is imported, since torch loads the
   CUDA libraries that onnxruntime-gpu may fail to find on its own).
2. build: a random-init MiniLM-shaped backbone (22.7M parameters) with a WordPiece tokenizer trained on the fly,
   and synthetic learnable JSONL (4 labels).
3. train: the real worker subprocess (`python -m tuneserve.engines.training.worker SPEC`) on device cuda (cpu when
   torch sees no GPU, said so): precision, samples/s, validation metrics, ONNX export and its fp32 CPU parity check;
   then the bare training step in-process for a throughput without evaluation and checkpoint overhead.
4. infer: OnnxTextClassifier on [CUDA, CPU] providers and on CPU only, PyTorch eager fp32 and bf16 autocast, for
   batch 1 and batch 32 of 128-token texts: p50/p99 ms, texts/s, and ratios of the medians.

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

import gpu_env
import gpu_measure
import gpu_synth

REPO = Path(__file__).resolve().parent.parent
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
    parser.add_argument("--steps", type=int, help="training steps (default 60 on CUDA, 2 on the CPU fallback)")
    parser.add_argument("--batch", type=int, help="training batch (default 32 on CUDA, 8 on the CPU fallback)")
    parser.add_argument("--deadline", type=float, default=210.0, help="seconds the whole check aims to stay within")
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
        print_summary(check.report, json_path)
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
    import tuneserve

    report["tuneserve_from"] = str(Path(tuneserve.__file__).parent)
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
    plan = PLAN[mode]
    steps = args.steps or plan["steps"]
    batch = args.batch or plan["batch"]
    batches = plan["batches"]
    report["settings"] = {"device": device, "steps": steps, "batch": batch, "max_seq_length": 128,
                          "inference_batches": batches, "train_step_batch": plan["step_batch"]}
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    except ImportError:
        pass  # reported in missing_modules; the stages that need transformers are skipped

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
        trained = check.stage("train_worker", lambda: train_worker(
            check, backbone, data, version_dir, device, steps, batch, plan["evaluations"], out_dir),
            needs=gpu_env.TRAINING)
        check.stage(
            "train_step",
            lambda: gpu_measure.train_step_throughput(backbone, device=device, batch=plan["step_batch"], seq=128,
                                                      steps=plan["step_iters"], warmup=plan["warmup"]),
            needs=("torch", "transformers", "safetensors"),
        )
    texts = corpus.long_texts(max(batches), seed=3)
    if built and built["status"] == "ok" and not (trained and trained["status"] == "ok"):
        report["warnings"].append("the training worker did not produce a model: inference runs on an untrained export")
        check.stage("export_untrained", lambda: gpu_measure.export_untrained(
            backbone, version_dir, list(gpu_synth.LABELS), corpus.long_texts(16, seed=4)),
            needs=("torch", "transformers", "safetensors", "onnx", "onnxruntime"))
    if not (version_dir / "model.onnx").is_file():
        report["warnings"].append("no exported model version: inference stages skipped")
        return
    timing = {"batches": batches, "budget_s": plan["budget_s"], "min_iters": plan["min_iters"], "warmup": plan["warmup"]}
    check.stage("infer_ort_cuda", lambda: gpu_measure.ort_inference(
        version_dir, texts, providers=("CUDAExecutionProvider", "CPUExecutionProvider"), **timing),
        needs=gpu_env.INFERENCE)
    check.stage("infer_ort_cpu", lambda: gpu_measure.ort_inference(
        version_dir, texts, providers=("CPUExecutionProvider",), **timing), needs=gpu_env.INFERENCE)
    check.stage("infer_torch", lambda: gpu_measure.torch_inference(version_dir, texts, device=device, **timing),
                needs=("torch", "transformers", "safetensors"))
    report["comparison"] = comparison(report["stages"], batches)


def train_worker(
    check: Check, backbone: Path, data: Path, version_dir: Path, device: str, steps: int, batch: int,
    evaluations: int, out_dir: Path | None,
) -> dict[str, Any]:
    from tuneserve.engines.training.spec import BackboneRef, Hyperparameters, TrainingSpec

    job_dir = version_dir.parent
    job_dir.mkdir(parents=True, exist_ok=True)
    spec = TrainingSpec(
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
    spec_path = job_dir / "spec.json"
    spec.save(spec_path)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "service"), str(REPO / "client"),
                                                      os.environ.get("PYTHONPATH", "")]))
    log_path = job_dir / "worker.log"
    timeout = max(60.0, min(170.0, check.left() - 45))
    result = gpu_measure.run_worker(spec_path, env=env, timeout_s=timeout, log_path=log_path)
    result["timeout_s"] = timeout
    if out_dir:
        (out_dir / "gpu_check_worker.log").write_text(log_path.read_text(errors="replace")[-500_000:])
    if result["exit_code"] != 0 or "precision" not in result:
        result["_status"] = "failed"
        result["reason"] = result.get("failed_reason") or f"worker exit code {result['exit_code']}" + (
            " (timed out)" if result["timed_out"] else "")
    elif result.get("device") != device:
        result["_status"] = "failed"
        result["reason"] = f"worker trained on {result.get('device')}, expected {device}"
    return result


def comparison(stages: dict[str, Any], batches: tuple[int, ...]) -> dict[str, Any]:
    """Medians side by side per batch size, and ratios of each to ONNX Runtime on CPU."""
    rows: dict[str, dict[str, Any]] = {}
    ort_cuda, ort_cpu, eager = stages.get("infer_ort_cuda", {}), stages.get("infer_ort_cpu", {}), stages.get(
        "infer_torch", {})
    for batch in batches:
        key = f"b{batch}"
        medians = {
            f"ort_{ort_cuda.get('provider', '?')}": ort_cuda.get(key, {}).get("p50_ms") if "skipped" not in ort_cuda
            else None,
            "ort_cpu": ort_cpu.get(key, {}).get("p50_ms"),
            f"torch_{eager.get('device', '?')}_fp32": eager.get("fp32", {}).get(key, {}).get("p50_ms"),
            f"torch_{eager.get('device', '?')}_bf16": eager.get("bf16", {}).get(key, {}).get("p50_ms"),
        }
        medians = {name: value for name, value in medians.items() if value}
        base = medians.get("ort_cpu")
        rows[key] = {
            "p50_ms": medians,
            "speedup_vs_ort_cpu": {name: round(base / value, 2) for name, value in medians.items()} if base else {},
        }
    return rows


def print_summary(report: dict[str, Any], json_path: Path) -> None:
    v, stages = report.get("versions", {}), report.get("stages", {})
    env = stages.get("env", {})
    before, after = stages.get("ort_before_torch", {}), stages.get("ort_after_torch", {})
    lines = ["", f"===== tuneserve GPU check: mode {report.get('mode', '?')}, {report.get('total_seconds')} s ====="]
    lines.append(f"versions: torch {v.get('torch')} (CUDA build {env.get('torch_cuda_build')}) | transformers "
                 f"{v.get('transformers')} | onnxruntime {v.get('onnxruntime')} {report.get('ort_distributions')} | "
                 f"onnx {v.get('onnx')} | sklearn {v.get('sklearn')} | accelerate {v.get('accelerate')}")
    lines.append(f"missing packages: {', '.join(report.get('missing_modules', {})) or 'none'}")
    gpu = (f"{env.get('device_name')} (sm {env.get('capability')}, {env.get('memory_gib')} GiB, bf16 "
           f"{env.get('bf16_supported')})") if env.get("cuda_available") else "none (torch.cuda.is_available() False)"
    lines.append(f"GPU: {gpu}")
    lines.append(f"ORT available providers: {after.get('available') or before.get('available')}")
    lines.append(f"ORT tiny-graph session uses: before torch import {before.get('actual')}, after "
                 f"{after.get('actual')}" + (f"  [error: {after.get('error') or before.get('error')}]"
                                              if after.get("error") or before.get("error") else ""))
    t = stages.get("train_worker", {})
    if t and "precision" not in t:
        lines.append(f"train (worker): {t['status']}: {t.get('reason')}")
    elif t:
        metrics = t.get("validation_metrics") or {}
        lines.append(f"train (worker): {t['status']} on {t.get('device')} {t.get('precision')}, "
                     f"{report['settings']['steps']} steps x batch {report['settings']['batch']} x 128 tok: "
                     f"{t.get('steady_samples_per_s')} samples/s steady, {t.get('trainer_samples_per_s')} incl. "
                     f"eval+checkpoints; train {t.get('train_seconds')} s, worker wall {t.get('worker_wall_s')} s")
        lines.append(f"  validation accuracy {_f(metrics.get('accuracy'))} macro_f1 {_f(metrics.get('macro_f1'))}; "
                     f"export {'ok' if t.get('export_ok') else 'NOT DONE'} {t.get('onnx_size_mb')} MB, parity max "
                     f"|logit diff| {_e(t.get('parity_max_abs_diff'))} over {t.get('parity_examples')} examples "
                     f"(fp32, CPU)" + (f"  REASON: {t.get('reason')}" if t.get("reason") else ""))
    u = stages.get("export_untrained", {})
    if u:
        lines.append(f"export of the untrained model (fallback): {u['status']}, parity max |logit diff| "
                     f"{_e(u.get('parity_max_abs_diff'))}" + (f"  REASON: {u.get('reason')}" if u.get("reason") else ""))
    s = stages.get("train_step", {})
    if s.get("status") == "ok":
        lines.append(f"train step (in-process, {s.get('precision')}, batch {s.get('batch')} x {s.get('seq')}): "
                     f"{s.get('samples_per_s')} samples/s, p50 {s.get('p50_ms')} ms/step (n={s.get('n')})")
    if any(name.startswith("infer_") for name in stages):
        lines.append("inference, 128-token texts       batch   p50 ms   p99 ms   texts/s     n")
    for name, label in (("infer_ort_cuda", "ORT [CUDA,CPU]"), ("infer_ort_cpu", "ORT CPU")):
        stage = stages.get(name)
        if not stage:
            continue
        shown = f"{label} -> {stage.get('provider', '?')}"
        if "skipped" in stage or stage.get("status") != "ok":
            lines.append(f"  {shown:31s} {stage.get('skipped') or stage.get('reason') or stage.get('status')}")
            continue
        for key in sorted((k for k in stage if k.startswith("b") and k[1:].isdigit()), key=lambda k: int(k[1:])):
            lines.append(_row(shown, stage[key]))
    eager = stages.get("infer_torch", {})
    for precision in ("fp32", "bf16"):
        rows = eager.get(precision, {})
        if "skipped" in rows:
            lines.append(f"  torch eager {eager.get('device')} {precision}: skipped: {rows['skipped']}")
        for key in sorted((k for k in rows if k.startswith("b")), key=lambda k: int(k[1:])):
            row = rows[key]
            if row:
                lines.append(_row(f"torch eager {eager.get('device')} {precision}", row))
    for key, row in report.get("comparison", {}).items():
        lines.append(f"  speedup vs ORT CPU ({key}): " + ", ".join(f"{k} {x}x" for k, x in row["speedup_vs_ort_cpu"]
                                                                    .items()))
    lines.append("stages: " + ", ".join(f"{name} {stage['status']}" for name, stage in stages.items()))
    lines.extend(f"WARNING: {w}" for w in report.get("warnings", []))
    lines.append(f"JSON: {json_path}")
    print("\n".join(lines), flush=True)


def _row(label: str, row: dict[str, Any]) -> str:
    return (f"  {label:31s} {row.get('batch', ''):>5} {row.get('p50_ms', 0):8.2f} {row.get('p99_ms', 0):8.2f} "
            f"{row.get('texts_per_s', 0):9.1f} {row.get('n', 0):5}")


def _f(x: Any) -> str:
    return f"{x:.3f}" if isinstance(x, int | float) else str(x)


def _e(x: Any) -> str:
    return f"{x:.1e}" if isinstance(x, int | float) else str(x)


if __name__ == "__main__":
    sys.exit(main())
