from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from typing import ClassVar as _ClassVar

DESCRIPTOR: _descriptor.FileDescriptor

class Modality(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODALITY_UNSPECIFIED: _ClassVar[Modality]
    MODALITY_TEXT: _ClassVar[Modality]
    MODALITY_IMAGE: _ClassVar[Modality]

class Task(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TASK_UNSPECIFIED: _ClassVar[Task]
    TASK_CLASSIFICATION: _ClassVar[Task]
    TASK_MULTI_LABEL: _ClassVar[Task]
    TASK_REGRESSION: _ClassVar[Task]
    TASK_TOKEN_CLASSIFICATION: _ClassVar[Task]
MODALITY_UNSPECIFIED: Modality
MODALITY_TEXT: Modality
MODALITY_IMAGE: Modality
TASK_UNSPECIFIED: Task
TASK_CLASSIFICATION: Task
TASK_MULTI_LABEL: Task
TASK_REGRESSION: Task
TASK_TOKEN_CLASSIFICATION: Task
