"""Credentials, retries, timeouts, TLS and broken answers.

The exact credential headers are checked against the stub (the real server's
auth modes are in test_auth.py); retries against the stub's scripted 429/503
answers and, for the real rate limit, against the server."""

from __future__ import annotations

import json
import socket
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Tuple

import pytest
import trustme

import aionbd
from aionbd import RetryPolicy

from .conftest import Server, Stub

FAST = RetryPolicy(backoff=0.01, backoff_max=0.05)


def test_api_key_header(stub: Stub) -> None:
    with aionbd.Client(stub.url, api_key="secret-key-a") as c:
        c.live()
    headers = stub.requests[0][2]
    assert headers["x-api-key"] == "secret-key-a" and "authorization" not in headers


def test_bearer_token_header(stub: Stub) -> None:
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJ0ZW5hbnQiOiJhIn0.c2ln"
    with aionbd.Client(stub.url, bearer_token=jwt) as c:
        c.live()
    headers = stub.requests[0][2]
    assert headers["authorization"] == f"Bearer {jwt}" and "x-api-key" not in headers


def test_both_credentials_and_extra_headers(stub: Stub) -> None:
    with aionbd.Client(stub.url, api_key="k", bearer_token="t", headers={"x-request-id": "r1"}) as c:
        c.live()
    h = stub.requests[0][2]
    assert (h["x-api-key"], h["authorization"], h["x-request-id"]) == ("k", "Bearer t", "r1")
    assert h["user-agent"].startswith("aionbd-python/")


def test_unauthorized_is_typed(stub: Stub) -> None:
    stub.reply(401, {"code": "unauthorized", "message": "missing credential"}, {"x-request-id": "rid-401"})
    with aionbd.Client(stub.url) as c, pytest.raises(aionbd.UnauthorizedError) as e:
        c.list_collections()
    assert (e.value.status, e.value.code, e.value.request_id) == (401, "unauthorized", "rid-401")
    stub.reply(403, {"code": "forbidden", "message": "read-only key"})
    with aionbd.Client(stub.url) as c, pytest.raises(aionbd.ForbiddenError):
        c.delete_collection("x")
    assert len(stub.requests) == 2  # neither is retried


def test_json_body_and_content_type(stub: Stub) -> None:
    stub.reply(200, {"id": 5, "created": True})
    with aionbd.Client(stub.url) as c:
        c.upsert_point(" demo ", 5, [1, 2], {"a": 1})
    method, path, headers, body = stub.requests[0]
    assert (method, path, headers["content-type"]) == ("PUT", "/collections/demo/points/5", "application/json")
    assert json.loads(body) == {"values": [1.0, 2.0], "payload": {"a": 1}}


def test_retry_on_429_with_retry_after(stub: Stub) -> None:
    stub.reply(429, {"code": "resource_exhausted", "message": "rate limit"}, {"retry-after": "1"})
    stub.reply(503, {"code": "not_ready", "message": "recovering"})
    with aionbd.Client(stub.url, retry=FAST) as c:
        assert c.live().status == "live"
    assert len(stub.requests) == 3
    assert stub.times[1] - stub.times[0] >= 0.95  # waited the server's Retry-After
    assert stub.times[2] - stub.times[1] < 0.5  # then the (short) backoff


def test_retry_gives_up_after_max_retries(stub: Stub) -> None:
    for _ in range(5):
        stub.reply(503, {"code": "not_ready", "message": "recovering"}, {"x-request-id": "r503"})
    with aionbd.Client(stub.url, retry=RetryPolicy(max_retries=2, backoff=0.01)) as c:
        with pytest.raises(aionbd.NotReadyError) as e:
            c.get_point("demo", 1)
    assert len(stub.requests) == 3 and e.value.request_id == "r503"


def test_backoff_grows_and_is_jittered() -> None:
    p = RetryPolicy(backoff=0.1, backoff_max=1.0)
    err = aionbd.NotReadyError(503, "not_ready", "x")
    for attempt, top in [(0, 0.1), (1, 0.2), (2, 0.4)]:
        delays = {p.delay(attempt, err) for _ in range(50)}
        assert all(top / 2 <= d <= top for d in delays) and len(delays) > 1  # type: ignore[operator]
    assert p.delay(3, err) is None  # max_retries = 3
    assert RetryPolicy(backoff=1, backoff_max=2, max_retries=9).delay(8, err) <= 2  # type: ignore[operator]
    limited = aionbd.ResourceExhaustedError(429, "resource_exhausted", "x", retry_after=3.0)
    assert p.delay(0, limited) == 3.0
    assert p.delay(0, aionbd.ResourceExhaustedError(429, "resource_exhausted", "quota")) is None
    assert RetryPolicy(max_retry_after=2).delay(0, limited) is None


def test_429_without_retry_after_is_not_retried(stub: Stub) -> None:
    stub.reply(429, {"code": "resource_exhausted", "message": "memory budget"})
    with aionbd.Client(stub.url, retry=FAST) as c, pytest.raises(aionbd.ResourceExhaustedError):
        c.upsert_point("demo", 1, [1.0])
    assert len(stub.requests) == 1


def test_create_collection_is_not_retried(stub: Stub) -> None:
    stub.reply(503, {"code": "not_ready", "message": "recovering"}, {"retry-after": "0"})
    with aionbd.Client(stub.url, retry=FAST) as c, pytest.raises(aionbd.NotReadyError):
        c.create_collection("demo", 3)
    assert len(stub.requests) == 1


def test_idempotent_writes_are_retried(stub: Stub) -> None:
    replies: List[Tuple[Dict[str, Any], Callable[[aionbd.Client], Any]]] = [
        ({"id": 1, "created": True}, lambda c: c.upsert_point("d", 1, [1.0])),
        ({"created": 1, "updated": 0, "results": [{"id": 1, "created": True}]},
         lambda c: c.upsert_points_batch("d", [(1, [1.0])])),
        ({"id": 1, "deleted": True}, lambda c: c.delete_point("d", 1)),
        ({"name": "d", "deleted": True}, lambda c: c.delete_collection("d")),
        ({"updated": 1}, lambda c: c.set_payload("d", [1], {"a": 1})),
        ({"updated": 1}, lambda c: c.delete_payload("d", [1], ["a"])),
    ]
    with aionbd.Client(stub.url, retry=FAST) as c:
        for ok, call in replies:
            stub.reply(503, {"code": "not_ready", "message": "recovering"}, {"retry-after": "0"})
            stub.reply(200, ok)
            call(c)
    assert len(stub.requests) == 2 * len(replies)


def test_ready_503_is_an_answer_not_retried(stub: Stub) -> None:
    stub.reply(503, {"code": "not_ready", "message": "storage unavailable"})
    with aionbd.Client(stub.url, retry=FAST) as c, pytest.raises(aionbd.NotReadyError) as e:
        c.ready()
    assert len(stub.requests) == 1 and e.value.message == "storage unavailable"


def test_real_rate_limit_retry_after() -> None:
    """The server's own 429 carries Retry-After (seconds to the next minute);
    a wait longer than max_retry_after raises at once with retry_after set."""
    s = Server({"AIONBD_AUTH_RATE_LIMIT_PER_MINUTE": "2"})
    try:
        with aionbd.Client(s.url, retry=RetryPolicy(max_retry_after=0)) as c:
            with pytest.raises(aionbd.ResourceExhaustedError) as e:
                for _ in range(3):
                    c.live()
        err = e.value
        assert err.status == 429 and err.code == "resource_exhausted" and err.request_id
        assert err.retry_after is not None and 0 <= err.retry_after <= 60
    finally:
        s.stop()


@pytest.mark.parametrize(
    "status, body, ctype, error",
    [
        (200, b"<html>hello</html>", "text/html", aionbd.InvalidResponseError),
        (200, b'{"status": "live"', "application/json", aionbd.InvalidResponseError),  # truncated
        (200, b'{"unexpected": true}', "application/json", aionbd.InvalidResponseError),  # wrong shape
        (200, b"[1, 2]", "application/json", aionbd.InvalidResponseError),
        (200, b'{"status": "live", "uptime_ms": null}', "application/json", aionbd.InvalidResponseError),
        (200, b'{"status": "live", "uptime_ms": "1"}', "application/json", aionbd.InvalidResponseError),
        (502, b"<html>Bad Gateway</html>", "text/html", aionbd.ApiError),
        (500, b'{"code":"internal","message":"wal failed"}', "application/json", aionbd.InternalError),
        (507, b'{"code":"insufficient_storage","message":"disk full"}', "application/json",
         aionbd.InsufficientStorageError),
    ],
)
def test_broken_or_error_answers_are_typed(stub: Stub, status: int, body: bytes, ctype: str, error: type) -> None:
    stub.replies.append((status, {"content-type": ctype, "x-request-id": "rid"}, body))
    with aionbd.Client(stub.url, retry=RetryPolicy(max_retries=0)) as c, pytest.raises(error) as e:
        c.live()
    assert type(e.value) is error
    assert getattr(e.value, "status") == status and getattr(e.value, "request_id") == "rid"


def test_proxy_error_page_keeps_status_and_text(stub: Stub) -> None:
    stub.replies.append((502, {"content-type": "text/html"}, b"<html>Bad Gateway</html>"))
    with aionbd.Client(stub.url) as c, pytest.raises(aionbd.ApiError) as e:
        c.live()
    assert (e.value.status, e.value.code) == (502, "") and "Bad Gateway" in e.value.message


def test_unreachable_server() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    with aionbd.Client(f"http://127.0.0.1:{port}") as c, pytest.raises(aionbd.ConnectError) as e:
        c.live()
    assert isinstance(e.value, aionbd.TransportError) and not isinstance(e.value, aionbd.TLSError)
    assert str(port) in str(e.value)


def test_client_timeout(stub: Stub) -> None:
    stub.delay = 1.0
    with aionbd.Client(stub.url, timeout=0.2) as c, pytest.raises(aionbd.ClientTimeoutError) as e:
        c.live()
    assert isinstance(e.value, TimeoutError) and isinstance(e.value, aionbd.TransportError)


@pytest.fixture(scope="module")
def tls_server() -> Iterator[Tuple[Server, str]]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    with tempfile.TemporaryDirectory() as d:
        paths = {k: str(Path(d) / f"{k}.pem") for k in ("ca", "cert", "key")}
        ca.cert_pem.write_to_path(paths["ca"])
        cert.private_key_pem.write_to_path(paths["key"])
        with open(paths["cert"], "wb") as f:
            for blob in cert.cert_chain_pems:
                f.write(blob.bytes())
        s = Server({"AIONBD_TLS_ENABLED": "true", "AIONBD_TLS_CERT_PATH": paths["cert"],
                    "AIONBD_TLS_KEY_PATH": paths["key"]})
        yield s, paths["ca"]
        s.stop()


def test_tls_with_custom_ca(tls_server: Any, name: str) -> None:
    s, ca_path = tls_server
    assert s.url.startswith("https://")
    with aionbd.Client(s.url, verify=ca_path) as c:
        assert c.live().status == "live"
        assert c.create_collection(name, 2).name == name


def test_tls_untrusted_certificate(tls_server: Any) -> None:
    s, _ = tls_server
    with aionbd.Client(s.url) as c, pytest.raises(aionbd.TLSError) as e:
        c.live()
    assert isinstance(e.value, aionbd.ConnectError)


def test_plain_http_to_tls_server_fails_typed(tls_server: Any) -> None:
    s, _ = tls_server
    with aionbd.Client(s.url.replace("https://", "http://"), timeout=3) as c:
        with pytest.raises(aionbd.TransportError):
            c.live()
