"""Streamed answers: a collection's export (NDJSON, read point by point) and
downloads written to a file, for both clients.

The clients open the response (`_open_stream`: sent, and retried like any
call, until a 2xx answer starts); what is here reads its body in chunks, so
memory stays flat whatever the size. A failure while reading is never
retried: it raises a `TransportError` (a `ClientTimeoutError` if the answer
stalled past the timeout), and a download then leaves no file.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections import deque
from types import TracebackType
from typing import TYPE_CHECKING, Any, AsyncIterator, Deque, Iterator, List, Optional, Type, Union

import httpx

from ._errors import InvalidResponseError
from ._http import broken_stream, check_stream, invalid_stream
from ._models import ExportHeader, PointResult, parse_model
from ._routes import Call

if TYPE_CHECKING:
    from ._client import AsyncClient, Client

PathLike = Union[str, "os.PathLike[str]"]
"""Where a download goes: a path (str or `pathlib.Path`)."""

_point = parse_model(PointResult)
_WRITE_SIZE = 1 << 20


class _ExportLines:
    """Splits the export's body into lines and parses them: the header, then
    one point per line. At the end, the points must be as many as the
    header says (the export is one cut)."""

    def __init__(self, call: Call[Any], resp: httpx.Response) -> None:
        self.call, self.resp = call, resp
        self.buffer = bytearray()
        self.header: Optional[ExportHeader] = None
        self.count = 0

    def _invalid(self, why: str, line: Union[bytes, bytearray]) -> InvalidResponseError:
        return InvalidResponseError(
            f"{self.call.method} {self.call.path}: {why}",
            status=self.resp.status_code, request_id=self.resp.headers.get("x-request-id"),
            body=bytes(line[:500]).decode("utf-8", errors="replace"), method=self.call.method, path=self.call.path,
        )

    def _line(self, line: Union[bytes, bytearray]) -> Optional[PointResult]:
        if not line.strip():
            return None
        try:
            data = json.loads(line)
            if self.header is None:
                self.header = ExportHeader.parse(data)
                return None
            point: PointResult = _point(data)
        except (ValueError, KeyError, TypeError) as e:
            number = self.count + (2 if self.header else 1)
            raise self._invalid(f"line {number} of the export is not what it should be: {e}", line) from None
        self.count += 1
        return point

    def feed(self, chunk: bytes) -> List[PointResult]:
        """The points of the lines `chunk` completes."""
        self.buffer += chunk
        *lines, rest = self.buffer.split(b"\n")
        self.buffer = rest
        return [p for p in map(self._line, lines) if p is not None]

    def end(self) -> List[PointResult]:
        """The last line's point, if it had no newline; checks the count."""
        last = self._line(self.buffer)
        self.buffer = bytearray()
        if self.header is None:
            raise self._invalid("the export is empty", b"")
        if self.count != self.header.points:
            raise self._invalid(f"the export holds {self.count} points, its header says {self.header.points}", b"")
        return [] if last is None else [last]


class _Export:
    """What both export streams share: the state and `header`."""

    def __init__(self, call: Call[None]) -> None:
        self._call = call
        self._lines: Optional[_ExportLines] = None
        self._pending: Deque[PointResult] = deque()
        self._received = 0
        self._done = False

    @property
    def header(self) -> ExportHeader:
        """The export's first line; there once the stream is open (on entering
        the `with` block, or at the first point when iterated directly)."""
        if self._lines is None or self._lines.header is None:
            raise RuntimeError("the export is not open yet: use it as a context manager, or iterate it")
        return self._lines.header

    def _start(self, resp: httpx.Response, first: bytes) -> None:
        check_stream(self._call, resp, first)
        self._lines = _ExportLines(self._call, resp)
        self._take(first)

    def _take(self, chunk: Optional[bytes]) -> None:
        assert self._lines is not None
        if chunk is None:
            self._done = True
            self._pending.extend(self._lines.end())
        else:
            self._received += len(chunk)
            self._pending.extend(self._lines.feed(chunk))

    @property
    def _has_header(self) -> bool:
        return self._lines is not None and self._lines.header is not None


class ExportStream(_Export):
    """`Client.export_collection(name)`: the collection's export, streamed.
    Iterating it yields the points (`PointResult`), in no set order
    (partition by partition), all at one cut; `header` describes the collection. Use it as a context manager
    (the request is sent on entry, so `header` is there at once), or iterate
    it directly (sent then, closed at the end). It is read once.

        with client.export_collection("demo") as export:
            print(export.header.points)
            for point in export:
                ...
    """

    def __init__(self, client: "Client", call: Call[None]) -> None:
        super().__init__(call)
        self._client = client
        self._resp: Optional[httpx.Response] = None
        self._chunks: Optional[Iterator[bytes]] = None

    def _next_chunk(self) -> Optional[bytes]:
        assert self._chunks is not None
        try:
            return next(self._chunks, None)
        except httpx.HTTPError as e:
            raise broken_stream(e, self._call, self._client.base_url, self._received) from e

    def open(self) -> "ExportStream":
        """Send the request and read up to the header (done by `with` and
        by iterating)."""
        if self._resp is not None:
            return self
        self._resp = self._client._open_stream(self._call)
        try:
            self._chunks = self._resp.iter_bytes()
            self._start(self._resp, self._next_chunk() or b"")
            while not self._has_header and not self._done:
                self._take(self._next_chunk())
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Close the answer (stopping early is fine)."""
        if self._resp is not None:
            self._resp.close()

    def __iter__(self) -> Iterator[PointResult]:
        if self._resp is not None and self._resp.is_closed:
            raise RuntimeError("this export was read already: call export_collection again")
        self.open()
        try:
            while True:
                while self._pending:
                    yield self._pending.popleft()
                if self._done:
                    return
                self._take(self._next_chunk())
        finally:
            self.close()

    def __enter__(self) -> "ExportStream":
        return self.open()

    def __exit__(
        self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException], tb: Optional[TracebackType]
    ) -> None:
        self.close()


class AsyncExportStream(_Export):
    """`AsyncClient.export_collection(name)`: as `ExportStream`, with
    `async with` and `async for` (prefer `async with`: it closes the answer
    as soon as the block ends, even after a `break`).

        async with client.export_collection("demo") as export:
            print(export.header.points)
            async for point in export:
                ...
    """

    def __init__(self, client: "AsyncClient", call: Call[None]) -> None:
        super().__init__(call)
        self._client = client
        self._resp: Optional[httpx.Response] = None
        self._chunks: Optional[AsyncIterator[bytes]] = None

    async def _next_chunk(self) -> Optional[bytes]:
        assert self._chunks is not None
        try:
            return await self._chunks.__anext__()
        except StopAsyncIteration:
            return None
        except httpx.HTTPError as e:
            raise broken_stream(e, self._call, self._client.base_url, self._received) from e

    async def open(self) -> "AsyncExportStream":
        """As `ExportStream.open`."""
        if self._resp is not None:
            return self
        self._resp = await self._client._open_stream(self._call)
        try:
            self._chunks = self._resp.aiter_bytes()
            self._start(self._resp, await self._next_chunk() or b"")
            while not self._has_header and not self._done:
                self._take(await self._next_chunk())
        except BaseException:
            await self.aclose()
            raise
        return self

    async def aclose(self) -> None:
        if self._resp is not None:
            await self._resp.aclose()

    async def __aiter__(self) -> AsyncIterator[PointResult]:
        if self._resp is not None and self._resp.is_closed:
            raise RuntimeError("this export was read already: call export_collection again")
        await self.open()
        try:
            while True:
                while self._pending:
                    yield self._pending.popleft()
                if self._done:
                    return
                self._take(await self._next_chunk())
        finally:
            await self.aclose()

    async def __aenter__(self) -> "AsyncExportStream":
        return await self.open()

    async def __aexit__(
        self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException], tb: Optional[TracebackType]
    ) -> None:
        await self.aclose()


class _FileSink:
    """Writes a download to `path + ".tmp"`; `commit` syncs it and renames it
    to `path`, `abort` removes it. A file at `path` is replaced only by a
    complete download."""

    def __init__(self, path: PathLike) -> None:
        self.path = os.fspath(path)
        self.tmp = self.path + ".tmp"
        self.file = open(self.tmp, "wb")
        self.size = 0

    def write(self, chunk: Union[bytes, bytearray]) -> None:
        self.file.write(chunk)
        self.size += len(chunk)

    def commit(self) -> int:
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        os.replace(self.tmp, self.path)
        return self.size

    def abort(self) -> None:
        self.file.close()
        try:
            os.remove(self.tmp)
        except FileNotFoundError:
            pass


def download(client: "Client", call: Call[None], path: PathLike) -> int:
    """Stream `call`'s answer into the file `path`; its size in bytes."""
    resp = client._open_stream(call)
    sink: Optional[_FileSink] = None
    received = 0
    try:
        for chunk in resp.iter_bytes():
            if sink is None:
                check_stream(call, resp, chunk)
                sink = _FileSink(path)
            received += len(chunk)
            sink.write(chunk)
        if sink is None:
            raise invalid_stream(call, resp, b"")
        return sink.commit()
    except BaseException as e:
        if sink is not None:
            sink.abort()
        if isinstance(e, httpx.HTTPError):
            raise broken_stream(e, call, client.base_url, received) from e
        raise
    finally:
        resp.close()


async def adownload(client: "AsyncClient", call: Call[None], path: PathLike) -> int:
    """As `download`; the file is written from a worker thread, about 1 MiB
    at a time."""
    resp = await client._open_stream(call)
    sink: Optional[_FileSink] = None
    received = 0
    try:
        buffer = bytearray()
        async for chunk in resp.aiter_bytes():
            if sink is None:
                check_stream(call, resp, chunk)
                sink = await asyncio.to_thread(_FileSink, path)
            received += len(chunk)
            buffer += chunk
            if len(buffer) >= _WRITE_SIZE:
                await asyncio.to_thread(sink.write, buffer)
                buffer.clear()
        if sink is None:
            raise invalid_stream(call, resp, b"")
        await asyncio.to_thread(sink.write, buffer)
        return await asyncio.to_thread(sink.commit)
    except BaseException as e:
        if sink is not None:
            await asyncio.to_thread(sink.abort)
        if isinstance(e, httpx.HTTPError):
            raise broken_stream(e, call, client.base_url, received) from e
        raise
    finally:
        await resp.aclose()
