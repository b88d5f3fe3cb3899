import {
  AionBDError,
  ApiError,
  BulkUpsertError,
  ClientTimeoutError,
  ConnectError,
  InvalidResponseError,
  PayloadTooLargeError,
  TLSError,
  TransportError,
  apiErrorClass,
} from "./errors.js";
import { Filter, type FilterJSON } from "./filter.js";
import type {
  BackupManifest,
  CollectionResponse,
  CountResponse,
  DeleteBackupResponse,
  DeleteCollectionResponse,
  DeletePointResponse,
  DistanceResponse,
  ExportHeader,
  ListBackupsResponse,
  ListCollectionsResponse,
  ListPointsResponse,
  LiveResponse,
  Metric,
  MetricsResponse,
  PayloadUpdateResponse,
  PointInput,
  PointPayload,
  PointResponse,
  ReadyResponse,
  SearchMode,
  SearchResponse,
  SearchTopKBatchResponse,
  SearchTopKResponse,
  UpsertPointResponse,
  UpsertPointsBatchResponse,
  Vector,
} from "./types.js";

export const VERSION = "0.1.0";
/** Server default `AIONBD_UPSERT_BATCH_MAX_POINTS`. */
export const BATCH_MAX_POINTS = 256;
/** Server default `AIONBD_MAX_BODY_BYTES` (8 MiB). */
export const MAX_BODY_BYTES = 8 << 20;

/**
 * When and how long to wait before sending a request again. Only calls safe
 * to repeat are retried (reads, upserts, deletes; not `createCollection`),
 * on 503, or on 429 with `Retry-After` (a rate limit; other 429s do not clear
 * by waiting). Retry n (0-based) waits a uniform draw from [d/2, d] with
 * d = min(backoffMaxMs, backoffMs * 2^n), and at least `Retry-After`; a
 * `Retry-After` above `maxRetryAfterMs` is not waited for.
 */
export interface RetryPolicy {
  maxRetries: number;
  backoffMs: number;
  backoffMaxMs: number;
  maxRetryAfterMs: number;
}

export const DEFAULT_RETRY: Readonly<RetryPolicy> = Object.freeze({
  maxRetries: 3,
  backoffMs: 100,
  backoffMaxMs: 5000,
  maxRetryAfterMs: 60_000,
});

/** Milliseconds to wait before retry `attempt`, or null: do not retry. */
export function retryDelayMs(policy: RetryPolicy, attempt: number, err: ApiError): number | null {
  if (attempt >= policy.maxRetries) return null;
  if (err.status !== 503 && !(err.status === 429 && err.retryAfterMs !== null)) return null;
  if (err.retryAfterMs !== null && err.retryAfterMs > policy.maxRetryAfterMs) return null;
  const d = Math.min(policy.backoffMaxMs, policy.backoffMs * 2 ** attempt);
  return Math.max(d / 2 + Math.random() * (d / 2), err.retryAfterMs ?? 0);
}

export interface ClientOptions {
  baseUrl?: string;
  /** Per attempt, default 5000. */
  timeoutMs?: number;
  /** Sent as `x-api-key`. */
  apiKey?: string | null;
  /** An opaque token or a JWT, sent as `Authorization: Bearer ...`. */
  bearerToken?: string | null;
  headers?: Record<string, string>;
  retry?: Partial<RetryPolicy>;
  /** Body budget of `bulkUpsert`, default 1 MiB. */
  maxBodyBytes?: number;
  /** A fetch implementation to use instead of the global one (e.g. undici's
   * `fetch` bound to an `Agent` with a private CA). */
  fetch?: typeof globalThis.fetch;
}

export interface SearchOptions {
  metric?: Metric;
  mode?: SearchMode;
  /** In (0, 1]; `auto` answers at this recall (server default 0.95). */
  targetRecall?: number;
  filter?: Filter | FilterJSON;
  /** Default true. */
  includePayload?: boolean;
  /** HNSW beam width (`hnsw`, or the graph in `auto`). */
  ef?: number;
  /** IVF lists probed (`ivf`, or IVF in `auto`). */
  nprobe?: number;
}

export interface SearchTopKOptions extends SearchOptions {
  /** Default 10; null lets the server choose. */
  limit?: number | null;
}

export interface ListPointsOptions {
  /** Offset mode: skip this many ids (at most 100000). */
  offset?: number;
  /** Default 100 (the server's); null lets the server choose. */
  limit?: number | null;
  /** Cursor mode: ids strictly greater than this one. */
  afterId?: number | null;
}

export interface IterPagesOptions extends ListPointsOptions {
  /** Follow `next_after_id` ("cursor", default, any size) or `next_offset` ("offset"). */
  paging?: "cursor" | "offset";
}

export interface BulkUpsertOptions {
  /** 1..256, default 256. */
  batchSize?: number;
  /** Default: the client's `maxBodyBytes`. */
  maxBodyBytes?: number;
  /** Called after each batch: points stored so far, and the input's length if it has one. */
  onProgress?: (written: number, total: number | null) => void;
}

export interface BulkUpsertResult {
  written: number;
  created: number;
  updated: number;
  requests: number;
}

export interface BackupOptions {
  /** Back up only these collections (one name or several); default: all the credential may. */
  collections?: string | Iterable<string>;
}

/** One request: what to send and how to read the answer. */
export interface Call<T> {
  method: string;
  path: string;
  parse: (data: unknown) => T;
  body?: string;
  /** Query parameters; an array repeats its parameter. */
  query?: Record<string, number | string | readonly string[]>;
  /** Safe to send again after 429/503. */
  retry: boolean;
  /** The answer is text, not JSON. */
  text?: boolean;
  /** The server may take long to answer (it writes a backup): no timeout. */
  long?: boolean;
  /** The answer is streamed, of this content type: read by the export and
   * download methods, never by `execute`. */
  media?: string;
}

const NDJSON = "application/x-ndjson";
const BACKUP = "application/octet-stream";

/** The JSON type a field must have; `?` also allows null. */
type Kind = "string" | "number" | "boolean" | "object" | "array" | "number?";

function kindOk(kind: Kind, v: unknown): boolean {
  if (kind === "number?") return v === null || typeof v === "number";
  if (kind === "array") return Array.isArray(v);
  if (kind === "object") return typeof v === "object" && v !== null && !Array.isArray(v);
  return typeof v === kind;
}

/** A parser that checks the answer is an object whose fields have their kinds
 * (a `null` where a number belongs is an invalid answer, not a result). */
function shape<T>(fields: Record<string, Kind>): (data: unknown) => T {
  return (data) => {
    if (!kindOk("object", data)) throw new Error("expected a JSON object");
    for (const [name, kind] of Object.entries(fields)) {
      const value = (data as Record<string, unknown>)[name];
      if (!kindOk(kind, value)) throw new Error(`field '${name}' is ${JSON.stringify(value)}, not ${kind}`);
    }
    return data as T;
  };
}

function vector(v: Vector): number[] {
  const out = Array.from(v);
  for (const x of out) {
    if (typeof x !== "number" || !Number.isFinite(x)) {
      throw new RangeError(`vector components must be finite numbers (JSON has no NaN or Infinity), got ${x}`);
    }
  }
  return out;
}

function checkId(id: number): number {
  if (!Number.isSafeInteger(id) || id < 0) {
    throw new RangeError(`point ids are integers in 0..2^53-1 here, got ${id}`);
  }
  return id;
}

function pointJSON(p: PointInput): string {
  const t = p as readonly [number, Vector, PointPayload?];
  const o = p as { id: number; values: Vector; payload?: PointPayload };
  const [id, values, payload] = Array.isArray(p) ? [t[0], t[1], t[2]] : [o.id, o.values, o.payload];
  const out: Record<string, unknown> = { id: checkId(id), values: vector(values) };
  if (payload !== undefined) out.payload = payload;
  return JSON.stringify(out);
}

function collectionPath(name: string): string {
  return `/collections/${encodeURIComponent(name.trim())}`;
}

function backupPath(name: string): string {
  return `/backups/${encodeURIComponent(name)}`;
}

function collectionsQuery(o: BackupOptions): Record<string, readonly string[]> {
  const names = o.collections === undefined ? [] : typeof o.collections === "string" ? [o.collections] : [...o.collections];
  return names.length ? { collection: names } : {};
}

function pointPath(collection: string, id: number): string {
  return `${collectionPath(collection)}/points/${checkId(id)}`;
}

function utf8Length(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c < 0xdc00) (n += 4), i++;
    else n += 3;
  }
  return n;
}

function retryAfterMs(value: string | null): number | null {
  if (value === null) return null;
  if (/^\s*\d+\s*$/.test(value)) return Number(value) * 1000;
  const when = Date.parse(value);
  return Number.isNaN(when) ? null : Math.max(0, when - Date.now());
}

const TLS_CODES = /CERT|SSL|TLS|SELF_SIGNED|UNABLE_TO_VERIFY|UNABLE_TO_GET_ISSUER/;
const CONNECT_CODES = new Set([
  "ECONNREFUSED",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "UND_ERR_CONNECT_TIMEOUT",
]);

function transportError(e: unknown, call: Call<unknown>, url: string): AionBDError {
  const context = { method: call.method, path: call.path, cause: e };
  const what = `${call.method} ${url}`;
  const err = e as { name?: string; message?: string; cause?: { code?: string; message?: string } };
  if (err?.name === "TimeoutError" || err?.name === "AbortError") {
    return new ClientTimeoutError(`${what}: timed out`, context);
  }
  const code = err?.cause?.code ?? "";
  const detail = err?.cause?.message ?? err?.message ?? String(e);
  if (TLS_CODES.test(code)) return new TLSError(`${what}: TLS handshake failed: ${detail}`, context);
  if (CONNECT_CODES.has(code)) return new ConnectError(`${what}: cannot connect: ${detail}`, context);
  if (code === "" && err?.name === "TypeError" && err.cause === undefined) {
    return new ConnectError(`${what}: cannot connect: ${detail}`, context); // browsers say no more
  }
  return new TransportError(`${what}: ${detail}`, context);
}

/** A failure while reading a streamed answer: it broke off (a stream that
 * fails on the server ends without its last chunk) or stalled past the
 * timeout. Never retried. */
function streamError(e: unknown, call: Call<unknown>, url: string, timedOut: boolean, received: number): AionBDError {
  const context = { method: call.method, path: call.path, cause: e };
  const note = ` (after ${received} bytes of the answer)`;
  if (timedOut) return new ClientTimeoutError(`${call.method} ${url}: timed out${note}`, context);
  const err = e as { message?: string; cause?: { message?: string } };
  const detail = [err?.message ?? String(e), err?.cause?.message].filter(Boolean).join(": ");
  return new TransportError(`${call.method} ${url}: ${detail}${note}`, context);
}

/** The typed error of an error answer whose body is `text`. */
function apiError(res: Response, text: string, call: Call<unknown>): ApiError {
  let code = "";
  let message = text.slice(0, 500) || res.statusText;
  try {
    const body = JSON.parse(text);
    if (typeof body?.code === "string" && typeof body?.message === "string") ({ code, message } = body);
  } catch {
    // not the server's JSON (e.g. a proxy's page): keep its text
  }
  const Class = apiErrorClass(res.status, code);
  const fields = {
    status: res.status,
    code,
    message,
    requestId: res.headers.get("x-request-id"),
    retryAfterMs: retryAfterMs(res.headers.get("retry-after")),
  };
  return new Class(fields, { method: call.method, path: call.path });
}

function invalidResponse(res: Response, call: Call<unknown>, why: string, body: string): InvalidResponseError {
  const fields = { status: res.status, requestId: res.headers.get("x-request-id"), body: body.slice(0, 500) };
  return new InvalidResponseError(`${call.method} ${call.path}: HTTP ${res.status} ${why}`, fields, {
    method: call.method,
    path: call.path,
  });
}

/** Aborts a streamed request when the server keeps it waiting longer than
 * `ms` (for the answer to start, or for the next chunk); the wait for the
 * reader between chunks does not count. */
class Stall {
  readonly controller = new AbortController();
  #timer: ReturnType<typeof setTimeout> | undefined;
  constructor(readonly ms: number) {}

  get fired(): boolean {
    return this.controller.signal.aborted;
  }

  arm(): void {
    this.disarm();
    this.#timer = setTimeout(() => this.controller.abort(new DOMException("timed out", "TimeoutError")), this.ms);
  }

  disarm(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}

/** An open 2xx answer whose body is read chunk by chunk (once). */
class BodyStream {
  received = 0;
  constructor(
    readonly res: Response,
    readonly call: Call<unknown>,
    readonly url: string,
    readonly stall: Stall,
  ) {}

  /** The body's chunks; stopping early (break, return) cancels the rest. */
  async *chunks(): AsyncGenerator<Uint8Array> {
    const reader = this.res.body?.getReader();
    if (reader === undefined) return;
    let done = false;
    try {
      for (;;) {
        let next: ReadableStreamReadResult<Uint8Array>;
        this.stall.arm();
        try {
          next = await reader.read();
        } catch (e) {
          throw streamError(e, this.call, this.url, this.stall.fired, this.received);
        } finally {
          this.stall.disarm();
        }
        if (next.done) {
          done = true;
          return;
        }
        this.received += next.value.byteLength;
        yield next.value;
      }
    } finally {
      if (!done) await reader.cancel().catch(() => {});
    }
  }

  invalid(why: string, body = ""): InvalidResponseError {
    return invalidResponse(this.res, this.call, why, body);
  }
}

/** The lines of a UTF-8 body (without their `\n`). */
async function* lines(chunks: AsyncIterable<Uint8Array>): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  let rest = "";
  for await (const chunk of chunks) {
    const parts = (rest + decoder.decode(chunk, { stream: true })).split("\n");
    rest = parts.pop()!;
    yield* parts;
  }
  rest += decoder.decode();
  if (rest) yield rest;
}

/**
 * `exportCollection`: the collection's `header` (its first line), then its
 * points, in no set order (partition by partition), all at one cut, by `for await` (once). Values are as
 * the server sends them: infinities as ±1e39, NaN as null. Leaving the loop
 * early (`break`) closes the answer; call `close()` if you do not iterate.
 */
export class CollectionExport implements AsyncIterable<PointResponse> {
  readonly header: ExportHeader;
  readonly #lines: AsyncGenerator<string>;
  readonly #body: BodyStream;
  #read = false;

  constructor(header: ExportHeader, rest: AsyncGenerator<string>, body: BodyStream) {
    this.header = header;
    this.#lines = rest;
    this.#body = body;
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<PointResponse> {
    if (this.#read) throw new Error("an export is read once: call exportCollection again");
    this.#read = true;
    let count = 0;
    for await (const line of this.#lines) {
      if (!line.trim()) continue;
      let point: PointResponse;
      try {
        point = answer.point(JSON.parse(line));
      } catch (e) {
        throw this.#body.invalid(`line ${count + 2} of the export is not a point: ${(e as Error).message}`, line);
      }
      count += 1;
      yield point;
    }
    if (count !== this.header.points) {
      throw this.#body.invalid(`the export holds ${count} points, its header says ${this.header.points}`);
    }
  }

  /** Stop reading and close the answer. */
  async close(): Promise<void> {
    this.#read = true;
    await this.#lines.return(undefined);
  }
}

/** The part of node:fs/promises the downloads use. */
interface FileHandle {
  write(data: Uint8Array, offset: number, length: number): Promise<{ bytesWritten: number }>;
  sync(): Promise<void>;
  close(): Promise<void>;
}
interface NodeFs {
  open(path: string, flags: string): Promise<FileHandle>;
  rename(from: string, to: string): Promise<void>;
  rm(path: string, options: { force: boolean }): Promise<void>;
}

// A specifier in a variable: bundlers for browsers leave it alone, and the
// package keeps no static import of a Node module.
const NODE_FS = "node:fs/promises";

/** node:fs/promises, imported when a download needs it (only in Node). */
async function nodeFs(method: string): Promise<NodeFs> {
  try {
    return (await import(/* webpackIgnore: true */ /* @vite-ignore */ NODE_FS)) as NodeFs;
  } catch (e) {
    throw new Error(`${method} writes a file: it needs Node.js (node:fs)`, { cause: e });
  }
}

/** What each answer must look like. */
const answer = {
  live: shape<LiveResponse>({ status: "string", uptime_ms: "number" }),
  ready: shape<ReadyResponse>({ status: "string", uptime_ms: "number", checks: "object" }),
  metrics: shape<MetricsResponse>({
    uptime_ms: "number",
    ready: "boolean",
    http_requests_total: "number",
    http_responses_5xx_total: "number",
    collections: "number",
    points: "number",
  }),
  distance: shape<DistanceResponse>({ metric: "string", value: "number" }),
  collection: shape<CollectionResponse>({ name: "string", dimension: "number", point_count: "number" }),
  collections: shape<ListCollectionsResponse>({ collections: "array" }),
  deletedCollection: shape<DeleteCollectionResponse>({ name: "string", deleted: "boolean" }),
  upserted: shape<UpsertPointResponse>({ id: "number", created: "boolean" }),
  batch: shape<UpsertPointsBatchResponse>({ created: "number", updated: "number", results: "array" }),
  point: shape<PointResponse>({ id: "number", values: "array", payload: "object" }),
  deletedPoint: shape<DeletePointResponse>({ id: "number", deleted: "boolean" }),
  page: shape<ListPointsResponse>({
    points: "array",
    total: "number",
    next_offset: "number?",
    next_after_id: "number?",
  }),
  count: shape<CountResponse>({ count: "number" }),
  updated: shape<PayloadUpdateResponse>({ updated: "number" }),
  top1: shape<SearchResponse>({ id: "number", metric: "string", value: "number", mode: "string" }),
  topk: shape<SearchTopKResponse>({ metric: "string", mode: "string", hits: "array" }),
  batchSearch: shape<SearchTopKBatchResponse>({ metric: "string", results: "array" }),
  exportHeader: shape<ExportHeader>({ aionbd_export: "number", collection: "object", points: "number", lsn: "number" }),
  manifest: shape<BackupManifest>({
    format: "number",
    aionbd_version: "string",
    created_unix_ms: "number",
    consistency: "string",
    collections: "array",
    points: "number",
  }),
  backups: shape<ListBackupsResponse>({ dir: "string", backups: "array", in_progress: "array" }),
  deletedBackup: shape<DeleteBackupResponse>({ name: "string", deleted: "boolean" }),
};

const streamed = (): never => {
  throw new TypeError("a streamed answer: read it with the export or download methods");
};

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Client of the AIONBD HTTP API. Every method returns a promise of the
 * server's JSON answer (snake_case, as sent) or rejects with an `AionBDError`.
 */
export class AionBDClient {
  readonly baseUrl: string;
  readonly timeoutMs: number;
  readonly retry: RetryPolicy;
  readonly maxBodyBytes: number;
  readonly #headers: Record<string, string>;
  readonly #fetch: typeof globalThis.fetch;

  constructor(baseUrl?: string | ClientOptions, options: ClientOptions = {}) {
    const opts = typeof baseUrl === "object" ? baseUrl : { ...options, baseUrl: baseUrl ?? options.baseUrl };
    this.baseUrl = (opts.baseUrl ?? "http://127.0.0.1:8080").replace(/\/+$/, "");
    this.timeoutMs = opts.timeoutMs ?? 5000;
    this.retry = { ...DEFAULT_RETRY, ...opts.retry };
    this.maxBodyBytes = opts.maxBodyBytes ?? MAX_BODY_BYTES;
    this.#fetch = opts.fetch ?? globalThis.fetch.bind(globalThis);
    this.#headers = { accept: "application/json" };
    if (opts.apiKey != null) this.#headers["x-api-key"] = opts.apiKey;
    if (opts.bearerToken != null) this.#headers["authorization"] = `Bearer ${opts.bearerToken}`;
    Object.assign(this.#headers, opts.headers);
  }

  /** Send one request (retrying per the policy) and parse its answer. */
  async execute<T>(call: Call<T>): Promise<T> {
    const url = this.#url(call);
    const headers = call.body === undefined ? this.#headers : { ...this.#headers, "content-type": "application/json" };
    for (let attempt = 0; ; attempt++) {
      let res: Response;
      let text: string;
      try {
        const signal = call.long ? undefined : AbortSignal.timeout(this.timeoutMs);
        res = await this.#fetch(url, { method: call.method, headers, body: call.body, signal });
        text = await res.text();
      } catch (e) {
        throw transportError(e, call, url);
      }
      if (res.ok) {
        try {
          return call.parse(call.text ? text : JSON.parse(text));
        } catch (e) {
          const why = e instanceof SyntaxError ? "answer is not JSON" : `unexpected answer: ${(e as Error).message}`;
          throw invalidResponse(res, call, why, text);
        }
      }
      const err = apiError(res, text, call);
      const delay = call.retry ? retryDelayMs(this.retry, attempt, err) : null;
      if (delay === null) throw err;
      await sleep(delay);
    }
  }

  #url(call: Call<unknown>): string {
    const query: string[] = [];
    for (const [k, v] of Object.entries(call.query ?? {})) {
      for (const item of typeof v === "object" ? v : [v]) query.push(`${k}=${encodeURIComponent(item)}`);
    }
    return this.baseUrl + call.path + (query.length ? `?${query.join("&")}` : "");
  }

  /**
   * Send a call whose answer is streamed: its open 2xx answer, of the call's
   * content type. Retried as `execute` does while the answer is an error,
   * never once a body is being read. `timeoutMs` bounds each wait for the
   * server (the answer to start, each chunk), not the whole transfer.
   */
  async #openStream(call: Call<unknown>): Promise<BodyStream> {
    const url = this.#url(call);
    const headers = { ...this.#headers, accept: `${call.media}, application/json` };
    for (let attempt = 0; ; attempt++) {
      const stall = new Stall(this.timeoutMs);
      let res: Response;
      let text = "";
      stall.arm();
      try {
        res = await this.#fetch(url, { method: call.method, headers, signal: stall.controller.signal });
        const ctype = (res.headers.get("content-type") ?? "").split(";")[0]!.trim().toLowerCase();
        if (res.ok && ctype === call.media) return new BodyStream(res, call, url, stall);
        text = await res.text();
        if (res.ok) throw invalidResponse(res, call, `answer is ${ctype || "untyped"}, not ${call.media}`, text);
      } catch (e) {
        throw e instanceof AionBDError ? e : transportError(e, call, url);
      } finally {
        stall.disarm();
      }
      const err = apiError(res, text, call);
      const delay = call.retry ? retryDelayMs(this.retry, attempt, err) : null;
      if (delay === null) throw err;
      await sleep(delay);
    }
  }

  /** Stream a call's answer to `path + ".tmp"`, sync it, rename it to `path`;
   * its size. On any failure the temporary file is removed. */
  async #download(call: Call<unknown>, path: string, method: string): Promise<number> {
    const fs = await nodeFs(method);
    const body = await this.#openStream(call);
    const tmp = `${path}.tmp`;
    let file: FileHandle | undefined;
    try {
      for await (const chunk of body.chunks()) {
        file ??= await fs.open(tmp, "w");
        for (let at = 0; at < chunk.byteLength; ) {
          at += (await file.write(chunk, at, chunk.byteLength - at)).bytesWritten;
        }
      }
      if (file === undefined) throw body.invalid("answer is empty");
      await file.sync();
      const done = file;
      file = undefined;
      await done.close();
      await fs.rename(tmp, path);
      return body.received;
    } catch (e) {
      await file?.close().catch(() => {});
      await fs.rm(tmp, { force: true }).catch(() => {});
      throw e;
    }
  }

  /** One request; `body` is JSON-encoded unless already a string. */
  #call<T>(method: string, path: string, parse: (d: unknown) => T, extra: Partial<Call<T>> & { json?: unknown } = {}) {
    const { json, ...rest } = extra;
    const body = json === undefined ? rest.body : JSON.stringify(json);
    return this.execute<T>({ method, path, parse, retry: true, ...rest, body });
  }

  live(): Promise<LiveResponse> {
    return this.#call("GET", "/live", answer.live);
  }

  /** Rejects with NotReadyError (503) when not ready; never retried. */
  ready(): Promise<ReadyResponse> {
    return this.#call("GET", "/ready", answer.ready, { retry: false });
  }

  /** Alias of `ready()` kept from the original SDK. */
  health(): Promise<ReadyResponse> {
    return this.ready();
  }

  metrics(): Promise<MetricsResponse> {
    return this.#call("GET", "/metrics", answer.metrics);
  }

  metricsPrometheus(): Promise<string> {
    return this.#call("GET", "/metrics/prometheus", (d) => d as string, { text: true });
  }

  distance(left: Vector, right: Vector, metric: Metric = "dot"): Promise<DistanceResponse> {
    const json = { left: vector(left), right: vector(right), metric };
    return this.#call("POST", "/distance", answer.distance, { json });
  }

  /** Not retried: a repeat after a lost answer would be a 409. */
  createCollection(name: string, dimension: number, strictFinite = true): Promise<CollectionResponse> {
    const json = { name, dimension, strict_finite: strictFinite };
    return this.#call("POST", "/collections", answer.collection, { json, retry: false });
  }

  listCollections(): Promise<ListCollectionsResponse> {
    return this.#call("GET", "/collections", answer.collections);
  }

  getCollection(name: string): Promise<CollectionResponse> {
    return this.#call("GET", collectionPath(name), answer.collection);
  }

  deleteCollection(name: string): Promise<DeleteCollectionResponse> {
    return this.#call("DELETE", collectionPath(name), answer.deletedCollection);
  }

  upsertPoint(collection: string, id: number, values: Vector, payload?: PointPayload): Promise<UpsertPointResponse> {
    const json = payload === undefined ? { values: vector(values) } : { values: vector(values), payload };
    return this.#call("PUT", pointPath(collection, id), answer.upserted, { json });
  }

  /** 1-256 points in one all-or-nothing request (`bulkUpsert` for any number). */
  upsertPointsBatch(collection: string, points: Iterable<PointInput>): Promise<UpsertPointsBatchResponse> {
    const body = `{"points":[${Array.from(points, pointJSON).join(",")}]}`;
    return this.#call("POST", `${collectionPath(collection)}/points`, answer.batch, { body });
  }

  getPoint(collection: string, id: number): Promise<PointResponse> {
    return this.#call("GET", pointPath(collection, id), answer.point);
  }

  deletePoint(collection: string, id: number): Promise<DeletePointResponse> {
    return this.#call("DELETE", pointPath(collection, id), answer.deletedPoint);
  }

  /** One page of ids, ascending: from `offset`, or after `afterId` (cursor). */
  listPoints(collection: string, options: ListPointsOptions = {}): Promise<ListPointsResponse> {
    const { offset = 0, limit = 100, afterId = null } = options;
    if (afterId != null && offset) throw new RangeError("offset must be 0 when afterId is given");
    const query: Record<string, number> = {};
    if (limit != null) query.limit = limit;
    if (afterId != null) query.after_id = checkId(afterId);
    else query.offset = offset;
    return this.#call("GET", `${collectionPath(collection)}/points`, answer.page, { query });
  }

  /** Every page from the start (or `offset` / after `afterId`). */
  async *iterPages(collection: string, options: IterPagesOptions = {}): AsyncGenerator<ListPointsResponse> {
    const { paging = "cursor", limit = null } = options;
    let page = await this.listPoints(collection, { ...options, limit });
    for (;;) {
      yield page;
      if (paging === "offset" ? page.next_offset === null : page.next_after_id === null) return;
      page = await this.listPoints(
        collection,
        paging === "offset" ? { offset: page.next_offset!, limit } : { afterId: page.next_after_id!, limit },
      );
    }
  }

  /** Every point id, ascending (options as for `iterPages`). */
  async *iterPoints(collection: string, options: IterPagesOptions = {}): AsyncGenerator<number> {
    for await (const page of this.iterPages(collection, options)) {
      for (const p of page.points) yield p.id;
    }
  }

  /**
   * The collection's export, streamed: resolves once its header line is
   * read; iterate it (`for await`) for the points, all at one cut.
   * `timeoutMs` bounds each wait for data, not the whole read.
   */
  async exportCollection(collection: string): Promise<CollectionExport> {
    const call = { method: "GET", path: `${collectionPath(collection)}/export`, parse: streamed, retry: true };
    const body = await this.#openStream({ ...call, media: NDJSON });
    const rest = lines(body.chunks());
    try {
      let first: IteratorResult<string>;
      do first = await rest.next();
      while (!first.done && !first.value.trim());
      if (first.done) throw body.invalid("answer is empty");
      let header: ExportHeader;
      try {
        header = answer.exportHeader(JSON.parse(first.value));
      } catch (e) {
        throw body.invalid(`the first line is not an export header: ${(e as Error).message}`, first.value);
      }
      return new CollectionExport(header, rest, body);
    } catch (e) {
      await rest.return(undefined);
      throw e;
    }
  }

  /**
   * Save the collection's export (NDJSON, what `aionbd import` reads) to the
   * file `path` (Node only); resolves to its size in bytes. Written to
   * `path + ".tmp"` and renamed once complete: if the answer breaks off, it
   * rejects and leaves no file (an existing one is untouched).
   */
  exportCollectionToFile(collection: string, path: string): Promise<number> {
    const call = { method: "GET", path: `${collectionPath(collection)}/export`, parse: streamed, retry: true };
    return this.#download({ ...call, media: NDJSON }, path, "exportCollectionToFile");
  }

  /**
   * Save a backup file (what `aionbd restore --from` reads) of every
   * collection this credential may back up (all with auth off or scope
   * admin, else its tenant's), or of `collections`, to `path` (Node only),
   * as `exportCollectionToFile` writes; resolves to its size in bytes.
   */
  backupToFile(path: string, options: BackupOptions = {}): Promise<number> {
    const call = { method: "GET", path: "/backup", parse: streamed, retry: true, query: collectionsQuery(options) };
    return this.#download({ ...call, media: BACKUP }, path, "backupToFile");
  }

  /**
   * Write a backup into the server's backup directory (scope admin); resolves
   * to its manifest once complete. Waits as long as that takes (no
   * `timeoutMs`; Node's own fetch still gives up on an answer after 300 s
   * unless given a `fetch` with a longer `headersTimeout`). Not retried: each
   * call writes a new backup.
   */
  createBackup(options: BackupOptions = {}): Promise<BackupManifest> {
    const query = collectionsQuery(options);
    return this.#call("POST", "/backups", answer.manifest, { query, retry: false, long: true });
  }

  /** The backups kept on the server, oldest first (scope admin). */
  listBackups(): Promise<ListBackupsResponse> {
    return this.#call("GET", "/backups", answer.backups);
  }

  /** Save the kept backup `name` to `path` (scope admin; Node only), as
   * `exportCollectionToFile` writes; resolves to its size in bytes. */
  downloadBackup(name: string, path: string): Promise<number> {
    const call = { method: "GET", path: backupPath(name), parse: streamed, retry: true };
    return this.#download({ ...call, media: BACKUP }, path, "downloadBackup");
  }

  /** Delete a kept backup (scope admin; NotFoundError if absent). */
  deleteBackup(name: string): Promise<DeleteBackupResponse> {
    return this.#call("DELETE", backupPath(name), answer.deletedBackup);
  }

  countPoints(collection: string, filter?: Filter | FilterJSON): Promise<CountResponse> {
    const json = filter === undefined ? {} : { filter };
    return this.#call("POST", `${collectionPath(collection)}/points/count`, answer.count, { json });
  }

  /** Merge `payload` into each point's payload. Any unknown id: NotFoundError, nothing changes. */
  setPayload(collection: string, ids: Iterable<number>, payload: PointPayload): Promise<PayloadUpdateResponse> {
    const json = { points: Array.from(ids, checkId), payload };
    return this.#call("POST", `${collectionPath(collection)}/points/payload/set`, answer.updated, { json });
  }

  /** Remove `keys` from each point's payload. */
  deletePayload(collection: string, ids: Iterable<number>, keys: Iterable<string>): Promise<PayloadUpdateResponse> {
    const json = { points: Array.from(ids, checkId), keys: Array.from(keys) };
    return this.#call("POST", `${collectionPath(collection)}/points/payload/delete`, answer.updated, { json });
  }

  /** The nearest point. Rejects with InvalidArgumentError if no point passes the filter. */
  searchCollection(collection: string, query: Vector, options: SearchOptions = {}): Promise<SearchResponse> {
    const json = { ...searchBody(options), query: vector(query) };
    return this.#call("POST", `${collectionPath(collection)}/search`, answer.top1, { json });
  }

  /** The `limit` nearest points, best first; the answer tells `mode` and recall. */
  searchCollectionTopK(
    collection: string,
    query: Vector,
    options: SearchTopKOptions = {},
  ): Promise<SearchTopKResponse> {
    const json = { ...searchBody(options), query: vector(query) };
    return this.#call("POST", `${collectionPath(collection)}/search/topk`, answer.topk, { json });
  }

  /** Top-k for 1-256 queries with the same options; one result per query, in order. */
  searchCollectionTopKBatch(
    collection: string,
    queries: Iterable<Vector>,
    options: SearchTopKOptions = {},
  ): Promise<SearchTopKBatchResponse> {
    const json = { ...searchBody(options), queries: Array.from(queries, vector) };
    return this.#call("POST", `${collectionPath(collection)}/search/topk/batch`, answer.batchSearch, { json });
  }

  /**
   * Write any number of points (an array, iterable or async iterable, read
   * lazily) in order, in batches under `batchSize` points and `maxBodyBytes`.
   * A 413 splits the batch in halves. Rejects with BulkUpsertError, whose
   * `written` says how many leading points of the input are stored.
   */
  async bulkUpsert(
    collection: string,
    points: Iterable<PointInput> | AsyncIterable<PointInput>,
    options: BulkUpsertOptions = {},
  ): Promise<BulkUpsertResult> {
    const { batchSize = BATCH_MAX_POINTS, onProgress } = options;
    let maxBytes = options.maxBodyBytes ?? this.maxBodyBytes;
    if (!Number.isInteger(batchSize) || batchSize < 1 || batchSize > BATCH_MAX_POINTS) {
      throw new RangeError(`batchSize must be 1..${BATCH_MAX_POINTS}, got ${batchSize}`);
    }
    const total = Array.isArray(points) ? points.length : null;
    const input: AsyncIterator<PointInput> | Iterator<PointInput> =
      Symbol.asyncIterator in points ? points[Symbol.asyncIterator]() : points[Symbol.iterator]();
    const FRAME = '{"points":[]}'.length;
    type Item = { json: string; bytes: number };
    const pending: Item[][] = [];
    let carry: Item | undefined;
    const result: BulkUpsertResult = { written: 0, created: 0, updated: 0, requests: 0 };

    const nextBatch = async (): Promise<Item[]> => {
      const batch: Item[] = [];
      let size = FRAME;
      while (batch.length < batchSize) {
        let item = carry;
        carry = undefined;
        if (item === undefined) {
          const next = await input.next();
          if (next.done) break;
          const json = pointJSON(next.value);
          item = { json, bytes: utf8Length(json) };
        }
        if (batch.length > 0 && size + item.bytes + 1 > maxBytes) {
          carry = item;
          break;
        }
        batch.push(item);
        size += item.bytes + 1;
      }
      return batch;
    };

    for (;;) {
      let batch: Item[];
      try {
        batch = pending.shift() ?? (await nextBatch());
      } catch (e) {
        throw new BulkUpsertError(result.written, e as Error);
      }
      if (batch.length === 0) return result;
      const body = `{"points":[${batch.map((b) => b.json).join(",")}]}`;
      let r: UpsertPointsBatchResponse;
      try {
        r = await this.#call("POST", `${collectionPath(collection)}/points`, answer.batch, { body });
      } catch (e) {
        if (e instanceof PayloadTooLargeError && batch.length > 1) {
          const half = batch.length >> 1;
          maxBytes = FRAME + batch.slice(0, half).reduce((n, b) => n + b.bytes + 1, 0);
          pending.unshift(batch.slice(0, half), batch.slice(half));
          continue;
        }
        throw new BulkUpsertError(result.written, e as Error);
      }
      result.requests += 1;
      result.created += r.created;
      result.updated += r.updated;
      result.written += batch.length;
      onProgress?.(result.written, total);
    }
  }
}

function searchBody(o: SearchTopKOptions): Record<string, unknown> {
  const body: Record<string, unknown> = {
    metric: o.metric,
    mode: o.mode,
    target_recall: o.targetRecall,
    filter: o.filter,
    include_payload: o.includePayload,
    ef: o.ef,
    nprobe: o.nprobe,
    limit: o.limit ?? undefined,
  };
  for (const k of Object.keys(body)) if (body[k] === undefined) delete body[k];
  return body;
}
