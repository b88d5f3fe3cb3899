"""What the Python SDK costs per call: QPS of a small exact top-10 search
through `aionbd.Client` against the same request sent with a bare
`httpx.Client`, 1 and 8 concurrent callers (threads, one client each),
alternated in one run against one release server. The search is small on
purpose, so the client's own work is a visible share of a call.

    AIONBD_BIN=target/release/aionbd clients/python/.venv/bin/python clients/python/bench_search.py [seconds] [rounds]
"""

from __future__ import annotations

import os
import random
import sys
import threading
import time
from pathlib import Path
from typing import Callable, List

sys.path.insert(0, str(Path(__file__).resolve().parent / "tests"))

import httpx  # noqa: E402

import aionbd  # noqa: E402
from conftest import Server  # noqa: E402  (starts the binary on a free port)

DIM, POINTS = 16, 2000


def rate(make_call: Callable[[], Callable[[], None]], callers: int, seconds: float) -> float:
    """Calls per second with `callers` threads, each with its own client."""
    done: List[int] = [0] * callers
    stop = time.monotonic() + seconds

    def worker(i: int) -> None:
        call = make_call()
        n = 0
        while time.monotonic() < stop:
            call()
            n += 1
        done[i] = n

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(callers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done) / seconds


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 3.0
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    random.seed(7)
    query = [random.random() for _ in range(DIM)]
    with Server() as s:
        with aionbd.Client(s.url) as c:
            c.create_collection("b", DIM)
            c.bulk_upsert("b", ((i, [random.random() for _ in range(DIM)]) for i in range(POINTS)))

        def sdk() -> Callable[[], None]:
            client = aionbd.Client(s.url)
            return lambda: client.search_collection_top_k("b", query, limit=10, mode="exact")

        def raw() -> Callable[[], None]:
            client = httpx.Client(base_url=s.url)
            body = {"query": query, "limit": 10, "mode": "exact"}

            def call() -> None:
                r = client.post("/collections/b/search/topk", json=body)
                r.raise_for_status()
                r.json()

            return call

        print(f"exact top-10 over {POINTS} x {DIM}, {seconds} s per run, python {sys.version.split()[0]}, "
              f"httpx {httpx.__version__}, {os.cpu_count()} CPUs")
        print("| round | callers | raw httpx QPS | SDK QPS | SDK / raw | SDK cost per call |")
        print("|---|---|---|---|---|---|")
        for r in range(1, rounds + 1):
            for callers in (1, 8):
                q_raw = rate(raw, callers, seconds)
                q_sdk = rate(sdk, callers, seconds)
                extra_us = (1 / q_sdk - 1 / q_raw) * 1e6 * callers
                print(f"| {r} | {callers} | {q_raw:.0f} | {q_sdk:.0f} | {q_sdk / q_raw:.3f} | {extra_us:+.0f} us |")


if __name__ == "__main__":
    main()
