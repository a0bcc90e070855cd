"""The image side of a fine-tuning job (the pipeline's `prepare` for `spec.backbone.modality == "image"`): stored image
rows -> EfficientNet-Lite classifier + datasets, and after training its artifacts and its ONNX export.

Artifacts (spec.ARTIFACTS): checkpoint/ (model.safetensors + classifier.json), labels.json, preprocessing.json
({"modality": "image", "input_name": "pixel_values", resize, crop, mean, std}), model.onnx, variants.json.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tuneserve.engines.export.vision import export_image_onnx
from tuneserve.engines.training.artifacts import write_variants
from tuneserve.engines.training.data import Splits, make_splits, targets
from tuneserve.engines.training.events import EventWriter, ExportEvent
from tuneserve.engines.training.spec import ARTIFACTS, TrainingSpec
from tuneserve.engines.training.trainer import new_classifier
from tuneserve.engines.training.vision import INPUT_NAME, ImageClassifier
from tuneserve.engines.training.vision_data import Augmentation, ImageDataset, ImageExample, read_image_examples
from tuneserve.tasks import Task, TaskParams, get_task


@dataclass(frozen=True)
class PreparedImages:
    """The image classifier with a new head and its datasets (augmented training split), ready for the Trainer."""

    model: ImageClassifier
    splits: Splits[ImageExample]
    train_set: ImageDataset
    validation_set: ImageDataset
    labels: list[str]
    task: Task
    params: TaskParams      # fitted on the training rows before training (the regression scaler)
    augment: Augmentation
    seed: int
    tokenizer: None = None  # images need no tokenizer: the Trainer stacks fixed-size tensors

    def encode(self, examples: list[ImageExample]) -> ImageDataset:
        """Examples as the model is evaluated on them (no augmentation)."""
        return ImageDataset(
            examples, self.labels, self.model.preprocessing, task=self.task, params=self.params
        )

    def training_set(self, examples: list[ImageExample]) -> ImageDataset:
        """Examples as the model trains on them: a fresh augmented view of each image per access."""
        return ImageDataset(
            examples, self.labels, self.model.preprocessing, augment=self.augment, seed=self.seed, task=self.task,
            params=self.params,
        )

    def with_fresh_model(self, spec: TrainingSpec, rows: list[ImageExample]) -> PreparedImages:
        """The same preparation with a new model of the spec (a refit's: its class weights from `rows`)."""
        return dataclasses.replace(self, model=new_classifier(ImageClassifier, spec, rows))

    def write_artifacts(self, output_dir: Path) -> None:
        output_dir.mkdir(parents=True, exist_ok=True)
        self.model.save_checkpoint(output_dir / ARTIFACTS["checkpoint"])
        _write_json(output_dir / ARTIFACTS["labels"], {"labels": self.labels})
        preprocessing = {"modality": "image", "input_name": INPUT_NAME, **self.model.preprocessing.to_json()}
        _write_json(output_dir / ARTIFACTS["preprocessing"], preprocessing)

    def export(self, output_dir: Path, writer: EventWriter, params: TaskParams) -> float:
        """model.onnx from the best checkpoint (raises ParityCheckFailed); report it; return the parity max diff."""
        examples = self.encode(self.splits.validation[:16])
        pixels = np.stack([examples[i]["pixel_values"].numpy() for i in range(len(examples))])
        export = export_image_onnx(self.model, output_dir / ARTIFACTS["onnx"], examples=pixels, params=params)
        writer.write(ExportEvent.of(export, examples="images"))
        return export.parity.max_abs_diff

    def export_variants(
        self, spec: TrainingSpec, output_dir: Path, writer: EventWriter, params: TaskParams, fp32_value: float
    ) -> dict[str, float]:
        # NOTE: no int8 variant for CNNs: dynamic int8 makes them slower, and the job manager refuses export.int8
        # for image backbones before a job starts.
        write_variants(output_dir, {"fp32": {self.task.guard_metric: fp32_value, "served": True}})
        return {"fp32": fp32_value}


def prepare_images(spec: TrainingSpec) -> PreparedImages:
    hp, task = spec.hyperparameters, get_task(spec.task)
    splits = _splits(spec, task)
    params = task.prepare(targets(splits.train), TaskParams(task=task.name))
    model = new_classifier(ImageClassifier, spec, splits.train)
    augment = Augmentation(flip=hp.augment_flip, random_resized_crop=hp.augment_random_resized_crop)
    prep = model.preprocessing
    train_set = ImageDataset(
        splits.train, spec.labels, prep, augment=augment, seed=hp.seed, task=task, params=params
    )
    validation_set = ImageDataset(splits.validation, spec.labels, prep, task=task, params=params)
    return PreparedImages(
        model, splits, train_set, validation_set, list(spec.labels), task, params, augment=augment, seed=hp.seed
    )


def saved_images(spec: TrainingSpec, output_dir: Path) -> PreparedImages:
    """The image model version written to output_dir, with the spec's validation rows (pipeline.export_saved)."""
    task, params = get_task(spec.task), TaskParams.load(output_dir)
    model = ImageClassifier.from_checkpoint(output_dir / ARTIFACTS["checkpoint"])
    unused = ImageDataset([], spec.labels, model.preprocessing, task=task, params=params)  # NOTE: export reads splits
    hp = spec.hyperparameters
    augment = Augmentation(flip=hp.augment_flip, random_resized_crop=hp.augment_random_resized_crop)
    return PreparedImages(
        model, _splits(spec, task), unused, unused, list(spec.labels), task, params, augment=augment, seed=hp.seed
    )


def _splits(spec: TrainingSpec, task: Task) -> Splits[ImageExample]:
    hp = spec.hyperparameters
    validation = read_image_examples(Path(spec.validation_path), task) if spec.validation_path else None
    return make_splits(
        read_image_examples(Path(spec.train_path), task),
        validation,
        spec.labels,
        task,
        fraction=hp.validation_fraction,
        seed=hp.seed,
    )


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")
