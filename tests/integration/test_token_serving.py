"""Token classification served end to end through the real client on a real server: entities with character
offsets into the raw text (punctuation, repeated words, several spaces, accents, emoji), sub-word aggregation at each
word's first sub-word against the same head in torch, PredictStream, the Open Inference Protocol `entities` output
through the real tritonclient, Evaluate on stored {"tokens", "tags"} rows with its entity figures, per-type table,
confusion of types, missed/spurious examples and the randomization comparison, and bad input refused.

The models are tiny exported token heads (tests/serving_models.py): "every" tags every word B-PER (so each word is an
entity, and its offsets are checked word by word), "random" and "other" are random heads."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ServerThread, make_settings
from tests.serving_models import TinyTokenVersion, publish_token_model
from tuneserve.core.ids import new_id
from tuneserve.store import ArtifactStore
from tuneserve.tasks import get_task
from tuneserve.tasks.entity_metrics import entity_report
from tuneserve.tasks.tagging import entities, iob2_labels, split_words
from tuneserve.types import DatasetRecord
from tuneserve_client import Client, InvalidArgument, PredictRequest, PredictStreamRequest

PROBE = Path(__file__).with_name("tritonclient_probe.py")
TYPES = ["LOC", "PER"]
TEXTS = [
    "Justin Bieber met Justin Bieber in Paris, France.",      # repeated words, punctuation
    "Hello,   world!!  (again)   ...",                          # several spaces, punctuation runs
    "Café Zoë in Zürich — naïve résumé of O'Neil's U.S. trip",  # accents, apostrophes, abbreviation
    "Party 🎉 with 👩\u200d👩\u200d👧 and 🇫🇷 flags ✨!",          # emoji, ZWJ family, flag
    "e\u0301le\u0300ve (combining accents) at 10:30",          # combining marks
]
SENTENCES = [
    (["Justin", "Bieber", "lives", "in", "Paris"], ["B-PER", "I-PER", "O", "O", "B-LOC"]),
    (["Anna", "met", "Bob", "in", "Rome", "."], ["B-PER", "O", "B-PER", "O", "B-LOC", "O"]),
    (["No", "entities", "here"], ["O", "O", "O"]),
    (["New", "York", "and", "Berlin"], ["B-LOC", "I-LOC", "O", "B-LOC"]),
] * 3


@dataclass(frozen=True)
class World:
    server: ServerThread
    models: dict[str, tuple[str, TinyTokenVersion]]
    dataset_id: str

    @property
    def target(self) -> str:
        return self.server.target

    def id(self, name: str) -> str:
        return self.models[name][0]


async def _stored_dataset(server: ServerThread, data_dir: Path) -> str:
    """A token-classification dataset as stored rows {"tokens", "tags"} (the upload is the training branch's)."""
    assert server.app is not None
    dataset_id = new_id("dataset")
    rows = ArtifactStore(data_dir).dataset_rows(dataset_id)
    rows.parent.mkdir(parents=True, exist_ok=True)
    rows.write_text("".join(json.dumps({"tokens": t, "tags": g}) + "\n" for t, g in SENTENCES))
    await server.app.store.add_dataset(DatasetRecord(
        dataset_id, "ner.jsonl", "jsonl", "text", len(SENTENCES), iob2_labels(TYPES), {}, 0, rows.stat().st_size, "",
        time.time(), task="token_classification",
    ))
    return dataset_id


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("token-serving")
    settings = make_settings(root / "data", tmp_path_factory.getbasetemp())
    server = ServerThread(settings).start()
    try:
        assert server.app is not None
        models = {}
        for name, seed, favour in (("every", 0, "B-PER"), ("random", 3, ""), ("other", 7, "")):
            model, version = server.call(publish_token_model(server.app.store, settings.storage.data_dir, TYPES,
                                                             name=name, seed=seed, favour=favour))
            models[name] = (model.id, version)
        dataset_id = server.call(_stored_dataset(server, settings.storage.data_dir))
        yield World(server, models, dataset_id)
    finally:
        server.close()


def _entities(prediction: object) -> list[tuple[str, str, int, int]]:
    return [(e.type, e.text, e.start, e.end) for e in prediction.entities]  # type: ignore[attr-defined]


def test_offsets_point_into_the_raw_text_for_every_word(world: World) -> None:
    with Client(world.target) as client:
        response = client.predict(world.id("every"), TEXTS)
    for text, prediction in zip(TEXTS, response.predictions, strict=True):
        found = _entities(prediction)
        assert found == [("PER", word, start, end) for word, start, end in split_words(text)]
        assert all(text[start:end] == word for _, word, start, end in found)
        assert all(e.score > 0.99 for e in prediction.entities)
    repeated = _entities(response.predictions[0])
    assert [(s, e) for _, w, s, e in repeated if w == "Justin"] == [(0, 6), (18, 24)]   # each occurrence its own


def test_subwords_are_aggregated_at_each_words_first_subword(world: World) -> None:
    version = world.models["random"][1]
    with Client(world.target) as client:
        response = client.predict(world.id("random"), TEXTS)
    seen = 0
    for text, prediction in zip(TEXTS, response.predictions, strict=True):
        words = split_words(text)
        tags, scores = version.word_tags([w for w, _, _ in words])
        expected = entities(words, tags, scores, text)
        assert _entities(prediction) == [(e["type"], e["text"], e["start"], e["end"]) for e in expected]
        assert [e.score for e in prediction.entities] == pytest.approx([e["score"] for e in expected], abs=1e-5)
        seen += len(expected)
    assert seen > 0


def test_words_past_the_truncation_limit_are_outside(world: World) -> None:
    long = " ".join(f"w{i}" for i in range(200))
    with Client(world.target) as client:
        found = _entities(client.predict(world.id("every"), [long]).predictions[0])
    assert 0 < len(found) < 200 and all(long[s:e] == w for _, w, s, e in found)


def test_predict_stream_answers_entities(world: World) -> None:
    requests = [PredictStreamRequest(request_id=str(i), request=PredictRequest(model_id=world.id("every"),
                                                                               texts=[text]))
                for i, text in enumerate(TEXTS)]
    requests.append(PredictStreamRequest(request_id="empty", request=PredictRequest(model_id=world.id("every"),
                                                                                    texts=["   "])))
    with Client(world.target) as client:
        answers = {a.request_id: a for a in client.predict_stream(iter(requests))}
    assert answers["empty"].error_code == 3
    for i, text in enumerate(TEXTS):
        got = _entities(answers[str(i)].response.predictions[0])
        assert [w for _, w, _, _ in got] == [w for w, _, _ in split_words(text)]


@pytest.mark.parametrize(("texts", "reason"), [
    ([""], r"texts\[0\] is empty"),
    (["ok", " \n "], r"texts\[1\] is empty or only whitespace"),
    (["x" * 100_001], r"texts\[0\] has 100001 characters, more than 100000"),
])
def test_bad_text_is_invalid_argument(world: World, texts: list[str], reason: str) -> None:
    with Client(world.target) as client, pytest.raises(InvalidArgument, match=reason):
        client.predict(world.id("random"), texts)


def test_open_inference_answers_entities_through_tritonclient(world: World) -> None:
    command = [sys.executable, str(PROBE), world.target, world.id("every"), "metadata", "infer_raw", "infer_typed",
               "--texts", json.dumps(TEXTS), "--pairs", "[]"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    outputs = seen["metadata"]["metadata"]["outputs"]
    assert [(o["name"], o["datatype"]) for o in outputs] == [("entities", "BYTES")]
    for step in ("infer_raw", "infer_typed"):
        out = seen[step]["outputs"]["entities"]
        assert out["datatype"] == "BYTES" and out["shape"][0] == len(TEXTS)
        for text, data in zip(TEXTS, out["data"], strict=True):
            found = json.loads(data)
            assert [(e["text"], e["start"], e["end"]) for e in found] == list(split_words(text))
            assert set(found[0]) == {"type", "text", "start", "end", "score"}


def _expected_report(world: World, name: str) -> dict[str, float]:
    version = world.models[name][1]
    predicted = [version.word_tags(tokens)[0] for tokens, _ in SENTENCES]
    return entity_report([tags for _, tags in SENTENCES], predicted).metrics


def test_evaluate_reports_entity_figures_per_type_and_errors(world: World) -> None:
    with Client(world.target) as client:
        report = client.evaluate(world.id("random"), world.dataset_id).report
    assert report.task == 4 and report.num_examples == len(SENTENCES)
    assert dict(report.metrics) == pytest.approx(_expected_report(world, "random"), abs=1e-6)
    assert [c.label for c in report.per_class] == TYPES
    assert {c.label: c.support for c in report.per_class} == {"LOC": 12, "PER": 9}
    assert list(report.confusion_matrix.labels)[-1] == "O"
    errors = report.entity_errors
    assert errors.num_missed + errors.num_wrong_type <= 21 and errors.num_missed >= len(errors.missed) > 0
    assert all(e.text for e in errors.missed)


def test_every_b_per_model_scores_its_per_entities(world: World) -> None:
    with Client(world.target) as client:
        report = client.evaluate(world.id("every"), world.dataset_id).report
    assert report.metrics["entity_recall"] == pytest.approx(6 / 21)   # the single-word PER entities are found
    assert report.entity_errors.num_spurious > 0


def test_comparison_is_randomization_on_entity_f1(world: World) -> None:
    with Client(world.target) as client:
        response = client.evaluate(world.id("every"), world.dataset_id, compare=[(world.id("random"), 0)])
    comparison = response.comparisons[0]
    assert comparison.test == "randomization"
    assert 0 < comparison.p_value <= 1
    assert "entity F1" in comparison.verdict
    assert {d.metric for d in comparison.deltas} == set(get_task("token_classification").metrics_for_best) - {"loss"}
