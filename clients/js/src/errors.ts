/** Typed errors: every failed call rejects with a subclass of `AionBDError`. */

export interface ErrorContext {
  method?: string;
  path?: string;
  cause?: unknown;
}

/** Base class of every error this package throws (the original SDK's name). */
export class AionBDError extends Error {
  readonly method: string;
  readonly path: string;

  constructor(message: string, context: ErrorContext = {}) {
    super(message, context.cause === undefined ? undefined : { cause: context.cause });
    this.name = new.target.name;
    this.method = context.method ?? "";
    this.path = context.path ?? "";
  }
}

export interface ApiErrorFields {
  status: number;
  code: string;
  message: string;
  requestId: string | null;
  retryAfterMs: number | null;
}

/**
 * The server answered with an error status and its `{"code","message"}` body.
 * `code` is the server's error code (`""` when the body was not the server's
 * JSON, e.g. a proxy's error page), `requestId` the `x-request-id` header.
 */
export class ApiError extends AionBDError {
  readonly status: number;
  readonly code: string;
  readonly requestId: string | null;
  /** The `Retry-After` header, in milliseconds. */
  readonly retryAfterMs: number | null;

  constructor(fields: ApiErrorFields, context: ErrorContext = {}) {
    const rid = fields.requestId ? `, request id ${fields.requestId}` : "";
    super(`${context.method} ${context.path}: HTTP ${fields.status} ${fields.code}: ${fields.message}${rid}`, context);
    this.status = fields.status;
    this.code = fields.code;
    this.requestId = fields.requestId;
    this.retryAfterMs = fields.retryAfterMs;
    this.serverMessage = fields.message;
  }

  /** The server's `message`, without the request description. */
  readonly serverMessage: string;
}

/** 400 `invalid_argument`. */
export class InvalidArgumentError extends ApiError {}
/** 401 `unauthorized`. */
export class UnauthorizedError extends ApiError {}
/** 403 `forbidden`. */
export class ForbiddenError extends ApiError {}
/** 404 `not_found`. */
export class NotFoundError extends ApiError {}
/** 408 `request_timeout`: on a write, the outcome is unknown. */
export class RequestTimeoutError extends ApiError {}
/** 409 `conflict`. */
export class ConflictError extends ApiError {}
/** 413 `payload_too_large`. */
export class PayloadTooLargeError extends ApiError {}
/** 429 `resource_exhausted`: rate limit, point cap, memory budget or quota. */
export class ResourceExhaustedError extends ApiError {}
/** 500 `internal`. */
export class InternalError extends ApiError {}
/** 503 `not_ready`. */
export class NotReadyError extends ApiError {}
/** 507 `insufficient_storage`: disk full, the write was not applied. */
export class InsufficientStorageError extends ApiError {}

const BY_CODE: Record<string, typeof ApiError> = {
  invalid_argument: InvalidArgumentError,
  unauthorized: UnauthorizedError,
  forbidden: ForbiddenError,
  not_found: NotFoundError,
  request_timeout: RequestTimeoutError,
  conflict: ConflictError,
  payload_too_large: PayloadTooLargeError,
  resource_exhausted: ResourceExhaustedError,
  internal: InternalError,
  not_ready: NotReadyError,
  insufficient_storage: InsufficientStorageError,
};

const BY_STATUS: Record<number, typeof ApiError> = {
  400: InvalidArgumentError,
  401: UnauthorizedError,
  403: ForbiddenError,
  404: NotFoundError,
  408: RequestTimeoutError,
  409: ConflictError,
  413: PayloadTooLargeError,
  429: ResourceExhaustedError,
  500: InternalError,
  503: NotReadyError,
  507: InsufficientStorageError,
};

/** The class for an error answer: by code first, then by status. */
export function apiErrorClass(status: number, code: string): typeof ApiError {
  return (Object.hasOwn(BY_CODE, code) ? BY_CODE[code] : BY_STATUS[status]) ?? ApiError;
}

/** No usable HTTP answer (connection reset, DNS failure, ...). */
export class TransportError extends AionBDError {}
/** The server could not be reached. */
export class ConnectError extends TransportError {}
/** The TLS handshake failed (e.g. an untrusted certificate: see the README on custom CAs). */
export class TLSError extends ConnectError {}
/** The client's `timeoutMs` expired; on a write, the outcome is unknown. */
export class ClientTimeoutError extends TransportError {}

/** A 2xx answer that is not the expected JSON; `body` holds its start. */
export class InvalidResponseError extends AionBDError {
  readonly status: number;
  readonly requestId: string | null;
  readonly body: string;

  constructor(
    message: string,
    fields: { status: number; requestId: string | null; body: string },
    context: ErrorContext,
  ) {
    super(message, context);
    this.status = fields.status;
    this.requestId = fields.requestId;
    this.body = fields.body;
  }
}

/**
 * `bulkUpsert` stopped: the first `written` points of the input are stored,
 * none after them (a batch is all or nothing); `cause` is the failure (an
 * `AionBDError`, or the error an input point raised, e.g. a RangeError).
 */
export class BulkUpsertError extends AionBDError {
  readonly written: number;
  override readonly cause: Error;

  constructor(written: number, cause: Error) {
    const where = cause instanceof AionBDError ? { method: cause.method, path: cause.path } : {};
    super(`bulk upsert stopped after ${written} points: ${cause.message}`, { ...where, cause });
    this.written = written;
    this.cause = cause;
  }
}
