"""The human-readable end of the GPU check (check.py): medians side by side, and the summary printed last (the JSON has
it all)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

TEXT_STAGES = ("infer_ort_cuda", "infer_ort_cpu", "infer_torch")
VISION_STAGES = ("vision_infer_ort_cuda", "vision_infer_ort_cpu", "vision_infer_torch")


def comparison(stages: dict[str, Any], batches: tuple[int, ...], names: tuple[str, str, str] = TEXT_STAGES) -> dict[str, Any]:
    """Medians side by side per batch size, and ratios of each to ONNX Runtime on CPU."""
    rows: dict[str, dict[str, Any]] = {}
    ort_cuda, ort_cpu, eager = (stages.get(name, {}) for name in names)
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
                 f"onnx {v.get('onnx')} | sklearn {v.get('sklearn')} | accelerate {v.get('accelerate')} | "
                 f"efficientnet_lite_pytorch {v.get('efficientnet_lite_pytorch')} from "
                 f"{report.get('module_origins', {}).get('efficientnet_lite_pytorch', '-')}")
    lines.append(f"missing packages: {', '.join(report.get('missing_modules', {})) or 'none'}")
    gpu = (f"{env.get('device_name')} (sm {env.get('capability')}, {env.get('memory_gib')} GiB, bf16 "
           f"{env.get('bf16_supported')})") if env.get("cuda_available") else "none (torch.cuda.is_available() False)"
    lines.append(f"GPU: {gpu}")
    lines.append(f"ORT available providers: {after.get('available') or before.get('available')}")
    lines.append(f"ORT tiny-graph session uses: before torch import {before.get('actual')}, after "
                 f"{after.get('actual')}" + (f"  [error: {after.get('error') or before.get('error')}]"
                                              if after.get("error") or before.get("error") else ""))
    settings = report.get("settings", {})
    if "train_worker" in stages or "build" in stages:
        lines.append("--- text: MiniLM-shaped backbone, 128-token texts")
        shape = f"{settings.get('steps')} steps x batch {settings.get('batch')} x 128 tok"
        lines += _train_lines(stages, "", shape, "samples")
        s = stages.get("train_step", {})
        if s.get("status") == "ok":
            lines.append(f"train step (in-process, {s.get('precision')}, batch {s.get('batch')} x {s.get('seq')}): "
                         f"{s.get('samples_per_s')} samples/s, p50 {s.get('p50_ms')} ms/step (n={s.get('n')})")
        lines += _inference_lines(stages, TEXT_STAGES, "128-token texts", "texts")
        lines += _comparison_lines(report.get("comparison", {}))
    vision = report.get("vision_settings")
    if vision:
        b = stages.get("vision_build", {})
        lines.append(f"--- image: efficientnet-lite0 at {vision.get('image_size')}x{vision.get('image_size')}, "
                     f"weights {b.get('weights', '?')}, init {b.get('init', '?')}")
        shape = f"{vision.get('steps')} steps x batch {vision.get('batch')} x {vision.get('image_size')} px"
        lines += _train_lines(stages, "vision_", shape, "images")
        s = stages.get("vision_train_step", {})
        if s.get("status") == "ok":
            lines.append(f"train step (in-process, {s.get('precision')}, batch {s.get('batch')}, no data loading): "
                         f"{s.get('samples_per_s')} images/s, p50 {s.get('p50_ms')} ms/step (n={s.get('n')})")
        lines += _inference_lines(stages, VISION_STAGES, f"{vision.get('image_size')} px images", "images")
        cpu = stages.get("vision_infer_ort_cpu", {})
        if cpu.get("decode_preprocess_ms_per_image") is not None:
            lines.append(f"  decode + preprocess (host, before any provider): {cpu['decode_preprocess_ms_per_image']} "
                         "ms/image")
        lines += _comparison_lines(report.get("vision_comparison", {}))
    for name, stage in stages.items():
        if name.startswith("heads_") and name != "heads_build":
            figures = ", ".join(f"{k} {v:.3f}" for k, v in (stage.get("validation_metrics") or {}).items()
                                if isinstance(v, float) and k in ("micro_f1", "macro_f1", "rmse", "pearson", "spearman"))
            members = stage.get("refit_members") or 0
            figures += f", refit soup of {members}" if members > 1 else ", refit" if members == 1 else ""
            if stage.get("refit_temperature"):
                figures += (f", temperature {stage['temperature'][0]:.3f} carried to "
                            f"{stage['refit_temperature'][0]:.3f}")
            lines.append(f"--- {name}: {stage['status']} on {stage.get('device')}, {stage.get('precision')}, {figures}; "
                         f"parity max |diff| {stage.get('parity_max_abs_diff')}" +
                         (f": {stage.get('reason')}" if stage["status"] != "ok" else ""))
    lines.append("stages: " + ", ".join(f"{name} {stage['status']}" for name, stage in stages.items()))
    lines.extend(f"WARNING: {w}" for w in report.get("warnings", []))
    lines.append(f"JSON: {json_path}")
    print("\n".join(lines), flush=True)


def _train_lines(stages: dict[str, Any], prefix: str, shape: str, unit: str) -> list[str]:
    lines = []
    build = stages.get(f"{prefix}build", {})
    if build and build["status"] != "ok":
        lines.append(f"build: {build['status']}: {build.get('reason')}")
    t = stages.get(f"{prefix}train_worker", {})
    if t and "precision" not in t:
        lines.append(f"train (worker): {t['status']}: {t.get('reason')}")
    elif t:
        metrics = t.get("validation_metrics") or {}
        lines.append(f"train (worker): {t['status']} on {t.get('device')} {t.get('precision')}, {shape}: "
                     f"{t.get('steady_samples_per_s')} {unit}/s steady, {t.get('trainer_samples_per_s')} incl. "
                     f"eval+checkpoints; train {t.get('train_seconds')} s, worker wall {t.get('worker_wall_s')} s")
        lines.append(f"  validation accuracy {_f(metrics.get('accuracy'))} macro_f1 {_f(metrics.get('macro_f1'))}; "
                     f"export {'ok' if t.get('export_ok') else 'NOT DONE'} {t.get('onnx_size_mb')} MB, parity max "
                     f"|logit diff| {_e(t.get('parity_max_abs_diff'))} over {t.get('parity_examples')} examples "
                     f"(fp32, CPU)" + (f"  REASON: {t.get('reason')}" if t.get("reason") else ""))
    u = stages.get(f"{prefix}export_untrained", {})
    if u.get("status") == "ok":
        lines.append(f"export of the untrained model (fallback): ok, parity max |logit diff| "
                     f"{_e(u.get('parity_max_abs_diff'))} over {u.get('parity_examples')} examples")
    elif u:
        lines.append(f"export of the untrained model (fallback): {u['status']}: {u.get('reason')}")
    return lines


def _inference_lines(stages: dict[str, Any], names: tuple[str, str, str], what: str, unit: str) -> list[str]:
    if not any(name in stages for name in names):
        return []
    lines = [f"inference, {what:24s} batch   p50 ms   p99 ms {unit + '/s':>9}     n"]
    for name, label in zip(names[:2], ("ORT [CUDA,CPU]", "ORT CPU"), strict=True):
        stage = stages.get(name)
        if not stage:
            continue
        shown = f"{label} -> {stage.get('provider', '?')}"
        if "skipped" in stage or stage.get("status") != "ok":
            lines.append(f"  {shown:31s} {stage.get('skipped') or stage.get('reason') or stage.get('status')}")
            continue
        for key in sorted((k for k in stage if k.startswith("b") and k[1:].isdigit()), key=lambda k: int(k[1:])):
            lines.append(_row(shown, stage[key], unit))
    eager = stages.get(names[2], {})
    if eager.get("status") not in (None, "ok"):
        lines.append(f"  torch eager: {eager['status']}: {eager.get('reason', '')}")
    for precision in ("fp32", "bf16"):
        rows = eager.get(precision, {})
        if "skipped" in rows:
            lines.append(f"  torch eager {eager.get('device')} {precision}: skipped: {rows['skipped']}")
        for key in sorted((k for k in rows if k.startswith("b")), key=lambda k: int(k[1:])):
            row = rows[key]
            if row:
                lines.append(_row(f"torch eager {eager.get('device')} {precision}", row, unit))
    return lines


def _comparison_lines(rows: dict[str, Any]) -> list[str]:
    return [f"  speedup vs ORT CPU ({key}): " + ", ".join(f"{k} {x}x" for k, x in row["speedup_vs_ort_cpu"].items())
            for key, row in rows.items()]


def _row(label: str, row: dict[str, Any], unit: str) -> str:
    return (f"  {label:31s} {row.get('batch', ''):>5} {row.get('p50_ms', 0):8.2f} {row.get('p99_ms', 0):8.2f} "
            f"{row.get(f'{unit}_per_s', 0):9.1f} {row.get('n', 0):5}")


def _f(x: Any) -> str:
    return f"{x:.3f}" if isinstance(x, int | float) else str(x)


def _e(x: Any) -> str:
    return f"{x:.1e}" if isinstance(x, int | float) else str(x)
