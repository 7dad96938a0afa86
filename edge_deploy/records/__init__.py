"""Deployment records: the typed record, its stores (MongoDB or an embedded SQLite file) and `sync`.

`open_record_store(settings)` picks the store; `DeploymentRecord` is what every store holds and what
`record.json` in lakeFS contains.
"""

from edge_deploy.records.model import (
    FAILED,
    RUNNING,
    SCHEMA_VERSION,
    SUCCEEDED,
    ConversionInfo,
    DeploymentRecord,
    ImageAcceptance,
    ImageSet,
    ModelFile,
    ModelSource,
    OutputError,
    PlatformImage,
    PublishedArtifacts,
    RecordFormatError,
    RecordStatus,
    ValidationSummary,
    utc_timestamp,
)
from edge_deploy.records.store import (
    RecordQuery,
    RecordStore,
    RecordStoreError,
    RecordStoreUnavailable,
    open_record_store,
)

__all__ = [
    "FAILED",
    "RUNNING",
    "SCHEMA_VERSION",
    "SUCCEEDED",
    "ConversionInfo",
    "DeploymentRecord",
    "ImageAcceptance",
    "ImageSet",
    "ModelFile",
    "ModelSource",
    "OutputError",
    "PlatformImage",
    "PublishedArtifacts",
    "RecordFormatError",
    "RecordQuery",
    "RecordStatus",
    "RecordStore",
    "RecordStoreError",
    "RecordStoreUnavailable",
    "ValidationSummary",
    "open_record_store",
    "utc_timestamp",
]
