/**
 * Test fixtures: the real server binary (AIONBD_BIN, default
 * target/release/aionbd of the repository) on an ephemeral port with a
 * temporary data directory, and a scripted stub HTTP server.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomUUID } from "node:crypto";
import { accessSync, constants, mkdtempSync, rmSync } from "node:fs";
import { createServer, type IncomingHttpHeaders, type Server as HttpServer } from "node:http";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** clients/js (tests run from clients/js/build-test/test). */
export const PACKAGE_DIR = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const REPO = resolve(PACKAGE_DIR, "../..");

export function serverBin(): string {
  const path = process.env.AIONBD_BIN ? resolve(process.env.AIONBD_BIN) : join(REPO, "target/release/aionbd");
  try {
    accessSync(path, constants.X_OK);
  } catch {
    throw new Error(`server binary ${path} not found: build it or set AIONBD_BIN`);
  }
  return path;
}

export interface Server {
  url: string;
  stop(): Promise<void>;
}

/** Start the server (memory only unless `env` says otherwise); resolves once it listens. */
export async function startServer(env: Record<string, string> = {}): Promise<Server> {
  const dir = mkdtempSync(join(tmpdir(), "aionbd-js-"));
  const proc: ChildProcess = spawn(
    serverBin(),
    ["--bind", "127.0.0.1:0", "--data-dir", join(dir, "data"), "--shards", "1"],
    // The suites fail authentication on purpose, many times, from one
    // address: no per-source budget (AIONBD_AUTH_FAILURE_LIMIT_PER_MINUTE).
    {
      env: { ...process.env, AIONBD_PERSISTENCE_ENABLED: "false", AIONBD_AUTH_FAILURE_LIMIT_PER_MINUTE: "0", ...env },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  let stderr = "";
  proc.stderr!.on("data", (d) => (stderr += d));
  const listening = new Promise<string>((ok, fail) => {
    let out = "";
    const timer = setTimeout(() => fail(new Error(`server did not start: ${stderr}`)), 15_000);
    proc.stdout!.on("data", (d) => {
      out += d;
      const m = /listening on (https?:\/\/\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        ok(m[1]!);
      }
    });
    proc.on("exit", (code) => {
      clearTimeout(timer);
      fail(new Error(`server exited (${code}): ${stderr}`));
    });
  });
  let url: string;
  try {
    url = await listening;
  } catch (e) {
    proc.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  return {
    url,
    stop: async () => {
      if (proc.exitCode === null) {
        const exited = new Promise((r) => proc.once("exit", r));
        proc.kill("SIGTERM");
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export const uniqueName = () => `t-${randomUUID().slice(0, 12)}`;

export interface Recorded {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: string;
  at: number;
}

export interface Reply {
  status: number;
  body: string | object;
  headers?: Record<string, string>;
  delayMs?: number;
  /** Send the body chunked and drop the connection after this many bytes (a stream broken midway). */
  breakAfter?: number;
}

/** A scripted HTTP server: answers `replies` in order (then `fallback`), records every request. */
export class Stub {
  readonly requests: Recorded[] = [];
  readonly replies: Reply[] = [];
  fallback: Reply = { status: 200, body: { status: "live", uptime_ms: 1 } };
  url = "";
  readonly #server: HttpServer;

  constructor() {
    this.#server = createServer((req, res) => {
      let body = "";
      req.on("data", (d) => (body += d));
      req.on("end", () => {
        this.requests.push({ method: req.method!, url: req.url!, headers: req.headers, body, at: Date.now() });
        const reply = this.replies.shift() ?? this.fallback;
        const text = typeof reply.body === "string" ? reply.body : JSON.stringify(reply.body);
        setTimeout(() => {
          res.writeHead(reply.status, { "content-type": "application/json", ...reply.headers });
          if (reply.breakAfter === undefined) {
            res.end(text);
          } else {
            res.write(text.slice(0, reply.breakAfter), () => res.destroy()); // no last chunk
          }
        }, reply.delayMs ?? 0);
      });
    });
  }

  static async start(): Promise<Stub> {
    const stub = new Stub();
    await new Promise<void>((r) => stub.#server.listen(0, "127.0.0.1", r));
    const addr = stub.#server.address() as { port: number };
    stub.url = `http://127.0.0.1:${addr.port}`;
    return stub;
  }

  reply(status: number, body: string | object, headers?: Record<string, string>): this {
    this.replies.push({ status, body, headers });
    return this;
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise((r) => this.#server.close(r));
  }
}
