"""The model registry: a model per fine-tuned task, with numbered versions (one per FineTune job), user aliases that
point at READY versions ("latest" is implicit: the newest READY one), and the variants each version may serve.

Every write to models, versions and aliases goes through this class: it drops the cached serving view of the model
(`snapshot`) and tells the change listeners (the inference router preloads a version an alias is about to move to).
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneserve.core.ids import new_id
from tuneserve.engines.runtime import VARIANT_FILES
from tuneserve.engines.training.spec import ARTIFACTS
from tuneserve.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from tuneserve.store import ArtifactStore, MetadataStore
from tuneserve.types import ModelRecord, ModelVersionRecord, Page, VersionState

log = logging.getLogger(__name__)

DeleteListener = Callable[[str], Awaitable[None]]
ChangeListener = Callable[[str], Awaitable[None]]

LATEST = "latest"
# How long a snapshot is trusted when other servers share the database (they may make a version READY or move an
# alias); with a database of its own a server sees every write and keeps snapshots until then.
SHARED_SNAPSHOT_SECONDS = 2.0
ALIAS_PATTERN = re.compile(r"[a-z][a-z0-9-]{0,62}")


@dataclass(frozen=True)
class ServableVersion:
    model: ModelRecord
    version: ModelVersionRecord
    path: Path


@dataclass(frozen=True)
class VariantInfo:
    """One servable form of a version (variants.json, written by the worker's export)."""

    name: str                    # fp32 | int8
    served: bool                 # fp32 always; int8 only when it passed its guard
    macro_f1: float | None = None
    reason: str = ""             # why it is not served


@dataclass(frozen=True)
class VersionSummary:
    """What a READY version's metrics.json (its job's result) says beside the variants (tuneserve.v1.ModelVersion)."""

    variant_metric: str = ""                                            # the task's guard metric
    variant_metrics: dict[str, float] = field(default_factory=dict)    # its validation value per variant
    label_thresholds: dict[str, float] = field(default_factory=dict)   # multi-label: tuned per label


class ModelRegistry:
    def __init__(self, store: MetadataStore, artifacts: ArtifactStore) -> None:
        self._store = store
        self._artifacts = artifacts
        self._delete_listeners: list[DeleteListener] = []
        self._change_listeners: list[ChangeListener] = []
        self._snapshots: dict[str, ModelRecord] = {}
        self._snapshot_times: dict[str, float] = {}
        self._writes = 0
        self._variants: dict[tuple[str, int], tuple[tuple[int, int], dict[str, VariantInfo]]] = {}
        self._summaries: dict[tuple[str, int], tuple[tuple[int, int], VersionSummary]] = {}

    def on_delete(self, listener: DeleteListener) -> None:
        """Call `listener(model_id)` after a model is deleted (the inference cache drops its sessions)."""
        self._delete_listeners.append(listener)

    def on_change(self, listener: ChangeListener) -> None:
        """Call `listener(model_id)` after a version becomes READY or an alias is set or removed."""
        self._change_listeners.append(listener)

    async def create(
        self, name: str, backbone: str, labels: list[str], modality: str, *, kind: str = "finetuned",
        source_job_id: str = "", task: str = "classification", text_pairs: bool = False,
    ) -> ModelRecord:
        model = ModelRecord(
            new_id("model"), name, modality, backbone, labels, time.time(), kind=kind, source_job_id=source_job_id,
            task=task, text_pairs=text_pairs,
        )
        await self._store.add_model(model)
        return model

    async def from_job(self, job_id: str) -> list[ModelRecord]:
        """The models a job created: its fine-tuned model (unless it trained a new version of an older one) and its
        baselines."""
        return await self._store.models_from_job(job_id)

    async def add_version(self, model: ModelRecord, job_id: str) -> ModelVersionRecord:
        """A new TRAINING version of `model`, numbered by the database (`model.versions` may be stale: another server
        or another request on this one may have added a version since it was read)."""
        version = await self._store.add_model_version(model.id, job_id, time.time())
        await self._changed(model.id, notify=False)
        return version

    async def mark_ready(self, model_id: str, number: int, metrics: dict[str, float]) -> None:
        version = await self._version(model_id, number)
        version.state = VersionState.READY
        version.validation_metrics = metrics
        onnx = self._artifacts.version_dir(model_id, number) / "model.onnx"
        version.onnx_size_bytes = onnx.stat().st_size if onnx.exists() else 0
        await self._store.put_model_version(version)
        await self._changed(model_id)

    async def mark_failed(self, model_id: str, number: int) -> None:
        version = await self._version(model_id, number)
        version.state = VersionState.FAILED
        await self._store.put_model_version(version)
        await self._changed(model_id, notify=False)

    async def mark_corrupt(self, model_id: str, number: int, problem: str) -> None:
        """A READY version whose files fail their checksum check: FAILED from now on, never served again."""
        log.error("model %s version %d marked FAILED: %s", model_id, number, problem)
        await self.mark_failed(model_id, number)

    async def get(self, model_id: str) -> ModelRecord:
        model = await self._store.get_model(model_id)
        if model is None:
            raise NotFound("model", model_id)
        return model

    async def snapshot(self, model_id: str) -> ModelRecord:
        """The model as `get` returns it, cached until the next write to it: the serving path reads it on every
        request, and must treat it as read-only."""
        cached = self._snapshots.get(model_id)
        if cached is not None and not (
            self._store.shared and time.monotonic() - self._snapshot_times[model_id] > SHARED_SNAPSHOT_SECONDS
        ):
            return cached
        writes = self._writes
        try:
            model = await self.get(model_id)
        except Unavailable:
            if cached is None:
                raise
            return cached  # NOTE: the database is down: loaded models keep answering from what was last seen
        if cached is not None and _served(model) != _served(cached):
            await self._changed(model_id)  # another server made a version READY or moved an alias: re-route
        if writes == self._writes:  # NOTE: no write landed while we read, so this view is not already stale
            self._snapshots[model_id] = model
            self._snapshot_times[model_id] = time.monotonic()
        return model

    async def list(self, page: Page) -> list[ModelRecord]:
        return await self._store.list_models(page)

    async def delete(self, model_id: str) -> None:
        model = await self.get(model_id)
        training = [v for v in model.versions if v.state is VersionState.TRAINING]
        if training:
            raise FailedPrecondition(
                f"model {model_id!r} version {training[0].version} is still training (job {training[0].job_id!r}); "
                "cancel the job first"
            )
        await self._store.delete_model(model_id)
        await self._changed(model_id, notify=False)
        self._variants = {key: v for key, v in self._variants.items() if key[0] != model_id}
        for listener in self._delete_listeners:
            await listener(model_id)
        self._artifacts.remove(self._artifacts.model_dir(model_id))

    async def set_alias(self, model_id: str, alias: str, number: int) -> ModelRecord:
        """Point `alias` at READY version `number`; 0 removes the alias."""
        _check_alias(alias)
        if number < 0:
            raise InvalidArgument("version must be >= 1 (0 removes the alias)")
        model = await self.get(model_id)
        if number == 0:
            if alias not in model.aliases:
                raise _unknown_alias(model, alias)
            await self._store.delete_model_alias(model_id, alias)
        else:
            version = _version_of(model, number)
            if version.state is not VersionState.READY:
                raise FailedPrecondition(
                    f"model {model_id!r} version {number} is {version.state.value}; an alias can point only at a "
                    "READY version"
                )
            await self._store.set_model_alias(model_id, alias, number)
        await self._changed(model_id)
        return await self.get(model_id)

    async def servable(self, model_id: str, number: int = 0, alias: str = "") -> ServableVersion:
        """The version to serve: `alias` when set, else `number`, else the newest READY one."""
        return self.servable_of(await self.get(model_id), number, alias)

    def servable_of(self, model: ModelRecord, number: int = 0, alias: str = "") -> ServableVersion:
        version = target_version(model, number, alias)
        return ServableVersion(model, version, self._artifacts.version_dir(model.id, version.version))

    def variants(self, model_id: str, number: int) -> dict[str, VariantInfo]:
        """The variants of a READY version, from its variants.json (re-read only when the file changes)."""
        version_dir = self._artifacts.version_dir(model_id, number)
        try:
            stat = (version_dir / ARTIFACTS["variants"]).stat()
            stamp = (stat.st_mtime_ns, stat.st_size)
        except OSError:
            stamp = (0, 0)
        cached = self._variants.get((model_id, number))
        if cached is None or cached[0] != stamp:
            cached = self._variants[(model_id, number)] = (stamp, read_variants(version_dir))
        return cached[1]

    def summaries(self, model: ModelRecord) -> dict[int, VersionSummary]:
        """Each READY version's summary, from its metrics.json (re-read only when the file changes)."""
        found = {}
        for version in model.versions:
            if version.state is not VersionState.READY:
                continue
            version_dir = self._artifacts.version_dir(model.id, version.version)
            stamp = _stamp(version_dir / ARTIFACTS["metrics"])
            cached = self._summaries.get((model.id, version.version))
            if cached is None or cached[0] != stamp:
                cached = self._summaries[(model.id, version.version)] = (stamp, read_summary(version_dir))
            found[version.version] = cached[1]
        return found

    def check_variant(self, servable: ServableVersion, variant: str) -> None:
        """Raise unless `variant` of this version may be served."""
        if variant not in VARIANT_FILES:
            raise InvalidArgument(f"variant {variant!r} is not one of: {', '.join(VARIANT_FILES)} ('' = fp32)")
        if variant == "fp32":  # the exported graph itself: always served
            return
        name = f"model {servable.model.id!r} version {servable.version.version}"
        info = self.variants(servable.model.id, servable.version.version).get(variant)
        if info is None:
            raise FailedPrecondition(
                f"{name} has no {variant} variant: it was exported without one (FineTune export.int8 builds it); "
                "use variant fp32"
            )
        if not info.served:
            raise FailedPrecondition(f"{name}: the {variant} variant is not served ({info.reason}); use variant fp32")

    async def _version(self, model_id: str, number: int) -> ModelVersionRecord:
        return _version_of(await self.get(model_id), number)

    async def _changed(self, model_id: str, *, notify: bool = True) -> None:
        self._writes += 1
        self._snapshots.pop(model_id, None)
        if not notify:
            return
        for listener in self._change_listeners:
            try:
                await listener(model_id)
            except Exception:  # NOTE: a listener's failure must not fail the write (e.g. a job marking READY)
                log.exception("change listener failed for model %s", model_id)


def _served(model: ModelRecord) -> tuple[object, ...]:
    """What routing depends on: the versions' states and the aliases."""
    return tuple((v.version, v.state) for v in model.versions), tuple(sorted(model.aliases.items()))


def target_version(model: ModelRecord, number: int = 0, alias: str = "") -> ModelVersionRecord:
    """The READY version `alias` (or, without one, `number`; 0 = latest) names."""
    if alias and alias != LATEST:
        if alias not in model.aliases:
            raise _unknown_alias(model, alias)
        number = model.aliases[alias]
    elif alias == LATEST:
        number = 0
    if number == 0:
        latest = model.latest_ready
        if latest is None:
            states = ", ".join(f"v{v.version} {v.state.value}" for v in model.versions) or "no versions"
            raise FailedPrecondition(f"model {model.id!r} has no READY version yet ({states})")
        return latest
    version = _version_of(model, number)
    if version.state is not VersionState.READY:
        raise FailedPrecondition(f"model {model.id!r} version {number} is {version.state.value}, not READY")
    return version


def read_variants(version_dir: Path) -> dict[str, VariantInfo]:
    """fp32 always; other variants as variants.json reports them, served only if their graph file exists too."""
    found = {"fp32": VariantInfo("fp32", True)}
    path = version_dir / ARTIFACTS["variants"]
    try:
        report = json.loads(path.read_text()) if path.exists() else {}
    except (OSError, ValueError) as exc:
        log.warning("unreadable %s: %s", path, exc)
        report = {}
    for name, entry in report.items():
        if not isinstance(entry, dict):
            continue
        f1 = entry.get("macro_f1")
        macro_f1 = float(f1) if isinstance(f1, (int, float)) else None
        if name == "fp32":
            found[name] = VariantInfo(name, True, macro_f1)
            continue
        served, reason = bool(entry.get("served")), str(entry.get("reason", ""))
        if served and not (version_dir / VARIANT_FILES.get(name, f"model.{name}.onnx")).exists():
            served, reason = False, f"{VARIANT_FILES.get(name, name)} is missing"
        found[name] = VariantInfo(name, served, macro_f1, reason or ("" if served else "it did not pass its guard"))
    return found


def read_summary(version_dir: Path) -> VersionSummary:
    """The summary metrics.json gives; a version trained before tasks existed has variant_macro_f1 only."""
    path = version_dir / ARTIFACTS["metrics"]
    try:
        result: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    except (OSError, ValueError) as exc:
        log.warning("unreadable %s: %s", path, exc)
        result = {}
    metric = str(result.get("variant_metric") or ("macro_f1" if result.get("variant_macro_f1") else ""))
    variants = result.get("variant_metrics") or result.get("variant_macro_f1") or {}
    return VersionSummary(metric, _numbers(variants), _numbers(result.get("label_thresholds") or {}))


def _numbers(values: Any) -> dict[str, float]:
    if not isinstance(values, dict):
        return {}
    return {str(k): float(v) for k, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _stamp(path: Path) -> tuple[int, int]:
    try:
        stat = path.stat()
    except OSError:
        return (0, 0)
    return (stat.st_mtime_ns, stat.st_size)


def _version_of(model: ModelRecord, number: int) -> ModelVersionRecord:
    for version in model.versions:
        if version.version == number:
            return version
    raise NotFound("model version", f"{model.id}/{number}")


def _check_alias(alias: str) -> None:
    if alias == LATEST:
        raise InvalidArgument("'latest' is implicit (the newest READY version) and cannot be set; choose another name")
    if not ALIAS_PATTERN.fullmatch(alias):
        raise InvalidArgument(
            f"alias {alias!r} is not valid: use a lowercase letter, then lowercase letters, digits or '-' "
            "(at most 63 characters), e.g. production"
        )


def _unknown_alias(model: ModelRecord, alias: str) -> NotFound:
    error = NotFound("alias", f"{model.id}/{alias}")
    # NOTE: NotFound's message names only the id; saying which aliases exist tells the caller what to fix
    error.message += f" (aliases of this model: {', '.join(sorted(model.aliases)) or 'none'}, and latest)"
    error.args = (error.message,)
    return error
