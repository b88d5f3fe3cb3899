// The filter builder: what it refuses, the server refuses too; what it
// builds, the server accepts and evaluates as documented.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";

import {
  AionBDClient,
  Filter,
  InvalidArgumentError,
  filter,
  match,
  range,
  type Clause,
  type FilterJSON,
  type PointPayload,
  type RangeClause,
  type Scalar,
} from "aionbd";
import { startServer, uniqueName, type Server } from "./helpers.js";

// [builder call that must throw, the raw filter it would have meant]
const INVALID: Array<[string, () => unknown, object]> = [
  ["empty field", () => match("", 1), { must: [{ field: "", value: 1 }] }],
  ["blank field", () => match("  ", 1), { must: [{ field: "  ", value: 1 }] }],
  ["range without bounds", () => range("price", {}), { must: [{ field: "price" }] }],
  ["gte above lte", () => range("price", { gte: 5, lte: 4 }), { must: [{ field: "price", gte: 5, lte: 4 }] }],
  ["gt above lt", () => range("price", { gt: 5, lt: 4.5 }), { must: [{ field: "price", gt: 5, lt: 4.5 }] }],
  ["minimumShouldMatch above should", () => filter({ should: [match("a", 1)], minimumShouldMatch: 2 }),
    { should: [{ field: "a", value: 1 }], minimum_should_match: 2 }],
  ["minimumShouldMatch without should", () => filter({ minimumShouldMatch: 1 }), { minimum_should_match: 1 }],
  ["negative minimumShouldMatch", () => filter({ minimumShouldMatch: -1 }), { minimum_should_match: -1 }],
  ["null value", () => match("a", null as unknown as Scalar), { must: [{ field: "a", value: null }] }],
  ["array value", () => match("a", [1] as unknown as Scalar), { must: [{ field: "a", value: [1] }] }],
  ["string bound", () => range("a", { gt: "1" as unknown as number }), { must: [{ field: "a", gt: "1" }] }],
  ["value with bounds", () => filter({ must: [{ field: "a", value: 1, gt: 0 } as unknown as Clause] }),
    { must: [{ field: "a", value: 1, gt: 0 }] }],
];

describe("filter builder", () => {
  let server: Server;
  let client: AionBDClient;
  before(async () => {
    server = await startServer();
    client = new AionBDClient(server.url);
  });
  after(() => server.stop());

  for (const [what, build, raw] of INVALID) {
    it(`refuses ${what}, as the server does`, async () => {
      assert.throws(build, (e: unknown) => e instanceof RangeError || e instanceof TypeError);
      const name = uniqueName();
      await client.createCollection(name, 2);
      await assert.rejects(client.countPoints(name, raw as FilterJSON), InvalidArgumentError);
    });
  }

  it("refuses non-finite numbers, and is frozen", () => {
    assert.throws(() => range("a", { lt: NaN }), TypeError);
    assert.throws(() => range("a", { lt: Infinity }), TypeError);
    assert.throws(() => match("a", NaN), TypeError);
    const f = filter({ must: [match("tier", "gold"), range("price", { gte: 10, lt: 20 })] });
    assert.ok(Object.isFrozen(f) && Object.isFrozen(f.must) && Object.isFrozen(f.must[0]));
    assert.throws(() => ((f.must as Clause[]).push(match("x", 1))), TypeError);
    assert.deepEqual(JSON.parse(JSON.stringify(f)), {
      must: [{ field: "tier", value: "gold" }, { field: "price", gte: 10, lt: 20 }],
    });
    assert.deepEqual(new Filter().toJSON(), {});
    assert.deepEqual(range("x", { gt: 1, lt: 1 }), { field: "x", gt: 1, lt: 1 });
  });

  it("random filters are accepted and evaluated as documented", async () => {
    let seed = 18;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
    const payloads: PointPayload[] = [
      { tier: 1, price: 0.5, tags: ["a", "b"], flag: true },
      { tier: 2, price: 2, tags: ["b"], flag: false },
      { tier: 2.0, price: 3, tags: "a" },
      { tier: "a", price: -1, tags: [1, 2] },
      { price: 1.5, flag: true },
      {},
    ];
    const clause = (): Clause => {
      const field = pick(["tier", "price", "price", "tags", "flag", "missing"]);
      if (rnd() < 0.5) return match(field, pick([1, 2, "a", "b", true, false, -5, 0.5] as Scalar[]));
      const keys = ["gt", "gte", "lt", "lte"] as const;
      const bounds: Record<string, number> = {};
      for (let i = 0, n = 1 + Math.floor(rnd() * 2); i < n; i++) bounds[pick(keys)] = pick([-1, 0, 1, 1.5, 2, 3]);
      try {
        return range(field, bounds);
      } catch {
        return range(field, { gte: 0 });
      }
    };
    const holds = (c: Clause, p: PointPayload): boolean => {
      const v = p[c.field];
      if (v === undefined) return false;
      const vals = Array.isArray(v) ? v : [v];
      if ("value" in c) return vals.some((x) => x === c.value); // JS numbers: 2 === 2.0 as the server compares
      const r = c as RangeClause;
      return vals.some(
        (x) => typeof x === "number" && (r.gt === undefined || x > r.gt) && (r.gte === undefined || x >= r.gte) &&
          (r.lt === undefined || x < r.lt) && (r.lte === undefined || x <= r.lte),
      );
    };
    const passes = (f: Filter, p: PointPayload) => {
      if (!f.must.every((c) => holds(c, p)) || f.mustNot.some((c) => holds(c, p))) return false;
      const need = f.minimumShouldMatch ?? 1;
      return f.should.length === 0 || need === 0 || f.should.filter((c) => holds(c, p)).length >= need;
    };
    const name = uniqueName();
    await client.createCollection(name, 2);
    await client.upsertPointsBatch(name, payloads.map((p, i) => [i, [1, i], p] as const));
    const seen = new Set<number>();
    for (let i = 0; i < 200; i++) {
      const should = Array.from({ length: Math.floor(rnd() * 4) }, clause);
      const f = filter({
        must: Array.from({ length: pick([0, 0, 1, 2]) }, clause),
        should,
        mustNot: Array.from({ length: Math.floor(rnd() * 2) }, clause),
        minimumShouldMatch: pick([undefined, ...Array.from({ length: should.length + 1 }, (_, k) => k)]),
      });
      const expected = payloads.filter((p) => passes(f, p)).length;
      assert.equal((await client.countPoints(name, f)).count, expected, JSON.stringify(f));
      const top = await client.searchCollectionTopK(name, [1, 0], { limit: 10, filter: f, mode: "exact" });
      assert.equal(top.hits.length, expected);
      seen.add(expected);
    }
    assert.ok(seen.size >= 5, "the cases are not all trivial");
  });
});
