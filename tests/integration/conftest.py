"""Integration fixtures: a tiny random-init BERT backbone, small labelled datasets and a client on a real server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ServerThread
from tests.fixtures import build_tiny_bert, write_text_dataset
from tests.fixtures import tiny_efficientnet as build_tiny_efficientnet
from tuneserve_client import Client

# Imbalanced on purpose: the defaults must cope with it.
TRAIN_COUNTS = {"sport": 40, "politics": 24, "tech": 12}
TEST_COUNTS = {"sport": 8, "politics": 8, "tech": 8}
# A few steps of the tiny model: seconds on 2 CPUs (no refit, which auto would choose for sets this small: the tests
# that need one ask for it).
QUICK = {"max_steps": 24, "batch_size": 8, "eval_steps": 8, "max_seq_length": 32, "learning_rate": 1e-3,
         "head_learning_rate": 3e-3, "early_stopping_patience": 0, "refit": "false"}


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("backbones") / "tiny-bert")


@pytest.fixture(scope="session")
def tiny_efficientnet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-init EfficientNet-Lite directory (config.json + model.safetensors), 32x32 inputs."""
    return build_tiny_efficientnet(tmp_path_factory.mktemp("backbones") / "tiny-efficientnet")


@pytest.fixture
def client(server: ServerThread) -> Iterator[Client]:
    with Client(server.target, timeout=60) as c:
        yield c


@pytest.fixture
def train_file(tmp_path: Path) -> Path:
    return write_text_dataset(tmp_path / "train.jsonl", TRAIN_COUNTS, seed=1)


@pytest.fixture
def test_file(tmp_path: Path) -> Path:
    return write_text_dataset(tmp_path / "test.csv", TEST_COUNTS, fmt="csv", seed=2)
