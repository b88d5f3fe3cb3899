"""docs/openapi.yaml: a valid OpenAPI 3.1 document, naming exactly the
server's routes, whose response schemas and required headers the real
binary's answers satisfy (one scripted request per route and documented
error, with auth off and on, then a bounded schemathesis run)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Set, Tuple

import httpx
import pytest
import yaml
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from .conftest import REPO, Server

SPEC_PATH = REPO / "docs" / "openapi.yaml"

# The server's routes (src/api/mod.rs `route`), which the clients cover.
ROUTES = {
    ("get", "/live"), ("get", "/ready"), ("get", "/metrics"), ("get", "/metrics/prometheus"),
    ("get", "/openapi.yaml"), ("get", "/ui"), ("post", "/distance"), ("get", "/collections"), ("post", "/collections"),
    ("get", "/collections/{name}"), ("delete", "/collections/{name}"),
    ("get", "/collections/{name}/points"), ("post", "/collections/{name}/points"),
    ("post", "/collections/{name}/points/count"), ("post", "/collections/{name}/points/payload/set"),
    ("post", "/collections/{name}/points/payload/delete"), ("get", "/collections/{name}/points/{id}"),
    ("put", "/collections/{name}/points/{id}"), ("delete", "/collections/{name}/points/{id}"),
    ("post", "/collections/{name}/search"), ("post", "/collections/{name}/search/topk"),
    ("post", "/collections/{name}/search/topk/batch"), ("get", "/collections/{name}/export"),
    ("get", "/backup"), ("post", "/backups"), ("get", "/backups"), ("get", "/backups/{backup}"),
    ("delete", "/backups/{backup}"),
}
# The write routes of API.md §8 (scope `write` or `admin`), the kept-backup
# routes (`admin`) and the metrics routes (`admin` with
# AIONBD_AUTH_METRICS_ADMIN): the operations that may answer 403.
WRITE_ROUTES = {
    ("post", "/collections"), ("delete", "/collections/{name}"), ("post", "/collections/{name}/points"),
    ("post", "/collections/{name}/points/payload/set"), ("post", "/collections/{name}/points/payload/delete"),
    ("put", "/collections/{name}/points/{id}"), ("delete", "/collections/{name}/points/{id}"),
}
ADMIN_ROUTES = {
    ("post", "/backups"), ("get", "/backups"), ("get", "/backups/{backup}"), ("delete", "/backups/{backup}"),
}
METRICS_ROUTES = {("get", "/metrics"), ("get", "/metrics/prometheus")}
# Class `Static` (the status page): served to anyone, auth on or off, even
# with a wrong credential; it declares `security: [{}]` and never 401/403.
STATIC_ROUTES = {("get", "/ui")}
# The streamed answers (chunked, not JSON): checked for a body, not against a schema.
STREAMED = {"application/x-ndjson", "application/octet-stream"}
# key-a is unlisted in the scopes: admin.
AUTH_ENV = {
    "AIONBD_AUTH_MODE": "api_key",
    "AIONBD_AUTH_API_KEYS": "tenant-a:key-a,tenant-a:key-r,tenant-a:key-w",
    "AIONBD_AUTH_API_KEY_SCOPES": "key-r:read,key-w:write",
}


@pytest.fixture(scope="module")
def spec() -> Dict[str, Any]:
    with open(SPEC_PATH) as f:
        data: Dict[str, Any] = yaml.safe_load(f)
    return data


def test_spec_is_valid_openapi_3_1(spec: Dict[str, Any]) -> None:
    assert spec["openapi"].startswith("3.1")
    validate(spec)  # raises on any violation


def test_spec_names_exactly_the_server_routes(spec: Dict[str, Any]) -> None:
    methods = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
    documented = {(m, p) for p, item in spec["paths"].items() for m in item if m in methods}
    assert documented == ROUTES


def test_spec_declares_optional_auth_on_every_operation(spec: Dict[str, Any]) -> None:
    """Both schemes apply to every operation (none but the static page
    overrides `security`, which it sets to `[{}]`: no credential), `{}` keeps
    them optional (auth is off by default); every operation but the static
    page documents 401, exactly the write, kept-backup and metrics routes 403."""
    schemes = spec["components"]["securitySchemes"]
    assert schemes["ApiKey"] == {**schemes["ApiKey"], "type": "apiKey", "in": "header", "name": "x-api-key"}
    assert (schemes["Bearer"]["type"], schemes["Bearer"]["scheme"]) == ("http", "bearer")
    assert spec["security"] == [{}, {"ApiKey": []}, {"Bearer": []}]
    for m, p in ROUTES:
        op = spec["paths"][p][m]
        if (m, p) in STATIC_ROUTES:
            assert op["security"] == [{}], f"{m} {p} needs no credential"
            assert "401" not in op["responses"] and "403" not in op["responses"], f"{m} {p}"
            continue
        assert "security" not in op, f"{m} {p} overrides the global security"
        assert op["responses"]["401"] == {"$ref": "#/components/responses/Unauthorized"}, f"{m} {p}"
        assert ("403" in op["responses"]) == ((m, p) in WRITE_ROUTES | ADMIN_ROUTES | METRICS_ROUTES), f"{m} {p}"
    responses = spec["components"]["responses"]
    assert responses["Unauthorized"]["headers"]["WWW-Authenticate"]["$ref"] == "#/components/headers/WwwAuthenticate"
    assert responses["MethodNotAllowed"]["headers"]["Allow"]["$ref"] == "#/components/headers/Allow"
    assert all(spec["components"]["headers"][h]["required"] for h in ("WwwAuthenticate", "Allow"))


class Conformance:
    """Sends a request and checks the answer against the spec: the status is
    documented for the operation, the body matches its schema, and the
    `x-request-id` header is there."""

    def __init__(self, spec: Dict[str, Any], url: str) -> None:
        self.spec = spec
        self.http = httpx.Client(base_url=url, timeout=10)
        self.registry: Registry[Any] = Registry().with_resource("urn:spec", DRAFT202012.create_resource(spec))
        self.checked: Set[Tuple[str, str, int]] = set()

    def _deref(self, obj: Dict[str, Any]) -> Dict[str, Any]:
        while "$ref" in obj:
            node: Any = self.spec
            for part in obj["$ref"].removeprefix("#/").split("/"):
                node = node[part]
            obj = node
        return obj

    def _validate(self, schema: Dict[str, Any], value: Any, where: str) -> None:
        root = {"$ref": "urn:spec" + schema["$ref"]} if "$ref" in schema else schema
        validator = Draft202012Validator(root, registry=self.registry)
        errors = sorted(validator.iter_errors(value), key=str)
        assert not errors, f"{where}: {errors[0].message} in {value!r}"

    def conforms(self, resp: httpx.Response, response: Dict[str, Any], where: str) -> Any:
        """`resp` against one documented response: its required headers (and
        string-valued ones against their schema), content type and body."""
        response = self._deref(response)
        assert resp.headers.get("x-request-id"), "every answer carries x-request-id"
        for name, header in response.get("headers", {}).items():
            header = self._deref(header)
            value = resp.headers.get(name)
            assert value is not None or not header.get("required"), f"{where}: no {name} header"
            if value is not None and header["schema"].get("type") == "string":
                self._validate(header["schema"], value, f"{where}: header {name}")
        ctype = resp.headers["content-type"].split(";")[0]
        assert ctype in response["content"], f"{where}: content type {ctype} not documented"
        if ctype in STREAMED:
            assert resp.headers.get("transfer-encoding") == "chunked", f"{where}: not chunked"
            assert resp.content, f"{where}: empty body"
            return resp.content
        body = resp.json() if ctype == "application/json" else resp.text
        self._validate(response["content"][ctype]["schema"], body, where)
        return body

    def __call__(self, method: str, template: str, status: int, path: Optional[str] = None, **kw: Any) -> Any:
        resp = self.http.request(method.upper(), path or template, **kw)
        assert resp.status_code == status, f"{method} {path or template}: {resp.status_code} {resp.text}"
        op = self.spec["paths"][template][method]
        documented = op["responses"]
        assert str(status) in documented, f"{method} {template}: status {status} is not documented"
        body = self.conforms(resp, documented[str(status)], f"{method} {template} {status}")
        self.checked.add((method, template, status))
        return body


@pytest.fixture(scope="module")
def live_server() -> Iterator[Server]:
    s = Server({"AIONBD_MAX_BODY_BYTES": "65536"})
    yield s
    s.stop()


def test_real_answers_match_the_spec(spec: Dict[str, Any], live_server: Server) -> None:
    check = Conformance(spec, live_server.url)
    c = "/collections/{name}"
    p = c + "/points/{id}"
    check("get", "/live", 200)
    check("get", "/ready", 200)
    check("get", "/metrics", 200)
    check("get", "/metrics/prometheus", 200)
    served = check("get", "/openapi.yaml", 200)
    assert served == SPEC_PATH.read_text(), "the server serves docs/openapi.yaml as built"
    page = check("get", "/ui", 200)
    assert page == (REPO / "ui" / "index.html").read_text(), "the server serves ui/index.html as built"
    check("post", "/distance", 200, json={"left": [1, 2], "right": [3, 4], "metric": "cosine"})
    check("post", "/distance", 400, json={"left": [1], "right": [1, 2]})
    check("post", "/collections", 200, json={"name": " spec ", "dimension": 2})
    check("post", "/collections", 409, json={"name": "spec", "dimension": 2})
    check("post", "/collections", 400, json={"name": "a..b", "dimension": 2})
    check("get", "/collections", 200)
    check("put", p, 200, "/collections/spec/points/1", json={"values": [1, 0], "payload": {"tag": ["a", "b"], "n": 1}})
    check("put", p, 400, "/collections/spec/points/2", json={"values": [1, 0, 0]})
    check("put", p, 404, "/collections/nope/points/2", json={"values": [1, 0]})
    points = [{"id": i, "values": [i, 1], "payload": {"n": i}} for i in range(2, 40)]
    check("post", c + "/points", 200, "/collections/spec/points", json={"points": points})
    check("post", c + "/points", 413, "/collections/spec/points",
          json={"points": [{"id": i, "values": [0.123456789, 1]} for i in range(3000)]})
    check("get", p, 200, "/collections/spec/points/1")
    check("get", p, 404, "/collections/spec/points/999")
    check("get", p, 400, "/collections/spec/points/x")
    check("get", p, 405, "/collections/spec/points/count")  # the literal route wins: Allow: POST
    check("get", c + "/points", 200, "/collections/spec/points", params={"limit": 5})
    check("get", c + "/points", 200, "/collections/spec/points", params={"limit": 5, "after_id": 37})
    check("get", c + "/points", 400, "/collections/spec/points", params={"offset": 1, "after_id": 3})
    check("post", c + "/points/count", 200, "/collections/spec/points/count",
          json={"filter": {"must": [{"field": "n", "gte": 10}], "must_not": [{"field": "n", "value": 12}]}})
    check("post", c + "/points/count", 400, "/collections/spec/points/count",
          json={"filter": {"must": [{"field": "n", "value": 1, "gt": 0}]}})
    check("post", c + "/points/payload/set", 200, "/collections/spec/points/payload/set",
          json={"points": [1, 2], "payload": {"region": "eu"}})
    check("post", c + "/points/payload/set", 404, "/collections/spec/points/payload/set",
          json={"points": [1, 999], "payload": {"region": "eu"}})
    check("post", c + "/points/payload/delete", 200, "/collections/spec/points/payload/delete",
          json={"points": [1], "keys": ["region"]})
    q = {"query": [1, 0], "metric": "l2"}
    check("post", c + "/search", 200, "/collections/spec/search", json=q)
    check("post", c + "/search", 400, "/collections/spec/search",
          json={**q, "filter": {"must": [{"field": "n", "value": -1}]}})
    check("post", c + "/search/topk", 200, "/collections/spec/search/topk", json={**q, "limit": 3})
    check("post", c + "/search/topk", 200, "/collections/spec/search/topk", json={**q, "include_payload": False})
    check("post", c + "/search/topk", 400, "/collections/spec/search/topk", json={**q, "mode": "ivf"})
    check("post", c + "/search/topk/batch", 200, "/collections/spec/search/topk/batch",
          json={"queries": [[1, 0], [0, 1]], "limit": 2})
    check("post", c + "/search/topk/batch", 400, "/collections/spec/search/topk/batch", json={"queries": []})
    export = check("get", c + "/export", 200, "/collections/spec/export").decode().splitlines()
    header = json.loads(export[0])
    assert header["collection"]["name"] == "spec" and header["points"] == len(export) - 1 == 39
    check("get", c + "/export", 404, "/collections/nope/export")
    check("get", c + "/export", 400, "/collections/a..b/export")
    assert check("get", "/backup", 200).startswith(b"AIONBAK\0")
    assert check("get", "/backup", 200, params={"collection": ["spec"]}).startswith(b"AIONBAK\0")
    check("get", "/backup", 404, params={"collection": "nope"})
    check("get", "/backup", 400, params={"limit": 1})
    kept = check("post", "/backups", 200, params={"collection": "spec"})
    assert [x["name"] for x in kept["collections"]] == ["spec"] and kept["points"] == 39
    check("post", "/backups", 404, params={"collection": "nope"})
    check("post", "/backups", 400, params={"collection": "a..b"})
    listing = check("get", "/backups", 200)
    assert kept in listing["backups"]
    b = "/backups/{backup}"
    assert len(check("get", b, 200, f"/backups/{kept['name']}")) == kept["bytes"]
    check("get", b, 404, "/backups/nope")
    assert check("delete", b, 200, f"/backups/{kept['name']}") == {"name": kept["name"], "deleted": True}
    check("delete", b, 404, f"/backups/{kept['name']}")
    check("get", c, 200, "/collections/spec")
    check("delete", p, 200, "/collections/spec/points/1")
    check("delete", p, 404, "/collections/spec/points/1")
    check("delete", c, 200, "/collections/spec")
    check("delete", c, 404, "/collections/spec")
    check("get", c, 404, "/collections/spec")
    assert {(m, t) for m, t, s in check.checked if s == 200} == ROUTES


def test_wrong_methods_answer_405_with_allow(spec: Dict[str, Any], live_server: Server) -> None:
    """Every path, with a method it does not have: 405 as documented, and
    `Allow` names exactly the path's methods."""
    check = Conformance(spec, live_server.url)
    for template, item in spec["paths"].items():
        path = template.replace("{name}", "spec405").replace("{id}", "1").replace("{backup}", "b405")
        methods = {m.upper() for m in item if m in ("get", "put", "post", "delete")}
        # HEAD is answered where GET is, OPTIONS everywhere (both described
        # in the spec's introduction, not per path).
        others = {"GET", "PUT", "POST", "DELETE", "PATCH"} | (set() if "GET" in methods else {"HEAD"})
        for wrong in sorted(others - methods):
            resp = check.http.request(wrong, path)
            assert resp.status_code == 405, f"{wrong} {path}: {resp.status_code}"
            if wrong == "HEAD":  # no body to check
                assert set(resp.headers["allow"].split(", ")) == methods, f"{wrong} {path}: {resp.headers['allow']}"
                continue
            body = check.conforms(resp, {"$ref": "#/components/responses/MethodNotAllowed"}, f"{wrong} {path}")
            assert body["code"] == "invalid_argument"
            assert set(resp.headers["allow"].split(", ")) == methods, f"{wrong} {path}: {resp.headers['allow']}"


@pytest.fixture(scope="module")
def auth_server() -> Iterator[Server]:
    with Server(AUTH_ENV) as s:
        yield s


def test_auth_answers_match_the_spec(spec: Dict[str, Any], auth_server: Server) -> None:
    """With auth on: every route without a credential, or with a wrong one,
    is the documented 401 (with `WWW-Authenticate`), but the static page,
    which answers 200 to anyone and never 401/403; every write and
    kept-backup route with a read-only key the documented 403, every
    kept-backup route with a write key too, and no read route is; a wrong
    method is 401 before routing, 405 after."""
    check = Conformance(spec, auth_server.url)
    check("post", "/collections", 200, json={"name": "spec", "dimension": 2}, headers={"x-api-key": "key-a"})
    for m, template in sorted(ROUTES):
        path = template.replace("{name}", "spec").replace("{id}", "1").replace("{backup}", "b1")
        body: Dict[str, Any] = {"json": {}} if m in ("post", "put") else {}
        # none, an unknown key, a key sent as a token (api_key mode), not `Bearer <token>`
        refused: Tuple[Dict[str, str], ...] = ({}, {"x-api-key": "wrong"}, {"authorization": "Bearer key-r"},
                                               {"authorization": "Basic a2V5LXI="})
        if (m, template) in STATIC_ROUTES:  # the same page to anyone, with any credential or none
            for creds in (*refused, {"x-api-key": "key-r"}, {"x-api-key": "key-a"}):
                check(m, template, 200, path, headers=creds, **body)
            continue
        for creds in refused:
            err = check(m, template, 401, path, headers=creds, **body)
            assert err["code"] == "unauthorized"
        if (m, template) in ADMIN_ROUTES:
            assert check(m, template, 403, path, headers={"x-api-key": "key-w"}, **body)["code"] == "forbidden"
        if (m, template) in WRITE_ROUTES | ADMIN_ROUTES:
            assert check(m, template, 403, path, headers={"x-api-key": "key-r"}, **body)["code"] == "forbidden"
        else:
            resp = check.http.request(m.upper(), path, headers={"x-api-key": "key-r"}, **body)
            assert resp.status_code != 403 and str(resp.status_code) in spec["paths"][template][m]["responses"]
    assert {(m, t) for m, t, s in check.checked if s == 401} == ROUTES - STATIC_ROUTES
    assert {(m, t) for m, t, s in check.checked if s == 403} == WRITE_ROUTES | ADMIN_ROUTES
    # The admin key reaches the kept-backup routes.
    kept = check("post", "/backups", 200, headers={"x-api-key": "key-a"})
    assert "tenant-a::spec" in [x["name"] for x in kept["collections"]]
    check("delete", "/backups/{backup}", 200, f"/backups/{kept['name']}", headers={"x-api-key": "key-a"})
    # A wrong method or an unknown path: 401 first, then 405 / 404.
    anonymous = check.http.request("PATCH", "/collections")
    check.conforms(anonymous, {"$ref": "#/components/responses/Unauthorized"}, "PATCH /collections, no key")
    assert anonymous.status_code == 401 and check.http.get("/nope").status_code == 401
    resp = check.http.request("PATCH", "/collections", headers={"x-api-key": "key-r"})
    assert (resp.status_code, resp.headers.get("allow")) == (405, "GET, POST")
    check.conforms(resp, {"$ref": "#/components/responses/MethodNotAllowed"}, "PATCH /collections")


def test_index_state_matches_the_spec(spec: Dict[str, Any], live_server: Server) -> None:
    """`GET /collections/{name}` with IVF and HNSW indexes built, and answers
    that came from an index (`estimated_recall`, mode `ivf`/`hnsw`)."""
    import numpy as np

    import aionbd

    check = Conformance(spec, live_server.url)
    with aionbd.Client(live_server.url, max_body_bytes=60_000) as client:
        client.create_collection("indexed", 4)
        client.bulk_upsert("indexed", zip(range(2500), np.random.default_rng(3).random((2500, 4))))
        deadline = time.monotonic() + 60
        while not all(p.get("hnsw", {}).get("calibration") for p in
                      client.get_collection("indexed").raw["index"]["partitions"]):
            assert time.monotonic() < deadline
            time.sleep(0.2)
    check("get", "/collections/{name}", 200, "/collections/indexed")
    for mode, extra in (("ivf", {"nprobe": 2}), ("hnsw", {"ef": 16})):
        body = {"query": [0.5] * 4, "metric": "l2", "mode": mode, **extra}
        hit = check("post", "/collections/{name}/search", 200, "/collections/indexed/search", json=body)
        top = check("post", "/collections/{name}/search/topk", 200, "/collections/indexed/search/topk", json=body)
        batch_body = {k: v for k, v in body.items() if k != "query"}
        batch = check("post", "/collections/{name}/search/topk/batch", 200, "/collections/indexed/search/topk/batch",
                      json={**batch_body, "queries": [[0.5] * 4]})
        assert hit["mode"] == top["mode"] == batch["results"][0]["mode"] == mode
        assert "estimated_recall" in top and "recall_at_k" not in top


SCHEMATHESIS_CHECKS = (
    "not_a_server_error,status_code_conformance,content_type_conformance,"
    "response_headers_conformance,response_schema_conformance,unsupported_method,allow_header_conformance"
)


def test_schemathesis_bounded(live_server: Server, tmp_path: Path) -> None:
    """Generated requests (fixed seed, bounded time): no 5xx, every status,
    content type, header and body as documented."""
    exe = shutil.which("schemathesis", path=str(Path(sys.executable).parent)) or shutil.which("schemathesis")
    if exe is None:
        pytest.fail("schemathesis is not installed (pip install schemathesis)")
    seconds = os.environ.get("AIONBD_SCHEMATHESIS_SECONDS", "30")
    cmd = [exe, "run", str(SPEC_PATH), "--url", live_server.url, "--seed", "18", "-n", "10",
           "--max-time", seconds, "--checks", SCHEMATHESIS_CHECKS, "--no-color",
           "--generation-database", "none", "--report", "ndjson", "--report-dir", str(tmp_path)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=int(seconds) + 120, cwd=tmp_path)
    tail = "\n".join(line[:400] for line in r.stdout.splitlines()[-60:])
    assert r.returncode == 0, f"schemathesis failed:\n{tail}\n{r.stderr[-2000:]}"
    assert re.search(r"\d+ generated, \d+ passed", r.stdout), tail
