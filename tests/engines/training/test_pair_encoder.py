"""The bi-encoder of text pairs in process, on a tiny random-init BERT: the regression head starts at the least-squares
fit of the training targets on the zero-shot cosines; the checkpoint keeps the pair encoding; the export takes both
texts' inputs, fuses each encoder pass and matches PyTorch; the cosine head is symmetric in the two texts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from tests.fixtures import build_tiny_bert
from tests.task_fixtures import pair_rows
from tuneserve.engines.export.quantize import onnx_logits
from tuneserve.engines.export.text import export_onnx
from tuneserve.engines.training.data import EncodedDataset, Example, encode
from tuneserve.engines.training.model import TextClassifier
from tuneserve.engines.training.pair_encoder import fit_cosine_map
from tuneserve.tasks import TaskParams, get_task

ROWS = pair_rows(40, regression=True)
PAIRS = [(row["text"], row["text_pair"]) for row in ROWS]
NAMES = ["input_ids", "attention_mask", "token_type_ids"]


@pytest.fixture(scope="module")
def backbone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("backbone") / "tiny-bert")


def bi_encoder(backbone: Path, task: str = "regression") -> tuple[TextClassifier, PreTrainedTokenizerBase]:
    torch.manual_seed(0)
    model = TextClassifier.from_backbone(str(backbone), 1 if task == "regression" else 2, dropout=0.1, task=task,
                                         pair_encoding="bi")
    return model, AutoTokenizer.from_pretrained(backbone)


def encoded(model: TextClassifier, tokenizer: PreTrainedTokenizerBase) -> tuple[EncodedDataset, TaskParams]:
    task = get_task("regression")
    examples = [Example(row["text"], row["target"], row["text_pair"]) for row in ROWS]
    params = task.prepare([row["target"] for row in ROWS], TaskParams("regression", text_pairs=True, pair_encoding="bi"))
    dataset = encode(examples, tokenizer, [], task=task, params=params, input_names=model.input_names(tokenizer),
                     max_seq_length=32)
    return dataset, params


def test_the_regression_head_starts_at_the_zero_shot_cosines_least_squares_fit(backbone: Path) -> None:
    model, tokenizer = bi_encoder(backbone)
    dataset, _ = encoded(model, tokenizer)
    collator = model.collator(tokenizer)
    batch = collator([dataset[i] for i in range(len(dataset))])
    with torch.no_grad():
        model.head.weight.fill_(1.0)
        model.head.bias.fill_(0.0)
        cosines = model.eval()(**{k: v for k, v in batch.items() if k != "labels"}).logits.reshape(-1).numpy()
    slope, intercept = np.polyfit(cosines.astype(np.float64), batch["labels"].numpy().astype(np.float64), 1)
    model.head.weight.data.fill_(0.5)
    fit_cosine_map(model.train(), dataset, collator)
    assert model.training, "the fit leaves the model in the mode it found it"
    assert (model.head.weight.item(), model.head.bias.item()) == pytest.approx((slope, intercept), rel=1e-3, abs=1e-4)
    assert slope != pytest.approx(0.0)


def test_a_bi_encoder_exports_both_texts_inputs_fused_and_symmetric(backbone: Path, tmp_path: Path) -> None:
    model, tokenizer = bi_encoder(backbone)
    model.save_checkpoint(tmp_path / "checkpoint")
    model = TextClassifier.from_checkpoint(tmp_path / "checkpoint")
    assert model.pair_encoding == "bi" and model.input_names(tokenizer) == NAMES + [f"{n}_pair" for n in NAMES]
    report = export_onnx(model, tokenizer, tmp_path / "model.onnx", example_texts=PAIRS, max_seq_length=32)
    assert report.parity.max_abs_diff <= 1e-4 and report.parity.examples == len(PAIRS)
    assert report.fused_ops["Attention"] == 2 * 2, "each text's pass through the 2 layers is fused"
    graph = onnx.load(str(tmp_path / "model.onnx"))
    assert [i.name for i in graph.graph.input] == report.input_names
    logits = onnx_logits(tmp_path / "model.onnx", tokenizer, PAIRS[:8], max_seq_length=32)
    swapped = onnx_logits(tmp_path / "model.onnx", tokenizer, [(b, a) for a, b in PAIRS[:8]], max_seq_length=32)
    np.testing.assert_allclose(logits, swapped, atol=1e-5)


def test_a_bi_encoder_classifier_reads_u_v_and_their_difference(backbone: Path, tmp_path: Path) -> None:
    model, tokenizer = bi_encoder(backbone, "classification")
    hidden = model.backbone.config.hidden_size
    assert model.head.in_features == 3 * hidden and model.head.out_features == 2
    report = export_onnx(model, tokenizer, tmp_path / "model.onnx", example_texts=PAIRS, max_seq_length=32)
    assert report.parity.max_abs_diff <= 1e-4
