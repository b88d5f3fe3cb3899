"""What the sync and async clients share around one HTTP exchange: the retry
policy, turning an httpx answer into a result or a typed error, and turning
httpx failures into typed errors."""

from __future__ import annotations

import email.utils
import json
import random
import ssl
import time
from dataclasses import dataclass
from typing import Any, Optional, TypeVar, Union

import httpx

from ._errors import (
    AionBDError,
    ApiError,
    ClientTimeoutError,
    ConnectError,
    InvalidResponseError,
    TLSError,
    TransportError,
    api_error_class,
)
from ._routes import Call

T = TypeVar("T")

Verify = Union[bool, str, ssl.SSLContext]
"""TLS verification: True (system CAs), False (none: testing only), a path
to a PEM CA bundle, or an `ssl.SSLContext`."""


@dataclass(frozen=True)
class RetryPolicy:
    """When and how long to wait before sending a request again.

    Only calls that are safe to repeat are retried (reads, upserts, deletes;
    not `create_collection`), and only on 503, or on 429 when it carries
    `Retry-After` (a rate limit; the other 429s, point cap, memory budget or
    quota, do not clear by waiting). The wait before retry n (0-based) is
    drawn uniformly from [d/2, d] with d = min(backoff_max, backoff * 2**n),
    and is at least the server's `Retry-After`. A `Retry-After` longer than
    `max_retry_after` is not waited for: the error is raised at once.
    """

    max_retries: int = 3
    backoff: float = 0.1
    backoff_max: float = 5.0
    max_retry_after: float = 60.0

    def delay(self, attempt: int, err: ApiError) -> Optional[float]:
        """Seconds to wait before retry `attempt`, or None: do not retry."""
        if attempt >= self.max_retries:
            return None
        if err.status == 429 and err.retry_after is None or err.status not in (429, 503):
            return None
        if err.retry_after is not None and err.retry_after > self.max_retry_after:
            return None
        d = min(self.backoff_max, self.backoff * 2**attempt)
        return max(random.uniform(d / 2, d), err.retry_after or 0.0)


NO_RETRY = RetryPolicy(max_retries=0)


def ssl_context(verify: Verify) -> Union[bool, ssl.SSLContext]:
    return ssl.create_default_context(cafile=verify) if isinstance(verify, str) else verify


def retry_after(value: Optional[str]) -> Optional[float]:
    """`Retry-After` as seconds: delta-seconds or an HTTP date."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _snippet(body: bytes) -> str:
    return body[:500].decode("utf-8", errors="replace")


def result(call: Call[T], resp: httpx.Response) -> T:
    """The parsed result of a 2xx answer; raise for anything else."""
    rid = resp.headers.get("x-request-id")
    where = {"method": call.method, "path": call.path}
    if not 200 <= resp.status_code < 300:
        raise api_error(resp, call)
    try:
        data: Any = resp.text if call.text else json.loads(resp.content)
    except ValueError:
        raise InvalidResponseError(
            f"{call.method} {call.path}: HTTP {resp.status_code} answer is not JSON",
            status=resp.status_code, request_id=rid, body=_snippet(resp.content), **where,
        ) from None
    try:
        return call.parse(data)
    except (ValueError, KeyError, TypeError) as e:
        raise InvalidResponseError(
            f"{call.method} {call.path}: unexpected answer: {e}",
            status=resp.status_code, request_id=rid, body=_snippet(resp.content), **where,
        ) from None


def api_error(resp: httpx.Response, call: Call[Any]) -> ApiError:
    """The typed error for an error answer; a body that is not the server's
    `{"code","message"}` (e.g. from a proxy) keeps its first bytes as message."""
    try:
        body = json.loads(resp.content)
        code, message = body["code"], body["message"]
        if not isinstance(code, str) or not isinstance(message, str):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        code, message = "", _snippet(resp.content) or resp.reason_phrase
    cls = api_error_class(resp.status_code, code)
    return cls(
        resp.status_code,
        code,
        message,
        request_id=resp.headers.get("x-request-id"),
        retry_after=retry_after(resp.headers.get("retry-after")),
        method=call.method,
        path=call.path,
    )


def _is_tls(e: BaseException) -> bool:
    seen = set()
    cur: Optional[BaseException] = e
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, ssl.SSLError):
            return True
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return "SSL" in str(e) or "CERTIFICATE" in str(e)


def transport_error(e: httpx.HTTPError, call: Call[Any], base_url: str) -> AionBDError:
    where = {"method": call.method, "path": call.path}
    what = f"{call.method} {base_url}{call.path}"
    if isinstance(e, httpx.TimeoutException):
        return ClientTimeoutError(f"{what}: timed out ({type(e).__name__})", **where)
    if isinstance(e, httpx.ConnectError):
        if _is_tls(e):
            return TLSError(f"{what}: TLS handshake failed: {e}", **where)
        return ConnectError(f"{what}: cannot connect: {e}", **where)
    return TransportError(f"{what}: {type(e).__name__}: {e}", **where)


def check_stream(call: Call[Any], resp: httpx.Response, first: bytes) -> None:
    """A streamed 2xx answer must have the route's content type and a body
    (`first` is its first chunk): a proxy's page is not a backup."""
    ctype = resp.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != call.media or not first:
        raise invalid_stream(call, resp, first)


def invalid_stream(call: Call[Any], resp: httpx.Response, first: bytes) -> InvalidResponseError:
    ctype = resp.headers.get("content-type", "").split(";")[0].strip().lower()
    why = "is empty" if ctype == call.media else f"is {ctype or 'untyped'}, not {call.media}"
    return InvalidResponseError(
        f"{call.method} {call.path}: HTTP {resp.status_code} answer {why}",
        status=resp.status_code, request_id=resp.headers.get("x-request-id"), body=_snippet(first),
        method=call.method, path=call.path,
    )


def broken_stream(e: httpx.HTTPError, call: Call[Any], base_url: str, received: int) -> AionBDError:
    """A failure while reading a streamed answer: it broke off (a stream that
    fails midway on the server ends without its last chunk) or stalled past
    the timeout. Never retried: the request is not sent again."""
    err = transport_error(e, call, base_url)
    note = f" (after {received} bytes of the answer)"
    return type(err)(err.message + note, method=call.method, path=call.path)
