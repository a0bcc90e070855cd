"""Text jobs' preparation for the pipeline (engines/training/pipeline.py): the tokenizer, the model with a new head
(a sequence or per-token classifier; a bi-encoder for pairs when asked), the splits and their encoding, the sequence
length from the data, and the ONNX export of a text model. `vision_pipeline.PreparedImages` is the image
counterpart."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers import AutoTokenizer, PreTrainedTokenizerBase

from tuneserve.engines.export.text import TextInput, export_onnx
from tuneserve.engines.training.artifacts import write_model_artifacts
from tuneserve.engines.training.data import EncodedDataset, Splits, encode, make_splits, read_examples, targets
from tuneserve.engines.training.events import EventWriter, ExportEvent
from tuneserve.engines.training.model import TextClassifier
from tuneserve.engines.training.pair_encoder import fit_cosine_map
from tuneserve.engines.training.seq_length import resolve_seq_length
from tuneserve.engines.training.spec import ARTIFACTS, TrainingSpec
from tuneserve.engines.training.token_data import encode_tagged, read_tagged
from tuneserve.engines.training.token_model import TokenClassifier
from tuneserve.engines.training.trainer import new_classifier
from tuneserve.engines.training.variants import export_variants
from tuneserve.tasks import Task, TaskParams, get_task


@dataclass(frozen=True)
class PreparedText:
    """The model with a new head, its tokenizer and the encoded data, ready for the Trainer."""

    model: TextClassifier
    tokenizer: PreTrainedTokenizerBase
    splits: Splits[Any]         # text Examples, or TaggedExamples of a per-token task
    train_set: EncodedDataset
    validation_set: EncodedDataset
    input_names: list[str]
    max_seq_length: int
    labels: list[str]
    task: Task
    params: TaskParams          # fitted on the training rows before training (the regression scaler)

    def encode(self, examples: list[Any]) -> EncodedDataset:
        """Examples as the model reads them: texts (or pairs) with their encoded targets, or (a per-token task)
        sentences of words with each word's tag on its first sub-word."""
        if self.task.per_token:
            return encode_tagged(
                examples, self.tokenizer, self.labels, input_names=self.input_names,
                max_seq_length=self.max_seq_length,
            )
        return encode(
            examples, self.tokenizer, self.labels, task=self.task, params=self.params, input_names=self.input_names,
            max_seq_length=self.max_seq_length,
        )

    def training_set(self, examples: list[Any]) -> EncodedDataset:
        """Examples as the model trains on them (text is encoded the same way for training and evaluation)."""
        return self.encode(examples)

    def with_fresh_model(self, spec: TrainingSpec, rows: list[Any]) -> PreparedText:
        """The same preparation with a new model of the spec (a refit's: its class weights from `rows`)."""
        return _started(dataclasses.replace(self, model=new_classifier(type(self.model), spec, rows)))

    def inputs(self, examples: list[Any]) -> list[TextInput]:
        """The model inputs of examples as serving takes them: texts, (text, text_pair) pairs, or lists of words."""
        if self.task.per_token:
            return [list(example.tokens) for example in examples]
        if self.params.text_pairs:
            return [(example.text, example.text_pair) for example in examples]
        return [example.text for example in examples]

    def write_artifacts(self, output_dir: Path) -> None:
        write_model_artifacts(
            output_dir,
            self.model,
            self.tokenizer,
            labels=self.labels,
            input_names=self.input_names,
            max_seq_length=self.max_seq_length,
        )

    def export(self, output_dir: Path, writer: EventWriter, params: TaskParams) -> float:
        """Export the best model to ONNX (raises when parity fails), report it, and return the parity max diff."""
        export = export_onnx(
            self.model,
            self.tokenizer,
            output_dir / ARTIFACTS["onnx"],
            example_texts=self.inputs(self.splits.validation),
            max_seq_length=self.max_seq_length,
            params=params,
        )
        writer.write(ExportEvent.of(export, examples="text pairs" if params.text_pairs else "texts"))
        return export.parity.max_abs_diff

    def export_variants(
        self, spec: TrainingSpec, output_dir: Path, writer: EventWriter, params: TaskParams, fp32_value: float
    ) -> dict[str, float]:
        validation = self.splits.validation
        return export_variants(
            spec,
            output_dir,
            writer,
            self.tokenizer,
            (self.inputs(validation), targets(validation)),
            task=self.task,
            params=params,
            max_seq_length=self.max_seq_length,
            fp32_value=fp32_value,
        )


def prepare_text(spec: TrainingSpec) -> PreparedText:
    hp, task = spec.hyperparameters, get_task(spec.task)
    splits = _load_splits(spec, task)
    pair_encoding = hp.pair_encoding if spec.text_pairs else "cross"
    params = task.prepare(
        targets(splits.train), TaskParams(task=task.name, text_pairs=spec.text_pairs, pair_encoding=pair_encoding)
    )
    tokenizer = AutoTokenizer.from_pretrained(spec.backbone.path, use_fast=True)
    model = new_classifier(TokenClassifier if task.per_token else TextClassifier, spec, splits.train)
    pairs = [example.text_pair for example in splits.train] if spec.text_pairs else None
    max_seq_length = resolve_seq_length(
        hp.max_seq_length, tokenizer, model.backbone.config, [example.text for example in splits.train], pairs,
        together=not params.bi_encoder,
    )
    input_names = model.input_names(tokenizer)
    prepared = PreparedText(
        model, tokenizer, splits, EncodedDataset([]), EncodedDataset([]), input_names, max_seq_length,
        list(spec.labels), task, params,
    )
    return _started(dataclasses.replace(
        prepared, train_set=prepared.encode(splits.train), validation_set=prepared.encode(splits.validation)
    ))


def _started(prepared: PreparedText) -> PreparedText:
    """A bi-encoder's regression head starts at the zero-shot cosines' fit (`pair_encoder.fit_cosine_map`)."""
    model = prepared.model
    if model.bi_encoder and prepared.task.name == "regression":
        fit_cosine_map(model, prepared.train_set, model.collator(prepared.tokenizer))
    return prepared


def saved_text(spec: TrainingSpec, output_dir: Path) -> PreparedText:
    """The text model version written to output_dir, with the spec's validation rows (not encoded: export reads
    the texts)."""
    task = get_task(spec.task)
    preprocessing = json.loads((output_dir / ARTIFACTS["preprocessing"]).read_text())
    model = (TokenClassifier if task.per_token else TextClassifier).from_checkpoint(output_dir / ARTIFACTS["checkpoint"])
    tokenizer = AutoTokenizer.from_pretrained(str(output_dir / ARTIFACTS["tokenizer"]), use_fast=True)
    return PreparedText(
        model, tokenizer, _load_splits(spec, task), EncodedDataset([]), EncodedDataset([]),
        preprocessing["input_names"], preprocessing["max_seq_length"], list(spec.labels), task,
        TaskParams.load(output_dir),
    )


def _load_splits(spec: TrainingSpec, task: Task) -> Splits[Any]:
    hp = spec.hyperparameters
    if task.per_token:
        tagged = read_tagged(Path(spec.validation_path), task) if spec.validation_path else None
        return make_splits(
            read_tagged(Path(spec.train_path), task), tagged, spec.labels, task, fraction=hp.validation_fraction,
            seed=hp.seed,
        )
    validation = (
        read_examples(Path(spec.validation_path), task, pairs=spec.text_pairs) if spec.validation_path else None
    )
    return make_splits(
        read_examples(Path(spec.train_path), task, pairs=spec.text_pairs),
        validation,
        spec.labels,
        task,
        fraction=hp.validation_fraction,
        seed=hp.seed,
    )
