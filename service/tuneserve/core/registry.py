"""The model registry: a model per fine-tuned task, with numbered versions (one per FineTune job)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from tuneserve.core.ids import new_id
from tuneserve.errors import FailedPrecondition, NotFound
from tuneserve.store import ArtifactStore, MetadataStore
from tuneserve.types import ModelRecord, ModelVersionRecord, Page, VersionState

DeleteListener = Callable[[str], Awaitable[None]]


@dataclass(frozen=True)
class ServableVersion:
    model: ModelRecord
    version: ModelVersionRecord
    path: Path


class ModelRegistry:
    def __init__(self, store: MetadataStore, artifacts: ArtifactStore) -> None:
        self._store = store
        self._artifacts = artifacts
        self._delete_listeners: list[DeleteListener] = []

    def on_delete(self, listener: DeleteListener) -> None:
        """Call `listener(model_id)` after a model is deleted (the inference cache drops its sessions)."""
        self._delete_listeners.append(listener)

    async def create(self, name: str, backbone: str, labels: list[str], modality: str) -> ModelRecord:
        model = ModelRecord(new_id("model"), name, modality, backbone, labels, time.time())
        await self._store.add_model(model)
        return model

    async def add_version(self, model: ModelRecord, job_id: str) -> ModelVersionRecord:
        number = max((v.version for v in model.versions), default=0) + 1
        version = ModelVersionRecord(model.id, number, VersionState.TRAINING, job_id, create_time=time.time())
        await self._store.put_model_version(version)
        return version

    async def mark_ready(self, model_id: str, number: int, metrics: dict[str, float]) -> None:
        version = await self._version(model_id, number)
        version.state = VersionState.READY
        version.validation_metrics = metrics
        onnx = self._artifacts.version_dir(model_id, number) / "model.onnx"
        version.onnx_size_bytes = onnx.stat().st_size if onnx.exists() else 0
        await self._store.put_model_version(version)

    async def mark_failed(self, model_id: str, number: int) -> None:
        version = await self._version(model_id, number)
        version.state = VersionState.FAILED
        await self._store.put_model_version(version)

    async def get(self, model_id: str) -> ModelRecord:
        model = await self._store.get_model(model_id)
        if model is None:
            raise NotFound("model", model_id)
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
        for listener in self._delete_listeners:
            await listener(model_id)
        self._artifacts.remove(self._artifacts.model_dir(model_id))

    async def servable(self, model_id: str, number: int = 0) -> ServableVersion:
        """The version to serve: `number`, or the newest READY one when 0."""
        model = await self.get(model_id)
        if number == 0:
            version = model.latest_ready
            if version is None:
                states = ", ".join(f"v{v.version} {v.state.value}" for v in model.versions) or "no versions"
                raise FailedPrecondition(f"model {model_id!r} has no READY version yet ({states})")
        else:
            version = next((v for v in model.versions if v.version == number), None)
            if version is None:
                raise NotFound("model version", f"{model_id}/{number}")
            if version.state is not VersionState.READY:
                raise FailedPrecondition(f"model {model_id!r} version {number} is {version.state.value}, not READY")
        return ServableVersion(model, version, self._artifacts.version_dir(model_id, version.version))

    async def _version(self, model_id: str, number: int) -> ModelVersionRecord:
        model = await self.get(model_id)
        for version in model.versions:
            if version.version == number:
                return version
        raise NotFound("model version", f"{model_id}/{number}")
