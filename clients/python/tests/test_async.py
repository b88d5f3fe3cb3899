"""Every method of `AsyncClient` against the real server."""

from __future__ import annotations

import asyncio
from typing import Any, List, Optional

import numpy as np
import pytest

import aionbd
from aionbd import Filter, Match


def test_async_client_surface(server: Any, name: str) -> None:
    async def run() -> None:
        async with aionbd.AsyncClient(server.url) as c:
            assert (await c.live()).status == "live"
            assert (await c.ready()).status == "ready"
            assert (await c.health()).checks["engine_loaded"] is True
            assert isinstance((await c.metrics()).points, int)
            assert "aionbd_" in await c.metrics_prometheus()
            assert (await c.distance([1, 0], [0, 1], "l2")).value == pytest.approx(2**0.5)

            info = await c.create_collection(name, 3)
            assert info.name == name and info.point_count == 0
            assert name in [x.name for x in await c.list_collections()]
            assert (await c.upsert_point(name, 1, np.array([1.0, 0, 0]), {"tag": "a"})).created
            batch = await c.upsert_points_batch(name, [(2, [0, 1, 0]), (3, [0, 0, 1], {"tag": "b"})])
            assert (batch.created, batch.updated) == (2, 0)
            assert (await c.get_point(name, 3)).payload == {"tag": "b"}
            assert (await c.get_collection(name)).point_count == 3
            assert (await c.list_points(name, limit=2)).ids == [1, 2]
            assert [p.ids for p in [p async for p in c.iter_pages(name, limit=2)]] == [[1, 2], [3]]
            offset_pages = [p.ids async for p in c.iter_pages(name, limit=1, paging="offset", offset=1)]
            assert offset_pages == [[2], [3]]
            assert [i async for i in c.iter_points(name, limit=1)] == [1, 2, 3]
            assert await c.count_points(name, Filter(must=[Match("tag", "a")])) == 1
            assert await c.set_payload(name, [1, 2], {"tag": "a"}) == 1
            assert await c.delete_payload(name, [2], ["tag"]) == 1

            top1 = await c.search_collection(name, [0, 0, 1], mode="exact")
            assert (top1.id, top1.mode, top1.recall_at_k) == (3, "exact", 1.0)
            top = await c.search_collection_top_k(name, [1, 0, 0], limit=2, metric="l2", include_payload=False)
            assert top.ids[0] == 1 and top[0].payload is None and top.mode == "exact"
            results = await c.search_collection_top_k_batch(name, np.eye(3), limit=1)
            assert [r.ids for r in results] == [[1], [2], [3]]

            progress: List[int] = []
            bulk = await c.bulk_upsert(
                name, ((i, [i, 1, 1]) for i in range(10, 610)), batch_size=100,
                on_progress=lambda w, t: progress.append(w),
            )
            assert (bulk.written, bulk.requests) == (600, 6) and progress[-1] == 600
            assert (await c.delete_point(name, 1)).deleted
            with pytest.raises(aionbd.NotFoundError) as e:
                await c.get_point(name, 1)
            assert e.value.status == 404 and e.value.request_id
            assert (await c.delete_collection(name)).deleted

    asyncio.run(run())


def test_async_concurrent_requests(server: Any, name: str) -> None:
    """Many requests in flight at once on one AsyncClient."""

    async def run() -> None:
        async with aionbd.AsyncClient(server.url) as c:
            await c.create_collection(name, 2)
            await asyncio.gather(*(c.upsert_point(name, i, [i, 0]) for i in range(50)))
            assert await c.count_points(name) == 50
            got = await asyncio.gather(*(c.get_point(name, i) for i in range(50)))
            assert [p.values[0] for p in got] == [float(i) for i in range(50)]

    asyncio.run(run())


def test_async_transport_errors(stub: Any) -> None:
    async def run() -> Optional[BaseException]:
        stub.reply(503, {"code": "not_ready", "message": "recovering"}, {"retry-after": "0"})
        stub.default = (200, {"content-type": "text/html"}, b"<html>proxy</html>")
        retry = aionbd.RetryPolicy(backoff=0.01)
        async with aionbd.AsyncClient(stub.url, retry=retry, api_key="k1") as c:
            try:
                await c.live()
            except aionbd.InvalidResponseError as e:
                assert len(stub.requests) == 2 and all(r[2]["x-api-key"] == "k1" for r in stub.requests)
                return e
        return None

    err = asyncio.run(run())
    assert isinstance(err, aionbd.InvalidResponseError) and "<html>" in err.body
