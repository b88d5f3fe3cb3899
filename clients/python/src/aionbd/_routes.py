"""One function per API route: it validates the arguments and describes the
request (`Call`): method, path, body, how to parse the answer, and whether it
may be repeated after a 429/503. The clients only execute Calls, so the sync
and async clients share this file and differ only in how they wait.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable, Dict, Generic, Iterable, List, Literal, Mapping, Optional, Protocol, Sequence, Tuple, TypeVar, Union
from urllib.parse import quote

from ._filter import FilterLike, filter_json
from ._models import (
    BackupList,
    BackupManifest,
    BatchUpsertResult,
    CollectionInfo,
    DeleteBackupResult,
    DeleteCollectionResult,
    DeletePointResult,
    DistanceResult,
    Live,
    Metrics,
    Payload,
    PointResult,
    PointsPage,
    Ready,
    SearchResult,
    TopK,
    UpsertPointResult,
    parse_batch,
    parse_field,
    parse_model,
)

T = TypeVar("T")

Metric = Literal["dot", "l2", "cosine"]
Mode = Literal["auto", "exact", "ivf", "hnsw"]


class SupportsToList(Protocol):
    """numpy arrays (and anything else with `tolist()`)."""

    def tolist(self) -> Any: ...


Vector = Union[Sequence[float], SupportsToList]
PointLike = Union[Mapping[str, Any], Tuple[int, Vector], Tuple[int, Vector, Optional[Payload]]]
"""A point to write: `{"id", "values", "payload"?}` or `(id, values[, payload])`."""


@dataclass(frozen=True)
class Call(Generic[T]):
    method: str
    path: str
    parse: Callable[[Any], T]
    body: Optional[bytes] = None
    params: Optional[Mapping[str, Union[int, List[str]]]] = None
    retry: bool = True
    """Safe to send again after 429/503: reads, upserts, deletes."""
    text: bool = False
    """The answer is text, not JSON."""
    long: bool = False
    """The server may take long to answer (it writes a backup): no read timeout."""
    media: Optional[str] = None
    """The answer is streamed, of this content type: read by the clients'
    export and download methods, never by `execute`."""


NDJSON = "application/x-ndjson"
BACKUP = "application/octet-stream"


def encode(body: Any) -> bytes:
    try:
        return json.dumps(body, allow_nan=False, separators=(",", ":")).encode()
    except ValueError:
        raise ValueError("the request holds NaN or infinity, which JSON cannot carry") from None


def vector(v: Vector) -> List[float]:
    items = v.tolist() if hasattr(v, "tolist") else v
    try:
        return [float(x) for x in items]
    except TypeError:
        raise TypeError(f"a vector must be a flat sequence of numbers, got {type(v).__name__}") from None


def point_json(p: PointLike) -> Dict[str, Any]:
    if isinstance(p, Mapping):
        out = {"id": int(p["id"]), "values": vector(p["values"])}
        payload = p.get("payload")
    else:
        out = {"id": int(p[0]), "values": vector(p[1])}
        payload = p[2] if len(p) > 2 else None
    if payload is not None:
        out["payload"] = payload
    return out


def collection_path(collection: str) -> str:
    """`/collections/{name}`, the name trimmed (as the server does) and escaped."""
    return "/collections/" + quote(collection.strip(), safe="")


def _json(method: str, path: str, parse: Callable[[Any], T], body: Any, retry: bool = True) -> Call[T]:
    return Call(method, path, parse, body=encode(body), retry=retry)


def live() -> Call[Live]:
    """Liveness: `status` and `uptime_ms`."""
    return Call("GET", "/live", parse_model(Live))


def ready() -> Call[Ready]:
    """Readiness; raises NotReadyError (503) when not ready (never retried)."""
    return Call("GET", "/ready", parse_model(Ready), retry=False)


def health() -> Call[Ready]:
    """Alias of `ready()` kept from the original SDK."""
    return ready()


def metrics() -> Call[Metrics]:
    """Server counters (`GET /metrics`)."""
    return Call("GET", "/metrics", Metrics.parse)


def metrics_prometheus() -> Call[str]:
    """Server counters in the Prometheus text format."""
    return Call("GET", "/metrics/prometheus", str, text=True)


def distance(left: Vector, right: Vector, metric: Metric = "dot") -> Call[DistanceResult]:
    """Distance between two vectors: dot product, l2 (Euclidean) or cosine similarity."""
    body = {"left": vector(left), "right": vector(right), "metric": metric}
    return _json("POST", "/distance", parse_model(DistanceResult), body)


def create_collection(name: str, dimension: int, strict_finite: bool = True) -> Call[CollectionInfo]:
    """Create a collection (ConflictError if the name is taken). Not retried:
    a retry after a lost answer would be a 409."""
    body = {"name": name, "dimension": dimension, "strict_finite": strict_finite}
    return _json("POST", "/collections", parse_model(CollectionInfo), body, retry=False)


def _collections(data: Any) -> List[CollectionInfo]:
    items = data.get("collections") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise ValueError("answer lacks the list 'collections'")
    return [parse_model(CollectionInfo)(c) for c in items]


def list_collections() -> Call[List[CollectionInfo]]:
    """All collections, sorted by name."""
    return Call("GET", "/collections", _collections)


def get_collection(name: str) -> Call[CollectionInfo]:
    """One collection; `raw["index"]` holds its index state."""
    return Call("GET", collection_path(name), parse_model(CollectionInfo))


def delete_collection(name: str) -> Call[DeleteCollectionResult]:
    """Delete a collection and its points (NotFoundError if absent)."""
    return Call("DELETE", collection_path(name), parse_model(DeleteCollectionResult))


def upsert_point(
    collection: str, point_id: int, values: Vector, payload: Optional[Payload] = None
) -> Call[UpsertPointResult]:
    """Create or replace one point (vector and payload replaced wholesale)."""
    body = point_json((point_id, values, payload))
    del body["id"]
    return _json("PUT", f"{collection_path(collection)}/points/{int(point_id)}", parse_model(UpsertPointResult), body)


def upsert_points_batch(collection: str, points: Iterable[PointLike]) -> Call[BatchUpsertResult]:
    """Create or replace 1-256 points in one all-or-nothing request
    (use `bulk_upsert` for any number)."""
    body = {"points": [point_json(p) for p in points]}
    return _json("POST", f"{collection_path(collection)}/points", BatchUpsertResult.parse, body)


def get_point(collection: str, point_id: int) -> Call[PointResult]:
    """One point: id, values and payload (`{}` if none)."""
    return Call("GET", f"{collection_path(collection)}/points/{int(point_id)}", parse_model(PointResult))


def delete_point(collection: str, point_id: int) -> Call[DeletePointResult]:
    """Delete one point (NotFoundError if absent)."""
    return Call("DELETE", f"{collection_path(collection)}/points/{int(point_id)}", parse_model(DeletePointResult))


def list_points(
    collection: str, offset: int = 0, limit: Optional[int] = 100, after_id: Optional[int] = None
) -> Call[PointsPage]:
    """One page of point ids, ascending: from `offset` (at most 100000), or
    after the id `after_id` (cursor; any collection size). `limit=None` lets
    the server choose (100)."""
    if after_id is not None and offset:
        raise ValueError("offset must be 0 when after_id is given")
    params: Dict[str, int] = {}
    if limit is not None:
        params["limit"] = int(limit)
    if after_id is not None:
        params["after_id"] = int(after_id)
    else:
        params["offset"] = int(offset)
    return Call("GET", f"{collection_path(collection)}/points", PointsPage.parse, params=params)


def count_points(collection: str, filter: Optional[FilterLike] = None) -> Call[int]:
    """Number of points, or of those passing `filter`."""
    body = {} if filter is None else {"filter": filter_json(filter)}
    return _json("POST", f"{collection_path(collection)}/points/count", parse_field("count", int), body)


def set_payload(collection: str, point_ids: Iterable[int], payload: Payload) -> Call[int]:
    """Merge `payload` keys into each point's payload; returns how many
    points changed. Any unknown id: NotFoundError and nothing changes."""
    body = {"points": [int(i) for i in point_ids], "payload": payload}
    return _json("POST", f"{collection_path(collection)}/points/payload/set", parse_field("updated", int), body)


def delete_payload(collection: str, point_ids: Iterable[int], keys: Iterable[str]) -> Call[int]:
    """Remove `keys` from each point's payload; returns how many points changed."""
    body = {"points": [int(i) for i in point_ids], "keys": list(keys)}
    return _json("POST", f"{collection_path(collection)}/points/payload/delete", parse_field("updated", int), body)


def _search_body(
    metric: Metric,
    mode: Mode,
    target_recall: Optional[float],
    filter: Optional[FilterLike],
    include_payload: Optional[bool],
    ef: Optional[int],
    nprobe: Optional[int],
    limit: Optional[int] = None,
) -> Dict[str, Any]:
    body: Dict[str, Any] = {"metric": metric, "mode": mode}
    optional = {
        "target_recall": None if target_recall is None else float(target_recall),
        "filter": filter_json(filter),
        "include_payload": include_payload,
        "ef": ef,
        "nprobe": nprobe,
        "limit": limit,
    }
    body.update((k, v) for k, v in optional.items() if v is not None)
    return body


def search_collection(
    collection: str,
    query: Vector,
    metric: Metric = "dot",
    mode: Mode = "auto",
    target_recall: Optional[float] = None,
    filter: Optional[FilterLike] = None,
    *,
    include_payload: Optional[bool] = None,
    ef: Optional[int] = None,
    nprobe: Optional[int] = None,
) -> Call[SearchResult]:
    """The nearest point (top-1). `mode`: `auto` (meets `target_recall`,
    default 0.95, the cheapest way), `exact`, `ivf` (`nprobe` lists) or
    `hnsw` (beam `ef`). InvalidArgumentError if no point passes `filter`."""
    body = _search_body(metric, mode, target_recall, filter, include_payload, ef, nprobe)
    body["query"] = vector(query)
    return _json("POST", f"{collection_path(collection)}/search", parse_model(SearchResult), body)


def search_collection_top_k(
    collection: str,
    query: Vector,
    limit: Optional[int] = 10,
    metric: Metric = "dot",
    mode: Mode = "auto",
    target_recall: Optional[float] = None,
    filter: Optional[FilterLike] = None,
    *,
    include_payload: Optional[bool] = None,
    ef: Optional[int] = None,
    nprobe: Optional[int] = None,
) -> Call[TopK]:
    """The `limit` nearest points, best first (fewer if fewer pass `filter`).
    The answer tells `mode` and `recall_at_k` or `estimated_recall`."""
    body = _search_body(metric, mode, target_recall, filter, include_payload, ef, nprobe, limit)
    body["query"] = vector(query)
    return _json("POST", f"{collection_path(collection)}/search/topk", TopK.parse, body)


def search_collection_top_k_batch(
    collection: str,
    queries: Union[Iterable[Vector], SupportsToList],
    limit: Optional[int] = 10,
    metric: Metric = "dot",
    mode: Mode = "auto",
    target_recall: Optional[float] = None,
    filter: Optional[FilterLike] = None,
    *,
    include_payload: Optional[bool] = None,
    ef: Optional[int] = None,
    nprobe: Optional[int] = None,
) -> Call[List[TopK]]:
    """Top-k for 1-256 queries (a list of vectors or a 2-D numpy array) with
    the same options; one answer per query, in order."""
    rows = queries.tolist() if hasattr(queries, "tolist") else queries
    body = _search_body(metric, mode, target_recall, filter, include_payload, ef, nprobe, limit)
    body["queries"] = [vector(q) for q in rows]
    return _json("POST", f"{collection_path(collection)}/search/topk/batch", parse_batch, body)


def next_page(collection: str, page: PointsPage, limit: Optional[int], paging: str) -> Optional[Call[PointsPage]]:
    """The call for the page after `page`, or None after the last one."""
    if paging == "offset":
        return None if page.next_offset is None else list_points(collection, page.next_offset, limit)
    return None if page.next_after_id is None else list_points(collection, 0, limit, page.next_after_id)


def _streamed(data: Any) -> None:
    raise TypeError("a streamed answer: read it with the client's export or download methods")


def _collections_query(collections: Optional[Iterable[str]]) -> Optional[Mapping[str, List[str]]]:
    if collections is None:
        return None
    names = [collections] if isinstance(collections, str) else list(collections)
    return {"collection": names} if names else None


def backup_path(name: str) -> str:
    """`/backups/{backup}`, the name escaped."""
    return "/backups/" + quote(name, safe="")


def export_collection(collection: str) -> Call[None]:
    """The collection as NDJSON, streamed: its header line, then one point
    per line, all at one cut."""
    return Call("GET", f"{collection_path(collection)}/export", _streamed, media=NDJSON)


def backup(collections: Optional[Iterable[str]] = None) -> Call[None]:
    """A backup file, streamed: every collection the credential may back up,
    or only `collections`."""
    return Call("GET", "/backup", _streamed, params=_collections_query(collections), media=BACKUP)


def create_backup(collections: Optional[Iterable[str]] = None) -> Call[BackupManifest]:
    """Write a backup into the server's backup directory (scope admin) and
    return its manifest once it is complete. Waits as long as that takes (no
    read timeout). Not retried: each call writes a new backup."""
    params = _collections_query(collections)
    return Call("POST", "/backups", BackupManifest.parse, params=params, retry=False, long=True)


def list_backups() -> Call[BackupList]:
    """The backups kept on the server, oldest first (scope admin)."""
    return Call("GET", "/backups", BackupList.parse)


def get_backup(name: str) -> Call[None]:
    """A kept backup's file, streamed (scope admin)."""
    return Call("GET", backup_path(name), _streamed, media=BACKUP)


def delete_backup(name: str) -> Call[DeleteBackupResult]:
    """Delete a kept backup (scope admin; NotFoundError if absent)."""
    return Call("DELETE", backup_path(name), parse_model(DeleteBackupResult))
