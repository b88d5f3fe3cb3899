/**
 * What the TypeScript SDK costs per call: QPS and latency of a top-10 search
 * through `AionBDClient.searchCollectionTopK` against the same request sent
 * with a bare global `fetch`, with 1 and 8 concurrent callers, alternated in
 * one run against one release server (the method of
 * clients/python/bench_search.py, and its table).
 *
 *     cd clients/js && npm ci
 *     AIONBD_BIN=../../target/release/aionbd npm run bench -- [options]
 *
 * Options (all optional):
 *   --url URL        use a running server (a scratch collection is made and
 *                    deleted); default: start AIONBD_BIN on a free port,
 *                    memory only, --shards 1 (as the test suites do)
 *   --data DIR       DIR/base.fvecs and DIR/queries.fvecs (texmex layout);
 *                    default: random vectors
 *   --points N       points to load (default 20000 random, or all of base.fvecs)
 *   --dim D          dimension of random vectors (default 384)
 *   --queries N      distinct queries, cycled (default 1000, or all of queries.fvecs)
 *   --seconds S      length of one measured run (default 5)
 *   --rounds R       rounds; each runs raw and SDK at every caller count (default 4)
 *   --callers LIST   concurrent callers, comma separated (default 1,8)
 *   --mode MODE      search mode (default exact, as the Python bench)
 *   --limit K        top-k (default 10)
 *
 * Node runs JavaScript on one thread: the "8 callers" are 8 async loops in
 * one process sharing one event loop (each with its own client object; the
 * global fetch gives each in-flight request its own keep-alive connection).
 * What the client does per call (encode the query, parse the answer, the
 * SDK's checks) is serialized on that thread; the "client CPU" columns say
 * how busy the process was (100% = one core).
 */
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { cpus } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";

import { AionBDClient, type SearchMode } from "aionbd";

import { startServer, type Server } from "../test/helpers.js";

interface Options {
  url: string | null;
  data: string | null;
  points: number | null;
  dim: number;
  queries: number | null;
  seconds: number;
  rounds: number;
  callers: number[];
  mode: SearchMode;
  limit: number;
}

const USAGE =
  "usage: search.js [--url URL] [--data DIR] [--points N] [--dim D] [--queries N] " +
  "[--seconds S] [--rounds R] [--callers 1,8] [--mode exact] [--limit 10]";

function parseArgs(argv: string[]): Options {
  const o: Options = {
    url: null,
    data: null,
    points: null,
    dim: 384,
    queries: null,
    seconds: 5,
    rounds: 4,
    callers: [1, 8],
    mode: "exact",
    limit: 10,
  };
  const positive = (flag: string, v: string, integer = true): number => {
    const n = Number(v);
    if (!(n > 0) || (integer && !Number.isInteger(n))) throw new Error(`${flag}: expected a positive number, got ${v}\n${USAGE}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    let [flag, value] = argv[i]!.split(/=(.*)/s, 2) as [string, string | undefined];
    if (flag === "--help" || flag === "-h") {
      console.log(USAGE);
      process.exit(0);
    }
    if (value === undefined) {
      value = argv[++i];
      if (value === undefined) throw new Error(`${flag} needs a value\n${USAGE}`);
    }
    switch (flag) {
      case "--url":
        o.url = value.replace(/\/+$/, "");
        break;
      case "--data":
        o.data = value;
        break;
      case "--points":
        o.points = positive(flag, value);
        break;
      case "--dim":
        o.dim = positive(flag, value);
        break;
      case "--queries":
        o.queries = positive(flag, value);
        break;
      case "--seconds":
        o.seconds = positive(flag, value, false);
        break;
      case "--rounds":
        o.rounds = positive(flag, value);
        break;
      case "--callers":
        o.callers = value.split(",").map((c) => positive(flag, c));
        break;
      case "--mode":
        o.mode = value as SearchMode;
        break;
      case "--limit":
        o.limit = positive(flag, value);
        break;
      default:
        throw new Error(`unknown option ${flag}\n${USAGE}`);
    }
  }
  return o;
}

/** Rows of an .fvecs file (little-endian int32 d, then d float32), at most `max`. */
function readFvecs(path: string, max: number | null): Float32Array[] {
  const buf = readFileSync(path);
  const rows: Float32Array[] = [];
  let at = 0;
  while (at < buf.length && (max === null || rows.length < max)) {
    const d = buf.readInt32LE(at);
    at += 4;
    if (d <= 0 || at + 4 * d > buf.length) throw new Error(`${path}: row ${rows.length} is malformed (d = ${d})`);
    if (rows.length > 0 && d !== rows[0]!.length) throw new Error(`${path}: row ${rows.length} has d = ${d}, not ${rows[0]!.length}`);
    const row = new Float32Array(d);
    for (let j = 0; j < d; j++) row[j] = buf.readFloatLE(at + 4 * j);
    at += 4 * d;
    rows.push(row);
  }
  return rows;
}

/** A seeded PRNG (mulberry32): the same random data on every run. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function randomRows(n: number, dim: number, random: () => number): Float32Array[] {
  return Array.from({ length: n }, () => Float32Array.from({ length: dim }, random));
}

type Search = (query: number[]) => Promise<void>;

interface Run {
  qps: number;
  p50: number;
  p99: number;
  /** Client process CPU over the run, in % of one core. */
  cpu: number;
  /** Client process CPU time per call, in microseconds. */
  cpuUs: number;
}

function percentile(sorted: Float64Array, p: number): number {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]! : NaN;
}

/** Searches per second with `callers` concurrent loops, each with its own
 * `makeCall()`, for `seconds`; latency of each call in ms. */
async function rate(makeCall: () => Search, callers: number, seconds: number, queries: number[][]): Promise<Run> {
  const latencies: number[] = [];
  const cpu0 = process.cpuUsage();
  const start = performance.now();
  const stop = start + seconds * 1000;
  const worker = async (i: number) => {
    const call = makeCall();
    let k = Math.floor((i * queries.length) / callers);
    for (;;) {
      const t0 = performance.now();
      if (t0 >= stop) return;
      await call(queries[k++ % queries.length]!);
      latencies.push(performance.now() - t0);
    }
  };
  await Promise.all(Array.from({ length: callers }, (_, i) => worker(i)));
  const elapsed = performance.now() - start;
  const used = process.cpuUsage(cpu0);
  const sorted = Float64Array.from(latencies).sort();
  return {
    qps: (latencies.length * 1000) / elapsed,
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    cpu: ((used.user + used.system) / 1000 / elapsed) * 100,
    cpuUs: (used.user + used.system) / latencies.length,
  };
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const ms = (x: number) => x.toFixed(2);
/** Python's formula: (1/QPS_sdk - 1/QPS_raw) x callers = the extra time of one call, in us. */
const costUs = (raw: number, sdk: number, callers: number) => (1 / sdk - 1 / raw) * 1e6 * callers;
const signed = (us: number) => `${us >= 0 ? "+" : ""}${us.toFixed(0)} us`;

/** Wait until the server builds no index (a build after the load would run during the first rounds). */
async function settle(client: AionBDClient): Promise<void> {
  const deadline = Date.now() + 300_000;
  let quiet = 0;
  while (quiet < 2 && Date.now() < deadline) {
    const m = (await client.metrics()) as unknown as Record<string, unknown>;
    quiet = m.l2_index_build_in_flight === 0 && (m.http_requests_in_flight as number) <= 1 ? quiet + 1 : 0;
    await new Promise((r) => setTimeout(r, 500));
  }
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  let base: Float32Array[];
  let queryRows: Float32Array[];
  let source: string;
  if (o.data !== null) {
    base = readFvecs(join(o.data, "base.fvecs"), o.points);
    queryRows = readFvecs(join(o.data, "queries.fvecs"), o.queries);
    if (base.length === 0 || queryRows.length === 0) throw new Error(`${o.data}: no vectors`);
    if (queryRows[0]!.length !== base[0]!.length) throw new Error(`${o.data}: queries and base differ in dimension`);
    source = o.data;
  } else {
    const random = prng(7);
    base = randomRows(o.points ?? 20_000, o.dim, random);
    queryRows = randomRows(o.queries ?? 1000, o.dim, random);
    source = "random in [0, 1), seed 7";
  }
  const dim = base[0]!.length;
  // Both paths send the same plain arrays (what JSON.stringify writes for a float32 value).
  const queries = queryRows.map((q) => Array.from(q));

  let server: Server | null = null;
  const stopServer = async () => {
    const s = server;
    server = null;
    await s?.stop();
  };
  process.once("SIGINT", () => void stopServer().then(() => process.exit(130)));
  const name = o.url === null ? "bench" : `bench-${randomUUID().slice(0, 8)}`;
  let url = o.url;
  let admin: AionBDClient | null = null;
  try {
    if (url === null) {
      server = await startServer();
      url = server.url;
    }
    admin = new AionBDClient(url, { timeoutMs: 120_000 });
    await admin.createCollection(name, dim);
    const t0 = performance.now();
    let shown = 0;
    await admin.bulkUpsert(
      name,
      base.map((v, i) => [i, v] as const),
      {
        onProgress: (written, total) => {
          if (written - shown >= 10_000 || written === total) {
            shown = written;
            process.stderr.write(`loaded ${written} / ${total}${process.stderr.isTTY ? "\r" : "\n"}`);
          }
        },
      },
    );
    const loadS = (performance.now() - t0) / 1000;
    process.stderr.write(`${process.stderr.isTTY ? "\n" : ""}loaded ${base.length} x ${dim} in ${loadS.toFixed(1)} s; waiting for the server to settle\n`);
    await settle(admin);

    const target = `${url}/collections/${encodeURIComponent(name)}/search/topk`;
    const { limit, mode } = o;
    const sdk = (): Search => {
      const client = new AionBDClient(url!);
      return async (query) => {
        await client.searchCollectionTopK(name, query, { limit, mode });
      };
    };
    const raw = (): Search => async (query) => {
      const res = await fetch(target, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ query, limit, mode }),
      });
      if (!res.ok) throw new Error(`HTTP ${res.status}: ${await res.text()}`);
      await res.json();
    };

    // Both paths give the same answer.
    const a = await admin.searchCollectionTopK(name, queries[0]!, { limit, mode });
    const res = await fetch(target, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ query: queries[0], limit, mode }),
    });
    const b = (await res.json()) as { hits: { id: number }[] };
    const ids = (h: { id: number }[]) => JSON.stringify(h.map((x) => x.id));
    if (a.hits.length !== Math.min(limit, base.length) || ids(a.hits) !== ids(b.hits)) {
      throw new Error(`SDK and raw answers differ: ${ids(a.hits)} vs ${ids(b.hits)}`);
    }
    const nPoints = base.length;
    base = []; // let the loaded vectors go

    const cpuCount = cpus().length;
    console.log(
      `${a.mode} top-${limit} over ${nPoints}` +
        ` x ${dim} (${source}), ${queries.length} queries cycled, ${o.seconds} s per run, ${o.rounds} rounds, ` +
        `node ${process.version}, ${cpuCount} CPUs, server ${o.url === null ? "started here (--shards 1, memory only)" : url}`,
    );
    console.log(
      `client: one node process; the ${Math.max(...o.callers)} callers are async loops on its one event loop ` +
        "(JavaScript is single-threaded), each with its own client object; client CPU = that process, 100% = one core",
    );
    console.log("");

    // Warm-up (JIT, connections), not counted.
    for (const make of [raw, sdk]) await rate(make, Math.max(...o.callers), Math.min(1, o.seconds), queries);

    console.log("| round | callers | order | raw fetch QPS | SDK QPS | SDK / raw | SDK cost per call | raw p50 / p99 ms | SDK p50 / p99 ms | client CPU raw / SDK | client CPU per call raw / SDK |");
    console.log("|---|---|---|---|---|---|---|---|---|---|---|");
    const runs = new Map<number, { raw: Run; sdk: Run }[]>(o.callers.map((c) => [c, []]));
    for (let r = 1; r <= o.rounds; r++) {
      for (const callers of o.callers) {
        const sdkFirst = r % 2 === 0; // alternate which goes first, so drift hits both alike
        let qRaw: Run;
        let qSdk: Run;
        if (sdkFirst) {
          qSdk = await rate(sdk, callers, o.seconds, queries);
          qRaw = await rate(raw, callers, o.seconds, queries);
        } else {
          qRaw = await rate(raw, callers, o.seconds, queries);
          qSdk = await rate(sdk, callers, o.seconds, queries);
        }
        runs.get(callers)!.push({ raw: qRaw, sdk: qSdk });
        console.log(
          `| ${r} | ${callers} | ${sdkFirst ? "SDK, raw" : "raw, SDK"} | ${qRaw.qps.toFixed(0)} | ${qSdk.qps.toFixed(0)} | ` +
            `${(qSdk.qps / qRaw.qps).toFixed(3)} | ${signed(costUs(qRaw.qps, qSdk.qps, callers))} | ` +
            `${ms(qRaw.p50)} / ${ms(qRaw.p99)} | ${ms(qSdk.p50)} / ${ms(qSdk.p99)} | ${qRaw.cpu.toFixed(0)}% / ${qSdk.cpu.toFixed(0)}% | ` +
            `${qRaw.cpuUs.toFixed(0)} / ${qSdk.cpuUs.toFixed(0)} us |`,
        );
      }
    }

    console.log("");
    console.log(`median over ${o.rounds} rounds (SDK / raw and cost: median of the per-round values):`);
    console.log("");
    console.log("| callers | raw fetch QPS | SDK QPS | SDK / raw | SDK cost per call | raw p50 / p99 ms | SDK p50 / p99 ms | client CPU per call raw / SDK |");
    console.log("|---|---|---|---|---|---|---|---|");
    for (const [callers, rs] of runs) {
      const m = (f: (x: { raw: Run; sdk: Run }) => number) => median(rs.map(f));
      console.log(
        `| ${callers} | ${m((x) => x.raw.qps).toFixed(0)} | ${m((x) => x.sdk.qps).toFixed(0)} | ` +
          `${m((x) => x.sdk.qps / x.raw.qps).toFixed(3)} | ${signed(m((x) => costUs(x.raw.qps, x.sdk.qps, callers)))} | ` +
          `${ms(m((x) => x.raw.p50))} / ${ms(m((x) => x.raw.p99))} | ${ms(m((x) => x.sdk.p50))} / ${ms(m((x) => x.sdk.p99))} | ` +
          `${m((x) => x.raw.cpuUs).toFixed(0)} / ${m((x) => x.sdk.cpuUs).toFixed(0)} us |`,
      );
    }
    const one = runs.get(1);
    if (one !== undefined) {
      const us = median(one.map((x) => costUs(x.raw.qps, x.sdk.qps, 1)));
      console.log("");
      console.log(`SDK overhead per call, 1 caller: ${signed(us)} (1/QPS_sdk - 1/QPS_raw, median of the rounds)`);
    }
    const cpu = median([...runs.values()].flat().map((x) => x.sdk.cpuUs - x.raw.cpuUs));
    console.log(
      `SDK client CPU per call: ${signed(cpu)} (node process CPU time per call, SDK minus raw, median of all runs; ` +
        "it does not depend on how fast the server answers)",
    );
  } finally {
    if (o.url !== null && admin !== null) await admin.deleteCollection(name).catch(() => {});
    await stopServer();
  }
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
