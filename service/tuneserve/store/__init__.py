"""Persistence: metadata (`MetadataStore`: SQLite embedded, or PostgreSQL shared by replicas) and the artifact
directory (`ArtifactStore`)."""

from tuneserve.store.artifacts import ArtifactStore
from tuneserve.store.factory import metadata_store, open_metadata_store
from tuneserve.store.metadata import STORE_OUTAGES, MetadataStore
from tuneserve.store.postgres import PostgresMetadataStore
from tuneserve.store.sqlite import SQLiteMetadataStore

__all__ = [
    "STORE_OUTAGES", "ArtifactStore", "MetadataStore", "PostgresMetadataStore", "SQLiteMetadataStore", "metadata_store",
    "open_metadata_store",
]
