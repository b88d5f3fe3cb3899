"""Credentials against the real server, one server per auth mode (docs/auth.md):
API keys (with a read-only key), opaque bearer tokens and HS256 JWTs minted
here. A good credential works end to end; none or a wrong one is a typed 401,
a read-only key's write a typed 403, and neither is retried (counted in the
server's own `auth_failures_total` / `auth_forbidden_total`); tenants see
only their own collections."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from typing import Any, Callable, Dict, Iterator, List, Tuple

import pytest

import aionbd
from aionbd import RetryPolicy

from .conftest import Server

SECRET = "aionbd-sdk-tests-hs256-secret-0123456789"  # 32+ bytes
# Retries that would fire at once on a 503: a 401/403 must still be sent once.
EAGER = RetryPolicy(max_retries=3, backoff=0.001, backoff_max=0.01)
POINTS: List[Any] = [(1, [1.0, 0.0]), (2, [0.0, 1.0], {"tag": "b"}), (3, [0.7, 0.7])]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def mint_jwt(claims: Dict[str, Any], secret: str = SECRET) -> str:
    """An HS256 JWT, made with the standard library only."""
    head = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64url(json.dumps(claims).encode())
    sig = hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64url(sig)}"


def jwt_for(tenant: str, ttl: int = 600, **extra: Any) -> str:
    return mint_jwt({"tenant": tenant, "sub": "sdk-test", "exp": int(time.time()) + ttl, **extra})


Creds = Dict[str, str]


class Mode:
    """An auth mode: the server's environment, a good credential (tenant-a)
    and wrong ones, as `Client` keyword arguments."""

    def __init__(self, env: Dict[str, str], good: Callable[[], Creds], wrong: Callable[[], List[Creds]]) -> None:
        self.env, self.good, self.wrong = env, good, wrong


MODES = {
    "api_key": Mode(
        {"AIONBD_AUTH_MODE": "api_key",
         "AIONBD_AUTH_API_KEYS": "tenant-a:key-a,tenant-b:key-b,tenant-a:key-r",
         "AIONBD_AUTH_API_KEY_SCOPES": "key-r:read"},
        lambda: {"api_key": "key-a"},
        lambda: [{"api_key": "key-x"}, {"bearer_token": "key-a"}],  # a key is not a bearer token
    ),
    "bearer_token": Mode(
        {"AIONBD_AUTH_MODE": "bearer_token", "AIONBD_AUTH_BEARER_TOKENS": "tenant-a:tok-a"},
        lambda: {"bearer_token": "tok-a"},
        lambda: [{"bearer_token": "tok-x"}, {"api_key": "tok-a"}],
    ),
    "jwt": Mode(
        {"AIONBD_AUTH_MODE": "jwt", "AIONBD_AUTH_JWT_HS256_SECRET": SECRET},
        lambda: {"bearer_token": jwt_for("tenant-a")},
        lambda: [
            {"bearer_token": mint_jwt({"tenant": "tenant-a", "exp": int(time.time()) + 600},
                                      secret="another-secret-of-32-bytes-or-more!!")},
            {"bearer_token": jwt_for("tenant-a", ttl=-3600)},  # expired, past the 60 s leeway
            {"bearer_token": mint_jwt({"tenant": "tenant-a"})},  # no exp
        ],
    ),
}


@pytest.fixture(scope="module", params=sorted(MODES))
def mode(request: pytest.FixtureRequest) -> Iterator[Tuple[Mode, Server]]:
    m = MODES[request.param]
    with Server(m.env) as s:
        yield m, s


@pytest.fixture(scope="module")
def api_key_server() -> Iterator[Server]:
    with Server(MODES["api_key"].env) as s:
        yield s


def counter(url: str, creds: Creds, key: str) -> int:
    with aionbd.Client(url, **creds) as c:  # type: ignore[arg-type]
        value: int = c.metrics()[key]
        return value


def test_good_credential_works_end_to_end(mode: Tuple[Mode, Server], name: str) -> None:
    m, s = mode
    with aionbd.Client(s.url, **m.good()) as c:  # type: ignore[arg-type]
        assert c.live().status == "live" and c.ready().status == "ready"
        assert c.create_collection(name, 2).name == name
        assert c.upsert_points_batch(name, POINTS).created == 3
        assert c.upsert_point(name, 4, [0.1, 0.9]).created
        top = c.search_collection_top_k(name, [1.0, 0.0], limit=2, metric="l2")
        assert top.ids == [1, 3] and top.mode == "exact"
        assert c.search_collection(name, [0.0, 1.0], metric="dot").id == 2
        assert c.count_points(name) == 4
        names = [x.name for x in c.list_collections()]
        assert name in names and not any("::" in n for n in names)  # tenant-a's, unprefixed
        assert c.get_collection(name).point_count == 4
        c.delete_collection(name)
        assert name not in [x.name for x in c.list_collections()]


def test_missing_or_wrong_credential_is_unauthorized_and_not_retried(mode: Tuple[Mode, Server]) -> None:
    m, s = mode
    before = counter(s.url, m.good(), "auth_failures_total")
    attempts = [{}, *m.wrong()]
    for creds in attempts:
        with aionbd.Client(s.url, retry=EAGER, **creds) as c:  # type: ignore[arg-type]
            with pytest.raises(aionbd.UnauthorizedError) as e:
                c.get_point("anything", 1)  # a read: retried on 503, so a retry would show
            err = e.value
            assert (err.status, err.code) == (401, "unauthorized"), creds
            assert err.request_id and err.message and err.path == "/collections/anything/points/1"
            assert isinstance(err, aionbd.ApiError) and not isinstance(err, aionbd.ForbiddenError)
            with pytest.raises(aionbd.UnauthorizedError):
                c.upsert_point("anything", 1, [1.0, 2.0])  # an idempotent write, retried on 503
    assert counter(s.url, m.good(), "auth_failures_total") - before == 2 * len(attempts)


def test_request_id_of_a_401_is_the_callers(mode: Tuple[Mode, Server]) -> None:
    _, s = mode
    with aionbd.Client(s.url, headers={"x-request-id": "sdk-401-check"}) as c:
        with pytest.raises(aionbd.UnauthorizedError) as e:
            c.live()  # probes need a credential too (AIONBD_AUTH_OPEN_HEALTH is off)
    assert e.value.request_id == "sdk-401-check"


def test_async_client_sends_credentials(mode: Tuple[Mode, Server], name: str) -> None:
    m, s = mode

    async def run() -> None:
        async with aionbd.AsyncClient(s.url, **m.good()) as c:  # type: ignore[arg-type]
            await c.create_collection(name, 2)
            await c.upsert_points_batch(name, POINTS)
            assert (await c.search_collection_top_k(name, [0.0, 1.0], limit=1)).ids == [2]
            await c.delete_collection(name)
        async with aionbd.AsyncClient(s.url, retry=EAGER) as anonymous:
            with pytest.raises(aionbd.UnauthorizedError) as e:
                await anonymous.list_collections()
            assert (e.value.status, e.value.code) == (401, "unauthorized") and e.value.request_id

    asyncio.run(run())


def test_read_scoped_key_reads_but_cannot_write(api_key_server: Server, name: str) -> None:
    url = api_key_server.url
    with aionbd.Client(url, api_key="key-a") as writer:
        writer.create_collection(name, 2)
        writer.upsert_points_batch(name, POINTS)
    before = counter(url, {"api_key": "key-a"}, "auth_forbidden_total")
    writes: List[Callable[[aionbd.Client], Any]] = [
        lambda c: c.create_collection(name + "-r", 2),
        lambda c: c.upsert_point(name, 9, [1.0, 1.0]),
        lambda c: c.upsert_points_batch(name, [(9, [1.0, 1.0])]),
        lambda c: c.set_payload(name, [1], {"a": 1}),
        lambda c: c.delete_payload(name, [2], ["tag"]),
        lambda c: c.delete_point(name, 1),
        lambda c: c.delete_collection(name),
    ]
    with aionbd.Client(url, api_key="key-r", retry=EAGER) as reader:
        for write in writes:
            with pytest.raises(aionbd.ForbiddenError) as e:
                write(reader)
            assert (e.value.status, e.value.code) == (403, "forbidden") and e.value.request_id
        # Same tenant (tenant-a): it reads what key-a wrote, unchanged.
        assert name in [x.name for x in reader.list_collections()]
        assert reader.get_collection(name).point_count == 3
        assert reader.get_point(name, 2).payload == {"tag": "b"}
        assert reader.search_collection_top_k(name, [1.0, 0.0], limit=1, metric="l2").ids == [1]
        assert reader.count_points(name) == 3
        assert reader.distance([1, 0], [0, 1], "dot").value == 0.0
        assert isinstance(reader.metrics().points, int)
    assert counter(url, {"api_key": "key-a"}, "auth_forbidden_total") - before == len(writes)
    with aionbd.Client(url, api_key="key-a") as writer:
        writer.delete_collection(name)


def test_tenants_see_only_their_own_collections(api_key_server: Server, name: str) -> None:
    url = api_key_server.url
    with aionbd.Client(url, api_key="key-a") as a, aionbd.Client(url, api_key="key-b") as b:
        assert a.create_collection(name, 2).dimension == 2
        assert b.create_collection(name, 3).dimension == 3  # the same name, another tenant
        a.upsert_points_batch(name, POINTS)
        b.upsert_point(name, 7, [0.0, 0.0, 1.0])
        assert [(x.name, x.dimension) for x in a.list_collections()] == [(name, 2)]
        assert [(x.name, x.dimension) for x in b.list_collections()] == [(name, 3)]
        assert b.search_collection_top_k(name, [0, 0, 1], limit=10).ids == [7]
        assert a.count_points(name) == 3

        only_a = name + "-a"
        a.create_collection(only_a, 2)
        for call in (lambda: b.get_collection(only_a), lambda: b.search_collection(only_a, [1, 0]),
                     lambda: b.upsert_point(only_a, 1, [1, 0]), lambda: b.delete_collection(only_a)):
            with pytest.raises(aionbd.NotFoundError) as e:
                call()
            assert e.value.status == 404 and "::" not in e.value.message  # no tenant prefix leaks
        a.delete_collection(name)
        assert b.get_collection(name).point_count == 1  # b's collection of that name is untouched
        b.delete_collection(name)
        a.delete_collection(only_a)
