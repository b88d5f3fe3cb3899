"""The README's quick start and its backup example, run verbatim (only the
address changes) against a fresh server."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator, List

import pytest

from .conftest import Server

README = Path(__file__).resolve().parents[1] / "README.md"


def section_blocks(title: str) -> List[str]:
    text = README.read_text()
    section = text.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def quick_start_blocks() -> List[str]:
    return section_blocks("Quick start")


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


def test_backup_example_runs(
    fresh_server: Server, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocks = section_blocks("Backup and export")
    assert len(blocks) == 1 and "http://127.0.0.1:8080" in blocks[0]
    monkeypatch.chdir(tmp_path)  # it writes its files in the current directory
    exec(compile(blocks[0].replace("http://127.0.0.1:8080", fresh_server.url), str(README), "exec"), {})
    out = capsys.readouterr().out
    assert "docs 2\n1 [0.5, 0.25] {'lang': 'en'}\n2 [1.0, 0.0] {}\nbackup: " in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["all.aionbd", "docs.ndjson", "kept.aionbd"]
    assert (tmp_path / "all.aionbd").read_bytes().startswith(b"AIONBAK\0")
