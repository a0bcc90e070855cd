"""Predict's typed request and answer, and the checks a request passes before any work: its fields alone
(`check_params`, before the version is resolved), then against the model that serves it (`inputs_for`: texts or
images, single texts or text pairs, as the model takes them)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field

from tuneserve.core.serving.resolver import VersionRef
from tuneserve.errors import InvalidArgument
from tuneserve.settings import LimitSettings
from tuneserve.tasks import Decoded
from tuneserve.types import ModelRecord

Inputs = Sequence[str] | Sequence[bytes] | Sequence[tuple[str, str]] | Sequence[list[str]]
"""What a runtime encodes: texts, encoded images, (text, text_pair) tuples for a pair model, or pre-split words
(Evaluate's stored tokens, for a token-classification model)."""


@dataclass(frozen=True)
class ClassScore:
    label: str
    score: float


@dataclass(frozen=True)
class Entity:
    type: str
    text: str                 # input[start:end]
    start: int                # character offsets (code points) into the input text
    end: int
    score: float


@dataclass(frozen=True)
class Prediction:
    label: str
    score: float
    scores: list[ClassScore]
    labels: list[str]         # multi-label: the labels over their threshold, best first
    value: float = 0.0        # regression: in the target's units
    entities: list[Entity] = dataclass_field(default_factory=list)   # token classification: in text order

    @classmethod
    def of(cls, decoded: Decoded) -> Prediction:
        return cls(
            decoded.label, decoded.score, [ClassScore(label, score) for label, score in decoded.scores],
            list(decoded.labels), decoded.value,
            [Entity(e["type"], e["text"], int(e["start"]), int(e["end"]), float(e["score"])) for e in decoded.entities],
        )


@dataclass(frozen=True)
class PredictParams:
    model_id: str
    texts: list[str]
    version: int = 0          # 0 = latest READY
    top_k: int = 0            # 0 = all classes
    alias: str = ""           # overrides version when set
    variant: str = ""         # "" = fp32
    images: Sequence[bytes] = ()   # encoded images, for image models (exactly one of texts and images is non-empty)
    text_pairs: Sequence[str] = ()  # pair models: the second text of each pair, one per text

    @property
    def ref(self) -> VersionRef:
        return VersionRef(self.model_id, self.version, self.alias, self.variant)


@dataclass(frozen=True)
class PredictResult:
    model_id: str
    version: int
    predictions: list[Prediction]
    variant: str = "fp32"


@dataclass(frozen=True)
class StreamRequest:
    request_id: str
    params: PredictParams
    time_remaining: float | None = None


def check_params(params: PredictParams, limits: LimitSettings) -> None:
    """The request's own fields, before the version is resolved (the resolver runs after these cheap checks)."""
    if not params.model_id:
        raise InvalidArgument("model_id is required")
    if params.version < 0:
        raise InvalidArgument("version must be >= 0 (0 = latest READY version)")
    if params.top_k < 0:
        raise InvalidArgument("top_k must be >= 0 (0 = all classes)")
    if params.texts and params.images:
        raise InvalidArgument("send texts (text models) or images (image models), not both in one request")
    if not params.texts and not params.images:
        raise InvalidArgument("texts is empty: send at least one text (or images, for an image model)")
    kind, count = ("images", len(params.images)) if params.images else ("texts", len(params.texts))
    if count > limits.max_predict_batch:
        raise InvalidArgument(
            f"{count} {kind} in one request, more than {limits.max_predict_batch} (limit max_predict_batch); "
            "split the batch"
        )
    if params.text_pairs and len(params.text_pairs) != len(params.texts):
        raise InvalidArgument(
            f"text_pairs holds {_count(len(params.text_pairs))} and texts {_count(len(params.texts))}: a pair model "
            "takes one text_pairs entry per text, in order"
        )
    for i, image in enumerate(params.images):
        if not image:
            raise InvalidArgument(f"images[{i}] is empty (0 bytes); send the encoded JPEG/PNG/WEBP/BMP file")
    for field, texts in (("texts", params.texts), ("text_pairs", params.text_pairs)):
        for i, text in enumerate(texts):
            check_text(text, f"{field}[{i}]", limits)


def _count(n: int) -> str:
    return f"{n} text" if n == 1 else f"{n} texts"


def check_text(text: str, where: str, limits: LimitSettings) -> None:
    if not text or text.isspace():
        # NOTE: as an upload refuses an empty text: a model has nothing to read in it
        raise InvalidArgument(f"{where} is empty or only whitespace; send the text to classify")
    if len(text) > limits.max_text_chars:
        raise InvalidArgument(
            f"{where} has {len(text)} characters, more than {limits.max_text_chars} (limit max_text_chars)"
        )


def inputs_for(model: ModelRecord, params: PredictParams) -> Inputs:
    """The request's texts, text pairs or images, refused when they do not match what the model takes."""
    if model.modality == "image":
        if params.texts:
            raise InvalidArgument(f"model {model.id!r} is an image model: send images, not texts")
        return params.images
    if params.images:
        raise InvalidArgument(f"model {model.id!r} is a text model: send texts, not images")
    if model.text_pairs:
        if not params.text_pairs:
            raise InvalidArgument(
                f"model {model.id!r} reads text pairs: send text_pairs, the second text of each pair, one per text"
            )
        return list(zip(params.texts, params.text_pairs, strict=True))
    if params.text_pairs:
        raise InvalidArgument(
            f"model {model.id!r} reads single texts, not pairs: leave text_pairs empty (it is for pair models)"
        )
    return params.texts
