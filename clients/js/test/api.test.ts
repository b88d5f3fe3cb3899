// Every method of AionBDClient against the real server.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";

import {
  AionBDClient,
  AionBDError,
  ApiError,
  ConflictError,
  InvalidArgumentError,
  NotFoundError,
  filter,
  match,
  range,
  type PointInput,
} from "aionbd";
import { startServer, uniqueName, type Server } from "./helpers.js";

const POINTS: PointInput[] = [
  [1, [0.1, 0.2, 0.3, 0.4], { label: "alpha", tier: 1 }],
  [2, [0.2, 0.1, 0.4, 0.3], { label: "beta", tier: 2 }],
  { id: 3, values: new Float32Array([0.9, 0.8, 0.7, 0.6]), payload: { label: "gamma", tier: 3 } },
];

describe("AionBDClient against the server", () => {
  let server: Server;
  let client: AionBDClient;

  before(async () => {
    server = await startServer();
    client = new AionBDClient(server.url, { timeoutMs: 10_000 });
  });
  after(() => server.stop());

  async function demo(): Promise<string> {
    const name = uniqueName();
    await client.createCollection(name, 4);
    await client.upsertPointsBatch(name, POINTS);
    return name;
  }

  it("health and metrics", async () => {
    const live = await client.live();
    assert.equal(live.status, "live");
    assert.ok(live.uptime_ms >= 0);
    const ready = await client.ready();
    assert.deepEqual(ready.checks, { engine_loaded: true, storage_available: true });
    assert.equal((await client.health()).status, "ready");
    const m = await client.metrics();
    assert.equal(typeof m.collections, "number");
    assert.ok(m.http_requests_total > 0);
    assert.match(await client.metricsPrometheus(), /^aionbd_http_requests_total /m);
  });

  it("distance", async () => {
    assert.deepEqual(await client.distance([1, 2], [3, 4]), { metric: "dot", value: 11 });
    const l2 = await client.distance(new Float64Array([1, 2]), [3, 4], "l2");
    assert.ok(Math.abs(l2.value - Math.sqrt(8)) < 1e-6);
    const cos = await client.distance([1, 2], [3, 4], "cosine");
    assert.ok(Math.abs(cos.value - 11 / (Math.sqrt(5) * 5)) < 1e-6);
  });

  it("collections", async () => {
    const name = uniqueName();
    const info = await client.createCollection(`  ${name} `, 3, false);
    assert.deepEqual([info.name, info.dimension, info.strict_finite, info.point_count], [name, 3, false, 0]);
    await assert.rejects(client.createCollection(name, 3), (e: unknown) => {
      assert.ok(e instanceof ConflictError && e.status === 409 && e.code === "conflict" && e.requestId);
      return true;
    });
    assert.ok((await client.listCollections()).collections.some((c) => c.name === name));
    const got = await client.getCollection(name);
    assert.equal(got.point_count, 0);
    assert.ok("index" in got);
    assert.deepEqual(await client.deleteCollection(name), { name, deleted: true });
    await assert.rejects(client.deleteCollection(name), NotFoundError);
    await assert.rejects(client.createCollection("bad/name", 3), InvalidArgumentError);
  });

  it("points", async () => {
    const name = uniqueName();
    await client.createCollection(name, 4);
    assert.deepEqual(await client.upsertPoint(name, 7, new Float32Array([1, 2, 3, 4]), { k: "v", tags: ["a"] }), {
      id: 7,
      created: true,
    });
    assert.equal((await client.upsertPoint(name, 7, [4, 3, 2, 1])).created, false);
    assert.deepEqual(await client.getPoint(name, 7), { id: 7, values: [4, 3, 2, 1], payload: {} });
    const batch = await client.upsertPointsBatch(name, [
      { id: 7, values: [1, 1, 1, 1] },
      [8, [2, 2, 2, 2], { x: 1.5 }],
    ]);
    assert.deepEqual(batch, { created: 1, updated: 1, results: [{ id: 7, created: false }, { id: 8, created: true }] });
    assert.deepEqual(await client.deletePoint(name, 7), { id: 7, deleted: true });
    await assert.rejects(client.getPoint(name, 7), NotFoundError);
    await assert.rejects(client.upsertPoint(name, 9, [1, 2, 3]), (e: unknown) => {
      assert.ok(e instanceof InvalidArgumentError && e.status === 400 && /dimension/.test(e.serverMessage));
      return true;
    });
    assert.throws(() => client.upsertPoint(name, 9, [1, 2, 3, NaN]), RangeError);
    assert.throws(() => client.getPoint(name, -1), RangeError);
  });

  it("listPoints and the iterators", async () => {
    const name = uniqueName();
    await client.createCollection(name, 2);
    await client.upsertPointsBatch(name, [1, 2, 3, 4, 5, 6, 7].map((i) => [i, [i, 1]] as const));
    assert.deepEqual(await client.listPoints(name, { offset: 0, limit: 3 }), {
      points: [{ id: 1 }, { id: 2 }, { id: 3 }],
      total: 7,
      next_offset: 3,
      next_after_id: 3,
    });
    const cursor = await client.listPoints(name, { limit: 3, afterId: 5 });
    assert.deepEqual([cursor.points, cursor.next_offset, cursor.next_after_id], [[{ id: 6 }, { id: 7 }], null, null]);
    assert.equal((await client.listPoints(name, { limit: null })).points.length, 7);
    assert.throws(() => client.listPoints(name, { offset: 2, afterId: 1 }), RangeError);
    const pages: number[][] = [];
    for await (const p of client.iterPages(name, { limit: 3 })) pages.push(p.points.map((x) => x.id));
    assert.deepEqual(pages, [[1, 2, 3], [4, 5, 6], [7]]);
    const offsetPages: number[][] = [];
    for await (const p of client.iterPages(name, { limit: 2, paging: "offset", offset: 1 })) {
      offsetPages.push(p.points.map((x) => x.id));
    }
    assert.deepEqual(offsetPages, [[2, 3], [4, 5], [6, 7]]);
    const ids: number[] = [];
    for await (const id of client.iterPoints(name, { limit: 2, afterId: 4 })) ids.push(id);
    assert.deepEqual(ids, [5, 6, 7]);
    await assert.rejects(client.listPoints(name, { limit: 0 }), InvalidArgumentError);
  });

  it("count and payload updates", async () => {
    const name = await demo();
    assert.deepEqual(await client.countPoints(name), { count: 3 });
    assert.equal((await client.countPoints(name, filter({ must: [range("tier", { gte: 2 })] }))).count, 2);
    assert.equal((await client.countPoints(name, { must_not: [{ field: "label", value: "beta" }] })).count, 2);
    assert.deepEqual(await client.setPayload(name, [1, 2], { region: "eu" }), { updated: 2 });
    assert.deepEqual(await client.setPayload(name, [1, 2], { region: "eu" }), { updated: 0 });
    assert.equal((await client.countPoints(name, filter({ must: [match("region", "eu")] }))).count, 2);
    assert.deepEqual(await client.deletePayload(name, [1], ["region"]), { updated: 1 });
    assert.deepEqual((await client.getPoint(name, 1)).payload, { label: "alpha", tier: 1 });
    await assert.rejects(client.setPayload(name, [1, 99], { x: 1 }), NotFoundError);
    await assert.rejects(client.deletePayload(name, [1], []), InvalidArgumentError);
  });

  it("search: top-1, top-k, batch, options", async () => {
    const name = await demo();
    const q = [0.1, 0.2, 0.3, 0.4];
    const top1 = await client.searchCollection(name, q, { metric: "l2", mode: "exact" });
    assert.deepEqual([top1.id, top1.metric, top1.mode, top1.recall_at_k], [1, "l2", "exact", 1]);
    assert.deepEqual(top1.payload, { label: "alpha", tier: 1 });
    const top = await client.searchCollectionTopK(name, new Float32Array(q), { limit: 2, metric: "l2" });
    assert.deepEqual(top.hits.map((h) => h.id), [1, 2]);
    assert.equal(top.mode, "exact");
    assert.equal(top.recall_at_k, 1);
    assert.equal(top.estimated_recall, undefined);
    const bare = await client.searchCollectionTopK(name, q, { limit: 3, includePayload: false });
    assert.deepEqual(bare.hits.map((h) => [h.id, h.payload]), [[3, undefined], [1, undefined], [2, undefined]]);
    const filtered = await client.searchCollectionTopK(name, q, {
      metric: "l2",
      filter: filter({ mustNot: [match("label", "alpha")] }),
    });
    assert.deepEqual(filtered.hits.map((h) => h.id), [2, 3]);
    const none = await client.searchCollectionTopK(name, q, { filter: filter({ must: [match("label", "zeta")] }) });
    assert.deepEqual(none.hits, []);
    await assert.rejects(
      client.searchCollection(name, q, { filter: filter({ must: [match("label", "zeta")] }) }),
      InvalidArgumentError,
    );
    const batch = await client.searchCollectionTopKBatch(name, [q, [0.9, 0.8, 0.7, 0.6]], { limit: 1, metric: "l2" });
    assert.equal(batch.metric, "l2");
    assert.deepEqual(batch.results.map((r) => [r.mode, r.hits[0]!.id]), [["exact", 1], ["exact", 3]]);
    await assert.rejects(client.searchCollectionTopK(name, q, { targetRecall: 1.5 }), InvalidArgumentError);
    await assert.rejects(client.searchCollectionTopK(name, q, { mode: "ivf" }), InvalidArgumentError);
    await assert.rejects(client.searchCollectionTopK(name, q, { nprobe: 0 }), InvalidArgumentError);
    await assert.rejects(client.searchCollectionTopK(name, q, { ef: 0 }), InvalidArgumentError);
  });

  it("index modes report what ran", async () => {
    const name = uniqueName();
    await client.createCollection(name, 8);
    let seed = 7;
    const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31) * 2 - 1;
    const vectors = Array.from({ length: 3000 }, () => Array.from({ length: 8 }, rand));
    await client.bulkUpsert(name, vectors.map((v, i) => [i, v] as const));
    const q = vectors[0]!;
    // The server drops IVF lists the graph makes redundant; a search that
    // forces IVF brings them back for good (answered exactly meanwhile).
    const deadline = Date.now() + 60_000;
    let forced = false;
    for (;;) {
      const parts = ((await client.getCollection(name)).index as { partitions: any[] }).partitions;
      const graphs = parts.every((p) => p.hnsw?.calibration?.length);
      if (graphs && parts.every((p) => p.kind === "ivf" && p.calibration?.length)) break;
      if (graphs && !forced && parts.some((p) => p.dropped)) {
        await client.searchCollectionTopK(name, q, { limit: 1, metric: "l2", mode: "ivf", nprobe: 1 });
        forced = true;
      }
      assert.ok(Date.now() < deadline, "index not built in time");
      await new Promise((r) => setTimeout(r, 200));
    }
    const ivf = await client.searchCollectionTopK(name, q, { limit: 5, metric: "l2", mode: "ivf", nprobe: 4 });
    assert.equal(ivf.mode, "ivf");
    assert.equal(ivf.recall_at_k, undefined);
    assert.ok(ivf.estimated_recall! > 0 && ivf.estimated_recall! <= 1);
    const hnsw = await client.searchCollectionTopK(name, q, { limit: 5, metric: "l2", mode: "hnsw", ef: 64 });
    assert.equal(hnsw.mode, "hnsw");
    assert.equal(hnsw.hits[0]!.id, 0);
    assert.ok(hnsw.estimated_recall !== undefined);
    const auto = await client.searchCollectionTopK(name, q, { limit: 5, metric: "l2", targetRecall: 0.5 });
    assert.ok(auto.mode === "exact" ? auto.recall_at_k === 1 : auto.estimated_recall !== undefined);
    const one = await client.searchCollection(name, q, { metric: "l2", mode: "hnsw", ef: 32 });
    assert.deepEqual([one.id, one.mode], [0, "hnsw"]);
    const batch = await client.searchCollectionTopKBatch(name, vectors.slice(0, 3), {
      limit: 3,
      metric: "l2",
      mode: "ivf",
      nprobe: 2,
    });
    assert.deepEqual(batch.results.map((r) => [r.mode, r.hits[0]!.id]), [["ivf", 0], ["ivf", 1], ["ivf", 2]]);
  });

  it("errors carry the server's details", async () => {
    const name = uniqueName();
    const err = await client.getCollection(name).catch((e: unknown) => e);
    assert.ok(err instanceof NotFoundError && err instanceof ApiError && err instanceof AionBDError);
    assert.deepEqual([err.status, err.code, err.method, err.path], [404, "not_found", "GET", `/collections/${name}`]);
    assert.equal(err.requestId?.length, 36);
    assert.ok(err.message.includes(err.requestId!));
    assert.equal(err.name, "NotFoundError");
    const echo = new AionBDClient({ baseUrl: server.url, headers: { "x-request-id": "sdk-js-42" } });
    const echoed = await echo.getPoint(name, 1).catch((e: unknown) => e);
    assert.ok(echoed instanceof NotFoundError && echoed.requestId === "sdk-js-42");
  });
});
