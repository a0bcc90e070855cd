"""FineTune's checks of a request against its datasets and backbone (each raises InvalidArgument saying what to fix)."""

from __future__ import annotations

from tuneserve.engines.training.spec import BackboneRef, ExportSpec, Hyperparameters
from tuneserve.errors import InvalidArgument
from tuneserve.tasks import get_task
from tuneserve.types import DatasetRecord, ModelRecord


def _shape(task: str, text_pairs: bool) -> str:
    return f"{task or 'classification'}{' with text pairs' if text_pairs else ''}"


def check_processes(hp: Hyperparameters, processes: int) -> None:
    if hp.gradual_unfreezing and processes > 1:
        # NOTE: DDP fixes the parameters it synchronises when it wraps the model; ones unfrozen later would train
        # apart on each process.
        raise InvalidArgument(
            "gradual_unfreezing cannot run with several training processes (training.processes_per_job or "
            "nodes_per_job > 1): DDP would not synchronise the layers it unfreezes; use freeze=top_k instead"
        )


def check_model_labels(model: ModelRecord, train: DatasetRecord) -> None:
    """A new version of an existing model must have its task, input shape and labels."""
    if (model.task or "classification", model.text_pairs) != (train.task or "classification", train.text_pairs):
        raise InvalidArgument(
            f"dataset {train.id!r} is {_shape(train.task, train.text_pairs)} (task, text_pairs) but model "
            f"{model.id!r} is {_shape(model.task, model.text_pairs)}; leave model_id empty to create a new model"
        )
    if model.labels != train.labels:
        raise InvalidArgument(
            f"dataset labels {train.labels} differ from model {model.id!r} labels {model.labels}; "
            "leave model_id empty to create a new model"
        )


def check_validation_labels(train: DatasetRecord, validation: DatasetRecord) -> None:
    """The validation dataset has the training dataset's task and input shape, and none of its labels is new."""
    if (validation.task or "classification", validation.text_pairs) != (train.task or "classification", train.text_pairs):
        raise InvalidArgument(
            f"validation dataset {validation.id!r} is {_shape(validation.task, validation.text_pairs)} but training "
            f"dataset {train.id!r} is {_shape(train.task, train.text_pairs)} (task, text_pairs); they must match"
        )
    unknown = sorted(set(validation.labels) - set(train.labels))
    if unknown:
        raise InvalidArgument(
            f"validation dataset {validation.id!r} has labels the training dataset lacks: {', '.join(unknown)}"
        )


def check_modality(dataset: DatasetRecord, backbone: BackboneRef) -> None:
    """The backbone reads the dataset's inputs: its modality, and text pairs only with a text backbone."""
    if dataset.text_pairs and backbone.modality != "text":
        raise InvalidArgument(
            f"dataset {dataset.id!r} ({dataset.name!r}) holds text pairs (text_pairs), which a text backbone encodes "
            f"together; backbone {backbone.name!r} is for {backbone.modality} inputs"
        )
    if dataset.modality != backbone.modality:
        raise InvalidArgument(
            f"dataset {dataset.id!r} ({dataset.name!r}) holds {dataset.modality} rows but backbone {backbone.name!r} "
            f"is for {backbone.modality} inputs; choose a backbone for {dataset.modality} (see `tuneserve backbones`)"
        )


def check_export(export: ExportSpec, backbone: BackboneRef) -> None:
    if not 0.0 <= export.int8_max_f1_drop <= 1.0:  # NOTE: also rejects NaN
        raise InvalidArgument(
            f"export.int8_max_f1_drop = {export.int8_max_f1_drop} is out of range [0, 1] "
            "(a macro F1 difference: 0.01 = 1 point)"
        )
    if export.int8 and backbone.modality != "text":
        # NOTE: dynamic int8 slows CNNs down; their int8 path is static calibration, which does not exist yet.
        raise InvalidArgument(
            f"export.int8 is dynamic quantisation for text backbones; {backbone.name!r} is an {backbone.modality} "
            "backbone (dynamic int8 makes CNNs slower)"
        )


def check_split(train: DatasetRecord, fraction: float) -> None:
    """A random validation split of `train` can work: some rows, and for a stratified split (single-label) at least 2
    rows per label and a validation row per label."""
    if round(train.num_rows * fraction) < 1:
        raise InvalidArgument(
            f"validation_fraction {fraction} of {train.num_rows} rows leaves no validation row; raise "
            "validation_fraction or pass validation_dataset_id"
        )
    if not get_task(train.task).stratified:
        return
    rare = sorted(label for label, n in train.label_counts.items() if n < 2)
    if rare:
        raise InvalidArgument(
            f"label(s) {', '.join(rare)} have fewer than 2 rows, too few for a stratified validation split; "
            "add rows or pass validation_dataset_id"
        )
    if round(train.num_rows * fraction) < len(train.labels):
        raise InvalidArgument(
            f"validation_fraction {fraction} of {train.num_rows} rows leaves fewer validation rows than the "
            f"{len(train.labels)} labels; raise validation_fraction or pass validation_dataset_id"
        )


def check_datasets(
    train: DatasetRecord, validation: DatasetRecord | None, backbone: BackboneRef, validation_fraction: float
) -> None:
    """The training dataset (and the validation one, or the split that makes it) against each other and the backbone."""
    if validation:
        check_validation_labels(train, validation)
    else:
        check_split(train, validation_fraction)
    check_modality(train, backbone)
    if validation:
        check_modality(validation, backbone)

