"""The status page (`GET /ui`, ui/index.html built into the binary) in a
real headless Chromium driven by selenium: served as HTML to anyone, it
shows the server's collections, gauges, latency chart, partition index
state and search answers, shows API errors, and asks for a credential when
auth is on. A screenshot of the loaded page is saved and checked.

Needs Chromium and its driver (Debian: `apt-get install chromium
chromium-driver`); AIONBD_CHROMIUM / AIONBD_CHROMEDRIVER name other
binaries. The screenshots go to AIONBD_UI_SCREENSHOT_DIR if set, else to
pytest's temporary directory. To try an edited page without rebuilding the
binary, AIONBD_UI_FROM_FILE=1 opens the work tree's ui/index.html from a
local static server instead (`?api=` pointing at a server that allows any
origin); the first test, which compares what `/ui` serves with the file,
then still needs the rebuilt binary."""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import struct
import threading
import time
import zlib
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, TypeVar

import httpx
import numpy as np
import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

import aionbd

from .conftest import REPO, Server, wait_for_indexes

PAGE = REPO / "ui" / "index.html"
T = TypeVar("T")
FROM_FILE = os.environ.get("AIONBD_UI_FROM_FILE") == "1"


@pytest.fixture(scope="module")
def page_host() -> Iterator[Optional[str]]:
    """With AIONBD_UI_FROM_FILE=1, a static server of ui/ (else None: `/ui`)."""
    if not FROM_FILE:
        yield None
        return

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(PAGE.parent))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def page_server(env: Optional[Dict[str, str]] = None) -> Server:
    return Server({**(env or {}), **({"AIONBD_CORS_ALLOWED_ORIGINS": "*"} if FROM_FILE else {})})


def page_url(host: Optional[str], server: Server) -> str:
    return f"{host}/index.html?api={server.url}" if host else server.url + "/ui"


def find_binary(env: str, names: List[str]) -> str:
    path = os.environ.get(env) or next((p for p in map(shutil.which, names) if p), None)
    if not path:
        pytest.fail(f"{names[0]} not found: install Debian's chromium and chromium-driver packages, or set {env}")
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = find_binary("AIONBD_CHROMIUM", ["chromium", "chromium-browser", "google-chrome"])
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,900", "--lang=en-US"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=find_binary("AIONBD_CHROMEDRIVER", ["chromedriver"]))
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    where = os.environ.get("AIONBD_UI_SCREENSHOT_DIR")
    path = Path(where) if where else tmp_path
    path.mkdir(parents=True, exist_ok=True)
    return path


def wait(driver: webdriver.Chrome, what: str, until: Callable[[webdriver.Chrome], T], seconds: float = 20) -> T:
    """`until(driver)` once truthy (the page re-renders every 2 s: a stale
    element is retried); fails with `what` and the page's text."""

    def probe(d: webdriver.Chrome) -> T:
        try:
            return until(d)
        except StaleElementReferenceException:
            return False  # type: ignore[return-value]

    try:
        return WebDriverWait(driver, seconds, poll_frequency=0.1).until(probe)
    except WebDriverException as e:
        body = driver.find_element(By.TAG_NAME, "body").text
        pytest.fail(f"timed out waiting for {what} ({e.__class__.__name__}); page text:\n{body[:3000]}")


def text(driver: webdriver.Chrome, css: str) -> str:
    found = driver.find_elements(By.CSS_SELECTOR, css)
    return " ".join(e.text for e in found)


def script_errors(driver: webdriver.Chrome) -> List[str]:
    """Uncaught exceptions and console errors of the page's script (failed
    loads, such as an expected 400 or 401, are network entries: left out)."""
    logs: List[Dict[str, Any]] = getattr(driver, "get_log")("browser")  # untyped in selenium
    return [e["message"] for e in logs
            if e.get("source") in ("javascript", "console-api") and e.get("level") == "SEVERE"]


def screenshot(driver: webdriver.Chrome, path: Path) -> Path:
    """The whole page (the window made as tall as the document), from the top."""
    height = int(driver.execute_script("return document.documentElement.scrollHeight"))
    driver.set_window_size(1280, min(max(height, 900), 6000))
    driver.execute_script("window.scrollTo(0, 0)")
    time.sleep(0.3)
    assert driver.save_screenshot(str(path)), f"no screenshot written to {path}"
    return path


def check_png(path: Path) -> None:
    """A real PNG of a drawn page: signature, plausible size, and pixels
    that are not all one colour."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    assert width >= 1000 and height >= 800, f"{path}: {width}x{height}"
    assert len(data) > 30_000, f"{path}: only {len(data)} bytes"
    idat, pos = b"", 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        if data[pos + 4:pos + 8] == b"IDAT":
            idat += data[pos + 8:pos + 8 + length]
        pos += 12 + length
    pixels = zlib.decompress(idat)
    assert len(set(pixels[: 1 << 20])) > 32, f"{path}: looks blank"


def test_ui_is_served_as_html_to_anyone() -> None:
    """Auth on: the page itself needs no credential (and a wrong one does not
    matter), while the API behind it still answers 401."""
    env = {"AIONBD_AUTH_MODE": "api_key", "AIONBD_AUTH_API_KEYS": "tenant-a:key-a"}
    with Server(env) as s:
        for headers in ({}, {"x-api-key": "wrong"}, {"authorization": "Bearer nope"}):
            r = httpx.get(s.url + "/ui", headers=headers)
            assert r.status_code == 200, r.text
            assert r.headers["content-type"].startswith("text/html")
            assert r.headers.get("x-request-id")
            assert r.text == PAGE.read_text(), "the binary serves ui/index.html as built: rebuild it"
        assert httpx.get(s.url + "/collections").status_code == 401
        assert httpx.head(s.url + "/ui").status_code == 200


def test_status_page_in_headless_chromium(browser: webdriver.Chrome, shots: Path, page_host: Optional[str]) -> None:
    with page_server() as s, aionbd.Client(s.url) as client:
        client.create_collection("ui-small", 8)
        rng = np.random.default_rng(7)
        small = rng.random((40, 8))
        client.bulk_upsert("ui-small", ((i, v, {"n": i, "tag": "t" + str(i % 3)}) for i, v in enumerate(small)))
        client.create_collection("ui-indexed", 4)
        client.bulk_upsert("ui-indexed", zip(range(2500), rng.random((2500, 4))))
        wait_for_indexes(client, "ui-indexed", [0.5] * 4)

        browser.get(page_url(page_host, s))
        assert browser.title == "AIONBD status"
        # The collections table, from GET /collections.
        wait(browser, "the collections",
             lambda d: len(d.find_elements(By.CSS_SELECTOR, "#collections tbody tr[data-name]")) == 2)
        row = browser.find_element(By.CSS_SELECTOR, '#collections tr[data-name="ui-small"]')
        assert [c.text for c in row.find_elements(By.CSS_SELECTOR, "th, td")] == ["ui-small", "8", "40", "1", "yes"]
        assert "2,500" in text(browser, '#collections tr[data-name="ui-indexed"]')
        # The header and gauges, from GET /metrics.
        wait(browser, "the server line",
             lambda d: "Shards: 1" in text(d, "#server") and "Uptime:" in text(d, "#server"))
        assert "Ready: yes" in text(browser, "#server")
        assert "no credential needed" in text(browser, "#auth-state")
        gauges = text(browser, "#gauges")
        for label in ("Requests", "In flight", "Memory used", "WAL", "Snapshots", "Collections / points"):
            assert label in gauges, gauges
        assert "2 / 2,540" in gauges, gauges
        # Two polls make a latency interval: every series is drawn.
        lines = '#chart polyline[data-series="{}"]'
        wait(browser, "the four latency lines",
             lambda d: all(d.find_elements(By.CSS_SELECTOR, lines.format(k)) for k in ("p50", "p99", "mean", "max")))
        assert "p99 since start" in text(browser, "#lat-table")

        # A collection's partitions and index state, from GET /collections/{name}.
        browser.find_element(By.CSS_SELECTOR, '#collections tr[data-name="ui-indexed"] button').click()
        wait(browser, "the partition detail", lambda d: "IVF: built" in text(d, "#detail [data-partition]"))
        detail = text(browser, "#detail")
        assert "HNSW: built" in detail and "Indexed points" in detail and "Pending (scanned exactly)" in detail, detail
        browser.find_element(By.CSS_SELECTOR, "#detail details summary").click()  # the IVF calibration table
        wait(browser, "the calibration table", lambda d: "nprobe" in text(d, "#detail details[open] table"))

        # Searches: an exact one with payloads, then through HNSW.
        Select(browser.find_element(By.ID, "s-coll")).select_by_value("ui-small")
        Select(browser.find_element(By.ID, "s-metric")).select_by_visible_text("l2")
        Select(browser.find_element(By.ID, "s-mode")).select_by_visible_text("exact")
        limit = browser.find_element(By.ID, "s-limit")
        limit.clear()
        limit.send_keys("5")
        browser.find_element(By.ID, "s-vec").clear()
        browser.find_element(By.ID, "s-vec").send_keys("random")
        browser.find_element(By.CSS_SELECTOR, "#search-form button[type=submit]").click()
        wait(browser, "5 hits", lambda d: len(d.find_elements(By.CSS_SELECTOR, "#hits tbody tr")) == 5)
        assert "Mode exact" in text(browser, "#s-summary") and "metric l2" in text(browser, "#s-summary")
        assert '"tag"' in text(browser, "#hits")

        Select(browser.find_element(By.ID, "s-coll")).select_by_value("ui-indexed")
        Select(browser.find_element(By.ID, "s-mode")).select_by_visible_text("hnsw")
        browser.find_element(By.ID, "s-vec").clear()
        browser.find_element(By.ID, "s-vec").send_keys("[0.5, 0.5, 0.5, 0.5]")
        browser.find_element(By.CSS_SELECTOR, "#search-form button[type=submit]").click()
        wait(browser, "an HNSW answer", lambda d: "Mode hnsw" in text(d, "#s-summary"))
        assert "estimated recall" in text(browser, "#s-summary")
        assert len(browser.find_elements(By.CSS_SELECTOR, "#hits tbody tr")) == 5

        # An API error is shown, code and message.
        browser.find_element(By.ID, "s-vec").clear()
        browser.find_element(By.ID, "s-vec").send_keys("[1, 2]")
        browser.find_element(By.CSS_SELECTOR, "#search-form button[type=submit]").click()
        wait(browser, "the search error", lambda d: "invalid_argument" in text(d, "#s-error"))
        assert "dimension 4" in text(browser, "#s-error")
        assert "invalid_argument" in text(browser, "#errors")
        # ...and one the page checks itself, with no request.
        browser.find_element(By.ID, "s-vec").clear()
        browser.find_element(By.ID, "s-vec").send_keys("[1, oops]")
        browser.find_element(By.CSS_SELECTOR, "#search-form button[type=submit]").click()
        wait(browser, "the JSON error", lambda d: "not valid JSON" in text(d, "#s-status"))
        browser.find_element(By.ID, "s-vec").clear()
        browser.find_element(By.ID, "s-vec").send_keys("random")
        browser.find_element(By.CSS_SELECTOR, "#search-form button[type=submit]").click()
        wait(browser, "the error cleared", lambda d: not text(d, "#errors") and "Mode hnsw" in text(d, "#s-summary"))

        # A collection deleted behind the page's back leaves the table.
        client.delete_collection("ui-small")
        wait(browser, "the deleted collection gone",
             lambda d: not d.find_elements(By.CSS_SELECTOR, '#collections tr[data-name="ui-small"]'))

        path = screenshot(browser, shots / "aionbd-ui.png")
        assert script_errors(browser) == []
    check_png(path)


def test_status_page_asks_for_a_credential(browser: webdriver.Chrome, shots: Path, page_host: Optional[str]) -> None:
    """Auth on: the page says a credential is needed; a wrong one is
    refused; a read-only key shows the collections but not the admin-only
    metrics (403 shown); a bearer token with scope admin shows everything
    and stays in the tab's sessionStorage across a reload."""
    env = {
        "AIONBD_AUTH_MODE": "api_key_or_bearer_token",
        "AIONBD_AUTH_API_KEYS": "tenant-a:key-r",
        "AIONBD_AUTH_API_KEY_SCOPES": "key-r:read",
        "AIONBD_AUTH_BEARER_TOKENS": "tenant-a:tok-a",
        "AIONBD_AUTH_METRICS_ADMIN": "true",
    }
    with page_server(env) as s, aionbd.Client(s.url, bearer_token="tok-a") as client:
        client.create_collection("secret", 3)
        client.upsert_point("secret", 1, [1, 2, 3])

        def use(credential: str, kind: str) -> None:
            box = browser.find_element(By.ID, "cred")
            box.clear()
            box.send_keys(credential)
            Select(browser.find_element(By.ID, "cred-kind")).select_by_value(kind)
            browser.find_element(By.CSS_SELECTOR, "#auth-form button[type=submit]").click()

        browser.get(page_url(page_host, s))
        wait(browser, "the 401 prompt", lambda d: "requires authentication" in text(d, "#auth-state"))
        assert "unauthorized" in text(browser, "#errors")
        assert not browser.find_elements(By.CSS_SELECTOR, "#collections tr[data-name]")

        use("nope", "x-api-key")
        wait(browser, "the refusal", lambda d: "credential was refused" in text(d, "#auth-state"))

        use("key-r", "x-api-key")
        wait(browser, "the collections with a read key",
             lambda d: d.find_elements(By.CSS_SELECTOR, '#collections tr[data-name="secret"]'))
        wait(browser, "the 403 on /metrics",
             lambda d: "403" in text(d, "#auth-state") and "forbidden" in text(d, "#errors"))

        use("tok-a", "bearer")
        wait(browser, "the metrics with an admin token",
             lambda d: "Shards: 1" in text(d, "#server") and "credential accepted" in text(d, "#auth-state"))
        wait(browser, "no errors left", lambda d: not text(d, "#errors"))
        stored = browser.execute_script(
            "return [sessionStorage.getItem('aionbd.cred'), sessionStorage.getItem('aionbd.kind')]")
        assert stored == ["tok-a", "bearer"]

        browser.refresh()
        wait(browser, "the collections after a reload",
             lambda d: d.find_elements(By.CSS_SELECTOR, '#collections tr[data-name="secret"]')
             and "Shards: 1" in text(d, "#server"))
        assert browser.find_element(By.ID, "cred-kind").get_attribute("value") == "bearer"
        screenshot(browser, shots / "aionbd-ui-auth.png")
        assert script_errors(browser) == []
