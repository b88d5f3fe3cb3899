"""Export and backup: the streamed export round trip, backups streamed to a
file, backups kept on the server (create, list, download, delete), the
scopes with auth on (the kept-backup routes need `admin`), and, against the
stub, what the real server does only when something breaks: a stream cut
midway (typed error, no file, never retried), a wrong content type, a
short export, a slow `create_backup`."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest

import aionbd
from aionbd import RetryPolicy

from .conftest import Server, Stub

MAGIC = b"AIONBAK\0"
FAST = RetryPolicy(backoff=0.01, backoff_max=0.05)
OCTETS = {"content-type": "application/octet-stream"}
NDJSON = {"content-type": "application/x-ndjson"}
PAYLOADS: List[Dict[str, Any]] = [{}, {"tag": "a", "n": 1}, {"flag": True, "tags": ["x", "y"], "score": 0.5}]


def points(n: int) -> List[Any]:
    return [(i * 7, [i / 3, -i, 0.25], PAYLOADS[i % 3]) for i in range(n)]


def only_file(tmp_path: Path) -> List[str]:
    return sorted(p.name for p in tmp_path.iterdir())


def test_export_round_trip(client: aionbd.Client, name: str) -> None:
    written = points(700)  # more than one chunk of the answer
    client.create_collection(name, 3)
    client.bulk_upsert(name, written)
    with client.export_collection(name) as export:
        header = export.header
        got = list(export)
    assert (header.name, header.dimension, header.strict_finite, header.points) == (name, 3, True, 700)
    assert header.raw["aionbd_export"] == 1 and header.lsn >= 0
    assert sorted(p.id for p in got) == sorted(p[0] for p in written)  # every point once, in no set order
    by_id = {p[0]: p for p in written}
    for p in got:
        assert p.values == pytest.approx(by_id[p.id][1], rel=1e-6)
        assert p.payload == by_id[p.id][2]
    # Iterated directly: sent at the first point, the header there from then on.
    export = client.export_collection(name)
    with pytest.raises(RuntimeError):
        export.header
    ids = [p.id for p in export]
    assert ids == [p.id for p in got] and export.header.points == 700
    with pytest.raises(RuntimeError):  # read once
        list(export)
    # Stopping early closes the answer; the client goes on working.
    with client.export_collection(name) as export:
        assert next(iter(export)).id == 0
    assert client.count_points(name) == 700


def test_export_of_an_empty_collection(client: aionbd.Client, name: str) -> None:
    client.create_collection(name, 2, strict_finite=False)
    with client.export_collection(name) as export:
        assert list(export) == [] and export.header.points == 0 and not export.header.strict_finite


def test_export_to_file(client: aionbd.Client, name: str, tmp_path: Path) -> None:
    client.create_collection(name, 3)
    client.upsert_points_batch(name, points(5))
    path = tmp_path / "demo.ndjson"
    size = client.export_collection_to_file(name, path)
    assert size == path.stat().st_size and only_file(tmp_path) == ["demo.ndjson"]
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines[0]["collection"] == {"name": name, "dimension": 3, "strict_finite": True}
    assert [line["id"] for line in lines[1:]] == [0, 7, 14, 21, 28]


def test_unknown_collection_is_not_found(client: aionbd.Client, tmp_path: Path) -> None:
    with pytest.raises(aionbd.NotFoundError) as e:
        with client.export_collection("no-such-collection"):
            pass
    assert e.value.status == 404 and e.value.request_id and e.value.path == "/collections/no-such-collection/export"
    with pytest.raises(aionbd.NotFoundError):
        client.backup_to_file(tmp_path / "b.aionbd", collections=["no-such-collection"])
    with pytest.raises(aionbd.InvalidArgumentError):
        client.export_collection_to_file("a..b", tmp_path / "x.ndjson")
    assert only_file(tmp_path) == []


def test_backup_to_file(client: aionbd.Client, name: str, tmp_path: Path) -> None:
    client.create_collection(name, 3)
    client.upsert_points_batch(name, points(20))
    everything = tmp_path / "all.aionbd"
    size = client.backup_to_file(everything)
    data = everything.read_bytes()
    assert data.startswith(MAGIC) and size == len(data) and name.encode() in data
    one = tmp_path / "one.aionbd"
    assert client.backup_to_file(one, collections=name) == one.stat().st_size  # one name, or a list
    assert one.read_bytes().startswith(MAGIC) and name.encode() in one.read_bytes()
    assert only_file(tmp_path) == ["all.aionbd", "one.aionbd"]  # no .tmp left


def test_kept_backup_lifecycle(client: aionbd.Client, name: str, tmp_path: Path) -> None:
    client.create_collection(name, 3)
    client.upsert_points_batch(name, points(30))
    manifest = client.create_backup([name])
    assert manifest.name and manifest.bytes and manifest.format == 2 and manifest.consistency
    assert [(c.name, c.dimension, c.points) for c in manifest.collections] == [(name, 3, 30)]
    assert manifest.points == 30 and manifest.created_unix_ms > 0
    listing = client.list_backups()
    assert manifest in listing.backups and manifest.name not in listing.in_progress
    listed = next(b for b in listing.backups if b.name == manifest.name)
    path = tmp_path / "kept.aionbd"
    assert client.download_backup(manifest.name, path) == listed.bytes == path.stat().st_size
    server_file = Path(listing.dir) / f"{manifest.name}.aionbd"  # the server runs on this machine
    assert path.read_bytes() == server_file.read_bytes() and path.read_bytes().startswith(MAGIC)
    assert client.download_backup(f"{manifest.name}.aionbd", tmp_path / "again") == listed.bytes

    deleted = client.delete_backup(manifest.name)
    assert (deleted.name, deleted.deleted) == (manifest.name, True)
    assert manifest.name not in [b.name for b in client.list_backups().backups]
    for call in (lambda: client.delete_backup(manifest.name),
                 lambda: client.download_backup(manifest.name, tmp_path / "gone.aionbd")):
        with pytest.raises(aionbd.NotFoundError) as e:
            call()
        assert (e.value.status, e.value.code) == (404, "not_found") and e.value.request_id
    assert sorted(only_file(tmp_path)) == ["again", "kept.aionbd"]


def test_async_export_and_backups(server: Server, name: str, tmp_path: Path) -> None:
    async def run() -> None:
        async with aionbd.AsyncClient(server.url) as c:
            await c.create_collection(name, 3)
            await c.bulk_upsert(name, points(600))
            async with c.export_collection(name) as export:
                assert export.header.points == 600
                ids = [p.id async for p in export]
            assert ids == [i * 7 for i in range(600)]
            assert [p.payload async for p in c.export_collection(name)][:3] == PAYLOADS
            size = await c.export_collection_to_file(name, tmp_path / "e.ndjson")
            assert size == (tmp_path / "e.ndjson").stat().st_size
            size = await c.backup_to_file(tmp_path / "b.aionbd", [name])
            assert (tmp_path / "b.aionbd").read_bytes()[:8] == MAGIC and size == (tmp_path / "b.aionbd").stat().st_size
            manifest = await c.create_backup([name])
            assert manifest.name in [b.name for b in (await c.list_backups()).backups]
            assert manifest.name is not None
            assert await c.download_backup(manifest.name, tmp_path / "k.aionbd") == manifest.bytes
            assert (await c.delete_backup(manifest.name)).deleted
            with pytest.raises(aionbd.NotFoundError):
                await c.download_backup(manifest.name, tmp_path / "gone.aionbd")
            with pytest.raises(aionbd.NotFoundError):
                async with c.export_collection("no-such-collection"):
                    pass
        assert only_file(tmp_path) == ["b.aionbd", "e.ndjson", "k.aionbd"]

    asyncio.run(run())


# -- with auth on ----------------------------------------------------------

AUTH_ENV = {
    "AIONBD_AUTH_MODE": "api_key",
    "AIONBD_AUTH_API_KEYS": "tenant-a:key-a,tenant-a:key-w,tenant-a:key-r,tenant-b:key-b",
    "AIONBD_AUTH_API_KEY_SCOPES": "key-w:write,key-r:read,key-b:write",  # key-a: admin (unlisted)
}


@pytest.fixture(scope="module")
def auth_server() -> Iterator[Server]:
    with Server(AUTH_ENV) as s:
        yield s


def test_kept_backups_need_admin(auth_server: Server, name: str, tmp_path: Path) -> None:
    url = auth_server.url
    with aionbd.Client(url, api_key="key-a") as admin, aionbd.Client(url, api_key="key-w", retry=FAST) as writer:
        writer.create_collection(name, 2)
        writer.upsert_point(name, 1, [1.0, 0.0])
        kept = admin.create_backup()
        assert kept.name is not None
        for call in (lambda: writer.create_backup(), lambda: writer.create_backup([name]),
                     lambda: writer.list_backups(), lambda: writer.delete_backup(str(kept.name)),
                     lambda: writer.download_backup(str(kept.name), tmp_path / "no.aionbd")):
            with pytest.raises(aionbd.ForbiddenError) as e:
                call()
            assert (e.value.status, e.value.code) == (403, "forbidden") and e.value.request_id
        assert only_file(tmp_path) == []
        # Admin: every tenant's collections, by their stored names.
        assert f"tenant-a::{name}" in [c.name for c in kept.collections]
        assert admin.delete_backup(kept.name).deleted


def test_streamed_backup_is_the_tenants(auth_server: Server, name: str, tmp_path: Path) -> None:
    url = auth_server.url
    with aionbd.Client(url, api_key="key-w") as a, aionbd.Client(url, api_key="key-b") as b:
        a.create_collection(name + "-a", 2)
        b.create_collection(name + "-b", 2)
        b.upsert_point(name + "-b", 1, [0.5, 0.5])
        with aionbd.Client(url, api_key="key-r") as reader:  # a read: scope read is enough
            assert reader.backup_to_file(tmp_path / "a.aionbd") == (tmp_path / "a.aionbd").stat().st_size
            with reader.export_collection(name + "-a") as export:
                assert export.header.name == name + "-a" and list(export) == []
        b.backup_to_file(tmp_path / "b.aionbd")
        mine, theirs = (tmp_path / "a.aionbd").read_bytes(), (tmp_path / "b.aionbd").read_bytes()
        assert (name + "-a").encode() in mine and (name + "-b").encode() not in mine
        assert (name + "-b").encode() in theirs and (name + "-a").encode() not in theirs
        with pytest.raises(aionbd.NotFoundError):  # another tenant's collection
            b.export_collection_to_file(name + "-a", tmp_path / "x.ndjson")


# -- against the stub --------------------------------------------------------


def test_stream_is_retried_until_it_starts(stub: Stub, tmp_path: Path) -> None:
    stub.reply(503, {"code": "not_ready", "message": "recovering"}, {"retry-after": "0"})
    stub.reply(200, MAGIC + b"rest", OCTETS)
    with aionbd.Client(stub.url, retry=FAST) as c:
        assert c.backup_to_file(tmp_path / "b.aionbd", collections=["x", "y"]) == 12
    assert (tmp_path / "b.aionbd").read_bytes() == MAGIC + b"rest"
    assert [r[1] for r in stub.requests] == ["/backup?collection=x&collection=y"] * 2
    assert stub.requests[0][2]["accept"].startswith("application/octet-stream")


def test_broken_stream_raises_and_leaves_no_file(stub: Stub, tmp_path: Path) -> None:
    path = tmp_path / "b.aionbd"
    path.write_bytes(b"the previous backup")
    stub.reply(200, MAGIC + b"x" * 1000, {**OCTETS, "x-request-id": "rid"})
    stub.break_after = 100
    with aionbd.Client(stub.url, retry=FAST) as c, pytest.raises(aionbd.TransportError) as e:
        c.backup_to_file(path)
    assert "after 100 bytes" in str(e.value) and e.value.path == "/backup"
    assert not isinstance(e.value, aionbd.ConnectError)
    assert len(stub.requests) == 1  # a broken stream is not sent again
    assert path.read_bytes() == b"the previous backup" and only_file(tmp_path) == ["b.aionbd"]


def test_broken_export_raises_while_iterating(stub: Stub) -> None:
    header = {"aionbd_export": 1, "collection": {"name": "d", "dimension": 1, "strict_finite": True},
              "points": 3, "lsn": 9}
    lines = [header] + [{"id": i, "values": [i], "payload": {}} for i in range(3)]
    body = b"".join(json.dumps(x).encode() + b"\n" for x in lines)
    stub.reply(200, body, NDJSON)
    stub.break_after = len(body) - 5
    got: List[int] = []
    with aionbd.Client(stub.url) as c, pytest.raises(aionbd.TransportError):
        with c.export_collection("d") as export:
            assert export.header.lsn == 9
            got.extend(p.id for p in export)
    assert got == [0, 1]
    # Whole, but short of what the header says: an invalid answer.
    stub.reply(200, b"".join(json.dumps(x).encode() + b"\n" for x in lines[:3]), NDJSON)
    with aionbd.Client(stub.url) as c, pytest.raises(aionbd.InvalidResponseError) as e:
        list(c.export_collection("d"))
    assert "holds 2 points, its header says 3" in str(e.value)


@pytest.mark.parametrize(
    "headers, body",
    [({"content-type": "text/html"}, b"<html>proxy</html>"), (OCTETS, b"")],
)
def test_wrong_stream_answer_is_invalid(stub: Stub, tmp_path: Path, headers: Dict[str, str], body: bytes) -> None:
    stub.reply(200, body, headers)
    with aionbd.Client(stub.url) as c, pytest.raises(aionbd.InvalidResponseError) as e:
        c.download_backup("b1", tmp_path / "b.aionbd")
    assert e.value.path == "/backups/b1" and e.value.body == body.decode()
    assert only_file(tmp_path) == []
    stub.reply(200, b'{"not": "an export"}\n', NDJSON)
    with aionbd.Client(stub.url) as c, pytest.raises(aionbd.InvalidResponseError):
        c.export_collection("d").open()


def test_async_broken_stream(stub: Stub, tmp_path: Path) -> None:
    async def run() -> None:
        stub.reply(200, MAGIC * 100, OCTETS)
        stub.break_after = 64
        async with aionbd.AsyncClient(stub.url) as c:
            with pytest.raises(aionbd.TransportError) as e:
                await c.download_backup("b1", tmp_path / "b.aionbd")
            assert "after 64 bytes" in str(e.value)

    asyncio.run(run())
    assert only_file(tmp_path) == [] and len(stub.requests) == 1


def test_create_backup_waits_and_is_not_retried(stub: Stub) -> None:
    manifest = {"format": 1, "aionbd_version": "0.1.0", "created_unix_ms": 1, "consistency": "one cut",
                "collections": [], "points": 0, "bytes": 16, "name": "backup-1-0"}
    stub.delay = 0.6
    stub.reply(200, manifest)
    stub.reply(200, {"dir": "/b", "backups": [manifest], "in_progress": []})
    with aionbd.Client(stub.url, timeout=0.2, retry=FAST) as c:
        assert c.create_backup().name == "backup-1-0"  # longer than `timeout`: no read timeout here
        with pytest.raises(aionbd.ClientTimeoutError):
            c.list_backups()
    stub.delay = 0
    stub.reply(503, {"code": "not_ready", "message": "recovering"}, {"retry-after": "0"})
    with aionbd.Client(stub.url, retry=FAST) as c, pytest.raises(aionbd.NotReadyError):
        c.create_backup(["a"])
    assert stub.requests[-1][:2] == ("POST", "/backups?collection=a") and len(stub.requests) == 3
