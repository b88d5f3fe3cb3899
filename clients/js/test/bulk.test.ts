// bulkUpsert: batching under the count and byte limits, 413 halving,
// progress, and the count of points written when it fails midway.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";

import {
  AionBDClient,
  BATCH_MAX_POINTS,
  BulkUpsertError,
  InvalidArgumentError,
  PayloadTooLargeError,
  filter,
  match,
  type PointInput,
} from "aionbd";
import { Stub, startServer, uniqueName, type Server } from "./helpers.js";

describe("bulkUpsert", () => {
  let server: Server;
  let client: AionBDClient;
  before(async () => {
    server = await startServer();
    client = new AionBDClient(server.url, { timeoutMs: 10_000 });
  });
  after(() => server.stop());

  it("writes 50k points", async () => {
    const n = 50_000;
    const dim = 8;
    const name = uniqueName();
    await client.createCollection(name, dim);
    const points = Array.from({ length: n }, (_, i) => ({
      id: i,
      values: Float32Array.from({ length: dim }, (_, j) => ((i * 31 + j * 7) % 97) / 97),
      payload: { even: i % 2 === 0 },
    }));
    const progress: Array<[number, number | null]> = [];
    const r = await client.bulkUpsert(name, points, { onProgress: (w, t) => progress.push([w, t]) });
    assert.deepEqual([r.written, r.created, r.updated], [n, n, 0]);
    assert.ok(r.requests === progress.length && r.requests >= n / BATCH_MAX_POINTS);
    assert.deepEqual(progress.at(-1), [n, n]);
    assert.ok(progress.every(([w], i) => i === 0 || w > progress[i - 1]![0]));
    assert.equal((await client.getCollection(name)).point_count, n);
    assert.equal((await client.countPoints(name, filter({ must: [match("even", true)] }))).count, n / 2);
    const p = await client.getPoint(name, 12345);
    assert.deepEqual(p.values.map(Math.fround), Array.from(points[12345]!.values)); // f32 in shortest form
  });

  it("halves batches on 413 (async iterable input)", async () => {
    const s = await startServer({ AIONBD_MAX_BODY_BYTES: "30000" });
    try {
      const c = new AionBDClient(s.url);
      const name = uniqueName();
      await c.createCollection(name, 8);
      async function* gen(): AsyncGenerator<PointInput> {
        for (let i = 0; i < 3000; i++) yield [i, new Array(8).fill(i / 7)];
      }
      const totals = new Set<number | null>();
      const r = await c.bulkUpsert(name, gen(), { onProgress: (_, t) => totals.add(t) });
      assert.equal(r.written, 3000);
      assert.ok(r.requests > 3000 / 256);
      assert.deepEqual([...totals], [null]);
      assert.equal((await c.getCollection(name)).point_count, 3000);
      assert.ok((await c.metrics()).http_responses_4xx_total >= 1);
    } finally {
      await s.stop();
    }
  });

  it("reports what was written when a batch fails", async () => {
    const name = uniqueName();
    await client.createCollection(name, 4);
    const points: PointInput[] = Array.from({ length: 2000 }, (_, i) => [i, [1, 2, 3, 4]] as const);
    points[1000] = [1000, [1, 2, 3]]; // wrong dimension: batch 768..1023 is refused whole
    const e = await client.bulkUpsert(name, points).catch((x: unknown) => x);
    assert.ok(e instanceof BulkUpsertError && e.written === 768 && e.cause instanceof InvalidArgumentError);
    assert.equal((await client.getCollection(name)).point_count, 768);
    const ids: number[] = [];
    for await (const id of client.iterPoints(name, { limit: 1000 })) ids.push(id);
    assert.deepEqual(ids, Array.from({ length: 768 }, (_, i) => i));
  });

  it("reports what was written when an input point is bad", async () => {
    const name = uniqueName();
    await client.createCollection(name, 2);
    const points: PointInput[] = Array.from({ length: 600 }, (_, i) => [i, [1, i === 300 ? NaN : 2]] as const);
    const e = await client.bulkUpsert(name, points).catch((x: unknown) => x);
    assert.ok(e instanceof BulkUpsertError && e.written === 256 && e.cause instanceof RangeError, String(e));
    assert.equal((await client.getCollection(name)).point_count, 256);
  });

  it("fails on a single point over the server's limit", async () => {
    const s = await startServer({ AIONBD_MAX_BODY_BYTES: "2000" });
    try {
      const c = new AionBDClient(s.url);
      const name = uniqueName();
      await c.createCollection(name, 300);
      const points: PointInput[] = Array.from({ length: 5 }, (_, i) => [i, new Array(300).fill(0.25)] as const);
      assert.equal((await c.bulkUpsert(name, points)).written, 5);
      const e = await c.bulkUpsert(name, [...points, [10, new Array(300).fill(0.123456789)]]).catch((x: unknown) => x);
      assert.ok(e instanceof BulkUpsertError && e.written === 5 && e.cause instanceof PayloadTooLargeError);
    } finally {
      await s.stop();
    }
  });

  it("keeps batches under the body and count limits, in order", async () => {
    const stub = await Stub.start();
    try {
      stub.fallback = { status: 200, body: { created: 0, updated: 0, results: [] } };
      const c = new AionBDClient(stub.url, { maxBodyBytes: 10_000 });
      // ~280 bytes a point: 100 would not fit in 10 kB
      const points = Array.from({ length: 1000 }, (_, i) => [i, new Array(64).fill(0.5)] as const);
      const r = await c.bulkUpsert("demo", points, { batchSize: 100 });
      const bodies = stub.requests.map((q) => q.body);
      const sizes = bodies.map((b) => Buffer.byteLength(b));
      assert.ok(Math.max(...sizes) <= 10_000 && Math.max(...sizes) > 9_000, String(sizes));
      const batches = bodies.map((b) => JSON.parse(b).points as Array<{ id: number }>);
      assert.ok(batches.every((b) => b.length < 100));
      assert.deepEqual(batches.flat().map((p) => p.id), Array.from({ length: 1000 }, (_, i) => i));
      assert.deepEqual([r.written, r.requests], [1000, stub.requests.length]);
      await new AionBDClient(stub.url).bulkUpsert("demo", Array.from({ length: 1000 }, (_, i) => [i, [0.5]] as const), {
        batchSize: 100,
      }); // the count limit alone
      const counts = stub.requests.slice(r.requests).map((q) => JSON.parse(q.body).points.length);
      assert.deepEqual(counts, new Array(10).fill(100));
    } finally {
      await stub.close();
    }
  });

  it("checks its arguments", async () => {
    await assert.rejects(client.bulkUpsert("x", [], { batchSize: 0 }), RangeError);
    await assert.rejects(client.bulkUpsert("x", [], { batchSize: 257 }), RangeError);
    assert.equal((await client.bulkUpsert("x", [])).written, 0);
  });
});
