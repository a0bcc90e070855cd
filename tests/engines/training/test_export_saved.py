"""pipeline.export_saved: a version trained with `run_training(export=False)` (a search's trial) and exported later is
the version a normal run writes: the same files, figures and ONNX parity."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path
from typing import Any

import pytest

from tests.engines.training import test_task_training
from tests.engines.training.test_vision_training import write_image_spec
from tests.engines.training.test_worker import write_spec
from tests.fixtures import build_tiny_bert, tiny_efficientnet
from tests.tagging_fixtures import NER_LABELS, ner_sentences, write_sentences
from tuneserve.engines.training.events import EventWriter, ResultEvent
from tuneserve.engines.training.pipeline import export_saved, run_training
from tuneserve.engines.training.spec import ARTIFACTS, StopRequests, TrainingSpec

# NOTE: how long the runs took differs between two runs of the same spec; nothing else may
_TIMINGS = {"train_seconds", "samples_per_second"}


def _text_spec(job_dir: Path, tmp: Path) -> TrainingSpec:
    spec = TrainingSpec.load(write_spec(job_dir, build_tiny_bert(tmp / "tiny-bert")))
    spec.export.int8 = True  # NOTE: the int8 variant and its guard are exported too
    return spec


def _token_spec(job_dir: Path, tmp: Path) -> TrainingSpec:
    """Per-token inputs (lists of words) and the per-token graph [N, T, L]."""
    job_dir.mkdir(parents=True)
    train = write_sentences(job_dir / "train.jsonl", ner_sentences(48))
    validation = write_sentences(job_dir / "validation.jsonl", ner_sentences(12, seed=1))
    return TrainingSpec.load(test_task_training.write_spec(
        job_dir, build_tiny_bert(tmp / "tiny-bert"), "token_classification", train, NER_LABELS, validation=validation,
        epochs=1,
    ))


def _image_spec(job_dir: Path, tmp: Path) -> TrainingSpec:
    return TrainingSpec.load(write_image_spec(job_dir, tiny_efficientnet(tmp / "tiny-efficientnet"), epochs=1))


def _train(spec: TrainingSpec, events: io.StringIO, *, export: bool) -> ResultEvent:
    outcome = run_training(spec, EventWriter(events), StopRequests(), scratch_dir=Path(spec.output_dir).parent,
                           export=export)
    assert isinstance(outcome, ResultEvent)
    return outcome


def _figures(result: ResultEvent) -> dict[str, Any]:
    return {name: value for name, value in result.fields().items() if name not in _TIMINGS}


@pytest.mark.parametrize("make_spec", [_text_spec, _token_spec, _image_spec], ids=["text", "tokens", "image"])
def test_a_deferred_export_writes_what_a_normal_run_writes(tmp_path: Path, make_spec: Any) -> None:
    normal = make_spec(tmp_path / "normal", tmp_path)
    deferred = dataclasses.replace(normal, output_dir=str(tmp_path / "deferred" / "output"))
    expected = _train(normal, io.StringIO(), export=True)
    events = io.StringIO()
    trained = _train(deferred, events, export=False)
    output = Path(deferred.output_dir)
    assert '"export"' not in events.getvalue()
    assert not (output / ARTIFACTS["onnx"]).exists() and not (output / ARTIFACTS["metrics"]).exists()
    exported = export_saved(deferred, EventWriter(events), trained)
    assert _figures(exported) == _figures(expected)
    assert 0 < exported.parity_max_abs_diff <= 1e-4
    assert sorted(p.name for p in output.iterdir()) == sorted(p.name for p in Path(normal.output_dir).iterdir())
    assert '"export"' in events.getvalue()
