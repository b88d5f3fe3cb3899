"""Typed errors. Every failure of a call raises a subclass of `AionBDError`."""

from __future__ import annotations

import builtins
from typing import Dict, Optional, Type


class AionBDError(Exception):
    """Base class of every error this package raises (the original SDK's name).

    `method` and `path` name the request; the server's answer, when there was
    one, is described by the attributes of `ApiError`.
    """

    def __init__(self, message: str, *, method: str = "", path: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.method = method
        self.path = path


class ApiError(AionBDError):
    """The server answered with an error status and its `{"code","message"}` body.

    `status` is the HTTP status, `code` the server's error code (e.g.
    `not_found`), `request_id` the `x-request-id` header of the answer (quote
    it when reporting a problem), `retry_after` the `Retry-After` header in
    seconds, if any.
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        request_id: Optional[str] = None,
        retry_after: Optional[float] = None,
        method: str = "",
        path: str = "",
    ) -> None:
        super().__init__(message, method=method, path=path)
        self.status = status
        self.code = code
        self.request_id = request_id
        self.retry_after = retry_after

    def __str__(self) -> str:
        rid = f", request id {self.request_id}" if self.request_id else ""
        return f"{self.method} {self.path}: HTTP {self.status} {self.code}: {self.message}{rid}"


class InvalidArgumentError(ApiError):
    """400 `invalid_argument`: the request is malformed or semantically wrong."""


class UnauthorizedError(ApiError):
    """401 `unauthorized`: missing, unknown or expired credential."""


class ForbiddenError(ApiError):
    """403 `forbidden`: the credential's scope does not allow this write."""


class NotFoundError(ApiError):
    """404 `not_found`: no such collection or point."""


class RequestTimeoutError(ApiError):
    """408 `request_timeout`: the server gave up. On a write, the outcome is unknown."""


class ConflictError(ApiError):
    """409 `conflict`: the collection name is taken."""


class PayloadTooLargeError(ApiError):
    """413 `payload_too_large`: the body is over the server's limit."""


class ResourceExhaustedError(ApiError):
    """429 `resource_exhausted`: rate limit, point cap, memory budget or quota."""


class InternalError(ApiError):
    """500 `internal`: a server fault (e.g. the write-ahead log failed)."""


class NotReadyError(ApiError):
    """503 `not_ready`: recovering, or storage failed."""


class InsufficientStorageError(ApiError):
    """507 `insufficient_storage`: disk full; the write was not applied."""


_BY_CODE: Dict[str, Type[ApiError]] = {
    "invalid_argument": InvalidArgumentError,
    "unauthorized": UnauthorizedError,
    "forbidden": ForbiddenError,
    "not_found": NotFoundError,
    "request_timeout": RequestTimeoutError,
    "conflict": ConflictError,
    "payload_too_large": PayloadTooLargeError,
    "resource_exhausted": ResourceExhaustedError,
    "internal": InternalError,
    "not_ready": NotReadyError,
    "insufficient_storage": InsufficientStorageError,
}
_BY_STATUS: Dict[int, Type[ApiError]] = {
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
}


def api_error_class(status: int, code: str) -> Type[ApiError]:
    """The class for an error answer: by code first, then by status."""
    return _BY_CODE.get(code) or _BY_STATUS.get(status) or ApiError


class TransportError(AionBDError):
    """No usable HTTP answer: connection refused, reset, DNS failure, ..."""


class ConnectError(TransportError):
    """The server could not be reached (nothing was sent)."""


class TLSError(ConnectError):
    """The TLS handshake failed (e.g. certificate not trusted: pass `verify=`)."""


class ClientTimeoutError(TransportError, builtins.TimeoutError):
    """The client's `timeout` expired. On a write, the outcome is unknown."""


class InvalidResponseError(AionBDError):
    """The server answered 2xx with something that is not the expected JSON.

    `status` and `request_id` describe the answer; `body` holds its first bytes.
    """

    def __init__(
        self, message: str, *, status: int, request_id: Optional[str], body: str, method: str = "", path: str = ""
    ) -> None:
        super().__init__(message, method=method, path=path)
        self.status = status
        self.request_id = request_id
        self.body = body


class BulkUpsertError(AionBDError):
    """`bulk_upsert` stopped: `written` points were stored before `cause` failed
    (an `AionBDError`, or the `ValueError`/`TypeError` of a bad input point).

    Points are sent in order, so the first `written` points of the input are
    stored and none after them are (a batch is all-or-nothing).
    """

    def __init__(self, written: int, cause: Exception) -> None:
        where = {"method": cause.method, "path": cause.path} if isinstance(cause, AionBDError) else {}
        super().__init__(f"bulk upsert stopped after {written} points: {cause}", **where)
        self.written = written
        self.cause = cause
