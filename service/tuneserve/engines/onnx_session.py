"""What every ONNX runtime shares: its options, opening a session over a model version's graph (the only place the
service opens one from the registry's artifacts), running it (I/O binding on CUDA), and reading the version's head:
its labels (labels.json) and its task with the parameters it was trained with (task.json, `tuneserve.tasks`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from tuneserve.engines.training.spec import ARTIFACTS
from tuneserve.tasks import Task, TaskParams, get_task

VARIANT_FILES = {"fp32": ARTIFACTS["onnx"], "int8": ARTIFACTS["onnx_int8"]}
OUTPUT = "logits"   # every exported graph's one output: the head's raw outputs [N, task.num_outputs(labels)]


@dataclass(frozen=True)
class RuntimeOptions:
    intra_op_threads: int
    intra_op_spinning: bool = True  # session.intra_op.allow_spinning (inference.intra_op_spinning)
    providers: tuple[str, ...] = ("CUDAExecutionProvider", "CPUExecutionProvider")
    max_image_pixels: int = 25_000_000  # image models: larger images are refused before decoding (limits)
    max_chars_per_token: int = 32  # text models: texts are cut to this x max_seq_length characters first (limits)


@dataclass(frozen=True)
class Head:
    """How a version's raw outputs become served scores: its label columns, its task and the task's parameters."""

    labels: list[str]
    task: Task
    params: TaskParams

    @classmethod
    def read(cls, version_dir: Path) -> Head:
        params = TaskParams.load(version_dir)
        labels: list[str] = json.loads((version_dir / ARTIFACTS["labels"]).read_text())["labels"]
        return cls(labels, get_task(params.task), params)


class Session:
    """One ONNX Runtime session over a version's graph of `variant`; `run(feeds)` returns its raw logits."""

    def __init__(self, version_dir: Path, variant: str, options: RuntimeOptions) -> None:
        path = version_dir / VARIANT_FILES[variant]
        self.memory_bytes: int = sum(p.stat().st_size for p in version_dir.glob(path.name + "*") if p.is_file())
        self._session = ort.InferenceSession(
            str(path), sess_options=_session_options(options), providers=_usable_providers(options.providers)
        )
        # NOTE: onnxruntime-gpu lists CUDA even where it silently falls back; the session says what it really uses
        self.provider: str = self._session.get_providers()[0]

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        if self.provider == "CUDAExecutionProvider":
            return _run_io_binding(self._session, feeds)
        logits: np.ndarray = self._session.run([OUTPUT], feeds)[0]
        return logits

    def options(self) -> ort.SessionOptions:
        """The options the session was opened with."""
        return self._session.get_session_options()

    def close(self) -> None:
        del self._session


def inside(version_dir: Path, relative: str) -> Path:
    """`version_dir / relative`, refused if it leads out of the version directory (a tampered preprocessing.json):
    everything a runtime loads comes from the registry's artifact directory."""
    path = (version_dir / relative).resolve()
    if not path.is_relative_to(version_dir.resolve()):
        raise ValueError(f"{version_dir}: preprocessing.json points outside the version directory ({relative!r})")
    return path


def available_providers() -> list[str]:
    return list(ort.get_available_providers())


def _run_io_binding(session: ort.InferenceSession, feeds: dict[str, np.ndarray]) -> np.ndarray:
    # NOTE: binds inputs once on the GPU and lets ORT allocate the output there, avoiding the extra copies
    # session.run makes; the logits (N x C floats) come back to the host.
    binding = session.io_binding()
    for name, array in feeds.items():
        binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(array, "cuda", 0))
    binding.bind_output(OUTPUT, "cuda")
    session.run_with_iobinding(binding)
    outputs: list[np.ndarray] = binding.copy_outputs_to_cpu()
    return outputs[0]


def _usable_providers(preferred: tuple[str, ...]) -> list[str]:
    available = set(ort.get_available_providers())
    chosen = [p for p in preferred if p in available]
    return chosen or ["CPUExecutionProvider"]


def _session_options(options: RuntimeOptions) -> ort.SessionOptions:
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # NOTE: intra-op threads come from the container's CPU quota (tuneserve.cpus.available_cpus), not the host's count;
    # one inter-op thread because the graph runs sequentially and a batcher already serialises runs per session.
    so.intra_op_num_threads = options.intra_op_threads
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if options.intra_op_spinning else "0")
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return so
