"""Python client for the AIONBD vector database server.

    from aionbd import Client

    with Client("http://127.0.0.1:8080") as client:
        client.create_collection("demo", dimension=4)
        client.upsert_point("demo", 1, [0.1, 0.2, 0.3, 0.4], {"label": "alpha"})
        top = client.search_collection_top_k("demo", [0.1, 0.2, 0.3, 0.4], limit=2, metric="l2")
        print(top.mode, [(h.id, h.value) for h in top])
"""

from ._client import (
    BATCH_MAX_POINTS,
    MAX_BODY_BYTES,
    AionBDClient,
    AsyncClient,
    BulkUpsertResult,
    Client,
    __version__,
)
from ._errors import (
    AionBDError,
    ApiError,
    BulkUpsertError,
    ClientTimeoutError,
    ConflictError,
    ConnectError,
    ForbiddenError,
    InsufficientStorageError,
    InternalError,
    InvalidArgumentError,
    InvalidResponseError,
    NotFoundError,
    NotReadyError,
    PayloadTooLargeError,
    RequestTimeoutError,
    ResourceExhaustedError,
    TLSError,
    TransportError,
    UnauthorizedError,
)
from ._filter import Filter, Match, Range
from ._http import RetryPolicy
from ._streams import AsyncExportStream, ExportStream
from ._models import (
    BackupCollection,
    BackupList,
    BackupManifest,
    BatchUpsertResult,
    CollectionInfo,
    DeleteBackupResult,
    DeleteCollectionResult,
    DeletePointResult,
    DistanceResult,
    ExportHeader,
    Hit,
    Live,
    Metrics,
    PointResult,
    PointsPage,
    Ready,
    SearchResult,
    TopK,
    UpsertPointResult,
)

__all__ = [
    "AionBDClient",
    "AionBDError",
    "ApiError",
    "AsyncClient",
    "AsyncExportStream",
    "BATCH_MAX_POINTS",
    "BackupCollection",
    "BackupList",
    "BackupManifest",
    "BatchUpsertResult",
    "BulkUpsertError",
    "BulkUpsertResult",
    "Client",
    "ClientTimeoutError",
    "CollectionInfo",
    "ConflictError",
    "ConnectError",
    "DeleteBackupResult",
    "DeleteCollectionResult",
    "DeletePointResult",
    "DistanceResult",
    "ExportHeader",
    "ExportStream",
    "Filter",
    "ForbiddenError",
    "Hit",
    "InsufficientStorageError",
    "InternalError",
    "InvalidArgumentError",
    "InvalidResponseError",
    "Live",
    "MAX_BODY_BYTES",
    "Match",
    "Metrics",
    "NotFoundError",
    "NotReadyError",
    "PayloadTooLargeError",
    "PointResult",
    "PointsPage",
    "Range",
    "Ready",
    "RequestTimeoutError",
    "ResourceExhaustedError",
    "RetryPolicy",
    "SearchResult",
    "TLSError",
    "TopK",
    "TransportError",
    "UnauthorizedError",
    "UpsertPointResult",
    "__version__",
]
