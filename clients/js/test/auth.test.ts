// Credentials against the real server, one server per auth mode
// (docs/auth.md): API keys (with a read-only key), opaque bearer tokens and
// HS256 JWTs minted here. A good credential works end to end; none or a wrong
// one is a typed 401, a read-only key's write a typed 403, and neither is
// retried (counted in the server's own auth_failures_total /
// auth_forbidden_total); tenants see only their own collections.
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { after, before, describe, it } from "node:test";

import {
  AionBDClient,
  ApiError,
  ForbiddenError,
  NotFoundError,
  UnauthorizedError,
  type ClientOptions,
  type PointInput,
} from "aionbd";
import { startServer, uniqueName, type Server } from "./helpers.js";

const SECRET = "aionbd-sdk-tests-hs256-secret-0123456789"; // 32+ bytes
// Retries that would fire at once on a 503: a 401/403 must still be sent once.
const EAGER = { maxRetries: 3, backoffMs: 1, backoffMaxMs: 10 };
const POINTS: PointInput[] = [
  [1, [1, 0]],
  [2, [0, 1], { tag: "b" }],
  [3, [0.7, 0.7]],
];

const b64url = (data: string | Buffer) => Buffer.from(data).toString("base64url");

/** An HS256 JWT, made with node:crypto only. */
function mintJwt(claims: Record<string, unknown>, secret = SECRET): string {
  const head = b64url(JSON.stringify({ alg: "HS256", typ: "JWT" }));
  const body = b64url(JSON.stringify(claims));
  const sig = createHmac("sha256", secret).update(`${head}.${body}`).digest("base64url");
  return `${head}.${body}.${sig}`;
}

const now = () => Math.floor(Date.now() / 1000);
const jwtFor = (tenant: string, ttl = 600) => mintJwt({ tenant, sub: "sdk-test", exp: now() + ttl });

type Creds = Pick<ClientOptions, "apiKey" | "bearerToken">;

interface Mode {
  env: Record<string, string>;
  good: () => Creds;
  wrong: () => Creds[];
}

const API_KEY_ENV = {
  AIONBD_AUTH_MODE: "api_key",
  AIONBD_AUTH_API_KEYS: "tenant-a:key-a,tenant-b:key-b,tenant-a:key-r",
  AIONBD_AUTH_API_KEY_SCOPES: "key-r:read",
};

const MODES: Record<string, Mode> = {
  api_key: {
    env: API_KEY_ENV,
    good: () => ({ apiKey: "key-a" }),
    wrong: () => [{ apiKey: "key-x" }, { bearerToken: "key-a" }], // a key is not a bearer token
  },
  bearer_token: {
    env: { AIONBD_AUTH_MODE: "bearer_token", AIONBD_AUTH_BEARER_TOKENS: "tenant-a:tok-a" },
    good: () => ({ bearerToken: "tok-a" }),
    wrong: () => [{ bearerToken: "tok-x" }, { apiKey: "tok-a" }],
  },
  jwt: {
    env: { AIONBD_AUTH_MODE: "jwt", AIONBD_AUTH_JWT_HS256_SECRET: SECRET },
    good: () => ({ bearerToken: jwtFor("tenant-a") }),
    wrong: () => [
      { bearerToken: mintJwt({ tenant: "tenant-a", exp: now() + 600 }, "another-secret-of-32-bytes-or-more!!") },
      { bearerToken: jwtFor("tenant-a", -3600) }, // expired, past the 60 s leeway
      { bearerToken: mintJwt({ tenant: "tenant-a" }) }, // no exp
    ],
  },
};

async function counter(url: string, creds: Creds, key: string): Promise<number> {
  const value = (await new AionBDClient(url, creds).metrics())[key];
  assert.equal(typeof value, "number", key);
  return value as number;
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => assert.fail("expected a rejection"),
    (e: unknown) => e,
  );
}

for (const [modeName, mode] of Object.entries(MODES)) {
  describe(`auth mode ${modeName}`, () => {
    let server: Server;
    before(async () => {
      server = await startServer(mode.env);
    });
    after(() => server.stop());

    it("works end to end with the right credential", async () => {
      const c = new AionBDClient(server.url, mode.good());
      const name = uniqueName();
      assert.equal((await c.live()).status, "live");
      assert.equal((await c.createCollection(name, 2)).name, name);
      assert.equal((await c.upsertPointsBatch(name, POINTS)).created, 3);
      assert.equal((await c.upsertPoint(name, 4, [0.1, 0.9])).created, true);
      const top = await c.searchCollectionTopK(name, [1, 0], { limit: 2, metric: "l2" });
      assert.deepEqual([top.mode, top.hits.map((h) => h.id)], ["exact", [1, 3]]);
      assert.equal((await c.searchCollection(name, [0, 1])).id, 2);
      assert.equal((await c.countPoints(name)).count, 4);
      const names = (await c.listCollections()).collections.map((x) => x.name);
      assert.ok(names.includes(name) && !names.some((n) => n.includes("::")), String(names));
      await c.deleteCollection(name);
    });

    it("rejects no or a wrong credential with UnauthorizedError, without retrying", async () => {
      const before = await counter(server.url, mode.good(), "auth_failures_total");
      const attempts: Creds[] = [{}, ...mode.wrong()];
      for (const creds of attempts) {
        const c = new AionBDClient(server.url, { ...creds, retry: EAGER });
        // A read and an idempotent write: both retried on 503, so a retry would show.
        for (const call of [() => c.getPoint("anything", 1), () => c.upsertPoint("anything", 1, [1, 2])]) {
          const e = await rejection(call());
          assert.ok(e instanceof UnauthorizedError && e instanceof ApiError, `${JSON.stringify(creds)}: ${e}`);
          assert.deepEqual([e.status, e.code], [401, "unauthorized"]);
          assert.ok(e.requestId && e.serverMessage && !(e instanceof ForbiddenError));
          assert.equal(e.path, "/collections/anything/points/1");
        }
      }
      assert.equal((await counter(server.url, mode.good(), "auth_failures_total")) - before, 2 * attempts.length);
    });

    it("keeps the caller's request id on a 401", async () => {
      const c = new AionBDClient(server.url, { headers: { "x-request-id": "sdk-401-check" } });
      const e = await rejection(c.live()); // probes need a credential too
      assert.ok(e instanceof UnauthorizedError && e.requestId === "sdk-401-check");
    });
  });
}

describe("auth: scopes and tenants (api_key mode)", () => {
  let server: Server;
  let a: AionBDClient;
  let b: AionBDClient;
  before(async () => {
    server = await startServer(API_KEY_ENV);
    a = new AionBDClient(server.url, { apiKey: "key-a" });
    b = new AionBDClient(server.url, { apiKey: "key-b" });
  });
  after(() => server.stop());

  it("lets a read-scoped key read but not write (ForbiddenError, not retried)", async () => {
    const name = uniqueName();
    await a.createCollection(name, 2);
    await a.upsertPointsBatch(name, POINTS);
    const before = await counter(server.url, { apiKey: "key-a" }, "auth_forbidden_total");
    const reader = new AionBDClient(server.url, { apiKey: "key-r", retry: EAGER });
    const writes = [
      () => reader.createCollection(`${name}-r`, 2),
      () => reader.upsertPoint(name, 9, [1, 1]),
      () => reader.upsertPointsBatch(name, [[9, [1, 1]]]),
      () => reader.setPayload(name, [1], { a: 1 }),
      () => reader.deletePayload(name, [2], ["tag"]),
      () => reader.deletePoint(name, 1),
      () => reader.deleteCollection(name),
    ];
    for (const write of writes) {
      const e = await rejection(write());
      assert.ok(e instanceof ForbiddenError, String(e));
      assert.deepEqual([e.status, e.code], [403, "forbidden"]);
      assert.ok(e.requestId);
    }
    // Same tenant (tenant-a): it reads what key-a wrote, unchanged.
    assert.ok((await reader.listCollections()).collections.some((x) => x.name === name));
    assert.equal((await reader.getCollection(name)).point_count, 3);
    assert.deepEqual((await reader.getPoint(name, 2)).payload, { tag: "b" });
    const top = await reader.searchCollectionTopK(name, [1, 0], { limit: 1, metric: "l2" });
    assert.deepEqual(top.hits.map((h) => h.id), [1]);
    assert.equal((await reader.countPoints(name)).count, 3);
    assert.equal((await reader.distance([1, 0], [0, 1])).value, 0);
    assert.equal(typeof (await reader.metrics()).points, "number");
    assert.equal((await counter(server.url, { apiKey: "key-a" }, "auth_forbidden_total")) - before, writes.length);
    await a.deleteCollection(name);
  });

  it("gives each tenant its own collections, names may repeat", async () => {
    const name = uniqueName();
    assert.equal((await a.createCollection(name, 2)).dimension, 2);
    assert.equal((await b.createCollection(name, 3)).dimension, 3); // same name, other tenant
    await a.upsertPointsBatch(name, POINTS);
    await b.upsertPoint(name, 7, [0, 0, 1]);
    const listed = async (c: AionBDClient) =>
      (await c.listCollections()).collections.map((x) => [x.name, x.dimension]);
    assert.deepEqual(await listed(a), [[name, 2]]);
    assert.deepEqual(await listed(b), [[name, 3]]);
    assert.deepEqual((await b.searchCollectionTopK(name, [0, 0, 1])).hits.map((h) => h.id), [7]);
    assert.equal((await a.countPoints(name)).count, 3);

    const onlyA = `${name}-a`;
    await a.createCollection(onlyA, 2);
    for (const call of [
      () => b.getCollection(onlyA),
      () => b.searchCollection(onlyA, [1, 0]),
      () => b.upsertPoint(onlyA, 1, [1, 0]),
      () => b.deleteCollection(onlyA),
    ]) {
      const e = await rejection(call());
      assert.ok(e instanceof NotFoundError && e.status === 404, String(e));
      assert.ok(!e.serverMessage.includes("::"), e.serverMessage); // no tenant prefix leaks
    }
    await a.deleteCollection(name);
    assert.equal((await b.getCollection(name)).point_count, 1); // b's collection of that name is untouched
    await b.deleteCollection(name);
    await a.deleteCollection(onlyA);
  });
});
