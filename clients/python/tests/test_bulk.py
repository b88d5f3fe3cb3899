"""`bulk_upsert`: batching under the count and byte limits, 413 halving,
progress, and the count of points written when it fails midway."""

from __future__ import annotations

import json
from typing import Any, Iterator, List, Optional, Tuple

import numpy as np
import pytest

import aionbd

from .conftest import Server, Stub


def test_bulk_50k_points(client: aionbd.Client, name: str) -> None:
    n, dim = 50_000, 8
    vectors = np.random.default_rng(1).random((n, dim), dtype=np.float32)
    client.create_collection(name, dim)
    progress: List[Tuple[int, Optional[int]]] = []
    points = [(i, vectors[i], {"even": i % 2 == 0}) for i in range(n)]
    r = client.bulk_upsert(name, points, on_progress=lambda w, t: progress.append((w, t)))
    assert (r.written, r.created, r.updated) == (n, n, 0)
    assert r.requests == len(progress) >= n // aionbd.BATCH_MAX_POINTS
    assert [w for w, _ in progress] == sorted(w for w, _ in progress) and progress[-1] == (n, n)
    assert client.get_collection(name).point_count == n
    assert client.count_points(name, aionbd.Filter(must=[aionbd.Match("even", True)])) == n // 2
    assert client.get_point(name, 12345).values == pytest.approx(vectors[12345].tolist())


def test_bulk_respects_body_limit_and_batch_size(stub: Stub) -> None:
    def ok(count: int) -> bytes:
        results = [{"id": i, "created": True} for i in range(count)]
        return json.dumps({"created": count, "updated": 0, "results": results}).encode()

    stub.default = (200, {"content-type": "application/json"}, ok(0))
    points = [(i, [0.5] * 64) for i in range(1000)]  # ~280 bytes each: 100 would not fit in 10 kB
    with aionbd.Client(stub.url, max_body_bytes=10_000) as c:
        r = c.bulk_upsert("demo", points, batch_size=100)
    sizes = [len(body) for _, _, _, body in stub.requests]
    counts = [len(json.loads(body)["points"]) for _, _, _, body in stub.requests]
    assert max(sizes) <= 10_000 and max(sizes) > 9_000 and max(counts) < 100 and sum(counts) == 1000
    assert r.written == 1000 and r.requests == len(stub.requests)
    with aionbd.Client(stub.url) as c:  # the count limit alone
        c.bulk_upsert("demo", [(i, [0.5]) for i in range(1000)], batch_size=100)
    assert [len(json.loads(b)["points"]) for _, _, _, b in stub.requests[r.requests:]] == [100] * 10
    stub.requests[r.requests:] = []
    ids = [p["id"] for _, _, _, body in stub.requests for p in json.loads(body)["points"]]
    assert ids == list(range(1000))  # in order, each once


def test_bulk_halves_batches_on_413(name: str) -> None:
    """The server's limit is below the client's: every 413 halves the batch."""
    s = Server({"AIONBD_MAX_BODY_BYTES": "30000"})
    try:
        with aionbd.Client(s.url) as c:
            c.create_collection(name, 8)
            gen: Iterator[Any] = ((i, [i / 7] * 8) for i in range(3000))  # a generator: no len()
            totals: List[Optional[int]] = []
            r = c.bulk_upsert(name, gen, on_progress=lambda w, t: totals.append(t))
            assert r.written == 3000 and c.get_collection(name).point_count == 3000
            assert r.requests > 3000 // 256 and set(totals) == {None}
            assert c.metrics().http_responses_4xx_total >= 1  # the 413s happened
    finally:
        s.stop()


def test_bulk_reports_written_when_it_fails_midway(client: aionbd.Client, name: str) -> None:
    client.create_collection(name, 4)
    points: List[Any] = [(i, [1, 2, 3, 4]) for i in range(2000)]
    points[1000] = (1000, [1, 2, 3])  # wrong dimension: its batch (768..1023) is refused whole
    with pytest.raises(aionbd.BulkUpsertError) as e:
        client.bulk_upsert(name, points)
    err = e.value
    assert err.written == 768 and isinstance(err.cause, aionbd.InvalidArgumentError)
    assert err.__cause__ is err.cause and "768" in str(err)
    assert client.get_collection(name).point_count == 768
    assert list(client.iter_points(name, limit=1000)) == list(range(768))


def test_bulk_reports_written_when_an_input_point_is_bad(client: aionbd.Client, name: str) -> None:
    client.create_collection(name, 2)
    points: List[Any] = [(i, [1.0, 2.0]) for i in range(600)]
    points[300] = (300, [1.0, float("nan")])  # JSON cannot carry NaN: found while packing the second batch
    with pytest.raises(aionbd.BulkUpsertError) as e:
        client.bulk_upsert(name, points)
    assert e.value.written == 256 and isinstance(e.value.cause, ValueError)
    assert client.get_collection(name).point_count == 256


def test_bulk_single_point_over_the_limit_fails(name: str) -> None:
    s = Server({"AIONBD_MAX_BODY_BYTES": "2000"})
    try:
        with aionbd.Client(s.url) as c:
            c.create_collection(name, 300)
            points = [(i, [0.25] * 300) for i in range(5)]  # one point is ~1.5 kB, two are too many
            small = c.bulk_upsert(name, points)
            assert small.written == 5 and small.requests >= 5
            big = [(10, [0.123456789] * 300)]  # one point alone is over 2000 bytes
            with pytest.raises(aionbd.BulkUpsertError) as e:
                c.bulk_upsert(name, points + big)
            assert e.value.written == 5 and isinstance(e.value.cause, aionbd.PayloadTooLargeError)
            assert e.value.cause.status == 413
    finally:
        s.stop()


def test_bulk_argument_checks(client: aionbd.Client) -> None:
    with pytest.raises(ValueError):
        client.bulk_upsert("x", [], batch_size=0)
    with pytest.raises(ValueError):
        client.bulk_upsert("x", [], batch_size=257)
    assert client.bulk_upsert("x", []).written == 0  # nothing to send, no request
