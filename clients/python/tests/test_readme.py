"""The README's quick start, run verbatim (only the address changes) against
a fresh server."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator, List

import pytest

from .conftest import Server

README = Path(__file__).resolve().parents[1] / "README.md"


def quick_start_blocks() -> List[str]:
    text = README.read_text()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


@pytest.fixture
def fresh_server() -> Iterator[Server]:
    s = Server()
    yield s
    s.stop()


def test_quick_start_runs(fresh_server: Server, capsys: pytest.CaptureFixture[str]) -> None:
    blocks = quick_start_blocks()
    assert len(blocks) == 2
    for code in blocks:
        assert "http://127.0.0.1:8080" in code
        exec(compile(code.replace("http://127.0.0.1:8080", fresh_server.url), str(README), "exec"), {})
    out = capsys.readouterr().out
    assert "status='live'" in out and "exact 1.0 [(1, 0.0" in out and "status='ready'" in out
