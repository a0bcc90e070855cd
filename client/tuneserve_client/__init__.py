"""tuneserve_client: the Python client of tuneserve (fine-tune, evaluate and serve models over gRPC).

    from tuneserve_client import Client

    with Client("localhost:50051") as client:
        dataset = client.upload_dataset("train.csv")
        job = client.wait_for_job(client.fine_tune(dataset.id).id)
        print(client.predict(job.model_id, ["great match last night"]).predictions[0].label)

`AsyncClient` has the same methods for asyncio. Failed calls raise `TuneServeError` subclasses. The message types
are the generated protobuf classes of the tuneserve.v1 API.
"""

from ._client import AsyncClient
from ._exceptions import (
    AlreadyExists,
    Cancelled,
    DeadlineExceeded,
    FailedPrecondition,
    InternalError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    TuneServeError,
    Unauthenticated,
    Unavailable,
    map_rpc_errors,
)
from ._sync import Client
from ._version import __version__
from .proto.tuneserve.v1.common_pb2 import Modality, Task
from .proto.tuneserve.v1.datasets_pb2 import Dataset, DatasetFormat, DeleteDatasetResponse, ListDatasetsResponse
from .proto.tuneserve.v1.models_pb2 import (
    ClassMetrics,
    Comparison,
    ConfusionMatrix,
    DeleteModelResponse,
    EvaluateResponse,
    EvaluationReport,
    ListModelsResponse,
    MetricDelta,
    Model,
    ModelRef,
    ModelVersion,
    ModelVersionState,
)
from .proto.tuneserve.v1.prediction_pb2 import (
    ClassScore,
    Prediction,
    PredictRequest,
    PredictResponse,
    PredictStreamRequest,
    PredictStreamResponse,
)
from .proto.tuneserve.v1.training_pb2 import (
    Backbone,
    BackboneScore,
    BaselineResult,
    CandidateStatus,
    CheckpointSaved,
    EarlyStopped,
    EvaluationDone,
    ExportDone,
    ExportOptions,
    FitDiagnosis,
    Hyperparameters,
    Job,
    JobEvent,
    JobProgress,
    JobResult,
    JobState,
    LearningCurvePoint,
    ListBackbonesResponse,
    ListJobsResponse,
    RecommendBackboneResponse,
    StateChanged,
    TrainingProgress,
)

__all__ = [
    "__version__",
    "AlreadyExists",
    "AsyncClient",
    "Backbone",
    "BackboneScore",
    "BaselineResult",
    "Cancelled",
    "CandidateStatus",
    "CheckpointSaved",
    "ClassMetrics",
    "ClassScore",
    "Client",
    "Comparison",
    "ConfusionMatrix",
    "Dataset",
    "DatasetFormat",
    "DeadlineExceeded",
    "DeleteDatasetResponse",
    "DeleteModelResponse",
    "EarlyStopped",
    "EvaluateResponse",
    "EvaluationDone",
    "EvaluationReport",
    "ExportDone",
    "ExportOptions",
    "FailedPrecondition",
    "FitDiagnosis",
    "Hyperparameters",
    "InternalError",
    "InvalidArgument",
    "Job",
    "JobEvent",
    "JobProgress",
    "JobResult",
    "JobState",
    "LearningCurvePoint",
    "ListBackbonesResponse",
    "ListDatasetsResponse",
    "ListJobsResponse",
    "ListModelsResponse",
    "map_rpc_errors",
    "MetricDelta",
    "Modality",
    "Model",
    "ModelRef",
    "ModelVersion",
    "ModelVersionState",
    "NotFound",
    "PermissionDenied",
    "Prediction",
    "PredictRequest",
    "PredictResponse",
    "PredictStreamRequest",
    "PredictStreamResponse",
    "proto",
    "RecommendBackboneResponse",
    "ResourceExhausted",
    "StateChanged",
    "Task",
    "TrainingProgress",
    "TuneServeError",
    "Unauthenticated",
    "Unavailable",
]
