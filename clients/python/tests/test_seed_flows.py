"""The original product's README shows the Python SDK in one command
(section "8. Python SDK quick start"):

    python -c "from aionbd import AionBDClient; print(AionBDClient().live())"

It is copied below so this runs on a fresh clone; when the original README is
at hand (../shared/seed-README.md next to the repository, as in the workspace
this was written in) a test checks the copy is still exact. The command is run
with this interpreter (the venv's `python`) in a fresh process against a real
server: once with the address given (`AionBDClient()` ->
`AionBDClient("<url>")`, the server listening on a free port), and once
byte for byte against a server on the default 127.0.0.1:8080 when that port is
free. That is the only Python SDK snippet of that README; it names no other
SDK method (the JS one is tested in clients/js/test/seed-flows.test.ts)."""

from __future__ import annotations

import inspect
import os
import re
import shlex
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Iterator, List

import pytest

import aionbd

from .conftest import REPO, Server, server_bin

SEED_README = REPO.parent / "shared" / "seed-README.md"

# Verbatim from seed-README.md, "### 8. Python SDK quick start".
PYTHON_QUICK_START = """python -c "from aionbd import AionBDClient; print(AionBDClient().live())\""""

DEFAULT_ADDRESS = "127.0.0.1:8080"
LIVE = re.compile(r"^Live\(status='live', uptime_ms=\d+\)\n$")


def argv(command: str, code: str) -> List[str]:
    """The command as `python -c CODE`, run by this interpreter."""
    words = shlex.split(command)
    assert words[:2] == ["python", "-c"] and len(words) == 3, words
    return [sys.executable, "-c", code]


def run(args: List[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    # A scratch directory as the current one: `aionbd` is the installed package.
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=60)


def test_copy_matches_seed_readme() -> None:
    if not SEED_README.exists():
        pytest.skip(f"{SEED_README} is absent (only the original workspace has it): the copy above is used")
    text = SEED_README.read_text()
    commands = [line.strip() for line in text.splitlines() if re.search(r"\bpython3? -c\b", line)]
    assert commands == [PYTHON_QUICK_START]
    # Every name of the Python SDK the README uses is ours.
    assert re.findall(r"from aionbd import (\w+)", text) == ["AionBDClient"]


def test_quick_start_with_address(server: Server, tmp_path: Path) -> None:
    code = shlex.split(PYTHON_QUICK_START)[2]
    assert code.count("AionBDClient()") == 1
    r = run(argv(PYTHON_QUICK_START, code.replace("AionBDClient()", f"AionBDClient({server.url!r})")), tmp_path)
    assert r.returncode == 0, r.stderr
    # The original SDK printed the server's JSON as a dict; ours a dataclass.
    assert LIVE.match(r.stdout), r.stdout


def test_default_address_is_the_seed_servers() -> None:
    # "Server defaults to `127.0.0.1:8080`", and `AionBDClient()` goes there.
    default = inspect.signature(aionbd.AionBDClient).parameters["base_url"].default
    assert default == f"http://{DEFAULT_ADDRESS}"
    with aionbd.AionBDClient() as c:
        assert c.base_url == f"http://{DEFAULT_ADDRESS}"


@pytest.fixture
def default_port_server() -> Iterator[str]:
    """A server on 127.0.0.1:8080 (skips when that port is taken)."""
    with tempfile.TemporaryDirectory(prefix="aionbd-seed-") as tmp:
        env = {**os.environ, "AIONBD_PERSISTENCE_ENABLED": "false"}
        log = open(Path(tmp) / "stderr.log", "w+")
        proc = subprocess.Popen(
            [server_bin(), "--bind", DEFAULT_ADDRESS, "--data-dir", str(Path(tmp) / "data"), "--shards", "1"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        found: List[str] = []

        def read() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:  # ends when the server exits (e.g. the port is taken)
                m = re.search(r"listening on (https?://\S+)", line)
                if m:
                    found.append(m.group(1))
                    return

        t = threading.Thread(target=read, daemon=True)
        t.start()
        t.join(15)
        try:
            if not found:
                proc.kill()
                proc.wait()
                log.seek(0)
                why = (log.read().strip().splitlines() or ["no output"])[-1]
                pytest.skip(f"no server of ours on {DEFAULT_ADDRESS} (port taken?): {why}")
            assert found[0] == f"http://{DEFAULT_ADDRESS}"
            yield found[0]
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
            log.close()


def test_quick_start_verbatim_on_default_port(default_port_server: str, tmp_path: Path) -> None:
    words = shlex.split(PYTHON_QUICK_START)
    r = run(argv(PYTHON_QUICK_START, words[2]), tmp_path)
    assert r.returncode == 0, r.stderr
    assert LIVE.match(r.stdout), r.stdout
