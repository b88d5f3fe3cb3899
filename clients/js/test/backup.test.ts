// Export and backup: the streamed export round trip, backups streamed to a
// file, backups kept on the server (create, list, download, delete), the
// scopes with auth on (the kept-backup routes need `admin`), and, against
// the stub, what the real server does only when something breaks: a stream
// cut midway (typed error, no file, never retried), a wrong content type, a
// short export, a slow createBackup.
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, afterEach, before, beforeEach, describe, it } from "node:test";

import {
  AionBDClient,
  ClientTimeoutError,
  ConnectError,
  ForbiddenError,
  InvalidArgumentError,
  InvalidResponseError,
  NotFoundError,
  NotReadyError,
  TransportError,
  type BackupManifest,
  type PointInput,
  type PointPayload,
} from "aionbd";
import { Stub, startServer, uniqueName, type Server } from "./helpers.js";

const MAGIC = Buffer.from("AIONBAK\0", "latin1");
const FAST = { backoffMs: 10, backoffMaxMs: 50 };
const OCTETS = { "content-type": "application/octet-stream" };
const NDJSON = { "content-type": "application/x-ndjson" };
const PAYLOADS: PointPayload[] = [{}, { tag: "a", n: 1 }, { flag: true, tags: ["x", "y"], score: 0.5 }];

const points = (n: number): Array<[number, number[], PointPayload]> =>
  Array.from({ length: n }, (_, i) => [i * 7, [i / 4, -i, 0.25], PAYLOADS[i % 3]!]);

async function rejection(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => assert.fail("expected a rejection"),
    (e: unknown) => e,
  );
}

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "aionbd-js-backup-"));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));
const files = () => readdirSync(dir).sort();

describe("export and backups against the server", () => {
  let server: Server;
  let client: AionBDClient;
  before(async () => {
    server = await startServer();
    client = new AionBDClient(server.url, { timeoutMs: 10_000 });
  });
  after(() => server.stop());

  async function collection(n: number): Promise<string> {
    const name = uniqueName();
    await client.createCollection(name, 3);
    await client.bulkUpsert(name, points(n) as PointInput[]);
    return name;
  }

  it("exports a collection point by point, at one cut", async () => {
    const name = await collection(700); // more than one chunk of the answer
    const exp = await client.exportCollection(name);
    assert.deepEqual(exp.header.collection, { name, dimension: 3, strict_finite: true });
    assert.equal(exp.header.points, 700);
    assert.equal(exp.header.aionbd_export, 1);
    assert.ok(exp.header.lsn >= 0);
    const got = [];
    for await (const p of exp) got.push(p);
    const written = new Map(points(700).map((p) => [p[0], p]));
    // Every point once, in no set order (partition by partition).
    assert.deepEqual(
      got.map((p) => p.id).sort((a, b) => a - b),
      [...written.keys()].sort((a, b) => a - b),
    );
    for (const p of got) {
      const [, values, payload] = written.get(p.id)!;
      assert.deepEqual(p.payload, payload);
      p.values.forEach((v, i) => assert.ok(Math.abs(v - values[i]!) <= 1e-6 * Math.max(1, Math.abs(v)), `${p.id}`));
    }
    await assert.rejects(async () => {
      for await (const p of exp) void p;
    }, /read once/);
    // Leaving early closes the answer; the client goes on working.
    for await (const p of await client.exportCollection(name)) {
      assert.equal(p.id, 0);
      break;
    }
    await (await client.exportCollection(name)).close();
    assert.equal((await client.countPoints(name)).count, 700);
  });

  it("exports an empty collection", async () => {
    const name = uniqueName();
    await client.createCollection(name, 2, false);
    const exp = await client.exportCollection(name);
    const got = [];
    for await (const p of exp) got.push(p);
    assert.deepEqual([got, exp.header.points, exp.header.collection.strict_finite], [[], 0, false]);
  });

  it("saves an export to a file", async () => {
    const name = await collection(5);
    const path = join(dir, "demo.ndjson");
    const size = await client.exportCollectionToFile(name, path);
    assert.equal(size, statSync(path).size);
    assert.deepEqual(files(), ["demo.ndjson"]);
    const lines = readFileSync(path, "utf8").trim().split("\n").map((l) => JSON.parse(l));
    assert.deepEqual(lines[0].collection, { name, dimension: 3, strict_finite: true });
    assert.deepEqual(
      lines.slice(1).map((l) => l.id).sort((a: number, b: number) => a - b),
      [0, 7, 14, 21, 28],
    );
  });

  it("rejects an unknown collection with NotFoundError and writes nothing", async () => {
    const e = await rejection(client.exportCollection("no-such-collection"));
    assert.ok(e instanceof NotFoundError && e.status === 404 && e.requestId);
    assert.equal(e.path, "/collections/no-such-collection/export");
    const b = await rejection(client.backupToFile(join(dir, "b.aionbd"), { collections: ["no-such-collection"] }));
    assert.ok(b instanceof NotFoundError, String(b));
    const bad = await rejection(client.exportCollectionToFile("a..b", join(dir, "x.ndjson")));
    assert.ok(bad instanceof InvalidArgumentError, String(bad));
    assert.deepEqual(files(), []);
  });

  it("streams a backup to a file", async () => {
    const name = await collection(20);
    const all = join(dir, "all.aionbd");
    const size = await client.backupToFile(all);
    const data = readFileSync(all);
    assert.ok(data.subarray(0, 8).equals(MAGIC));
    assert.equal(size, data.length);
    assert.ok(data.includes(name));
    const one = join(dir, "one.aionbd");
    assert.equal(await client.backupToFile(one, { collections: name }), statSync(one).size);
    assert.ok(readFileSync(one).subarray(0, 8).equals(MAGIC) && readFileSync(one).includes(name));
    assert.deepEqual(files(), ["all.aionbd", "one.aionbd"]); // no .tmp left
  });

  it("creates, lists, downloads and deletes a kept backup", async () => {
    const name = await collection(30);
    const kept = await client.createBackup({ collections: [name] });
    assert.ok(kept.name && kept.bytes && kept.format === 2 && kept.consistency);
    assert.deepEqual(
      kept.collections.map((c) => [c.name, c.dimension, c.points]),
      [[name, 3, 30]],
    );
    const listing = await client.listBackups();
    const listed = listing.backups.find((b) => b.name === kept.name);
    assert.deepEqual(listed, kept);
    assert.ok(!listing.in_progress.includes(kept.name));
    const path = join(dir, "kept.aionbd");
    assert.equal(await client.downloadBackup(kept.name, path), listed!.bytes);
    const serverFile = readFileSync(join(listing.dir, `${kept.name}.aionbd`)); // the server runs here
    assert.ok(readFileSync(path).equals(serverFile) && serverFile.subarray(0, 8).equals(MAGIC));

    assert.deepEqual(await client.deleteBackup(kept.name), { name: kept.name, deleted: true });
    assert.ok(!(await client.listBackups()).backups.some((b) => b.name === kept.name));
    for (const call of [() => client.deleteBackup(kept.name!), () => client.downloadBackup(kept.name!, join(dir, "x"))]) {
      const e = await rejection(call());
      assert.ok(e instanceof NotFoundError && e.code === "not_found" && e.requestId, String(e));
    }
    assert.deepEqual(files(), ["kept.aionbd"]);
  });
});

describe("kept backups with auth on", () => {
  let server: Server;
  before(async () => {
    server = await startServer({
      AIONBD_AUTH_MODE: "api_key",
      AIONBD_AUTH_API_KEYS: "tenant-a:key-a,tenant-a:key-w,tenant-a:key-r,tenant-b:key-b",
      AIONBD_AUTH_API_KEY_SCOPES: "key-w:write,key-r:read,key-b:write", // key-a: admin (unlisted)
    });
  });
  after(() => server.stop());

  it("need scope admin: a write key gets ForbiddenError", async () => {
    const admin = new AionBDClient(server.url, { apiKey: "key-a" });
    const writer = new AionBDClient(server.url, { apiKey: "key-w", retry: FAST });
    const name = uniqueName();
    await writer.createCollection(name, 2);
    const kept = await admin.createBackup();
    assert.ok(kept.collections.some((c) => c.name === `tenant-a::${name}`)); // every tenant's, stored names
    const calls = [
      () => writer.createBackup(),
      () => writer.createBackup({ collections: [name] }),
      () => writer.listBackups(),
      () => writer.deleteBackup(kept.name!),
      () => writer.downloadBackup(kept.name!, join(dir, "no.aionbd")),
    ];
    for (const call of calls) {
      const e = await rejection(call());
      assert.ok(e instanceof ForbiddenError, String(e));
      assert.deepEqual([e.status, e.code], [403, "forbidden"]);
    }
    assert.deepEqual(files(), []);
    assert.equal((await admin.deleteBackup(kept.name!)).deleted, true);
  });

  it("streams a backup of the credential's tenant only (a read)", async () => {
    const a = new AionBDClient(server.url, { apiKey: "key-w" });
    const b = new AionBDClient(server.url, { apiKey: "key-b" });
    const name = uniqueName();
    await a.createCollection(`${name}-a`, 2);
    await b.createCollection(`${name}-b`, 2);
    const reader = new AionBDClient(server.url, { apiKey: "key-r" });
    await reader.backupToFile(join(dir, "a.aionbd"));
    assert.equal((await reader.exportCollection(`${name}-a`)).header.collection.name, `${name}-a`);
    await b.backupToFile(join(dir, "b.aionbd"));
    const mine = readFileSync(join(dir, "a.aionbd"));
    const theirs = readFileSync(join(dir, "b.aionbd"));
    assert.ok(mine.includes(`${name}-a`) && !mine.includes(`${name}-b`));
    assert.ok(theirs.includes(`${name}-b`) && !theirs.includes(`${name}-a`));
  });
});

describe("streams against a stub", () => {
  let stub: Stub;
  beforeEach(async () => {
    stub = await Stub.start();
  });
  afterEach(() => stub.close());

  const manifest: BackupManifest = {
    format: 1,
    aionbd_version: "0.1.0",
    created_unix_ms: 1,
    consistency: "one cut",
    collections: [],
    points: 0,
    bytes: 16,
    name: "backup-1-0",
  };

  it("retries a stream until its answer starts", async () => {
    stub.reply(503, { code: "not_ready", message: "recovering" }, { "retry-after": "0" });
    stub.reply(200, "AIONBAK\0rest", OCTETS);
    const c = new AionBDClient(stub.url, { retry: FAST });
    const path = join(dir, "b.aionbd");
    assert.equal(await c.backupToFile(path, { collections: ["x", "y z"] }), 12);
    assert.equal(readFileSync(path, "latin1"), "AIONBAK\0rest");
    assert.deepEqual(
      stub.requests.map((r) => r.url),
      ["/backup?collection=x&collection=y%20z", "/backup?collection=x&collection=y%20z"],
    );
    assert.match(stub.requests[0]!.headers.accept!, /^application\/octet-stream/);
  });

  it("rejects a broken stream with TransportError, keeps no file and does not retry", async () => {
    const path = join(dir, "b.aionbd");
    writeFileSync(path, "the previous backup");
    stub.replies.push({ status: 200, body: `AIONBAK\0${"x".repeat(1000)}`, headers: OCTETS, breakAfter: 100 });
    const e = await rejection(new AionBDClient(stub.url, { retry: FAST }).backupToFile(path));
    assert.ok(e instanceof TransportError && !(e instanceof ConnectError), String(e));
    assert.match(e.message, /after 100 bytes/);
    assert.equal(e.path, "/backup");
    assert.equal(stub.requests.length, 1);
    assert.equal(readFileSync(path, "utf8"), "the previous backup");
    assert.deepEqual(files(), ["b.aionbd"]);
  });

  it("rejects while iterating a broken export, and a short one", async () => {
    const header = { aionbd_export: 1, collection: { name: "d", dimension: 1, strict_finite: true }, points: 3, lsn: 9 };
    const lines = [header, ...[0, 1, 2].map((i) => ({ id: i, values: [i], payload: {} }))];
    const body = lines.map((l) => JSON.stringify(l) + "\n").join("");
    stub.replies.push({ status: 200, body, headers: NDJSON, breakAfter: body.length - 5 });
    const c = new AionBDClient(stub.url);
    const exp = await c.exportCollection("d");
    assert.equal(exp.header.lsn, 9);
    const got: number[] = [];
    const e = await rejection(
      (async () => {
        for await (const p of exp) got.push(p.id);
      })(),
    );
    assert.ok(e instanceof TransportError, String(e));
    assert.deepEqual(got, [0, 1]);
    // Whole, but short of what the header says.
    stub.reply(200, lines.slice(0, 3).map((l) => JSON.stringify(l) + "\n").join(""), NDJSON);
    const short = await rejection(
      (async () => {
        for await (const p of await c.exportCollection("d")) void p;
      })(),
    );
    assert.ok(short instanceof InvalidResponseError && /holds 2 points, its header says 3/.test(short.message));
  });

  it("rejects a wrong or empty answer with InvalidResponseError", async () => {
    const c = new AionBDClient(stub.url);
    stub.reply(200, "<html>proxy</html>", { "content-type": "text/html" });
    const html = await rejection(c.downloadBackup("b1", join(dir, "b.aionbd")));
    assert.ok(html instanceof InvalidResponseError && html.body === "<html>proxy</html>", String(html));
    assert.equal(html.path, "/backups/b1");
    stub.reply(200, "", OCTETS);
    assert.ok((await rejection(c.downloadBackup("b1", join(dir, "b.aionbd")))) instanceof InvalidResponseError);
    stub.reply(200, '{"not": "an export"}\n', NDJSON);
    assert.ok((await rejection(c.exportCollection("d"))) instanceof InvalidResponseError);
    assert.deepEqual(files(), []);
  });

  it("times out a stream that stalls, before or after it starts", async () => {
    stub.replies.push({ status: 200, body: "AIONBAK\0", headers: OCTETS, delayMs: 600 });
    const e = await rejection(new AionBDClient(stub.url, { timeoutMs: 200 }).backupToFile(join(dir, "b.aionbd")));
    assert.ok(e instanceof ClientTimeoutError, String(e));
    // 8 bytes, then nothing for longer than timeoutMs (each wait counts, not the whole transfer).
    const slow = createServer((_, res) => {
      res.writeHead(200, OCTETS);
      res.write("AIONBAK\0");
      setTimeout(() => res.end("x"), 600);
    });
    await new Promise<void>((r) => slow.listen(0, "127.0.0.1", r));
    try {
      const c = new AionBDClient(`http://127.0.0.1:${(slow.address() as { port: number }).port}`, { timeoutMs: 200 });
      const stalled = await rejection(c.downloadBackup("b1", join(dir, "b.aionbd")));
      assert.ok(stalled instanceof ClientTimeoutError && /after 8 bytes/.test(stalled.message), String(stalled));
      assert.equal(await new AionBDClient(c.baseUrl, { timeoutMs: 2000 }).downloadBackup("b1", join(dir, "ok")), 9);
    } finally {
      slow.closeAllConnections();
      await new Promise((r) => slow.close(r));
    }
    assert.deepEqual(files(), ["ok"]);
  });

  it("waits for createBackup without a timeout, and does not retry it", async () => {
    stub.replies.push({ status: 200, body: manifest, delayMs: 600 });
    stub.replies.push({ status: 200, body: { dir: "/b", backups: [manifest], in_progress: [] }, delayMs: 600 });
    const c = new AionBDClient(stub.url, { timeoutMs: 200, retry: FAST });
    assert.equal((await c.createBackup()).name, "backup-1-0"); // longer than timeoutMs
    assert.ok((await rejection(c.listBackups())) instanceof ClientTimeoutError);
    stub.reply(503, { code: "not_ready", message: "recovering" }, { "retry-after": "0" });
    assert.ok((await rejection(c.createBackup({ collections: "a" }))) instanceof NotReadyError);
    assert.deepEqual(
      stub.requests.slice(-1).map((r) => [r.method, r.url]),
      [["POST", "/backups?collection=a"]],
    );
    assert.equal(stub.requests.length, 3);
  });
});
