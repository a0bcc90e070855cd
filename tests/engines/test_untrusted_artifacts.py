"""Weights and graphs are loaded only in safe ways: safetensors or `torch.load(weights_only=True)` (never pickle), no
remote code, ONNX sessions only in the modules that open the registry's (or the worker's own) artifacts, and a
runtime refuses a version directory whose preprocessing.json points outside it."""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path

import pytest
from transformers import modeling_utils

from tuneserve.engines.runtime import RuntimeOptions, open_runtime
from tuneserve.engines.training.spec import ARTIFACTS

SERVICE = Path(__file__).resolve().parents[2] / "service" / "tuneserve"
SOURCES = {path.relative_to(SERVICE).as_posix(): path.read_text() for path in SERVICE.rglob("*.py")}


def test_torch_load_always_passes_weights_only_true() -> None:
    for name, text in SOURCES.items():
        for call in re.findall(r"torch\.load\([^)]*\)", text):
            assert "weights_only=True" in call, f"{name}: {call}"


def test_no_pickle_and_no_remote_code() -> None:
    for name, text in SOURCES.items():
        assert not re.search(r"^\s*(import|from)\s+(pickle|cPickle|dill|joblib)\b", text, re.M), name
        assert "trust_remote_code=True" not in text, name
        assert "weights_only=False" not in text, name


def test_transformers_loads_pytorch_bins_with_weights_only() -> None:
    # NOTE: a backbone folder without safetensors falls back to pytorch_model.bin; transformers loads it with
    # torch.load(weights_only=True) unless told otherwise, which no module does (test above)
    assert inspect.signature(modeling_utils.load_state_dict).parameters["weights_only"].default is True


def test_onnx_sessions_are_opened_only_where_artifacts_are_trusted() -> None:
    opening = {name for name, text in SOURCES.items() if "InferenceSession(" in text}
    trusted = {
        "engines/onnx_session.py", "engines/export/text.py", "engines/export/vision.py", "engines/export/quantize.py"
    }
    assert opening <= trusted, opening


def test_runtime_refuses_paths_out_of_the_version_directory(tmp_path: Path) -> None:
    version_dir = tmp_path / "models" / "model-x" / "1"
    version_dir.mkdir(parents=True)
    (version_dir / ARTIFACTS["labels"]).write_text(json.dumps({"labels": ["a", "b"]}))
    prep = {"max_seq_length": 16, "input_names": ["input_ids"], "tokenizer": "../../../../etc"}
    (version_dir / ARTIFACTS["preprocessing"]).write_text(json.dumps(prep))
    with pytest.raises(ValueError, match="points outside the version directory"):
        open_runtime(version_dir, "fp32", options=RuntimeOptions(intra_op_threads=1))
