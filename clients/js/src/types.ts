/** Wire shapes of the server's answers (snake_case, as sent). */

export type Metric = "dot" | "l2" | "cosine";
/** Search modes a request may ask for. */
export type SearchMode = "auto" | "exact" | "ivf" | "hnsw";
/** What actually ran; `"ivf+hnsw"` when partitions differed. */
export type AnswerMode = "exact" | "ivf" | "hnsw" | "ivf+hnsw" | (string & {});

export type PayloadScalar = string | number | boolean;
export type PayloadValue = PayloadScalar | PayloadScalar[];
export type PointPayload = Record<string, PayloadValue>;

/** A vector: an array of numbers or a typed array (Float32Array, ...). */
export type Vector = ArrayLike<number>;

/** A point to write: `{ id, values, payload? }` or `[id, values, payload?]`. */
export type PointInput =
  | { id: number; values: Vector; payload?: PointPayload }
  | readonly [number, Vector]
  | readonly [number, Vector, PointPayload | undefined];

export interface LiveResponse {
  status: string;
  uptime_ms: number;
}

export interface ReadyResponse {
  status: string;
  uptime_ms: number;
  checks: { engine_loaded: boolean; storage_available: boolean };
}

/** `GET /metrics`: one flat object; the keys below always exist. */
export interface MetricsResponse {
  uptime_ms: number;
  ready: boolean;
  engine_loaded: boolean;
  storage_available: boolean;
  http_requests_total: number;
  http_requests_in_flight: number;
  http_responses_2xx_total: number;
  http_responses_4xx_total: number;
  http_responses_5xx_total: number;
  http_request_duration_us_total: number;
  http_request_duration_us_max: number;
  http_request_duration_us_avg: number;
  collections: number;
  points: number;
  l2_indexes: number;
  persistence_enabled: boolean;
  persistence_writes: number;
  [key: string]: number | boolean | string;
}

export interface DistanceResponse {
  metric: Metric;
  value: number;
}

export interface CollectionResponse {
  name: string;
  dimension: number;
  strict_finite: boolean;
  point_count: number;
  /** Newer servers add fields (`partitions`; `index` on getCollection). */
  [key: string]: unknown;
}

export interface ListCollectionsResponse {
  collections: CollectionResponse[];
}

export interface DeleteCollectionResponse {
  name: string;
  deleted: boolean;
}

export interface UpsertPointResponse {
  id: number;
  /** false: an existing point was replaced. */
  created: boolean;
}

export interface UpsertPointsBatchResponse {
  created: number;
  updated: number;
  results: UpsertPointResponse[];
}

export interface PointResponse {
  id: number;
  values: number[];
  payload: PointPayload;
}

export interface DeletePointResponse {
  id: number;
  deleted: boolean;
}

export interface ListPointsResponse {
  points: Array<{ id: number }>;
  total: number;
  next_offset: number | null;
  next_after_id: number | null;
}

export interface CountResponse {
  count: number;
}

export interface PayloadUpdateResponse {
  /** Points whose payload actually changed. */
  updated: number;
}

/** How an answer was computed: `recall_at_k: 1` on exact answers,
 * `estimated_recall` (the index's calibrated recall) on approximate ones. */
export interface AnswerInfo {
  mode: AnswerMode;
  recall_at_k?: number;
  estimated_recall?: number;
}

export interface SearchHit {
  id: number;
  value: number;
  /** Absent with `includePayload: false` or an empty payload. */
  payload?: PointPayload;
}

export interface SearchResponse extends AnswerInfo {
  id: number;
  metric: Metric;
  value: number;
  payload?: PointPayload;
}

export interface SearchTopKResponse extends AnswerInfo {
  metric: Metric;
  hits: SearchHit[];
}

export interface SearchTopKBatchItem extends AnswerInfo {
  hits: SearchHit[];
}

export interface SearchTopKBatchResponse {
  metric: Metric;
  results: SearchTopKBatchItem[];
}

/** Line 1 of a collection's export (`exportCollection`). */
export interface ExportHeader {
  aionbd_export: number;
  /** As `createCollection` takes it. */
  collection: { name: string; dimension: number; strict_finite: boolean };
  /** How many points the export holds. */
  points: number;
  /** The home shard's LSN at the cut: the export holds exactly the writes logged up to it. */
  lsn: number;
}

/** One collection of a backup. */
export interface BackupCollection {
  /** As stored: `tenant::name` with auth on. */
  name: string;
  dimension: number;
  strict_finite: boolean;
  points: number;
  home_shard: number;
  lsn: number;
}

/** What a backup holds; a kept backup's also has `name` and size in `bytes`. */
export interface BackupManifest {
  format: number;
  aionbd_version: string;
  created_unix_ms: number;
  consistency: string;
  collections: BackupCollection[];
  points: number;
  bytes?: number;
  name?: string;
}

export interface ListBackupsResponse {
  /** The server's backup directory. */
  dir: string;
  /** Oldest first. */
  backups: BackupManifest[];
  /** Names of the backups being written. */
  in_progress: string[];
}

export interface DeleteBackupResponse {
  name: string;
  deleted: boolean;
}
