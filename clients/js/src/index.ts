/**
 * Client of the AIONBD vector database server, for Node >= 18 and browsers
 * (global fetch, no dependencies).
 *
 *     import { AionBDClient } from "aionbd";
 *     const client = new AionBDClient("http://127.0.0.1:8080");
 *     await client.createCollection("demo", 4);
 */

export {
  AionBDClient,
  BATCH_MAX_POINTS,
  CollectionExport,
  DEFAULT_RETRY,
  MAX_BODY_BYTES,
  VERSION,
  retryDelayMs,
  type BackupOptions,
  type BulkUpsertOptions,
  type BulkUpsertResult,
  type Call,
  type ClientOptions,
  type IterPagesOptions,
  type ListPointsOptions,
  type RetryPolicy,
  type SearchOptions,
  type SearchTopKOptions,
} from "./client.js";
export * from "./errors.js";
export * from "./filter.js";
export type * from "./types.js";
export { AionBDClient as default } from "./client.js";
