"""Persistence: SQLite metadata (`MetadataStore`) and the artifact directory (`ArtifactStore`)."""

from tuneserve.store.artifacts import ArtifactStore
from tuneserve.store.metadata import MetadataStore

__all__ = ["ArtifactStore", "MetadataStore"]
