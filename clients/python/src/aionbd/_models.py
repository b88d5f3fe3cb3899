"""Answers of the server as frozen dataclasses, parsed strictly.

A field the contract promises and the answer lacks raises `ValueError`, which
the client turns into `InvalidResponseError`: a wrong answer is never
returned as a half-filled result. Fields the server adds later are ignored
(or kept in `raw` where the contract says the object grows).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Sequence, Type, TypeVar, Union, overload

Payload = Dict[str, Any]
"""Point payload: keys to scalars (str, int, float, bool) or lists of scalars."""

_M = TypeVar("_M")


def _obj(data: Any) -> Dict[str, Any]:
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    return data


_SCALARS: Dict[str, Any] = {"int": int, "float": (int, float), "str": str, "bool": bool}


def _type_ok(annotation: str, value: Any) -> bool:
    """Whether a JSON value fits a field's annotation (as written in this file)."""
    if annotation.startswith("Optional["):
        return value is None or _type_ok(annotation[9:-1], value)
    if annotation in _SCALARS:
        return isinstance(value, _SCALARS[annotation]) and (annotation == "bool") == isinstance(value, bool)
    if annotation.startswith("List["):
        return isinstance(value, list)
    if annotation.startswith("Dict[") or annotation == "Payload":
        return isinstance(value, dict)
    return True


def _parse(cls: Type[_M], data: Any, **nested: Any) -> _M:
    """Build a dataclass from a JSON object: required fields must be present
    and every field must have its type (a `null` value is not a number)."""
    obj = _obj(data)
    kwargs: Dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name in nested:
            kwargs[f.name] = nested[f.name]
        elif f.name == "raw":
            kwargs["raw"] = obj
        elif f.name in obj:
            if not _type_ok(str(f.type), obj[f.name]):
                raise ValueError(f"field '{f.name}' is {obj[f.name]!r}, not {f.type}")
            kwargs[f.name] = obj[f.name]
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ValueError(f"answer lacks the field '{f.name}'")
    return cls(**kwargs)


def _list(data: Any, key: str) -> List[Any]:
    value = _obj(data).get(key)
    if not isinstance(value, list):
        raise ValueError(f"answer lacks the list '{key}'")
    return value


@dataclass(frozen=True)
class Live:
    status: str
    uptime_ms: int


@dataclass(frozen=True)
class Ready:
    status: str
    uptime_ms: int
    checks: Dict[str, bool]


class Metrics(Dict[str, Any]):
    """`GET /metrics`: the flat JSON object, readable as `m["points"]` or `m.points`."""

    REQUIRED = (
        "uptime_ms ready engine_loaded storage_available http_requests_total http_requests_in_flight "
        "http_responses_2xx_total http_responses_4xx_total http_responses_5xx_total "
        "http_request_duration_us_total http_request_duration_us_max http_request_duration_us_avg "
        "collections points l2_indexes persistence_enabled persistence_writes"
    ).split()

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    @classmethod
    def parse(cls, data: Any) -> "Metrics":
        obj = _obj(data)
        missing = [k for k in cls.REQUIRED if k not in obj]
        if missing:
            raise ValueError(f"metrics lack {', '.join(missing)}")
        return cls(obj)


@dataclass(frozen=True)
class DistanceResult:
    metric: str
    value: float


@dataclass(frozen=True)
class CollectionInfo:
    """A collection. `raw` is the whole answer, with fields added by newer
    servers (`partitions`, and on `get_collection` the `index` state)."""

    name: str
    dimension: int
    strict_finite: bool
    point_count: int
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class DeleteCollectionResult:
    name: str
    deleted: bool


@dataclass(frozen=True)
class UpsertPointResult:
    id: int
    created: bool
    """False: an existing point was replaced."""


@dataclass(frozen=True)
class BatchUpsertResult:
    created: int
    updated: int
    results: List[UpsertPointResult]

    @classmethod
    def parse(cls, data: Any) -> "BatchUpsertResult":
        results = [_parse(UpsertPointResult, r) for r in _list(data, "results")]
        return _parse(cls, data, results=results)


@dataclass(frozen=True)
class PointResult:
    id: int
    values: List[float]
    payload: Payload


@dataclass(frozen=True)
class DeletePointResult:
    id: int
    deleted: bool


@dataclass(frozen=True)
class PointsPage:
    """One page of point ids, ascending. Pass `next_after_id` as `after_id`
    (or `next_offset` as `offset`) to get the next page; both are None on the
    last page."""

    ids: List[int]
    total: int
    next_offset: Optional[int]
    next_after_id: Optional[int]

    @classmethod
    def parse(cls, data: Any) -> "PointsPage":
        ids = [_obj(p).get("id") for p in _list(data, "points")]
        if not all(isinstance(i, int) for i in ids):
            raise ValueError("a point of the page lacks its integer 'id'")
        return _parse(cls, data, ids=ids)


@dataclass(frozen=True)
class SearchResult:
    """Top-1 answer. `mode` is what ran (`exact`, `ivf`, `hnsw`, `ivf+hnsw`);
    exact answers carry `recall_at_k == 1.0`, index answers `estimated_recall`."""

    id: int
    metric: str
    value: float
    mode: str
    recall_at_k: Optional[float] = None
    estimated_recall: Optional[float] = None
    payload: Optional[Payload] = None


@dataclass(frozen=True)
class Hit:
    id: int
    value: float
    payload: Optional[Payload] = None
    """None when `include_payload=False` or the point has no payload."""


@dataclass(frozen=True)
class TopK(Sequence[Hit]):
    """Top-k answer: a sequence of hits (best first) that also tells how it
    was computed (`mode`, `recall_at_k` or `estimated_recall`)."""

    metric: str
    mode: str
    hits: List[Hit]
    recall_at_k: Optional[float] = None
    estimated_recall: Optional[float] = None

    @classmethod
    def parse(cls, data: Any, metric: Optional[str] = None) -> "TopK":
        hits = [_parse(Hit, h) for h in _list(data, "hits")]
        extra = {"metric": metric} if metric is not None else {}
        return _parse(cls, data, hits=hits, **extra)

    @overload
    def __getitem__(self, i: int) -> Hit: ...

    @overload
    def __getitem__(self, i: slice) -> List[Hit]: ...

    def __getitem__(self, i: Union[int, slice]) -> Union[Hit, List[Hit]]:
        return self.hits[i]

    def __len__(self) -> int:
        return len(self.hits)

    def __iter__(self) -> Iterator[Hit]:
        return iter(self.hits)

    @property
    def ids(self) -> List[int]:
        return [h.id for h in self.hits]


@dataclass(frozen=True)
class ExportHeader:
    """Line 1 of a collection's export: the collection (`name`, `dimension`,
    `strict_finite`, as `create_collection` takes them), how many `points`
    the export holds and the home shard's `lsn` at the cut (the export
    holds exactly the writes logged up to it). `raw` is the whole line."""

    name: str
    dimension: int
    strict_finite: bool
    points: int
    lsn: int
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def parse(cls, data: Any) -> "ExportHeader":
        obj = _obj(data)
        if not isinstance(obj.get("aionbd_export"), int):
            raise ValueError("the first line is not an export header (no 'aionbd_export')")
        fields: Dict[str, Any] = {**_obj(obj.get("collection"))}
        fields.update((k, obj[k]) for k in ("points", "lsn") if k in obj)
        return _parse(cls, fields, raw=obj)


@dataclass(frozen=True)
class BackupCollection:
    """One collection of a backup: `name` as stored (`tenant::name` with auth
    on), its size and the home shard's `lsn` at the cut."""

    name: str
    dimension: int
    strict_finite: bool
    points: int
    home_shard: int
    lsn: int


@dataclass(frozen=True)
class BackupManifest:
    """What a backup holds. A kept backup's manifest (`create_backup`,
    `list_backups`) also has its `name` (for `download_backup` and
    `delete_backup`) and size in `bytes`."""

    format: int
    aionbd_version: str
    created_unix_ms: int
    consistency: str
    collections: List[BackupCollection]
    points: int
    bytes: Optional[int] = None
    name: Optional[str] = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def parse(cls, data: Any) -> "BackupManifest":
        collections = [_parse(BackupCollection, c) for c in _list(data, "collections")]
        return _parse(cls, data, collections=collections)


@dataclass(frozen=True)
class BackupList:
    """The backups kept on the server (oldest first), the directory they are
    in, and the names of those being written."""

    dir: str
    backups: List[BackupManifest]
    in_progress: List[str]

    @classmethod
    def parse(cls, data: Any) -> "BackupList":
        backups = [BackupManifest.parse(b) for b in _list(data, "backups")]
        return _parse(cls, data, backups=backups)


@dataclass(frozen=True)
class DeleteBackupResult:
    name: str
    deleted: bool


def parse_batch(data: Any) -> List[TopK]:
    metric = _obj(data).get("metric")
    if not isinstance(metric, str):
        raise ValueError("answer lacks the field 'metric'")
    return [TopK.parse(r, metric) for r in _list(data, "results")]


def parse_model(cls: Type[_M]) -> Any:
    """A parser for a flat dataclass."""
    return lambda data: _parse(cls, data)


def parse_field(name: str, kind: type) -> Any:
    """A parser that returns one field of the answer, checked for its type."""

    def parse(data: Any) -> Any:
        value = _obj(data).get(name)
        if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
            raise ValueError(f"answer lacks the {kind.__name__} '{name}'")
        return value

    return parse
