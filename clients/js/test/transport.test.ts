// Credentials, retries, timeouts, TLS and broken answers. The exact
// credential headers are checked against the stub (the real server's auth
// modes are in auth.test.ts).
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { after, afterEach, before, beforeEach, describe, it } from "node:test";

import {
  AionBDClient,
  ApiError,
  ClientTimeoutError,
  ConnectError,
  ForbiddenError,
  InsufficientStorageError,
  InternalError,
  InvalidResponseError,
  NotReadyError,
  ResourceExhaustedError,
  TLSError,
  TransportError,
  UnauthorizedError,
  retryDelayMs,
} from "aionbd";
import { PACKAGE_DIR, Stub, startServer, uniqueName, type Server } from "./helpers.js";

const FAST = { backoffMs: 10, backoffMaxMs: 50 };
const NOT_READY = { code: "not_ready", message: "recovering" };

describe("against a stub", () => {
  let stub: Stub;
  beforeEach(async () => {
    stub = await Stub.start();
  });
  afterEach(() => stub.close());

  it("sends the API key as x-api-key", async () => {
    await new AionBDClient(stub.url, { apiKey: "secret-key-a" }).live();
    const h = stub.requests[0]!.headers;
    assert.equal(h["x-api-key"], "secret-key-a");
    assert.equal(h.authorization, undefined);
  });

  it("sends a bearer token or JWT as Authorization: Bearer", async () => {
    const jwt = "eyJhbGciOiJIUzI1NiJ9.eyJ0ZW5hbnQiOiJhIn0.c2ln";
    await new AionBDClient({ baseUrl: stub.url, bearerToken: jwt }).live();
    const h = stub.requests[0]!.headers;
    assert.equal(h.authorization, `Bearer ${jwt}`);
    assert.equal(h["x-api-key"], undefined);
  });

  it("sends both credentials and extra headers", async () => {
    await new AionBDClient(stub.url, { apiKey: "k", bearerToken: "t", headers: { "x-request-id": "r1" } }).live();
    const h = stub.requests[0]!.headers;
    assert.deepEqual([h["x-api-key"], h.authorization, h["x-request-id"]], ["k", "Bearer t", "r1"]);
  });

  it("types 401 and 403", async () => {
    stub.reply(401, { code: "unauthorized", message: "missing credential" }, { "x-request-id": "rid-401" });
    stub.reply(403, { code: "forbidden", message: "read-only key" });
    const c = new AionBDClient(stub.url);
    const e = await c.listCollections().catch((x: unknown) => x);
    assert.ok(e instanceof UnauthorizedError && e.status === 401 && e.requestId === "rid-401");
    await assert.rejects(c.deleteCollection("x"), ForbiddenError);
    assert.equal(stub.requests.length, 2); // neither is retried
  });

  it("sends JSON with its content type", async () => {
    stub.reply(200, { id: 5, created: true });
    await new AionBDClient(stub.url).upsertPoint(" demo ", 5, [1, 2], { a: 1 });
    const r = stub.requests[0]!;
    const expected = ["PUT", "/collections/demo/points/5", "application/json"];
    assert.deepEqual([r.method, r.url, r.headers["content-type"]], expected);
    assert.deepEqual(JSON.parse(r.body), { values: [1, 2], payload: { a: 1 } });
  });

  it("retries 429 after Retry-After, then 503 after a short backoff", async () => {
    stub.reply(429, { code: "resource_exhausted", message: "rate limit" }, { "retry-after": "1" });
    stub.reply(503, NOT_READY);
    assert.equal((await new AionBDClient(stub.url, { retry: FAST }).live()).status, "live");
    const [a, b, c] = stub.requests.map((r) => r.at);
    assert.equal(stub.requests.length, 3);
    assert.ok(b! - a! >= 950, `waited ${b! - a!} ms`);
    assert.ok(c! - b! < 500);
  });

  it("gives up after maxRetries", async () => {
    for (let i = 0; i < 5; i++) stub.reply(503, NOT_READY, { "x-request-id": "r503" });
    const c = new AionBDClient(stub.url, { retry: { maxRetries: 2, backoffMs: 10 } });
    const e = await c.getPoint("demo", 1).catch((x: unknown) => x);
    assert.ok(e instanceof NotReadyError && e.requestId === "r503");
    assert.equal(stub.requests.length, 3);
  });

  it("does not retry a 429 without Retry-After, create, or ready", async () => {
    stub.reply(429, { code: "resource_exhausted", message: "memory budget" });
    stub.reply(503, NOT_READY, { "retry-after": "0" });
    stub.reply(503, { code: "not_ready", message: "storage unavailable" });
    const c = new AionBDClient(stub.url, { retry: FAST });
    await assert.rejects(c.upsertPoint("d", 1, [1]), ResourceExhaustedError);
    await assert.rejects(c.createCollection("d", 3), NotReadyError);
    await assert.rejects(c.ready(), NotReadyError);
    assert.equal(stub.requests.length, 3);
  });

  it("retries idempotent writes", async () => {
    const c = new AionBDClient(stub.url, { retry: FAST });
    const calls: Array<[object, () => Promise<unknown>]> = [
      [{ id: 1, created: true }, () => c.upsertPoint("d", 1, [1])],
      [{ created: 1, updated: 0, results: [{ id: 1, created: true }] }, () => c.upsertPointsBatch("d", [[1, [1]]])],
      [{ id: 1, deleted: true }, () => c.deletePoint("d", 1)],
      [{ name: "d", deleted: true }, () => c.deleteCollection("d")],
      [{ updated: 1 }, () => c.setPayload("d", [1], { a: 1 })],
      [{ updated: 1 }, () => c.deletePayload("d", [1], ["a"])],
    ];
    for (const [ok, call] of calls) {
      stub.reply(503, NOT_READY, { "retry-after": "0" }).reply(200, ok);
      await call();
    }
    assert.equal(stub.requests.length, 2 * calls.length);
  });

  for (const [what, status, body, ctype, Class] of [
    ["an HTML page", 200, "<html>hello</html>", "text/html", InvalidResponseError],
    ["truncated JSON", 200, '{"status": "live"', "application/json", InvalidResponseError],
    ["another shape", 200, '{"unexpected": true}', "application/json", InvalidResponseError],
    ["an array", 200, "[1, 2]", "application/json", InvalidResponseError],
    ["null for a number", 200, '{"status": "live", "uptime_ms": null}', "application/json", InvalidResponseError],
    ["a proxy's 502", 502, "<html>Bad Gateway</html>", "text/html", ApiError],
    ["500 internal", 500, '{"code":"internal","message":"wal failed"}', "application/json", InternalError],
    ["507 disk full", 507, '{"code":"insufficient_storage","message":"disk full"}', "application/json",
      InsufficientStorageError],
  ] as const) {
    it(`types ${what} as ${Class.name}`, async () => {
      stub.reply(status, body, { "content-type": ctype, "x-request-id": "rid" });
      const e = await new AionBDClient(stub.url, { retry: { maxRetries: 0 } }).live().catch((x: unknown) => x);
      assert.equal((e as Error).constructor, Class);
      assert.deepEqual([(e as ApiError).status, (e as ApiError).requestId], [status, "rid"]);
    });
  }

  it("keeps a proxy's error page", async () => {
    stub.reply(502, "<html>Bad Gateway</html>", { "content-type": "text/html" });
    const e = await new AionBDClient(stub.url).live().catch((x: unknown) => x);
    assert.ok(e instanceof ApiError && e.code === "" && e.status === 502 && e.serverMessage.includes("Bad Gateway"));
  });

  it("times out", async () => {
    stub.replies.push({ status: 200, body: { status: "live", uptime_ms: 1 }, delayMs: 1000 });
    const e = await new AionBDClient(stub.url, { timeoutMs: 200 }).live().catch((x: unknown) => x);
    assert.ok(e instanceof ClientTimeoutError && e instanceof TransportError);
  });

  it("uses an injected fetch", async () => {
    const seen: string[] = [];
    const c = new AionBDClient(stub.url, {
      fetch: (input, init) => {
        seen.push(String(input));
        return fetch(input, init);
      },
    });
    await c.live();
    assert.deepEqual(seen, [`${stub.url}/live`]);
  });
});

describe("backoff", () => {
  it("grows, is jittered, honours Retry-After and its cap", () => {
    const p = { maxRetries: 3, backoffMs: 100, backoffMaxMs: 1000, maxRetryAfterMs: 60_000 };
    const err = (status: number, retryAfterMs: number | null) =>
      new ApiError({ status, code: "", message: "", requestId: null, retryAfterMs });
    for (const [attempt, top] of [[0, 100], [1, 200], [2, 400]] as const) {
      const delays = new Set(Array.from({ length: 50 }, () => retryDelayMs(p, attempt, err(503, null))!));
      assert.ok([...delays].every((d) => d >= top / 2 && d <= top) && delays.size > 1);
    }
    assert.equal(retryDelayMs(p, 3, err(503, null)), null);
    assert.equal(retryDelayMs(p, 0, err(429, 3000)), 3000);
    assert.equal(retryDelayMs(p, 0, err(429, null)), null);
    assert.equal(retryDelayMs({ ...p, maxRetryAfterMs: 2000 }, 0, err(429, 3000)), null);
    assert.equal(retryDelayMs(p, 0, err(500, null)), null);
  });
});

describe("against the server", () => {
  it("surfaces the real rate limit's Retry-After", async () => {
    const s = await startServer({ AIONBD_AUTH_RATE_LIMIT_PER_MINUTE: "2" });
    try {
      const c = new AionBDClient(s.url, { retry: { maxRetryAfterMs: 0 } });
      const e = await (async () => {
        for (let i = 0; i < 3; i++) await c.live();
      })().catch((x: unknown) => x);
      assert.ok(e instanceof ResourceExhaustedError && e.status === 429 && e.requestId);
      assert.ok(e.retryAfterMs !== null && e.retryAfterMs >= 0 && e.retryAfterMs <= 60_000);
    } finally {
      await s.stop();
    }
  });

  it("reports an unreachable server", async () => {
    const port = await new Promise<number>((r) => {
      const srv = createServer().listen(0, "127.0.0.1", () => {
        const p = (srv.address() as { port: number }).port;
        srv.close(() => r(p));
      });
    });
    const e = await new AionBDClient(`http://127.0.0.1:${port}`).live().catch((x: unknown) => x);
    assert.ok(e instanceof ConnectError && !(e instanceof TLSError), String(e));
    assert.ok(e.message.includes(String(port)));
  });
});

describe("TLS", () => {
  let server: Server;
  let dir: string;
  let ca: string;
  const haveOpenssl = spawnSync("openssl", ["version"]).status === 0;

  before(async () => {
    if (!haveOpenssl) return;
    dir = mkdtempSync(join(tmpdir(), "aionbd-tls-"));
    const p = (f: string) => join(dir, f);
    const ossl = (...args: string[]) => execFileSync("openssl", args, { stdio: "pipe" });
    ca = p("ca.pem");
    ossl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", p("ca.key"),
      "-out", ca, "-days", "2", "-subj", "/CN=aionbd test CA",
      "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign");
    ossl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", p("key.pem"),
      "-out", p("srv.csr"), "-subj", "/CN=127.0.0.1");
    writeFileSync(p("ext.cnf"), "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n" +
      "keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n");
    ossl("x509", "-req", "-in", p("srv.csr"), "-CA", ca, "-CAkey", p("ca.key"), "-CAcreateserial",
      "-out", p("cert.pem"), "-days", "2", "-extfile", p("ext.cnf"));
    server = await startServer({
      AIONBD_TLS_ENABLED: "true",
      AIONBD_TLS_CERT_PATH: p("cert.pem"),
      AIONBD_TLS_KEY_PATH: p("key.pem"),
    });
  });
  after(async () => {
    if (!haveOpenssl) return;
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Run `live()` in a fresh node (NODE_EXTRA_CA_CERTS is read at start-up). */
  function liveInChild(url: string, env: Record<string, string>): string {
    const index = pathToFileURL(join(PACKAGE_DIR, "dist/index.js")).href;
    const script = `import { AionBDClient } from ${JSON.stringify(index)};
      try { console.log((await new AionBDClient(${JSON.stringify(url)}).live()).status); }
      catch (e) { console.log(e.name); }`;
    const r = spawnSync(process.execPath, ["--input-type=module", "-e", script], {
      env: { ...process.env, NODE_EXTRA_CA_CERTS: "", ...env },
      encoding: "utf8",
    });
    assert.equal(r.status, 0, r.stderr);
    return r.stdout.trim();
  }

  it("works with the CA given in NODE_EXTRA_CA_CERTS", { skip: !haveOpenssl && "openssl not found" }, () => {
    assert.ok(server.url.startsWith("https://"));
    assert.equal(liveInChild(server.url, { NODE_EXTRA_CA_CERTS: ca }), "live");
  });

  it("rejects an untrusted certificate with TLSError", { skip: !haveOpenssl && "openssl not found" }, async () => {
    assert.equal(liveInChild(server.url, {}), "TLSError");
    const e = await new AionBDClient(server.url).live().catch((x: unknown) => x);
    assert.ok(e instanceof TLSError && e instanceof ConnectError, String(e));
  });

  it("fails typed when plain HTTP meets TLS", { skip: !haveOpenssl && "openssl not found" }, async () => {
    const c = new AionBDClient(server.url.replace("https://", "http://"), { timeoutMs: 3000 });
    await assert.rejects(c.live(), TransportError);
  });

  it("creates a collection over TLS", { skip: !haveOpenssl && "openssl not found" }, () => {
    const index = pathToFileURL(join(PACKAGE_DIR, "dist/index.js")).href;
    const name = uniqueName();
    const script = `import { AionBDClient } from ${JSON.stringify(index)};
      const c = new AionBDClient(${JSON.stringify(server.url)});
      console.log((await c.createCollection(${JSON.stringify(name)}, 2)).name);`;
    const r = spawnSync(process.execPath, ["--input-type=module", "-e", script], {
      env: { ...process.env, NODE_EXTRA_CA_CERTS: ca },
      encoding: "utf8",
    });
    assert.equal(r.stdout.trim(), name, r.stderr);
  });
});
