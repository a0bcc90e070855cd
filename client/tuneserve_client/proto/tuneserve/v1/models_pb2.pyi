import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from tuneserve_client.proto.tuneserve.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ModelVersionState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODEL_VERSION_STATE_UNSPECIFIED: _ClassVar[ModelVersionState]
    MODEL_VERSION_STATE_TRAINING: _ClassVar[ModelVersionState]
    MODEL_VERSION_STATE_READY: _ClassVar[ModelVersionState]
    MODEL_VERSION_STATE_FAILED: _ClassVar[ModelVersionState]
MODEL_VERSION_STATE_UNSPECIFIED: ModelVersionState
MODEL_VERSION_STATE_TRAINING: ModelVersionState
MODEL_VERSION_STATE_READY: ModelVersionState
MODEL_VERSION_STATE_FAILED: ModelVersionState

class ModelVersion(_message.Message):
    __slots__ = ("version", "state", "job_id", "validation_metrics", "onnx_size_bytes", "loaded", "execution_provider", "create_time", "variants", "variant_macro_f1", "variant_metric", "variant_metrics", "label_thresholds")
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
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_METRICS_FIELD_NUMBER: _ClassVar[int]
    ONNX_SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    LOADED_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_PROVIDER_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    VARIANTS_FIELD_NUMBER: _ClassVar[int]
    VARIANT_MACRO_F1_FIELD_NUMBER: _ClassVar[int]
    VARIANT_METRIC_FIELD_NUMBER: _ClassVar[int]
    VARIANT_METRICS_FIELD_NUMBER: _ClassVar[int]
    LABEL_THRESHOLDS_FIELD_NUMBER: _ClassVar[int]
    version: int
    state: ModelVersionState
    job_id: str
    validation_metrics: _containers.ScalarMap[str, float]
    onnx_size_bytes: int
    loaded: bool
    execution_provider: str
    create_time: _timestamp_pb2.Timestamp
    variants: _containers.RepeatedScalarFieldContainer[str]
    variant_macro_f1: _containers.ScalarMap[str, float]
    variant_metric: str
    variant_metrics: _containers.ScalarMap[str, float]
    label_thresholds: _containers.ScalarMap[str, float]
    def __init__(self, version: _Optional[int] = ..., state: _Optional[_Union[ModelVersionState, str]] = ..., job_id: _Optional[str] = ..., validation_metrics: _Optional[_Mapping[str, float]] = ..., onnx_size_bytes: _Optional[int] = ..., loaded: _Optional[bool] = ..., execution_provider: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., variants: _Optional[_Iterable[str]] = ..., variant_macro_f1: _Optional[_Mapping[str, float]] = ..., variant_metric: _Optional[str] = ..., variant_metrics: _Optional[_Mapping[str, float]] = ..., label_thresholds: _Optional[_Mapping[str, float]] = ...) -> None: ...

class Model(_message.Message):
    __slots__ = ("id", "name", "modality", "backbone", "labels", "latest_version", "versions", "create_time", "aliases", "kind", "source_job_id", "task", "text_pairs")
    class AliasesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    MODALITY_FIELD_NUMBER: _ClassVar[int]
    BACKBONE_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    LATEST_VERSION_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SOURCE_JOB_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    TEXT_PAIRS_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    modality: _common_pb2.Modality
    backbone: str
    labels: _containers.RepeatedScalarFieldContainer[str]
    latest_version: int
    versions: _containers.RepeatedCompositeFieldContainer[ModelVersion]
    create_time: _timestamp_pb2.Timestamp
    aliases: _containers.ScalarMap[str, int]
    kind: str
    source_job_id: str
    task: _common_pb2.Task
    text_pairs: bool
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., modality: _Optional[_Union[_common_pb2.Modality, str]] = ..., backbone: _Optional[str] = ..., labels: _Optional[_Iterable[str]] = ..., latest_version: _Optional[int] = ..., versions: _Optional[_Iterable[_Union[ModelVersion, _Mapping]]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., aliases: _Optional[_Mapping[str, int]] = ..., kind: _Optional[str] = ..., source_job_id: _Optional[str] = ..., task: _Optional[_Union[_common_pb2.Task, str]] = ..., text_pairs: _Optional[bool] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models", "next_page_token")
    MODELS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[Model]
    next_page_token: str
    def __init__(self, models: _Optional[_Iterable[_Union[Model, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetModelRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class DeleteModelRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class DeleteModelResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModelRef(_message.Message):
    __slots__ = ("model_id", "version")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    version: int
    def __init__(self, model_id: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class EvaluateRequest(_message.Message):
    __slots__ = ("model_id", "version", "dataset_id", "compare")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    COMPARE_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    version: int
    dataset_id: str
    compare: _containers.RepeatedCompositeFieldContainer[ModelRef]
    def __init__(self, model_id: _Optional[str] = ..., version: _Optional[int] = ..., dataset_id: _Optional[str] = ..., compare: _Optional[_Iterable[_Union[ModelRef, _Mapping]]] = ...) -> None: ...

class ClassMetrics(_message.Message):
    __slots__ = ("label", "precision", "recall", "f1", "support")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    PRECISION_FIELD_NUMBER: _ClassVar[int]
    RECALL_FIELD_NUMBER: _ClassVar[int]
    F1_FIELD_NUMBER: _ClassVar[int]
    SUPPORT_FIELD_NUMBER: _ClassVar[int]
    label: str
    precision: float
    recall: float
    f1: float
    support: int
    def __init__(self, label: _Optional[str] = ..., precision: _Optional[float] = ..., recall: _Optional[float] = ..., f1: _Optional[float] = ..., support: _Optional[int] = ...) -> None: ...

class ConfusionMatrix(_message.Message):
    __slots__ = ("labels", "rows")
    class Row(_message.Message):
        __slots__ = ("counts",)
        COUNTS_FIELD_NUMBER: _ClassVar[int]
        counts: _containers.RepeatedScalarFieldContainer[int]
        def __init__(self, counts: _Optional[_Iterable[int]] = ...) -> None: ...
    LABELS_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    labels: _containers.RepeatedScalarFieldContainer[str]
    rows: _containers.RepeatedCompositeFieldContainer[ConfusionMatrix.Row]
    def __init__(self, labels: _Optional[_Iterable[str]] = ..., rows: _Optional[_Iterable[_Union[ConfusionMatrix.Row, _Mapping]]] = ...) -> None: ...

class EvaluationReport(_message.Message):
    __slots__ = ("model_id", "model_version", "dataset_id", "num_examples", "accuracy", "macro_precision", "macro_recall", "macro_f1", "weighted_precision", "weighted_recall", "weighted_f1", "per_class", "confusion_matrix", "runtime", "duration_seconds", "num_unknown_labels", "task", "metrics", "residuals", "points", "ece", "reliability", "entity_errors", "ece_if_calibrated", "ece_p_value")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    NUM_EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_FIELD_NUMBER: _ClassVar[int]
    MACRO_PRECISION_FIELD_NUMBER: _ClassVar[int]
    MACRO_RECALL_FIELD_NUMBER: _ClassVar[int]
    MACRO_F1_FIELD_NUMBER: _ClassVar[int]
    WEIGHTED_PRECISION_FIELD_NUMBER: _ClassVar[int]
    WEIGHTED_RECALL_FIELD_NUMBER: _ClassVar[int]
    WEIGHTED_F1_FIELD_NUMBER: _ClassVar[int]
    PER_CLASS_FIELD_NUMBER: _ClassVar[int]
    CONFUSION_MATRIX_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_FIELD_NUMBER: _ClassVar[int]
    DURATION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    NUM_UNKNOWN_LABELS_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    RESIDUALS_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    ECE_FIELD_NUMBER: _ClassVar[int]
    RELIABILITY_FIELD_NUMBER: _ClassVar[int]
    ENTITY_ERRORS_FIELD_NUMBER: _ClassVar[int]
    ECE_IF_CALIBRATED_FIELD_NUMBER: _ClassVar[int]
    ECE_P_VALUE_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    model_version: int
    dataset_id: str
    num_examples: int
    accuracy: float
    macro_precision: float
    macro_recall: float
    macro_f1: float
    weighted_precision: float
    weighted_recall: float
    weighted_f1: float
    per_class: _containers.RepeatedCompositeFieldContainer[ClassMetrics]
    confusion_matrix: ConfusionMatrix
    runtime: str
    duration_seconds: float
    num_unknown_labels: int
    task: _common_pb2.Task
    metrics: _containers.ScalarMap[str, float]
    residuals: ResidualSummary
    points: _containers.RepeatedCompositeFieldContainer[RegressionPoint]
    ece: float
    reliability: _containers.RepeatedCompositeFieldContainer[ReliabilityBin]
    entity_errors: EntityErrors
    ece_if_calibrated: float
    ece_p_value: float
    def __init__(self, model_id: _Optional[str] = ..., model_version: _Optional[int] = ..., dataset_id: _Optional[str] = ..., num_examples: _Optional[int] = ..., accuracy: _Optional[float] = ..., macro_precision: _Optional[float] = ..., macro_recall: _Optional[float] = ..., macro_f1: _Optional[float] = ..., weighted_precision: _Optional[float] = ..., weighted_recall: _Optional[float] = ..., weighted_f1: _Optional[float] = ..., per_class: _Optional[_Iterable[_Union[ClassMetrics, _Mapping]]] = ..., confusion_matrix: _Optional[_Union[ConfusionMatrix, _Mapping]] = ..., runtime: _Optional[str] = ..., duration_seconds: _Optional[float] = ..., num_unknown_labels: _Optional[int] = ..., task: _Optional[_Union[_common_pb2.Task, str]] = ..., metrics: _Optional[_Mapping[str, float]] = ..., residuals: _Optional[_Union[ResidualSummary, _Mapping]] = ..., points: _Optional[_Iterable[_Union[RegressionPoint, _Mapping]]] = ..., ece: _Optional[float] = ..., reliability: _Optional[_Iterable[_Union[ReliabilityBin, _Mapping]]] = ..., entity_errors: _Optional[_Union[EntityErrors, _Mapping]] = ..., ece_if_calibrated: _Optional[float] = ..., ece_p_value: _Optional[float] = ...) -> None: ...

class EntityErrors(_message.Message):
    __slots__ = ("missed", "spurious", "num_missed", "num_spurious", "num_wrong_type")
    MISSED_FIELD_NUMBER: _ClassVar[int]
    SPURIOUS_FIELD_NUMBER: _ClassVar[int]
    NUM_MISSED_FIELD_NUMBER: _ClassVar[int]
    NUM_SPURIOUS_FIELD_NUMBER: _ClassVar[int]
    NUM_WRONG_TYPE_FIELD_NUMBER: _ClassVar[int]
    missed: _containers.RepeatedCompositeFieldContainer[EntityError]
    spurious: _containers.RepeatedCompositeFieldContainer[EntityError]
    num_missed: int
    num_spurious: int
    num_wrong_type: int
    def __init__(self, missed: _Optional[_Iterable[_Union[EntityError, _Mapping]]] = ..., spurious: _Optional[_Iterable[_Union[EntityError, _Mapping]]] = ..., num_missed: _Optional[int] = ..., num_spurious: _Optional[int] = ..., num_wrong_type: _Optional[int] = ...) -> None: ...

class EntityError(_message.Message):
    __slots__ = ("row", "type", "start", "end", "text", "other")
    ROW_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    OTHER_FIELD_NUMBER: _ClassVar[int]
    row: int
    type: str
    start: int
    end: int
    text: str
    other: str
    def __init__(self, row: _Optional[int] = ..., type: _Optional[str] = ..., start: _Optional[int] = ..., end: _Optional[int] = ..., text: _Optional[str] = ..., other: _Optional[str] = ...) -> None: ...

class ReliabilityBin(_message.Message):
    __slots__ = ("confidence", "accuracy", "count", "calibrated_low", "calibrated_high")
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    CALIBRATED_LOW_FIELD_NUMBER: _ClassVar[int]
    CALIBRATED_HIGH_FIELD_NUMBER: _ClassVar[int]
    confidence: float
    accuracy: float
    count: int
    calibrated_low: float
    calibrated_high: float
    def __init__(self, confidence: _Optional[float] = ..., accuracy: _Optional[float] = ..., count: _Optional[int] = ..., calibrated_low: _Optional[float] = ..., calibrated_high: _Optional[float] = ...) -> None: ...

class ResidualSummary(_message.Message):
    __slots__ = ("mean", "std", "median_abs", "p90_abs", "max_abs")
    MEAN_FIELD_NUMBER: _ClassVar[int]
    STD_FIELD_NUMBER: _ClassVar[int]
    MEDIAN_ABS_FIELD_NUMBER: _ClassVar[int]
    P90_ABS_FIELD_NUMBER: _ClassVar[int]
    MAX_ABS_FIELD_NUMBER: _ClassVar[int]
    mean: float
    std: float
    median_abs: float
    p90_abs: float
    max_abs: float
    def __init__(self, mean: _Optional[float] = ..., std: _Optional[float] = ..., median_abs: _Optional[float] = ..., p90_abs: _Optional[float] = ..., max_abs: _Optional[float] = ...) -> None: ...

class RegressionPoint(_message.Message):
    __slots__ = ("true_value", "predicted")
    TRUE_VALUE_FIELD_NUMBER: _ClassVar[int]
    PREDICTED_FIELD_NUMBER: _ClassVar[int]
    true_value: float
    predicted: float
    def __init__(self, true_value: _Optional[float] = ..., predicted: _Optional[float] = ...) -> None: ...

class MetricDelta(_message.Message):
    __slots__ = ("metric", "delta")
    METRIC_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    metric: str
    delta: float
    def __init__(self, metric: _Optional[str] = ..., delta: _Optional[float] = ...) -> None: ...

class Comparison(_message.Message):
    __slots__ = ("model_id", "model_version", "deltas", "test", "p_value", "only_first_correct", "only_second_correct", "significant", "verdict")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    DELTAS_FIELD_NUMBER: _ClassVar[int]
    TEST_FIELD_NUMBER: _ClassVar[int]
    P_VALUE_FIELD_NUMBER: _ClassVar[int]
    ONLY_FIRST_CORRECT_FIELD_NUMBER: _ClassVar[int]
    ONLY_SECOND_CORRECT_FIELD_NUMBER: _ClassVar[int]
    SIGNIFICANT_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    model_version: int
    deltas: _containers.RepeatedCompositeFieldContainer[MetricDelta]
    test: str
    p_value: float
    only_first_correct: int
    only_second_correct: int
    significant: bool
    verdict: str
    def __init__(self, model_id: _Optional[str] = ..., model_version: _Optional[int] = ..., deltas: _Optional[_Iterable[_Union[MetricDelta, _Mapping]]] = ..., test: _Optional[str] = ..., p_value: _Optional[float] = ..., only_first_correct: _Optional[int] = ..., only_second_correct: _Optional[int] = ..., significant: _Optional[bool] = ..., verdict: _Optional[str] = ...) -> None: ...

class EvaluateResponse(_message.Message):
    __slots__ = ("report", "compared", "comparisons")
    REPORT_FIELD_NUMBER: _ClassVar[int]
    COMPARED_FIELD_NUMBER: _ClassVar[int]
    COMPARISONS_FIELD_NUMBER: _ClassVar[int]
    report: EvaluationReport
    compared: _containers.RepeatedCompositeFieldContainer[EvaluationReport]
    comparisons: _containers.RepeatedCompositeFieldContainer[Comparison]
    def __init__(self, report: _Optional[_Union[EvaluationReport, _Mapping]] = ..., compared: _Optional[_Iterable[_Union[EvaluationReport, _Mapping]]] = ..., comparisons: _Optional[_Iterable[_Union[Comparison, _Mapping]]] = ...) -> None: ...

class LoadModelRequest(_message.Message):
    __slots__ = ("id", "version", "variant")
    ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    id: str
    version: int
    variant: str
    def __init__(self, id: _Optional[str] = ..., version: _Optional[int] = ..., variant: _Optional[str] = ...) -> None: ...

class UnloadModelRequest(_message.Message):
    __slots__ = ("id", "version")
    ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    id: str
    version: int
    def __init__(self, id: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class SetModelAliasRequest(_message.Message):
    __slots__ = ("id", "alias", "version")
    ID_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    id: str
    alias: str
    version: int
    def __init__(self, id: _Optional[str] = ..., alias: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...
