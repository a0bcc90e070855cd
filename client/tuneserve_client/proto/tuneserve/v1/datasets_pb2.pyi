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

class DatasetFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DATASET_FORMAT_UNSPECIFIED: _ClassVar[DatasetFormat]
    DATASET_FORMAT_CSV: _ClassVar[DatasetFormat]
    DATASET_FORMAT_JSONL: _ClassVar[DatasetFormat]
    DATASET_FORMAT_CONLL: _ClassVar[DatasetFormat]
    DATASET_FORMAT_ZIP: _ClassVar[DatasetFormat]
DATASET_FORMAT_UNSPECIFIED: DatasetFormat
DATASET_FORMAT_CSV: DatasetFormat
DATASET_FORMAT_JSONL: DatasetFormat
DATASET_FORMAT_CONLL: DatasetFormat
DATASET_FORMAT_ZIP: DatasetFormat

class DatasetUploadMetadata(_message.Message):
    __slots__ = ("name", "format", "text_column", "label_column", "image_column", "task", "labels_column", "label_separator", "target_column", "tokens_column", "tags_column", "stray_i_tags", "text_pair_column")
    NAME_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    TEXT_COLUMN_FIELD_NUMBER: _ClassVar[int]
    LABEL_COLUMN_FIELD_NUMBER: _ClassVar[int]
    IMAGE_COLUMN_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    LABELS_COLUMN_FIELD_NUMBER: _ClassVar[int]
    LABEL_SEPARATOR_FIELD_NUMBER: _ClassVar[int]
    TARGET_COLUMN_FIELD_NUMBER: _ClassVar[int]
    TOKENS_COLUMN_FIELD_NUMBER: _ClassVar[int]
    TAGS_COLUMN_FIELD_NUMBER: _ClassVar[int]
    STRAY_I_TAGS_FIELD_NUMBER: _ClassVar[int]
    TEXT_PAIR_COLUMN_FIELD_NUMBER: _ClassVar[int]
    name: str
    format: DatasetFormat
    text_column: str
    label_column: str
    image_column: str
    task: _common_pb2.Task
    labels_column: str
    label_separator: str
    target_column: str
    tokens_column: str
    tags_column: str
    stray_i_tags: str
    text_pair_column: str
    def __init__(self, name: _Optional[str] = ..., format: _Optional[_Union[DatasetFormat, str]] = ..., text_column: _Optional[str] = ..., label_column: _Optional[str] = ..., image_column: _Optional[str] = ..., task: _Optional[_Union[_common_pb2.Task, str]] = ..., labels_column: _Optional[str] = ..., label_separator: _Optional[str] = ..., target_column: _Optional[str] = ..., tokens_column: _Optional[str] = ..., tags_column: _Optional[str] = ..., stray_i_tags: _Optional[str] = ..., text_pair_column: _Optional[str] = ...) -> None: ...

class UploadDatasetRequest(_message.Message):
    __slots__ = ("metadata", "chunk")
    METADATA_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    metadata: DatasetUploadMetadata
    chunk: bytes
    def __init__(self, metadata: _Optional[_Union[DatasetUploadMetadata, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class Dataset(_message.Message):
    __slots__ = ("id", "name", "format", "modality", "num_rows", "labels", "label_counts", "num_duplicates", "size_bytes", "sha256", "create_time", "task", "text_pairs", "labels_per_row", "target_stats", "tagging")
    class LabelCountsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    MODALITY_FIELD_NUMBER: _ClassVar[int]
    NUM_ROWS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    LABEL_COUNTS_FIELD_NUMBER: _ClassVar[int]
    NUM_DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    TEXT_PAIRS_FIELD_NUMBER: _ClassVar[int]
    LABELS_PER_ROW_FIELD_NUMBER: _ClassVar[int]
    TARGET_STATS_FIELD_NUMBER: _ClassVar[int]
    TAGGING_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    format: DatasetFormat
    modality: _common_pb2.Modality
    num_rows: int
    labels: _containers.RepeatedScalarFieldContainer[str]
    label_counts: _containers.ScalarMap[str, int]
    num_duplicates: int
    size_bytes: int
    sha256: str
    create_time: _timestamp_pb2.Timestamp
    task: _common_pb2.Task
    text_pairs: bool
    labels_per_row: LabelsPerRow
    target_stats: TargetStats
    tagging: TaggingStats
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., format: _Optional[_Union[DatasetFormat, str]] = ..., modality: _Optional[_Union[_common_pb2.Modality, str]] = ..., num_rows: _Optional[int] = ..., labels: _Optional[_Iterable[str]] = ..., label_counts: _Optional[_Mapping[str, int]] = ..., num_duplicates: _Optional[int] = ..., size_bytes: _Optional[int] = ..., sha256: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., task: _Optional[_Union[_common_pb2.Task, str]] = ..., text_pairs: _Optional[bool] = ..., labels_per_row: _Optional[_Union[LabelsPerRow, _Mapping]] = ..., target_stats: _Optional[_Union[TargetStats, _Mapping]] = ..., tagging: _Optional[_Union[TaggingStats, _Mapping]] = ...) -> None: ...

class LabelsPerRow(_message.Message):
    __slots__ = ("mean", "max", "rows_without_labels")
    MEAN_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    ROWS_WITHOUT_LABELS_FIELD_NUMBER: _ClassVar[int]
    mean: float
    max: int
    rows_without_labels: int
    def __init__(self, mean: _Optional[float] = ..., max: _Optional[int] = ..., rows_without_labels: _Optional[int] = ...) -> None: ...

class TaggingStats(_message.Message):
    __slots__ = ("sentences", "tokens", "scheme", "repaired_tags", "max_sentence_tokens")
    SENTENCES_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    SCHEME_FIELD_NUMBER: _ClassVar[int]
    REPAIRED_TAGS_FIELD_NUMBER: _ClassVar[int]
    MAX_SENTENCE_TOKENS_FIELD_NUMBER: _ClassVar[int]
    sentences: int
    tokens: int
    scheme: str
    repaired_tags: int
    max_sentence_tokens: int
    def __init__(self, sentences: _Optional[int] = ..., tokens: _Optional[int] = ..., scheme: _Optional[str] = ..., repaired_tags: _Optional[int] = ..., max_sentence_tokens: _Optional[int] = ...) -> None: ...

class TargetStats(_message.Message):
    __slots__ = ("min", "max", "mean", "std", "p05", "p25", "median", "p75", "p95")
    MIN_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    MEAN_FIELD_NUMBER: _ClassVar[int]
    STD_FIELD_NUMBER: _ClassVar[int]
    P05_FIELD_NUMBER: _ClassVar[int]
    P25_FIELD_NUMBER: _ClassVar[int]
    MEDIAN_FIELD_NUMBER: _ClassVar[int]
    P75_FIELD_NUMBER: _ClassVar[int]
    P95_FIELD_NUMBER: _ClassVar[int]
    min: float
    max: float
    mean: float
    std: float
    p05: float
    p25: float
    median: float
    p75: float
    p95: float
    def __init__(self, min: _Optional[float] = ..., max: _Optional[float] = ..., mean: _Optional[float] = ..., std: _Optional[float] = ..., p05: _Optional[float] = ..., p25: _Optional[float] = ..., median: _Optional[float] = ..., p75: _Optional[float] = ..., p95: _Optional[float] = ...) -> None: ...

class GetDatasetRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ListDatasetsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListDatasetsResponse(_message.Message):
    __slots__ = ("datasets", "next_page_token")
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    datasets: _containers.RepeatedCompositeFieldContainer[Dataset]
    next_page_token: str
    def __init__(self, datasets: _Optional[_Iterable[_Union[Dataset, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DeleteDatasetRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class DeleteDatasetResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
