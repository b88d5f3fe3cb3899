"""Every method of `Client` against the real server."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

import aionbd
from aionbd import Filter, Match, Range

from .conftest import wait_for_indexes

POINTS = [
    (1, [0.1, 0.2, 0.3, 0.4], {"label": "alpha", "tier": 1}),
    (2, [0.2, 0.1, 0.4, 0.3], {"label": "beta", "tier": 2}),
    (3, [0.9, 0.8, 0.7, 0.6], {"label": "gamma", "tier": 3}),
]


@pytest.fixture
def demo(client: aionbd.Client, name: str) -> str:
    client.create_collection(name, 4)
    client.upsert_points_batch(name, POINTS)
    return name


def test_health_and_metrics(client: aionbd.Client) -> None:
    live = client.live()
    assert live.status == "live" and live.uptime_ms >= 0
    ready = client.ready()
    assert ready.status == "ready" and ready.checks == {"engine_loaded": True, "storage_available": True}
    health = client.health()
    assert (health.status, health.checks) == ("ready", ready.checks)
    m = client.metrics()
    assert isinstance(m.collections, int) and m["points"] == m.points
    assert m.http_requests_total > 0
    with pytest.raises(AttributeError):
        m.no_such_metric
    text = client.metrics_prometheus()
    assert "aionbd_http_requests_total" in text or "aionbd_" in text
    assert text.startswith("#") or text.startswith("aionbd_")


@pytest.mark.parametrize(
    "metric, expected",
    [("dot", 11.0), ("l2", math.sqrt(8)), ("cosine", 11 / (math.sqrt(5) * 5))],
)
def test_distance(client: aionbd.Client, metric: str, expected: float) -> None:
    d = client.distance([1, 2], np.array([3.0, 4.0]), metric)  # type: ignore[arg-type]
    assert d.metric == metric and d.value == pytest.approx(expected, rel=1e-6)
    assert client.distance([1, 2], [3, 4]).metric == "dot"  # default


def test_collections(client: aionbd.Client, name: str) -> None:
    info = client.create_collection(f"  {name}  ", dimension=3, strict_finite=False)
    assert (info.name, info.dimension, info.strict_finite, info.point_count) == (name, 3, False, 0)
    with pytest.raises(aionbd.ConflictError) as e:
        client.create_collection(name, 3)
    assert e.value.status == 409 and e.value.code == "conflict" and e.value.request_id
    assert name in [c.name for c in client.list_collections()]
    got = client.get_collection(name)
    assert got == info and "index" in got.raw
    deleted = client.delete_collection(name)
    assert deleted.name == name and deleted.deleted is True
    with pytest.raises(aionbd.NotFoundError) as nf:
        client.delete_collection(name)
    assert nf.value.code == "not_found" and nf.value.status == 404
    with pytest.raises(aionbd.InvalidArgumentError):
        client.create_collection("bad/name", 3)


def test_points(client: aionbd.Client, name: str) -> None:
    client.create_collection(name, 4)
    r = client.upsert_point(name, 7, np.array([1, 2, 3, 4], dtype=np.float32), {"k": "v", "tags": ["a", "b"]})
    assert (r.id, r.created) == (7, True)
    assert client.upsert_point(name, 7, [4, 3, 2, 1]).created is False
    p = client.get_point(name, 7)
    assert (p.id, p.values, p.payload) == (7, [4.0, 3.0, 2.0, 1.0], {})
    batch = client.upsert_points_batch(name, [{"id": 7, "values": [1, 1, 1, 1]}, (8, [2, 2, 2, 2], {"x": 1.5})])
    assert (batch.created, batch.updated) == (1, 1)
    assert [(x.id, x.created) for x in batch.results] == [(7, False), (8, True)]
    assert client.get_point(name, 8).payload == {"x": 1.5}
    d = client.delete_point(name, 7)
    assert (d.id, d.deleted) == (7, True)
    with pytest.raises(aionbd.NotFoundError):
        client.get_point(name, 7)
    with pytest.raises(aionbd.InvalidArgumentError) as e:
        client.upsert_point(name, 9, [1, 2, 3])  # wrong dimension
    assert e.value.status == 400 and "dimension" in e.value.message
    with pytest.raises(ValueError):
        client.upsert_point(name, 9, [1, 2, 3, float("nan")])


def test_list_points_and_iterators(client: aionbd.Client, name: str) -> None:
    client.create_collection(name, 2)
    client.upsert_points_batch(name, [(i, [i, 1]) for i in range(1, 8)])
    page = client.list_points(name, offset=0, limit=3)
    assert (page.ids, page.total, page.next_offset, page.next_after_id) == ([1, 2, 3], 7, 3, 3)
    page = client.list_points(name, limit=3, after_id=5)
    assert (page.ids, page.next_offset, page.next_after_id) == ([6, 7], None, None)
    assert client.list_points(name, limit=None).ids == list(range(1, 8))
    with pytest.raises(ValueError):
        client.list_points(name, offset=2, after_id=1)
    pages = list(client.iter_pages(name, limit=3))
    assert [p.ids for p in pages] == [[1, 2, 3], [4, 5, 6], [7]]
    offset_pages = list(client.iter_pages(name, limit=2, paging="offset", offset=1))
    assert [p.ids for p in offset_pages] == [[2, 3], [4, 5], [6, 7]]
    assert list(client.iter_points(name, limit=2)) == list(range(1, 8))
    assert list(client.iter_points(name, limit=2, after_id=4)) == [5, 6, 7]
    with pytest.raises(aionbd.InvalidArgumentError):
        client.list_points(name, limit=0)


def test_count_and_payload_updates(client: aionbd.Client, demo: str) -> None:
    assert client.count_points(demo) == 3
    assert client.count_points(demo, Filter(must=[Range("tier", gte=2)])) == 2
    assert client.count_points(demo, {"must_not": [{"field": "label", "value": "beta"}]}) == 2
    assert client.set_payload(demo, [1, 2], {"region": "eu"}) == 2
    assert client.set_payload(demo, [1, 2], {"region": "eu"}) == 0  # nothing changed
    assert client.count_points(demo, Filter(must=[Match("region", "eu")])) == 2
    assert client.delete_payload(demo, [1], ["region"]) == 1
    assert client.get_point(demo, 1).payload == {"label": "alpha", "tier": 1}
    with pytest.raises(aionbd.NotFoundError):
        client.set_payload(demo, [1, 99], {"x": 1})
    with pytest.raises(aionbd.InvalidArgumentError):
        client.delete_payload(demo, [1], [])


def test_search(client: aionbd.Client, demo: str) -> None:
    q = [0.1, 0.2, 0.3, 0.4]
    top1 = client.search_collection(demo, q, metric="l2", mode="exact")
    assert (top1.id, top1.metric, top1.mode, top1.recall_at_k) == (1, "l2", "exact", 1.0)
    assert top1.payload == {"label": "alpha", "tier": 1} and top1.value == pytest.approx(0.0)
    top = client.search_collection_top_k(demo, np.array(q), limit=2, metric="l2")
    assert top.ids == [1, 2] and len(top) == 2 and top[0].id == 1 and [h.id for h in top] == [1, 2]
    assert top.mode == "exact" and top.recall_at_k == 1.0 and top.estimated_recall is None
    assert top.hits[0].payload == {"label": "alpha", "tier": 1}
    bare = client.search_collection_top_k(demo, q, limit=3, metric="dot", include_payload=False)
    assert bare.ids == [3, 1, 2] and all(h.payload is None for h in bare)
    filtered = client.search_collection_top_k(demo, q, metric="l2", filter=Filter(must_not=[Match("label", "alpha")]))
    assert filtered.ids == [2, 3]
    none = client.search_collection_top_k(demo, q, filter=Filter(must=[Match("label", "zeta")]))
    assert list(none) == []
    with pytest.raises(aionbd.InvalidArgumentError):
        client.search_collection(demo, q, filter=Filter(must=[Match("label", "zeta")]))
    batch = client.search_collection_top_k_batch(demo, np.array([q, [0.9, 0.8, 0.7, 0.6]]), limit=1, metric="l2")
    assert [b.ids for b in batch] == [[1], [3]] and all(b.metric == "l2" and b.mode == "exact" for b in batch)
    with pytest.raises(aionbd.InvalidArgumentError):
        client.search_collection_top_k(demo, q, target_recall=1.5)
    with pytest.raises(aionbd.InvalidArgumentError):
        client.search_collection_top_k(demo, q, mode="ivf")  # below 2048 points
    with pytest.raises(aionbd.InvalidArgumentError):
        client.search_collection_top_k(demo, q, nprobe=0)
    with pytest.raises(aionbd.InvalidArgumentError):
        client.search_collection_top_k(demo, [1, 2])  # wrong dimension


def test_index_modes(client: aionbd.Client, name: str) -> None:
    """ivf / hnsw / auto on a collection large enough to be indexed: the
    answers say which index ran and its estimated recall."""
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((3000, 8)).astype(np.float32)
    client.create_collection(name, 8)
    client.bulk_upsert(name, zip(range(3000), vectors))
    q = vectors[0]
    wait_for_indexes(client, name, q)  # indexes build in the background
    ivf = client.search_collection_top_k(name, q, limit=5, metric="l2", mode="ivf", nprobe=4)
    assert ivf.mode == "ivf" and ivf.recall_at_k is None and 0 < ivf.estimated_recall <= 1  # type: ignore[operator]
    hnsw = client.search_collection_top_k(name, q, limit=5, metric="l2", mode="hnsw", ef=64)
    assert hnsw.mode == "hnsw" and hnsw.estimated_recall is not None and hnsw.ids[0] == 0
    auto = client.search_collection_top_k(name, q, limit=5, metric="l2", target_recall=0.5)
    assert auto.mode in ("exact", "ivf", "hnsw", "ivf+hnsw")
    assert (auto.recall_at_k == 1.0) if auto.mode == "exact" else (auto.estimated_recall is not None)
    one = client.search_collection(name, q, metric="l2", mode="hnsw", ef=32)
    assert one.id == 0 and one.mode == "hnsw"
    batch = client.search_collection_top_k_batch(name, vectors[:3], limit=3, metric="l2", mode="ivf", nprobe=2)
    assert [b.mode for b in batch] == ["ivf"] * 3 and [b.ids[0] for b in batch] == [0, 1, 2]
    exact = client.search_collection_top_k(name, q, limit=5, metric="l2", mode="exact")
    assert exact.mode == "exact" and exact.recall_at_k == 1.0


def test_errors_carry_server_details(client: aionbd.Client, name: str) -> None:
    with pytest.raises(aionbd.NotFoundError) as e:
        client.get_collection(name)
    err = e.value
    assert isinstance(err, aionbd.ApiError) and isinstance(err, aionbd.AionBDError)
    assert (err.status, err.code, err.method) == (404, "not_found", "GET")
    assert err.path == f"/collections/{name}" and name in err.message
    assert len(err.request_id or "") == 36  # a UUID from the server
    assert err.request_id is not None and err.request_id in str(err)


def test_original_constructor_and_name(server: Any) -> None:
    with aionbd.AionBDClient(server.url, 10.0) as c:  # (base_url, timeout) as in the original SDK
        assert c.live().status == "live"


def test_request_id_header_is_echoed(server: Any, name: str) -> None:
    with aionbd.Client(server.url, headers={"x-request-id": "sdk-test-42"}) as c:
        with pytest.raises(aionbd.NotFoundError) as e:
            c.get_point(name, 1)
    assert e.value.request_id == "sdk-test-42"
