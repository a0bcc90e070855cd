"""Protobuf <-> typed records, at the edge only. `*_to_pb` builds messages, `*_from_pb` reads them."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, TypeVar, cast

from google.protobuf import json_format
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from tuneserve.core.data.datasets import UploadMetadata
from tuneserve.core.evaluation.comparison import Comparison
from tuneserve.core.evaluation.evaluator import ComparisonResult
from tuneserve.core.evaluation.reports import EvaluationReport
from tuneserve.core.recommend.recommender import CandidateScore, Recommendation, RecommendParams
from tuneserve.core.registry import VersionSummary
from tuneserve.core.serving.inference import PredictParams, PredictResult, VersionServing
from tuneserve.core.serving.resolver import VersionRef
from tuneserve.core.training.admission import FineTuneParams
from tuneserve.core.training.hyperparameters import AUTO_KEY
from tuneserve.engines.backbones import BackboneInfo
from tuneserve.engines.training.spec import ExportSpec
from tuneserve.errors import InvalidArgument
from tuneserve.tasks import TASKS, SpanError
from tuneserve.types import DatasetRecord, JobEventRecord, JobRecord, JobState, ModelRecord, Page
from tuneserve_client.proto.tuneserve.v1 import (
    common_pb2,
    datasets_pb2,
    models_pb2,
    prediction_pb2,
    training_pb2,
)

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000

_M = TypeVar("_M", bound=Message)

_FORMATS = {
    datasets_pb2.DATASET_FORMAT_UNSPECIFIED: "",
    datasets_pb2.DATASET_FORMAT_CSV: "csv",
    datasets_pb2.DATASET_FORMAT_JSONL: "jsonl",
    datasets_pb2.DATASET_FORMAT_ZIP: "zip",
    datasets_pb2.DATASET_FORMAT_CONLL: "conll",
}
_MODALITIES = {"text": common_pb2.MODALITY_TEXT, "image": common_pb2.MODALITY_IMAGE}
# NOTE: every registered task by its enum value, TASK_<NAME> (a task without one is a proto to add, caught at import)
_TASKS = {common_pb2.TASK_UNSPECIFIED: "", **{common_pb2.Task.Value(f"TASK_{name.upper()}"): name for name in TASKS}}
_TASK_VALUES = {name: value for value, name in _TASKS.items() if name}
_EVENT_MESSAGES: dict[str, type[Message]] = {
    "state_changed": training_pb2.StateChanged,
    "progress": training_pb2.TrainingProgress,
    "evaluation": training_pb2.EvaluationDone,
    "checkpoint": training_pb2.CheckpointSaved,
    "early_stopped": training_pb2.EarlyStopped,
    "export": training_pb2.ExportDone,
    "trial": training_pb2.Trial,
}


def timestamp(seconds: float) -> Timestamp | None:
    if not seconds:
        return None
    ts = Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts


def _from_dict(data: dict[str, Any], message: _M) -> _M:
    """Fill `message` from a dict, ignoring keys it has no field for (workers may report more than the API shows)."""
    return json_format.ParseDict(_json_floats(data), message, ignore_unknown_fields=True)


def _json_floats(value: Any) -> Any:
    """NaN and infinities as the proto JSON mapping spells them ("NaN", "Infinity"): a diverged training's loss is
    NaN, and ParseDict refuses a bare float NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: _json_floats(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_floats(v) for v in value]
    return value


# -- pages ---------------------------------------------------------------------------------------------------------

def page_from_pb(page_size: int, page_token: str) -> Page:
    if page_size < 0 or page_size > MAX_PAGE_SIZE:
        raise InvalidArgument(f"page_size must be between 0 and {MAX_PAGE_SIZE} (0 = {DEFAULT_PAGE_SIZE})")
    # NOTE: tokens are offsets written as plain digits; int() alone would take "-1", " 5", "1_0", other scripts'
    # digits, and numbers past SQLite's 64-bit integers (an OverflowError deep in the store)
    if page_token and not (page_token.isascii() and page_token.isdigit() and len(page_token) <= 18):
        raise InvalidArgument("page_token is not one this server issued; pass next_page_token back as is")
    offset = int(page_token) if page_token else 0
    # NOTE: fetch one extra row to know whether another page exists
    return Page(size=(page_size or DEFAULT_PAGE_SIZE) + 1, offset=offset)


def next_page_token(page: Page, rows: Sequence[Any]) -> tuple[list[Any], str]:
    shown = list(rows[: page.size - 1])
    return shown, (str(page.offset + len(shown)) if len(rows) >= page.size else "")


# -- datasets ------------------------------------------------------------------------------------------------------

def task_from_pb(value: common_pb2.Task, field: str) -> str:
    """A tuneserve.tasks name ("" for TASK_UNSPECIFIED); InvalidArgument naming `field` for an unknown value."""
    if value not in _TASKS:
        raise InvalidArgument(f"{field} = {int(value)} is not a known Task")
    return _TASKS[value]


def task_to_pb(name: str) -> common_pb2.Task:
    return cast(common_pb2.Task, _TASK_VALUES[name or "classification"])


def upload_metadata_from_pb(pb: datasets_pb2.DatasetUploadMetadata) -> UploadMetadata:
    if pb.format not in _FORMATS:
        raise InvalidArgument(f"unknown dataset format {pb.format}")
    return UploadMetadata(
        pb.name, _FORMATS[pb.format], pb.text_column or "text", pb.label_column, pb.image_column,
        task=task_from_pb(pb.task, "metadata.task"), labels_column=pb.labels_column,
        label_separator=pb.label_separator, target_column=pb.target_column, text_pair_column=pb.text_pair_column,
        tokens_column=pb.tokens_column, tags_column=pb.tags_column, stray_i_tags=pb.stray_i_tags,
    )


def dataset_to_pb(d: DatasetRecord) -> datasets_pb2.Dataset:
    fmt = {v: k for k, v in _FORMATS.items()}[d.format]
    pb = datasets_pb2.Dataset(
        id=d.id, name=d.name, format=fmt, modality=_MODALITIES[d.modality], num_rows=d.num_rows, labels=d.labels,
        label_counts=d.label_counts, num_duplicates=d.num_duplicates, size_bytes=d.size_bytes, sha256=d.sha256,
        create_time=timestamp(d.create_time), task=task_to_pb(d.task), text_pairs=d.text_pairs,
    )
    if "labels_per_row" in d.stats:
        _from_dict(d.stats["labels_per_row"], pb.labels_per_row)
    if "target" in d.stats:
        _from_dict(d.stats["target"], pb.target_stats)
    if "tagging" in d.stats:
        _from_dict(d.stats["tagging"], pb.tagging)
    return pb


# -- jobs ----------------------------------------------------------------------------------------------------------

def fine_tune_from_pb(pb: training_pb2.FineTuneRequest) -> FineTuneParams:
    hp = {field.name: value for field, value in pb.hyperparameters.ListFields()}
    return FineTuneParams(
        dataset_id=pb.dataset_id, validation_dataset_id=pb.validation_dataset_id, backbone=pb.backbone,
        hyperparameters=hp, model_name=pb.model_name, model_id=pb.model_id, export=_export_from_pb(pb.export),
        baselines=tuple(pb.baselines), search=pb.search, search_budget_seconds=pb.search_budget_seconds,
    )


def _export_from_pb(pb: training_pb2.ExportOptions) -> ExportSpec:
    # NOTE: int8_max_f1_drop is `optional`: unset takes the default limit, while an explicit 0 means "no drop at all".
    if pb.HasField("int8_max_f1_drop"):
        return ExportSpec(int8=pb.int8, int8_max_f1_drop=pb.int8_max_f1_drop)
    return ExportSpec(int8=pb.int8)


def job_state_to_pb(state: JobState) -> training_pb2.JobState:
    return cast(training_pb2.JobState, training_pb2.JobState.Value(f"JOB_STATE_{state.value}"))


def job_state_from_pb(state: training_pb2.JobState) -> JobState | None:
    if state == training_pb2.JOB_STATE_UNSPECIFIED:
        return None
    if state not in training_pb2.JobState.values():  # NOTE: proto3 enums are open: any number can arrive
        raise InvalidArgument(f"unknown job state {state}; use one of {', '.join(training_pb2.JobState.keys())}")
    name = training_pb2.JobState.Name(state).removeprefix("JOB_STATE_")
    return JobState(name)


def job_to_pb(j: JobRecord) -> training_pb2.Job:
    """The job as stored; the fields chosen automatically (stored with its hyperparameters) show in
    result.auto_hyperparameters from FineTune on, and an automatic max_seq_length (0) as the worker resolved it."""
    hp = _from_dict(j.hyperparameters, training_pb2.Hyperparameters())
    result = _from_dict(j.result, training_pb2.JobResult())
    if not result.auto_hyperparameters:
        result.auto_hyperparameters.extend(j.hyperparameters.get(AUTO_KEY, []))
    if hp.max_seq_length == 0 and result.max_seq_length:
        hp.max_seq_length = result.max_seq_length
    return training_pb2.Job(
        id=j.id, state=job_state_to_pb(j.state), dataset_id=j.dataset_id,
        validation_dataset_id=j.validation_dataset_id, backbone=j.backbone, hyperparameters=hp,
        model_id=j.model_id, model_version=j.model_version,
        progress=_from_dict(j.progress, training_pb2.JobProgress()), result=result, error=j.error,
        create_time=timestamp(j.create_time), start_time=timestamp(j.start_time), end_time=timestamp(j.end_time),
        restarts=j.restarts, task=task_to_pb(j.task), text_pairs=j.text_pairs,
    )


def event_to_pb(e: JobEventRecord) -> training_pb2.JobEvent:
    pb = training_pb2.JobEvent(job_id=e.job_id, sequence=e.sequence, time=timestamp(e.time), message=e.message)
    data = dict(e.data)
    if e.kind == "state_changed":
        data["state"] = training_pb2.JobState.Name(job_state_to_pb(JobState(data["state"])))
    if e.kind in _EVENT_MESSAGES:
        getattr(pb, e.kind).CopyFrom(_from_dict(data, _EVENT_MESSAGES[e.kind]()))
    return pb


# -- models --------------------------------------------------------------------------------------------------------

def model_to_pb(
    m: ModelRecord, serving: dict[int, VersionServing], summaries: dict[int, VersionSummary] | None = None
) -> models_pb2.Model:
    latest = m.latest_ready
    summaries = summaries or {}
    return models_pb2.Model(
        id=m.id, name=m.name, modality=_MODALITIES[m.modality], backbone=m.backbone, labels=m.labels,
        kind=m.kind, source_job_id=m.source_job_id,
        latest_version=latest.version if latest else 0, create_time=timestamp(m.create_time), aliases=m.aliases,
        task=task_to_pb(m.task), text_pairs=m.text_pairs,
        versions=[
            models_pb2.ModelVersion(
                version=v.version, state=f"MODEL_VERSION_STATE_{v.state.value}",
                job_id=v.job_id, validation_metrics=v.validation_metrics, onnx_size_bytes=v.onnx_size_bytes,
                create_time=timestamp(v.create_time), **_serving_fields(serving.get(v.version)),
                **_summary_fields(summaries.get(v.version)),
            )
            for v in m.versions
        ],
    )


def _summary_fields(s: VersionSummary | None) -> dict[str, Any]:
    if s is None:
        return {}
    return dict(variant_metric=s.variant_metric, variant_metrics=s.variant_metrics, label_thresholds=s.label_thresholds)


def _serving_fields(s: VersionServing | None) -> dict[str, Any]:
    if s is None:
        return {}
    return dict(
        loaded=bool(s.loaded), execution_provider=s.loaded.get("fp32") or next(iter(s.loaded.values()), ""),
        variants=[name for name, info in s.variants.items() if info.served],
        variant_macro_f1={name: info.macro_f1 for name, info in s.variants.items() if info.macro_f1 is not None},
    )


def compare_from_pb(pb: models_pb2.EvaluateRequest) -> tuple[VersionRef, list[VersionRef]]:
    """The model to evaluate and the models to compare it with."""
    return VersionRef(pb.model_id, pb.version), [VersionRef(ref.model_id, ref.version) for ref in pb.compare]


def evaluation_to_pb(r: EvaluationReport) -> models_pb2.EvaluateResponse:
    return models_pb2.EvaluateResponse(report=_report_to_pb(r))


def comparison_result_to_pb(r: ComparisonResult) -> models_pb2.EvaluateResponse:
    return models_pb2.EvaluateResponse(
        report=_report_to_pb(r.report), compared=[_report_to_pb(c) for c in r.compared],
        comparisons=[_comparison_to_pb(c) for c in r.comparisons],
    )


def _comparison_to_pb(c: Comparison) -> models_pb2.Comparison:
    return models_pb2.Comparison(
        model_id=c.model_id, model_version=c.model_version,
        deltas=[models_pb2.MetricDelta(metric=d.metric, delta=d.delta) for d in c.deltas], test=c.test,
        p_value=c.p_value, only_first_correct=c.only_first_correct, only_second_correct=c.only_second_correct,
        significant=c.significant, verdict=c.verdict,
    )


def _report_to_pb(r: EvaluationReport) -> models_pb2.EvaluationReport:
    return models_pb2.EvaluationReport(
        model_id=r.model_id, model_version=r.model_version, dataset_id=r.dataset_id, num_examples=r.num_examples,
        accuracy=r.accuracy, macro_precision=r.macro_precision, macro_recall=r.macro_recall, macro_f1=r.macro_f1,
        weighted_precision=r.weighted_precision, weighted_recall=r.weighted_recall, weighted_f1=r.weighted_f1,
        per_class=[
            models_pb2.ClassMetrics(label=c.label, precision=c.precision, recall=c.recall, f1=c.f1, support=c.support)
            for c in r.per_class
        ],
        confusion_matrix=models_pb2.ConfusionMatrix(
            labels=r.labels, rows=[models_pb2.ConfusionMatrix.Row(counts=row) for row in r.confusion_matrix]
        ),
        runtime=r.runtime, duration_seconds=r.duration_seconds, num_unknown_labels=r.num_unknown_labels,
        task=task_to_pb(r.task), metrics=r.metrics,
        residuals=models_pb2.ResidualSummary(**r.residuals) if r.residuals else None,
        points=[models_pb2.RegressionPoint(true_value=t, predicted=p) for t, p in r.points], ece=r.ece,
        ece_if_calibrated=r.ece_if_calibrated, ece_p_value=r.ece_p_value,
        reliability=[
            models_pb2.ReliabilityBin(confidence=c, accuracy=a, count=n, calibrated_low=low, calibrated_high=high)
            for (c, a, n), (low, high) in zip(r.reliability, r.reliability_bands, strict=True)
        ],
        entity_errors=_entity_errors_to_pb(r) if r.span_counts else None,
    )


def _entity_errors_to_pb(r: EvaluationReport) -> models_pb2.EntityErrors:
    def error(e: SpanError) -> models_pb2.EntityError:
        return models_pb2.EntityError(row=e.sentence, type=e.type, start=e.start, end=e.end, text=e.text, other=e.other)

    return models_pb2.EntityErrors(
        missed=[error(e) for e in r.span_errors if e.kind == "missed"],
        spurious=[error(e) for e in r.span_errors if e.kind == "spurious"],
        num_missed=r.span_counts.get("missed", 0), num_spurious=r.span_counts.get("spurious", 0),
        num_wrong_type=r.span_counts.get("wrong_type", 0),
    )


# -- prediction ----------------------------------------------------------------------------------------------------

def predict_from_pb(pb: prediction_pb2.PredictRequest) -> PredictParams:
    return PredictParams(
        model_id=pb.model_id, texts=list(pb.texts), version=pb.version, top_k=pb.top_k, alias=pb.alias,
        variant=pb.variant, images=list(pb.images), text_pairs=list(pb.text_pairs),
    )


def predict_to_pb(r: PredictResult) -> prediction_pb2.PredictResponse:
    return prediction_pb2.PredictResponse(
        model_id=r.model_id, model_version=r.version, variant=r.variant,
        predictions=[
            prediction_pb2.Prediction(
                label=p.label, score=p.score,
                scores=[prediction_pb2.ClassScore(label=s.label, score=s.score) for s in p.scores],
                labels=p.labels, value=p.value,
                entities=[
                    prediction_pb2.Entity(type=e.type, text=e.text, start=e.start, end=e.end, score=e.score)
                    for e in p.entities
                ],
            )
            for p in r.predictions
        ],
    )


def stream_result_to_pb(request_id: str, r: PredictResult) -> prediction_pb2.PredictStreamResponse:
    return prediction_pb2.PredictStreamResponse(request_id=request_id, response=predict_to_pb(r))


def stream_error_to_pb(request_id: str, code: int, message: str) -> prediction_pb2.PredictStreamResponse:
    return prediction_pb2.PredictStreamResponse(request_id=request_id, error_code=code, error_message=message)


# -- backbones -----------------------------------------------------------------------------------------------------

def backbone_to_pb(b: BackboneInfo) -> training_pb2.Backbone:
    return training_pb2.Backbone(
        name=b.name, modality=_MODALITIES[b.modality], description=b.description, parameter_count=b.parameter_count,
        hidden_size=b.hidden_size, max_sequence_length=b.max_sequence_length, license=b.license, source=b.source,
        available=b.available, is_default=b.is_default, cpu_latency_ms=b.cpu_latency_ms,
        latency_measured_on=b.latency_measured_on,
    )


# -- backbone recommendation ---------------------------------------------------------------------------------------

def recommend_from_pb(pb: training_pb2.RecommendBackboneRequest) -> RecommendParams:
    return RecommendParams(
        dataset_id=pb.dataset_id, backbones=tuple(pb.backbones), max_examples=pb.max_examples,
        time_budget_seconds=pb.time_budget_seconds, max_seq_length=pb.max_seq_length,
    )


def recommendation_to_pb(r: Recommendation) -> training_pb2.RecommendBackboneResponse:
    return training_pb2.RecommendBackboneResponse(
        dataset_id=r.dataset_id, method=r.method, ranking=map(_candidate_to_pb, r.ranking), examples=r.examples,
        time_budget_seconds=r.time_budget_seconds, seconds_total=r.seconds_total,
    )


def _candidate_to_pb(c: CandidateScore) -> training_pb2.BackboneScore:
    return training_pb2.BackboneScore(
        backbone=c.backbone, rank=c.rank, status=f"CANDIDATE_STATUS_{c.status.name}", reason=c.reason, score=c.score,
        probe_accuracy=c.probe_accuracy, examples=c.examples, feature_dim=c.feature_dim, seconds=c.seconds,
        modality=_MODALITIES.get(c.modality, common_pb2.MODALITY_UNSPECIFIED),
    )
