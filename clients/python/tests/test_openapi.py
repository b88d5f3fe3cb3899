"""docs/openapi.yaml: a valid OpenAPI 3.1 document, naming exactly the
server's routes, whose response schemas the real binary's answers satisfy
(one scripted request per route and documented error, then a bounded
schemathesis run)."""

from __future__ import annotations

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
    ("post", "/distance"), ("get", "/collections"), ("post", "/collections"),
    ("get", "/collections/{name}"), ("delete", "/collections/{name}"),
    ("get", "/collections/{name}/points"), ("post", "/collections/{name}/points"),
    ("post", "/collections/{name}/points/count"), ("post", "/collections/{name}/points/payload/set"),
    ("post", "/collections/{name}/points/payload/delete"), ("get", "/collections/{name}/points/{id}"),
    ("put", "/collections/{name}/points/{id}"), ("delete", "/collections/{name}/points/{id}"),
    ("post", "/collections/{name}/search"), ("post", "/collections/{name}/search/topk"),
    ("post", "/collections/{name}/search/topk/batch"),
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

    def __call__(self, method: str, template: str, status: int, path: Optional[str] = None, **kw: Any) -> Any:
        resp = self.http.request(method.upper(), path or template, **kw)
        assert resp.status_code == status, f"{method} {path or template}: {resp.status_code} {resp.text}"
        op = self.spec["paths"][template][method]
        documented = op["responses"]
        assert str(status) in documented, f"{method} {template}: status {status} is not documented"
        response = self._deref(documented[str(status)])
        assert resp.headers.get("x-request-id"), "every answer carries x-request-id"
        ctype = resp.headers["content-type"].split(";")[0]
        assert ctype in response["content"], f"{method} {template}: content type {ctype} not documented"
        schema = response["content"][ctype]["schema"]
        body = resp.json() if ctype == "application/json" else resp.text
        root = {"$ref": "urn:spec" + schema["$ref"]} if "$ref" in schema else schema
        validator = Draft202012Validator(root, registry=self.registry)
        errors = sorted(validator.iter_errors(body), key=str)
        assert not errors, f"{method} {template} {status}: {errors[0].message} in {body}"
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
    check("get", c, 200, "/collections/spec")
    check("delete", p, 200, "/collections/spec/points/1")
    check("delete", p, 404, "/collections/spec/points/1")
    check("delete", c, 200, "/collections/spec")
    check("delete", c, 404, "/collections/spec")
    check("get", c, 404, "/collections/spec")
    assert {(m, t) for m, t, s in check.checked if s == 200} == ROUTES


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
    "response_headers_conformance,response_schema_conformance"
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
