"""Fixtures: the real server binary (AIONBD_BIN, default target/release/aionbd
of the repository) on an ephemeral port with a temporary data directory
(`Server(env)` starts one with extra environment variables, e.g. an auth
mode), and a scripted stub HTTP server for what a real server does only on
demand (429/503 sequences, broken answers, the exact headers sent)."""

from __future__ import annotations

import http.server
import json
import os
import re
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest

import aionbd

REPO = Path(__file__).resolve().parents[3]


def server_bin() -> str:
    path = os.environ.get("AIONBD_BIN") or str(REPO / "target" / "release" / "aionbd")
    if not os.access(path, os.X_OK):
        pytest.fail(f"server binary {path} not found: build it or set AIONBD_BIN")
    return path


class Server:
    """One server process; `url` once it listens. Stopped with SIGTERM by
    `stop()` or at the end of a `with` block. `env` is added to (and
    overrides) the test process's environment."""

    def __init__(self, env: Optional[Dict[str, str]] = None, persistence: bool = False) -> None:
        self.dir = tempfile.TemporaryDirectory(prefix="aionbd-sdk-")
        # The suites fail authentication on purpose, many times, from one
        # address: no per-source budget (AIONBD_AUTH_FAILURE_LIMIT_PER_MINUTE).
        full_env = {
            **os.environ,
            "AIONBD_PERSISTENCE_ENABLED": "true" if persistence else "false",
            "AIONBD_AUTH_FAILURE_LIMIT_PER_MINUTE": "0",
            **(env or {}),
        }
        self.stderr = open(Path(self.dir.name) / "stderr.log", "w+")
        self.proc = subprocess.Popen(
            [server_bin(), "--bind", "127.0.0.1:0", "--data-dir", str(Path(self.dir.name) / "data"), "--shards", "1"],
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
        )
        self.url = self._wait_listening()

    def _wait_listening(self) -> str:
        found: List[str] = []

        def read() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                m = re.search(r"listening on (https?://\S+)", line)
                if m:
                    found.append(m.group(1))
                    return

        t = threading.Thread(target=read, daemon=True)
        t.start()
        t.join(15)
        if not found:
            self.stop()
            self.stderr.seek(0)
            pytest.fail(f"server did not start: {self.stderr.read()}")
        return found[0]

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()
        self.stderr.close()
        self.dir.cleanup()


@pytest.fixture(scope="session")
def server() -> Iterator[Server]:
    s = Server()
    yield s
    s.stop()


@pytest.fixture
def client(server: Server) -> Iterator[aionbd.Client]:
    with aionbd.Client(server.url) as c:
        yield c


def wait_for_indexes(client: aionbd.Client, name: str, query: Any, timeout: float = 60.0) -> List[Dict[str, Any]]:
    """Wait until every partition of `name` has its HNSW graph and its IVF
    lists built and calibrated; returns the partitions. The server drops
    IVF lists the graph makes redundant (docs/api-decisions.md); a search
    that forces IVF brings them back for good (answered exactly meanwhile),
    so a test of the `ivf` mode forces them once."""
    deadline = time.monotonic() + timeout
    forced = False
    while True:
        parts: List[Dict[str, Any]] = client.get_collection(name).raw["index"]["partitions"]
        graphs = all(p.get("hnsw", {}).get("calibration") for p in parts)
        if graphs and all(p.get("kind") == "ivf" and p.get("calibration") for p in parts):
            return parts
        if graphs and not forced and any(p.get("dropped") for p in parts):
            client.search_collection_top_k(name, query, limit=1, metric="l2", mode="ivf", nprobe=1)
            forced = True
        assert time.monotonic() < deadline, f"indexes not built in {timeout} s: {parts}"
        time.sleep(0.2)


@pytest.fixture
def name() -> str:
    """A fresh collection name per test."""
    return "t-" + uuid.uuid4().hex[:12]


Reply = Tuple[int, Dict[str, str], bytes]


class Stub:
    """A scripted HTTP server: answers `replies` in order (then `default`),
    records every request as (method, path, headers, body). With `break_after`
    set, the next 2xx answer is sent chunked and the connection dropped after
    that many bytes of its body (a stream broken midway)."""

    def __init__(self) -> None:
        self.replies: List[Reply] = []
        self.default: Reply = (200, {"content-type": "application/json"}, b'{"status":"live","uptime_ms":1}')
        self.requests: List[Tuple[str, str, Dict[str, str], bytes]] = []
        self.times: List[float] = []
        self.delay = 0.0
        self.break_after: Optional[int] = None
        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def handle_one(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                stub.requests.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                stub.times.append(time.monotonic())
                status, headers, out = stub.replies.pop(0) if stub.replies else stub.default
                time.sleep(stub.delay)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                if stub.break_after is not None and status < 300:
                    part, stub.break_after = out[: stub.break_after], None
                    self.send_header("transfer-encoding", "chunked")
                    self.end_headers()
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))  # and no last chunk
                    self.close_connection = True
                    return
                self.send_header("content-length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            do_GET = do_POST = do_PUT = do_DELETE = handle_one

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def reply(self, status: int, body: Any, headers: Optional[Dict[str, str]] = None) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.replies.append((status, {"content-type": "application/json", **(headers or {})}, data))

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def stub() -> Iterator[Stub]:
    s = Stub()
    yield s
    s.close()
