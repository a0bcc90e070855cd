import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from tuneserve_client.proto.tuneserve.v1 import common_pb2 as _common_pb2
from tuneserve_client.proto.tuneserve.v1 import models_pb2 as _models_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class JobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATE_UNSPECIFIED: _ClassVar[JobState]
    JOB_STATE_QUEUED: _ClassVar[JobState]
    JOB_STATE_RUNNING: _ClassVar[JobState]
    JOB_STATE_SUCCEEDED: _ClassVar[JobState]
    JOB_STATE_FAILED: _ClassVar[JobState]
    JOB_STATE_CANCELLED: _ClassVar[JobState]

class TrialState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRIAL_STATE_UNSPECIFIED: _ClassVar[TrialState]
    TRIAL_STATE_RUNNING: _ClassVar[TrialState]
    TRIAL_STATE_COMPLETE: _ClassVar[TrialState]
    TRIAL_STATE_PRUNED: _ClassVar[TrialState]
    TRIAL_STATE_FAILED: _ClassVar[TrialState]

class CandidateStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CANDIDATE_STATUS_UNSPECIFIED: _ClassVar[CandidateStatus]
    CANDIDATE_STATUS_SCORED: _ClassVar[CandidateStatus]
    CANDIDATE_STATUS_BUDGET_EXHAUSTED: _ClassVar[CandidateStatus]
    CANDIDATE_STATUS_INCOMPATIBLE: _ClassVar[CandidateStatus]
    CANDIDATE_STATUS_NOT_INSTALLED: _ClassVar[CandidateStatus]
    CANDIDATE_STATUS_FAILED: _ClassVar[CandidateStatus]
JOB_STATE_UNSPECIFIED: JobState
JOB_STATE_QUEUED: JobState
JOB_STATE_RUNNING: JobState
JOB_STATE_SUCCEEDED: JobState
JOB_STATE_FAILED: JobState
JOB_STATE_CANCELLED: JobState
TRIAL_STATE_UNSPECIFIED: TrialState
TRIAL_STATE_RUNNING: TrialState
TRIAL_STATE_COMPLETE: TrialState
TRIAL_STATE_PRUNED: TrialState
TRIAL_STATE_FAILED: TrialState
CANDIDATE_STATUS_UNSPECIFIED: CandidateStatus
CANDIDATE_STATUS_SCORED: CandidateStatus
CANDIDATE_STATUS_BUDGET_EXHAUSTED: CandidateStatus
CANDIDATE_STATUS_INCOMPATIBLE: CandidateStatus
CANDIDATE_STATUS_NOT_INSTALLED: CandidateStatus
CANDIDATE_STATUS_FAILED: CandidateStatus

class Hyperparameters(_message.Message):
    __slots__ = ("epochs", "max_steps", "batch_size", "learning_rate", "head_learning_rate", "weight_decay", "warmup_ratio", "max_seq_length", "early_stopping_patience", "metric_for_best_model", "class_weighting", "seed", "validation_fraction", "label_smoothing", "head_dropout", "eval_steps", "freeze", "trainable_layers", "layer_lr_decay", "gradual_unfreezing", "gradient_accumulation_steps", "lr_scheduler", "augment_flip", "augment_random_resized_crop", "regression_loss", "refit", "calibrate", "pair_encoding")
    EPOCHS_FIELD_NUMBER: _ClassVar[int]
    MAX_STEPS_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    HEAD_LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_DECAY_FIELD_NUMBER: _ClassVar[int]
    WARMUP_RATIO_FIELD_NUMBER: _ClassVar[int]
    MAX_SEQ_LENGTH_FIELD_NUMBER: _ClassVar[int]
    EARLY_STOPPING_PATIENCE_FIELD_NUMBER: _ClassVar[int]
    METRIC_FOR_BEST_MODEL_FIELD_NUMBER: _ClassVar[int]
    CLASS_WEIGHTING_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_FRACTION_FIELD_NUMBER: _ClassVar[int]
    LABEL_SMOOTHING_FIELD_NUMBER: _ClassVar[int]
    HEAD_DROPOUT_FIELD_NUMBER: _ClassVar[int]
    EVAL_STEPS_FIELD_NUMBER: _ClassVar[int]
    FREEZE_FIELD_NUMBER: _ClassVar[int]
    TRAINABLE_LAYERS_FIELD_NUMBER: _ClassVar[int]
    LAYER_LR_DECAY_FIELD_NUMBER: _ClassVar[int]
    GRADUAL_UNFREEZING_FIELD_NUMBER: _ClassVar[int]
    GRADIENT_ACCUMULATION_STEPS_FIELD_NUMBER: _ClassVar[int]
    LR_SCHEDULER_FIELD_NUMBER: _ClassVar[int]
    AUGMENT_FLIP_FIELD_NUMBER: _ClassVar[int]
    AUGMENT_RANDOM_RESIZED_CROP_FIELD_NUMBER: _ClassVar[int]
    REGRESSION_LOSS_FIELD_NUMBER: _ClassVar[int]
    REFIT_FIELD_NUMBER: _ClassVar[int]
    CALIBRATE_FIELD_NUMBER: _ClassVar[int]
    PAIR_ENCODING_FIELD_NUMBER: _ClassVar[int]
    epochs: int
    max_steps: int
    batch_size: int
    learning_rate: float
    head_learning_rate: float
    weight_decay: float
    warmup_ratio: float
    max_seq_length: int
    early_stopping_patience: int
    metric_for_best_model: str
    class_weighting: bool
    seed: int
    validation_fraction: float
    label_smoothing: float
    head_dropout: float
    eval_steps: int
    freeze: str
    trainable_layers: int
    layer_lr_decay: float
    gradual_unfreezing: bool
    gradient_accumulation_steps: int
    lr_scheduler: str
    augment_flip: bool
    augment_random_resized_crop: bool
    regression_loss: str
    refit: str
    calibrate: bool
    pair_encoding: str
    def __init__(self, epochs: _Optional[int] = ..., max_steps: _Optional[int] = ..., batch_size: _Optional[int] = ..., learning_rate: _Optional[float] = ..., head_learning_rate: _Optional[float] = ..., weight_decay: _Optional[float] = ..., warmup_ratio: _Optional[float] = ..., max_seq_length: _Optional[int] = ..., early_stopping_patience: _Optional[int] = ..., metric_for_best_model: _Optional[str] = ..., class_weighting: _Optional[bool] = ..., seed: _Optional[int] = ..., validation_fraction: _Optional[float] = ..., label_smoothing: _Optional[float] = ..., head_dropout: _Optional[float] = ..., eval_steps: _Optional[int] = ..., freeze: _Optional[str] = ..., trainable_layers: _Optional[int] = ..., layer_lr_decay: _Optional[float] = ..., gradual_unfreezing: _Optional[bool] = ..., gradient_accumulation_steps: _Optional[int] = ..., lr_scheduler: _Optional[str] = ..., augment_flip: _Optional[bool] = ..., augment_random_resized_crop: _Optional[bool] = ..., regression_loss: _Optional[str] = ..., refit: _Optional[str] = ..., calibrate: _Optional[bool] = ..., pair_encoding: _Optional[str] = ...) -> None: ...

class ExportOptions(_message.Message):
    __slots__ = ("int8", "int8_max_f1_drop")
    INT8_FIELD_NUMBER: _ClassVar[int]
    INT8_MAX_F1_DROP_FIELD_NUMBER: _ClassVar[int]
    int8: bool
    int8_max_f1_drop: float
    def __init__(self, int8: _Optional[bool] = ..., int8_max_f1_drop: _Optional[float] = ...) -> None: ...

class FineTuneRequest(_message.Message):
    __slots__ = ("dataset_id", "validation_dataset_id", "backbone", "hyperparameters", "model_name", "model_id", "baselines", "export", "search", "search_budget_seconds")
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    BACKBONE_FIELD_NUMBER: _ClassVar[int]
    HYPERPARAMETERS_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    BASELINES_FIELD_NUMBER: _ClassVar[int]
    EXPORT_FIELD_NUMBER: _ClassVar[int]
    SEARCH_FIELD_NUMBER: _ClassVar[int]
    SEARCH_BUDGET_SECONDS_FIELD_NUMBER: _ClassVar[int]
    dataset_id: str
    validation_dataset_id: str
    backbone: str
    hyperparameters: Hyperparameters
    model_name: str
    model_id: str
    baselines: _containers.RepeatedScalarFieldContainer[str]
    export: ExportOptions
    search: int
    search_budget_seconds: float
    def __init__(self, dataset_id: _Optional[str] = ..., validation_dataset_id: _Optional[str] = ..., backbone: _Optional[str] = ..., hyperparameters: _Optional[_Union[Hyperparameters, _Mapping]] = ..., model_name: _Optional[str] = ..., model_id: _Optional[str] = ..., baselines: _Optional[_Iterable[str]] = ..., export: _Optional[_Union[ExportOptions, _Mapping]] = ..., search: _Optional[int] = ..., search_budget_seconds: _Optional[float] = ...) -> None: ...

class JobProgress(_message.Message):
    __slots__ = ("step", "total_steps", "epoch", "eta_seconds", "train_loss")
    STEP_FIELD_NUMBER: _ClassVar[int]
    TOTAL_STEPS_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    ETA_SECONDS_FIELD_NUMBER: _ClassVar[int]
    TRAIN_LOSS_FIELD_NUMBER: _ClassVar[int]
    step: int
    total_steps: int
    epoch: float
    eta_seconds: float
    train_loss: float
    def __init__(self, step: _Optional[int] = ..., total_steps: _Optional[int] = ..., epoch: _Optional[float] = ..., eta_seconds: _Optional[float] = ..., train_loss: _Optional[float] = ...) -> None: ...

class JobResult(_message.Message):
    __slots__ = ("validation_metrics", "best_metric_name", "best_metric", "best_step", "stopped_early", "train_seconds", "samples_per_second", "train_examples", "validation_examples", "parity_max_abs_diff", "device", "precision", "final_train_loss", "learning_curve", "fit", "baselines", "transfer_verdict", "variant_macro_f1", "validation_confusion_matrix", "validation_per_class", "variant_metric", "variant_metrics", "label_thresholds", "auto_hyperparameters", "calibration", "trials", "refit", "max_seq_length", "refit_steps", "refit_examples", "refit_seconds", "auto_actions", "refit_members")
    class ValidationMetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class VariantMacroF1Entry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class VariantMetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class LabelThresholdsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    VALIDATION_METRICS_FIELD_NUMBER: _ClassVar[int]
    BEST_METRIC_NAME_FIELD_NUMBER: _ClassVar[int]
    BEST_METRIC_FIELD_NUMBER: _ClassVar[int]
    BEST_STEP_FIELD_NUMBER: _ClassVar[int]
    STOPPED_EARLY_FIELD_NUMBER: _ClassVar[int]
    TRAIN_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    TRAIN_EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    PARITY_MAX_ABS_DIFF_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    PRECISION_FIELD_NUMBER: _ClassVar[int]
    FINAL_TRAIN_LOSS_FIELD_NUMBER: _ClassVar[int]
    LEARNING_CURVE_FIELD_NUMBER: _ClassVar[int]
    FIT_FIELD_NUMBER: _ClassVar[int]
    BASELINES_FIELD_NUMBER: _ClassVar[int]
    TRANSFER_VERDICT_FIELD_NUMBER: _ClassVar[int]
    VARIANT_MACRO_F1_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_CONFUSION_MATRIX_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_PER_CLASS_FIELD_NUMBER: _ClassVar[int]
    VARIANT_METRIC_FIELD_NUMBER: _ClassVar[int]
    VARIANT_METRICS_FIELD_NUMBER: _ClassVar[int]
    LABEL_THRESHOLDS_FIELD_NUMBER: _ClassVar[int]
    AUTO_HYPERPARAMETERS_FIELD_NUMBER: _ClassVar[int]
    CALIBRATION_FIELD_NUMBER: _ClassVar[int]
    TRIALS_FIELD_NUMBER: _ClassVar[int]
    REFIT_FIELD_NUMBER: _ClassVar[int]
    MAX_SEQ_LENGTH_FIELD_NUMBER: _ClassVar[int]
    REFIT_STEPS_FIELD_NUMBER: _ClassVar[int]
    REFIT_EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    REFIT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    AUTO_ACTIONS_FIELD_NUMBER: _ClassVar[int]
    REFIT_MEMBERS_FIELD_NUMBER: _ClassVar[int]
    validation_metrics: _containers.ScalarMap[str, float]
    best_metric_name: str
    best_metric: float
    best_step: int
    stopped_early: bool
    train_seconds: float
    samples_per_second: float
    train_examples: int
    validation_examples: int
    parity_max_abs_diff: float
    device: str
    precision: str
    final_train_loss: float
    learning_curve: _containers.RepeatedCompositeFieldContainer[LearningCurvePoint]
    fit: FitDiagnosis
    baselines: _containers.RepeatedCompositeFieldContainer[BaselineResult]
    transfer_verdict: str
    variant_macro_f1: _containers.ScalarMap[str, float]
    validation_confusion_matrix: _models_pb2.ConfusionMatrix
    validation_per_class: _containers.RepeatedCompositeFieldContainer[_models_pb2.ClassMetrics]
    variant_metric: str
    variant_metrics: _containers.ScalarMap[str, float]
    label_thresholds: _containers.ScalarMap[str, float]
    auto_hyperparameters: _containers.RepeatedScalarFieldContainer[str]
    calibration: Calibration
    trials: _containers.RepeatedCompositeFieldContainer[Trial]
    refit: bool
    max_seq_length: int
    refit_steps: int
    refit_examples: int
    refit_seconds: float
    auto_actions: _containers.RepeatedScalarFieldContainer[str]
    refit_members: int
    def __init__(self, validation_metrics: _Optional[_Mapping[str, float]] = ..., best_metric_name: _Optional[str] = ..., best_metric: _Optional[float] = ..., best_step: _Optional[int] = ..., stopped_early: _Optional[bool] = ..., train_seconds: _Optional[float] = ..., samples_per_second: _Optional[float] = ..., train_examples: _Optional[int] = ..., validation_examples: _Optional[int] = ..., parity_max_abs_diff: _Optional[float] = ..., device: _Optional[str] = ..., precision: _Optional[str] = ..., final_train_loss: _Optional[float] = ..., learning_curve: _Optional[_Iterable[_Union[LearningCurvePoint, _Mapping]]] = ..., fit: _Optional[_Union[FitDiagnosis, _Mapping]] = ..., baselines: _Optional[_Iterable[_Union[BaselineResult, _Mapping]]] = ..., transfer_verdict: _Optional[str] = ..., variant_macro_f1: _Optional[_Mapping[str, float]] = ..., validation_confusion_matrix: _Optional[_Union[_models_pb2.ConfusionMatrix, _Mapping]] = ..., validation_per_class: _Optional[_Iterable[_Union[_models_pb2.ClassMetrics, _Mapping]]] = ..., variant_metric: _Optional[str] = ..., variant_metrics: _Optional[_Mapping[str, float]] = ..., label_thresholds: _Optional[_Mapping[str, float]] = ..., auto_hyperparameters: _Optional[_Iterable[str]] = ..., calibration: _Optional[_Union[Calibration, _Mapping]] = ..., trials: _Optional[_Iterable[_Union[Trial, _Mapping]]] = ..., refit: _Optional[bool] = ..., max_seq_length: _Optional[int] = ..., refit_steps: _Optional[int] = ..., refit_examples: _Optional[int] = ..., refit_seconds: _Optional[float] = ..., auto_actions: _Optional[_Iterable[str]] = ..., refit_members: _Optional[int] = ...) -> None: ...

class Calibration(_message.Message):
    __slots__ = ("temperature", "ece_before", "ece_after", "nll_before", "nll_after", "bias", "refit_temperature", "logit_scale")
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    ECE_BEFORE_FIELD_NUMBER: _ClassVar[int]
    ECE_AFTER_FIELD_NUMBER: _ClassVar[int]
    NLL_BEFORE_FIELD_NUMBER: _ClassVar[int]
    NLL_AFTER_FIELD_NUMBER: _ClassVar[int]
    BIAS_FIELD_NUMBER: _ClassVar[int]
    REFIT_TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    LOGIT_SCALE_FIELD_NUMBER: _ClassVar[int]
    temperature: _containers.RepeatedScalarFieldContainer[float]
    ece_before: float
    ece_after: float
    nll_before: float
    nll_after: float
    bias: _containers.RepeatedScalarFieldContainer[float]
    refit_temperature: _containers.RepeatedScalarFieldContainer[float]
    logit_scale: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, temperature: _Optional[_Iterable[float]] = ..., ece_before: _Optional[float] = ..., ece_after: _Optional[float] = ..., nll_before: _Optional[float] = ..., nll_after: _Optional[float] = ..., bias: _Optional[_Iterable[float]] = ..., refit_temperature: _Optional[_Iterable[float]] = ..., logit_scale: _Optional[_Iterable[float]] = ...) -> None: ...

class Trial(_message.Message):
    __slots__ = ("number", "params", "metric", "state", "duration_seconds", "steps", "best", "reason")
    class ParamsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    DURATION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    BEST_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    number: int
    params: _containers.ScalarMap[str, str]
    metric: float
    state: TrialState
    duration_seconds: float
    steps: int
    best: bool
    reason: str
    def __init__(self, number: _Optional[int] = ..., params: _Optional[_Mapping[str, str]] = ..., metric: _Optional[float] = ..., state: _Optional[_Union[TrialState, str]] = ..., duration_seconds: _Optional[float] = ..., steps: _Optional[int] = ..., best: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...

class LearningCurvePoint(_message.Message):
    __slots__ = ("step", "epoch", "train_loss", "validation_loss", "metrics")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    STEP_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    TRAIN_LOSS_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_LOSS_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    step: int
    epoch: float
    train_loss: float
    validation_loss: float
    metrics: _containers.ScalarMap[str, float]
    def __init__(self, step: _Optional[int] = ..., epoch: _Optional[float] = ..., train_loss: _Optional[float] = ..., validation_loss: _Optional[float] = ..., metrics: _Optional[_Mapping[str, float]] = ...) -> None: ...

class FitDiagnosis(_message.Message):
    __slots__ = ("verdict", "rule", "train_validation_gap", "advice")
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    TRAIN_VALIDATION_GAP_FIELD_NUMBER: _ClassVar[int]
    ADVICE_FIELD_NUMBER: _ClassVar[int]
    verdict: str
    rule: str
    train_validation_gap: float
    advice: str
    def __init__(self, verdict: _Optional[str] = ..., rule: _Optional[str] = ..., train_validation_gap: _Optional[float] = ..., advice: _Optional[str] = ...) -> None: ...

class BaselineResult(_message.Message):
    __slots__ = ("kind", "model_id", "validation_metrics", "train_seconds")
    class ValidationMetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    KIND_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_METRICS_FIELD_NUMBER: _ClassVar[int]
    TRAIN_SECONDS_FIELD_NUMBER: _ClassVar[int]
    kind: str
    model_id: str
    validation_metrics: _containers.ScalarMap[str, float]
    train_seconds: float
    def __init__(self, kind: _Optional[str] = ..., model_id: _Optional[str] = ..., validation_metrics: _Optional[_Mapping[str, float]] = ..., train_seconds: _Optional[float] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("id", "state", "dataset_id", "validation_dataset_id", "backbone", "hyperparameters", "model_id", "model_version", "progress", "result", "error", "create_time", "start_time", "end_time", "restarts", "task", "text_pairs")
    ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    BACKBONE_FIELD_NUMBER: _ClassVar[int]
    HYPERPARAMETERS_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    RESTARTS_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    TEXT_PAIRS_FIELD_NUMBER: _ClassVar[int]
    id: str
    state: JobState
    dataset_id: str
    validation_dataset_id: str
    backbone: str
    hyperparameters: Hyperparameters
    model_id: str
    model_version: int
    progress: JobProgress
    result: JobResult
    error: str
    create_time: _timestamp_pb2.Timestamp
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    restarts: int
    task: _common_pb2.Task
    text_pairs: bool
    def __init__(self, id: _Optional[str] = ..., state: _Optional[_Union[JobState, str]] = ..., dataset_id: _Optional[str] = ..., validation_dataset_id: _Optional[str] = ..., backbone: _Optional[str] = ..., hyperparameters: _Optional[_Union[Hyperparameters, _Mapping]] = ..., model_id: _Optional[str] = ..., model_version: _Optional[int] = ..., progress: _Optional[_Union[JobProgress, _Mapping]] = ..., result: _Optional[_Union[JobResult, _Mapping]] = ..., error: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., restarts: _Optional[int] = ..., task: _Optional[_Union[_common_pb2.Task, str]] = ..., text_pairs: _Optional[bool] = ...) -> None: ...

class GetJobRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ListJobsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "state")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    state: JobState
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., state: _Optional[_Union[JobState, str]] = ...) -> None: ...

class ListJobsResponse(_message.Message):
    __slots__ = ("jobs", "next_page_token")
    JOBS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[Job]
    next_page_token: str
    def __init__(self, jobs: _Optional[_Iterable[_Union[Job, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class WatchJobRequest(_message.Message):
    __slots__ = ("id", "after_sequence")
    ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    id: str
    after_sequence: int
    def __init__(self, id: _Optional[str] = ..., after_sequence: _Optional[int] = ...) -> None: ...

class CancelJobRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class StateChanged(_message.Message):
    __slots__ = ("state", "reason")
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    state: JobState
    reason: str
    def __init__(self, state: _Optional[_Union[JobState, str]] = ..., reason: _Optional[str] = ...) -> None: ...

class TrainingProgress(_message.Message):
    __slots__ = ("step", "total_steps", "epoch", "eta_seconds", "train_loss", "learning_rate", "samples_per_second")
    STEP_FIELD_NUMBER: _ClassVar[int]
    TOTAL_STEPS_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    ETA_SECONDS_FIELD_NUMBER: _ClassVar[int]
    TRAIN_LOSS_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    step: int
    total_steps: int
    epoch: float
    eta_seconds: float
    train_loss: float
    learning_rate: float
    samples_per_second: float
    def __init__(self, step: _Optional[int] = ..., total_steps: _Optional[int] = ..., epoch: _Optional[float] = ..., eta_seconds: _Optional[float] = ..., train_loss: _Optional[float] = ..., learning_rate: _Optional[float] = ..., samples_per_second: _Optional[float] = ...) -> None: ...

class EvaluationDone(_message.Message):
    __slots__ = ("step", "epoch", "validation_loss", "metrics")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    STEP_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_LOSS_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    step: int
    epoch: float
    validation_loss: float
    metrics: _containers.ScalarMap[str, float]
    def __init__(self, step: _Optional[int] = ..., epoch: _Optional[float] = ..., validation_loss: _Optional[float] = ..., metrics: _Optional[_Mapping[str, float]] = ...) -> None: ...

class CheckpointSaved(_message.Message):
    __slots__ = ("step", "is_best", "metric")
    STEP_FIELD_NUMBER: _ClassVar[int]
    IS_BEST_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    step: int
    is_best: bool
    metric: float
    def __init__(self, step: _Optional[int] = ..., is_best: _Optional[bool] = ..., metric: _Optional[float] = ...) -> None: ...

class EarlyStopped(_message.Message):
    __slots__ = ("step", "reason")
    STEP_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    step: int
    reason: str
    def __init__(self, step: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class ExportDone(_message.Message):
    __slots__ = ("format", "parity_max_abs_diff", "parity_examples", "size_bytes")
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    PARITY_MAX_ABS_DIFF_FIELD_NUMBER: _ClassVar[int]
    PARITY_EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    format: str
    parity_max_abs_diff: float
    parity_examples: int
    size_bytes: int
    def __init__(self, format: _Optional[str] = ..., parity_max_abs_diff: _Optional[float] = ..., parity_examples: _Optional[int] = ..., size_bytes: _Optional[int] = ...) -> None: ...

class JobEvent(_message.Message):
    __slots__ = ("job_id", "sequence", "time", "message", "state_changed", "progress", "evaluation", "checkpoint", "early_stopped", "export", "trial")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    STATE_CHANGED_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    EVALUATION_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    EARLY_STOPPED_FIELD_NUMBER: _ClassVar[int]
    EXPORT_FIELD_NUMBER: _ClassVar[int]
    TRIAL_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    sequence: int
    time: _timestamp_pb2.Timestamp
    message: str
    state_changed: StateChanged
    progress: TrainingProgress
    evaluation: EvaluationDone
    checkpoint: CheckpointSaved
    early_stopped: EarlyStopped
    export: ExportDone
    trial: Trial
    def __init__(self, job_id: _Optional[str] = ..., sequence: _Optional[int] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., message: _Optional[str] = ..., state_changed: _Optional[_Union[StateChanged, _Mapping]] = ..., progress: _Optional[_Union[TrainingProgress, _Mapping]] = ..., evaluation: _Optional[_Union[EvaluationDone, _Mapping]] = ..., checkpoint: _Optional[_Union[CheckpointSaved, _Mapping]] = ..., early_stopped: _Optional[_Union[EarlyStopped, _Mapping]] = ..., export: _Optional[_Union[ExportDone, _Mapping]] = ..., trial: _Optional[_Union[Trial, _Mapping]] = ...) -> None: ...

class Backbone(_message.Message):
    __slots__ = ("name", "modality", "description", "parameter_count", "hidden_size", "max_sequence_length", "license", "source", "available", "is_default", "cpu_latency_ms", "latency_measured_on")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MODALITY_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    PARAMETER_COUNT_FIELD_NUMBER: _ClassVar[int]
    HIDDEN_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAX_SEQUENCE_LENGTH_FIELD_NUMBER: _ClassVar[int]
    LICENSE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    IS_DEFAULT_FIELD_NUMBER: _ClassVar[int]
    CPU_LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MEASURED_ON_FIELD_NUMBER: _ClassVar[int]
    name: str
    modality: _common_pb2.Modality
    description: str
    parameter_count: int
    hidden_size: int
    max_sequence_length: int
    license: str
    source: str
    available: bool
    is_default: bool
    cpu_latency_ms: float
    latency_measured_on: str
    def __init__(self, name: _Optional[str] = ..., modality: _Optional[_Union[_common_pb2.Modality, str]] = ..., description: _Optional[str] = ..., parameter_count: _Optional[int] = ..., hidden_size: _Optional[int] = ..., max_sequence_length: _Optional[int] = ..., license: _Optional[str] = ..., source: _Optional[str] = ..., available: _Optional[bool] = ..., is_default: _Optional[bool] = ..., cpu_latency_ms: _Optional[float] = ..., latency_measured_on: _Optional[str] = ...) -> None: ...

class ListBackbonesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListBackbonesResponse(_message.Message):
    __slots__ = ("backbones",)
    BACKBONES_FIELD_NUMBER: _ClassVar[int]
    backbones: _containers.RepeatedCompositeFieldContainer[Backbone]
    def __init__(self, backbones: _Optional[_Iterable[_Union[Backbone, _Mapping]]] = ...) -> None: ...

class RecommendBackboneRequest(_message.Message):
    __slots__ = ("dataset_id", "backbones", "max_examples", "time_budget_seconds", "max_seq_length")
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    BACKBONES_FIELD_NUMBER: _ClassVar[int]
    MAX_EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    TIME_BUDGET_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MAX_SEQ_LENGTH_FIELD_NUMBER: _ClassVar[int]
    dataset_id: str
    backbones: _containers.RepeatedScalarFieldContainer[str]
    max_examples: int
    time_budget_seconds: float
    max_seq_length: int
    def __init__(self, dataset_id: _Optional[str] = ..., backbones: _Optional[_Iterable[str]] = ..., max_examples: _Optional[int] = ..., time_budget_seconds: _Optional[float] = ..., max_seq_length: _Optional[int] = ...) -> None: ...

class BackboneScore(_message.Message):
    __slots__ = ("backbone", "rank", "status", "reason", "score", "probe_accuracy", "examples", "feature_dim", "seconds", "modality")
    BACKBONE_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    PROBE_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    FEATURE_DIM_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    MODALITY_FIELD_NUMBER: _ClassVar[int]
    backbone: str
    rank: int
    status: CandidateStatus
    reason: str
    score: float
    probe_accuracy: float
    examples: int
    feature_dim: int
    seconds: float
    modality: _common_pb2.Modality
    def __init__(self, backbone: _Optional[str] = ..., rank: _Optional[int] = ..., status: _Optional[_Union[CandidateStatus, str]] = ..., reason: _Optional[str] = ..., score: _Optional[float] = ..., probe_accuracy: _Optional[float] = ..., examples: _Optional[int] = ..., feature_dim: _Optional[int] = ..., seconds: _Optional[float] = ..., modality: _Optional[_Union[_common_pb2.Modality, str]] = ...) -> None: ...

class RecommendBackboneResponse(_message.Message):
    __slots__ = ("dataset_id", "method", "ranking", "examples", "time_budget_seconds", "seconds_total")
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    RANKING_FIELD_NUMBER: _ClassVar[int]
    EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    TIME_BUDGET_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SECONDS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    dataset_id: str
    method: str
    ranking: _containers.RepeatedCompositeFieldContainer[BackboneScore]
    examples: int
    time_budget_seconds: float
    seconds_total: float
    def __init__(self, dataset_id: _Optional[str] = ..., method: _Optional[str] = ..., ranking: _Optional[_Iterable[_Union[BackboneScore, _Mapping]]] = ..., examples: _Optional[int] = ..., time_budget_seconds: _Optional[float] = ..., seconds_total: _Optional[float] = ...) -> None: ...
