"""`Client` (blocking) and `AsyncClient` (asyncio) over httpx.

Each API route is a function in `_routes` that describes its request; the
clients bind those functions as methods (`_Sync` / `_Async`) and execute the
description with retries. Only the helpers that loop over several requests
(`bulk_upsert`, `iter_pages`, `iter_points`) and those that read a streamed
answer (the export, downloads to a file; `_streams`) are written once per
client.
"""

from __future__ import annotations

import asyncio
import functools
import sys
import time
from collections import deque
from dataclasses import dataclass
from typing import (
    Any,
    AsyncIterator,
    Awaitable,
    Callable,
    Deque,
    Dict,
    Generic,
    Iterable,
    Iterator,
    List,
    Literal,
    Optional,
    TypeVar,
    Union,
    overload,
)

import httpx

from . import _routes as routes
from ._errors import AionBDError, ApiError, BulkUpsertError, PayloadTooLargeError
from ._http import RetryPolicy, Verify, api_error, result, ssl_context, transport_error
from ._models import BatchUpsertResult, PointsPage
from ._routes import Call, PointLike, encode, point_json
from ._streams import AsyncExportStream, ExportStream, PathLike, adownload, download

if sys.version_info >= (3, 10):
    from typing import ParamSpec
else:  # pragma: no cover
    from typing_extensions import ParamSpec

__version__ = "0.1.0"

P = ParamSpec("P")
T = TypeVar("T")

DEFAULT_URL = "http://127.0.0.1:8080"
BATCH_MAX_POINTS = 256
"""Server default `AIONBD_UPSERT_BATCH_MAX_POINTS`."""
MAX_BODY_BYTES = 8 << 20
"""Server default `AIONBD_MAX_BODY_BYTES` (8 MiB)."""

Paging = Literal["cursor", "offset"]
ProgressFn = Callable[[int, Optional[int]], None]
"""`on_progress(written, total)`: points stored so far, and the input's
length when it has one (else None)."""


class _Base:
    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        timeout: Union[float, httpx.Timeout, None] = 5.0,
        *,
        api_key: Optional[str] = None,
        bearer_token: Optional[str] = None,
        verify: Verify = True,
        retry: Optional[RetryPolicy] = None,
        max_body_bytes: int = MAX_BODY_BYTES,
        headers: Optional[Dict[str, str]] = None,
        transport: Any = None,
    ) -> None:
        """`transport`: an httpx transport (sync or async to match the client),
        e.g. for a proxy or a mock; None uses httpx's default."""
        self.base_url = base_url.rstrip("/")
        self.retry = retry or RetryPolicy()
        self.max_body_bytes = max_body_bytes
        self._headers = {"accept": "application/json", "user-agent": f"aionbd-python/{__version__}"}
        if api_key is not None:
            self._headers["x-api-key"] = api_key
        if bearer_token is not None:
            self._headers["authorization"] = f"Bearer {bearer_token}"
        self._headers.update(headers or {})
        self._options: Dict[str, Any] = {
            "headers": self._headers,
            "timeout": timeout,
            "verify": ssl_context(verify),
            "transport": transport,
        }
        t = httpx.Timeout(timeout)
        self._long_timeout = httpx.Timeout(connect=t.connect, read=None, write=t.write, pool=t.pool)
        self._http = self._open()

    def _open(self) -> Any:
        raise NotImplementedError

    def _request_args(self, call: Call[Any]) -> Dict[str, Any]:
        headers = {"content-type": "application/json"} if call.body is not None else None
        if call.media is not None:
            headers = {"accept": f"{call.media}, application/json"}
        args: Dict[str, Any] = {
            "method": call.method,
            "url": self.base_url + call.path,
            "content": call.body,
            "params": call.params,
            "headers": headers,
        }
        if call.long:
            args["timeout"] = self._long_timeout
        return args

    def _retry_delay(self, call: Call[Any], attempt: int, err: ApiError) -> Optional[float]:
        return self.retry.delay(attempt, err) if call.retry else None


class _Sync(Generic[P, T]):
    """Binds a route function as a blocking method of `Client`."""

    def __init__(self, build: Callable[P, Call[T]]) -> None:
        self.build = build
        self.__doc__ = build.__doc__

    @overload
    def __get__(self, client: None, owner: Any) -> "_Sync[P, T]": ...

    @overload
    def __get__(self, client: "Client", owner: Any) -> Callable[P, T]: ...

    def __get__(self, client: Optional["Client"], owner: Any) -> Any:
        if client is None:
            return self
        build = self.build

        @functools.wraps(build)
        def method(*args: P.args, **kwargs: P.kwargs) -> T:
            return client.execute(build(*args, **kwargs))

        return method


class _Async(Generic[P, T]):
    """Binds a route function as a coroutine method of `AsyncClient`."""

    def __init__(self, build: Callable[P, Call[T]]) -> None:
        self.build = build
        self.__doc__ = build.__doc__

    @overload
    def __get__(self, client: None, owner: Any) -> "_Async[P, T]": ...

    @overload
    def __get__(self, client: "AsyncClient", owner: Any) -> Callable[P, Awaitable[T]]: ...

    def __get__(self, client: Optional["AsyncClient"], owner: Any) -> Any:
        if client is None:
            return self
        build = self.build

        @functools.wraps(build)
        async def method(*args: P.args, **kwargs: P.kwargs) -> T:
            return await client.execute(build(*args, **kwargs))

        return method


@dataclass(frozen=True)
class BulkUpsertResult:
    written: int
    """Points stored (created + updated)."""
    created: int
    updated: int
    requests: int
    """Batch requests that succeeded."""


class _Bulk:
    """Packs points into batch requests under the count and byte limits, in
    input order. On 413 the rejected batch is split in halves (and the byte
    limit lowered); a single point that is still too large fails."""

    _FRAME = len(b'{"points":[]}')

    def __init__(
        self, collection: str, points: Iterable[PointLike], batch_size: int, max_body_bytes: int,
        on_progress: Optional[ProgressFn],
    ) -> None:
        if not 1 <= batch_size <= BATCH_MAX_POINTS:
            raise ValueError(f"batch_size must be 1..{BATCH_MAX_POINTS}, got {batch_size}")
        self.path = routes.collection_path(collection) + "/points"
        self.points = iter(points)
        self.total = len(points) if hasattr(points, "__len__") else None  # type: ignore[arg-type]
        self.batch_size, self.max_body_bytes = batch_size, max_body_bytes
        self.on_progress = on_progress
        self.retry: Deque[List[bytes]] = deque()
        self.carry: Optional[bytes] = None
        self.current: List[bytes] = []
        self.written = self.created = self.updated = self.requests = 0

    def _next_batch(self) -> List[bytes]:
        if self.retry:
            return self.retry.popleft()
        batch: List[bytes] = []
        size = self._FRAME
        while len(batch) < self.batch_size:
            item, self.carry = self.carry, None
            if item is None:
                p = next(self.points, None)
                if p is None:
                    break
                item = encode(point_json(p))
            if batch and size + len(item) + 1 > self.max_body_bytes:
                self.carry = item
                break
            batch.append(item)
            size += len(item) + 1
        return batch

    def calls(self) -> Iterator[Call[Any]]:
        while True:
            try:
                batch = self._next_batch()
            except (ValueError, TypeError, KeyError, IndexError) as e:  # a bad input point
                raise BulkUpsertError(self.written, e) from e
            if not batch:
                return
            self.current = batch
            body = b'{"points":[' + b",".join(batch) + b"]}"
            yield Call("POST", self.path, BatchUpsertResult.parse, body=body)

    def done(self, r: BatchUpsertResult) -> None:
        self.requests += 1
        self.created += r.created
        self.updated += r.updated
        self.written += len(self.current)
        if self.on_progress:
            self.on_progress(self.written, self.total)

    def failed(self, err: AionBDError) -> None:
        """Split the batch after a 413, or raise BulkUpsertError."""
        batch = self.current
        if not isinstance(err, PayloadTooLargeError) or len(batch) == 1:
            raise BulkUpsertError(self.written, err) from err
        half = len(batch) // 2
        self.max_body_bytes = max(1, sum(len(b) + 1 for b in batch[:half]) + self._FRAME)
        self.retry.extendleft([batch[half:], batch[:half]])

    def result(self) -> BulkUpsertResult:
        return BulkUpsertResult(self.written, self.created, self.updated, self.requests)


class Client(_Base):
    """Blocking client. Use as a context manager, or call `close()`.

    `api_key` is sent as `x-api-key`, `bearer_token` (an opaque token or a
    JWT) as `Authorization: Bearer`. `verify` takes a CA bundle path for a
    server with a private CA. `timeout` (seconds) bounds each attempt.
    """

    _http: httpx.Client

    def _open(self) -> httpx.Client:
        return httpx.Client(**self._options)

    def execute(self, call: Call[T]) -> T:
        """Send one request (retrying per the policy) and parse its answer."""
        attempt = 0
        while True:
            try:
                resp = self._http.request(**self._request_args(call))
            except httpx.HTTPError as e:
                raise transport_error(e, call, self.base_url) from e
            if resp.is_success:
                return result(call, resp)
            err = api_error(resp, call)
            delay = self._retry_delay(call, attempt, err)
            if delay is None:
                raise err
            time.sleep(delay)
            attempt += 1

    def _open_stream(self, call: Call[Any]) -> httpx.Response:
        """Send a call whose answer is streamed; the open 2xx answer, its body
        unread (close it). Retried as `execute` does while the answer is an
        error, never once a body is being read."""
        attempt = 0
        while True:
            try:
                resp = self._http.send(self._http.build_request(**self._request_args(call)), stream=True)
                if resp.is_success:
                    return resp
                try:
                    resp.read()
                finally:
                    resp.close()
            except httpx.HTTPError as e:
                raise transport_error(e, call, self.base_url) from e
            err = api_error(resp, call)
            delay = self._retry_delay(call, attempt, err)
            if delay is None:
                raise err
            time.sleep(delay)
            attempt += 1

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    live = _Sync(routes.live)
    ready = _Sync(routes.ready)
    health = _Sync(routes.health)
    metrics = _Sync(routes.metrics)
    metrics_prometheus = _Sync(routes.metrics_prometheus)
    distance = _Sync(routes.distance)
    create_collection = _Sync(routes.create_collection)
    list_collections = _Sync(routes.list_collections)
    get_collection = _Sync(routes.get_collection)
    delete_collection = _Sync(routes.delete_collection)
    upsert_point = _Sync(routes.upsert_point)
    upsert_points_batch = _Sync(routes.upsert_points_batch)
    get_point = _Sync(routes.get_point)
    list_points = _Sync(routes.list_points)
    delete_point = _Sync(routes.delete_point)
    count_points = _Sync(routes.count_points)
    set_payload = _Sync(routes.set_payload)
    delete_payload = _Sync(routes.delete_payload)
    search_collection = _Sync(routes.search_collection)
    search_collection_top_k = _Sync(routes.search_collection_top_k)
    search_collection_top_k_batch = _Sync(routes.search_collection_top_k_batch)
    create_backup = _Sync(routes.create_backup)
    list_backups = _Sync(routes.list_backups)
    delete_backup = _Sync(routes.delete_backup)

    def bulk_upsert(
        self,
        collection: str,
        points: Iterable[PointLike],
        *,
        batch_size: int = BATCH_MAX_POINTS,
        max_body_bytes: Optional[int] = None,
        on_progress: Optional[ProgressFn] = None,
    ) -> BulkUpsertResult:
        """Write any number of points (any iterable, consumed lazily) in
        order, in batches of at most `batch_size` points and `max_body_bytes`
        (default: the client's, 1 MiB). Raises BulkUpsertError with `written`
        (the first `written` points are stored) if a batch fails."""
        bulk = _Bulk(collection, points, batch_size, max_body_bytes or self.max_body_bytes, on_progress)
        for call in bulk.calls():
            try:
                bulk.done(self.execute(call))
            except AionBDError as e:
                bulk.failed(e)
        return bulk.result()

    def iter_pages(
        self,
        collection: str,
        *,
        limit: Optional[int] = None,
        paging: Paging = "cursor",
        offset: int = 0,
        after_id: Optional[int] = None,
    ) -> Iterator[PointsPage]:
        """Every page of point ids from the start (or `offset` / after
        `after_id`), following `next_after_id` (`paging="cursor"`: any size,
        stable under writes) or `next_offset` (`"offset"`: at most 100000)."""
        call: Optional[Call[PointsPage]] = routes.list_points(collection, offset, limit, after_id)
        while call is not None:
            page = self.execute(call)
            yield page
            call = routes.next_page(collection, page, limit, paging)

    def iter_points(self, collection: str, **options: Any) -> Iterator[int]:
        """Every point id, ascending (options as for `iter_pages`)."""
        for page in self.iter_pages(collection, **options):
            yield from page.ids

    def export_collection(self, collection: str) -> ExportStream:
        """The collection's points, streamed, all at one cut: an
        `ExportStream` (`with` it for its `header`, iterate it for the
        points). `timeout` bounds each wait for data, not the whole read."""
        return ExportStream(self, routes.export_collection(collection))

    def export_collection_to_file(self, collection: str, path: PathLike) -> int:
        """Save the collection's export (NDJSON, what `aionbd import` reads)
        to `path`; its size in bytes. Written to `path + ".tmp"`, renamed
        when complete: if the answer breaks off, this raises and no file is
        left (nor replaced)."""
        return download(self, routes.export_collection(collection), path)

    def backup_to_file(self, path: PathLike, collections: Optional[Iterable[str]] = None) -> int:
        """Save a backup of the collections this credential may back up (all
        of them with auth off or scope admin; its tenant's otherwise), or of
        `collections`, to `path`; its size in bytes. Streamed (flat memory),
        written as `export_collection_to_file` writes."""
        return download(self, routes.backup(collections), path)

    def download_backup(self, name: str, path: PathLike) -> int:
        """Save the kept backup `name` (as `list_backups` names it) to `path`;
        its size in bytes (scope admin). Written as `export_collection_to_file`
        writes."""
        return download(self, routes.get_backup(name), path)


class AsyncClient(_Base):
    """asyncio client: the same methods as `Client`, as coroutines. Use as an
    async context manager, or call `aclose()`."""

    _http: httpx.AsyncClient

    def _open(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(**self._options)

    async def execute(self, call: Call[T]) -> T:
        """Send one request (retrying per the policy) and parse its answer."""
        attempt = 0
        while True:
            try:
                resp = await self._http.request(**self._request_args(call))
            except httpx.HTTPError as e:
                raise transport_error(e, call, self.base_url) from e
            if resp.is_success:
                return result(call, resp)
            err = api_error(resp, call)
            delay = self._retry_delay(call, attempt, err)
            if delay is None:
                raise err
            await asyncio.sleep(delay)
            attempt += 1

    async def _open_stream(self, call: Call[Any]) -> httpx.Response:
        """As `Client._open_stream`."""
        attempt = 0
        while True:
            try:
                resp = await self._http.send(self._http.build_request(**self._request_args(call)), stream=True)
                if resp.is_success:
                    return resp
                try:
                    await resp.aread()
                finally:
                    await resp.aclose()
            except httpx.HTTPError as e:
                raise transport_error(e, call, self.base_url) from e
            err = api_error(resp, call)
            delay = self._retry_delay(call, attempt, err)
            if delay is None:
                raise err
            await asyncio.sleep(delay)
            attempt += 1

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    live = _Async(routes.live)
    ready = _Async(routes.ready)
    health = _Async(routes.health)
    metrics = _Async(routes.metrics)
    metrics_prometheus = _Async(routes.metrics_prometheus)
    distance = _Async(routes.distance)
    create_collection = _Async(routes.create_collection)
    list_collections = _Async(routes.list_collections)
    get_collection = _Async(routes.get_collection)
    delete_collection = _Async(routes.delete_collection)
    upsert_point = _Async(routes.upsert_point)
    upsert_points_batch = _Async(routes.upsert_points_batch)
    get_point = _Async(routes.get_point)
    list_points = _Async(routes.list_points)
    delete_point = _Async(routes.delete_point)
    count_points = _Async(routes.count_points)
    set_payload = _Async(routes.set_payload)
    delete_payload = _Async(routes.delete_payload)
    search_collection = _Async(routes.search_collection)
    search_collection_top_k = _Async(routes.search_collection_top_k)
    search_collection_top_k_batch = _Async(routes.search_collection_top_k_batch)
    create_backup = _Async(routes.create_backup)
    list_backups = _Async(routes.list_backups)
    delete_backup = _Async(routes.delete_backup)

    async def bulk_upsert(
        self,
        collection: str,
        points: Iterable[PointLike],
        *,
        batch_size: int = BATCH_MAX_POINTS,
        max_body_bytes: Optional[int] = None,
        on_progress: Optional[ProgressFn] = None,
    ) -> BulkUpsertResult:
        """As `Client.bulk_upsert` (batches are sent one at a time, in order)."""
        bulk = _Bulk(collection, points, batch_size, max_body_bytes or self.max_body_bytes, on_progress)
        for call in bulk.calls():
            try:
                bulk.done(await self.execute(call))
            except AionBDError as e:
                bulk.failed(e)
        return bulk.result()

    async def iter_pages(
        self,
        collection: str,
        *,
        limit: Optional[int] = None,
        paging: Paging = "cursor",
        offset: int = 0,
        after_id: Optional[int] = None,
    ) -> AsyncIterator[PointsPage]:
        """As `Client.iter_pages`."""
        call: Optional[Call[PointsPage]] = routes.list_points(collection, offset, limit, after_id)
        while call is not None:
            page = await self.execute(call)
            yield page
            call = routes.next_page(collection, page, limit, paging)

    async def iter_points(self, collection: str, **options: Any) -> AsyncIterator[int]:
        """As `Client.iter_points`."""
        async for page in self.iter_pages(collection, **options):
            for i in page.ids:
                yield i

    def export_collection(self, collection: str) -> AsyncExportStream:
        """As `Client.export_collection`: `async with` it, `async for` over it."""
        return AsyncExportStream(self, routes.export_collection(collection))

    async def export_collection_to_file(self, collection: str, path: PathLike) -> int:
        """As `Client.export_collection_to_file`."""
        return await adownload(self, routes.export_collection(collection), path)

    async def backup_to_file(self, path: PathLike, collections: Optional[Iterable[str]] = None) -> int:
        """As `Client.backup_to_file`."""
        return await adownload(self, routes.backup(collections), path)

    async def download_backup(self, name: str, path: PathLike) -> int:
        """As `Client.download_backup`."""
        return await adownload(self, routes.get_backup(name), path)


AionBDClient = Client
"""The original SDK's name for `Client`."""
