"""The web app and the standalone explorer in a real browser (Debian's Chromium, driven by selenium).

Skips only when no Chromium/chromedriver is installed (``.ci/run`` installs them).
Screenshots go to ``artifacts/screenshots/`` in the repository (git-ignored);
the path is printed.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from softdb import SoftTable
from softdb.text import HashEncoder
from softdb.views import explain_view, explanation_grid
from softdb.views._server import start_server

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
    pytest.skip(
        f"no browser: need {CHROMIUM} and {CHROMEDRIVER} (apt-get install chromium chromium-driver)",
        allow_module_level=True,
    )
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is in softdb[dev]")
from selenium.common.exceptions import NoAlertPresentException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

SHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
XSS = "<script>alert(1)</script>"
TEXTS = [
    "read rows from a csv file",
    "write rows to a csv file",
    "compress data with gzip",
    "decompress a gzip stream",
    f"{XSS} evil payload",
    "parse json text into objects",
    "serialize objects to json",
    "run a shell command and capture its output",
    "open a zip archive",
    "send an email message over smtp",
    "format dates and times",
    "walk a directory tree",
    "hash a password with a salt",
    "read a configuration file",
    "parse command line arguments",
    "compile a regular expression",
    "sort a list of records",
    "count words in a text",
]


def _driver(extra_flags: tuple[str, ...] = ()) -> object:
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-dev-shm-usage",
        "--window-size=1280,900",
        f"--user-data-dir={tempfile.mkdtemp(prefix='softdb-chromium-')}",
        *extra_flags,
    ):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)  # no Selenium Manager: explicit driver


def shot(driver, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    driver.save_screenshot(str(path))
    print(f"\nscreenshot: {path}")
    return path


@pytest.fixture(scope="module")
def table():
    return SoftTable.from_texts(TEXTS, ids=[f"doc-{i:02d}" for i in range(len(TEXTS))], encoder=HashEncoder())


@pytest.fixture(scope="module")
def server(table):
    srv = start_server(table, port=0, title="softdb test corpus")
    try:
        yield srv
    finally:
        srv.shutdown()


@pytest.fixture(scope="module")
def browser():
    d = _driver()
    try:
        yield d
    finally:
        d.quit()


def api(server, **params) -> dict:
    with urllib.request.urlopen(server.url + "api/search?" + urllib.parse.urlencode(params), timeout=30) as r:
        return json.load(r)


def wait_for_answer(browser, query: str, temperature: float | None = None, mode: str = "soft"):
    def ready(d):
        hits = d.find_element(By.ID, "hits")
        if hits.get_attribute("data-query") != query or hits.get_attribute("data-mode") != mode:
            return False
        if temperature is not None and not math.isclose(
            float(hits.get_attribute("data-temperature")), temperature, rel_tol=1e-12
        ):
            return False
        return d.find_elements(By.CSS_SELECTOR, "#hits tbody tr")

    return WebDriverWait(browser, 20).until(ready)


def shown_hits(browser) -> list[dict]:
    out = []
    for tr in browser.find_elements(By.CSS_SELECTOR, "#hits tbody tr"):
        cells = {c: tr.find_elements(By.CSS_SELECTOR, f"td.{c}") for c in ("id", "weight", "text")}
        row = {"id": cells["id"][0].text, "text": cells["text"][0].text}
        if cells["weight"]:
            row["weight_text"] = cells["weight"][0].text
            row["weight"] = float(cells["weight"][0].get_attribute("data-weight"))
        out.append(row)
    return out


def test_type_a_query_and_see_the_top_hit(browser, server, table):
    browser.get(server.url)
    box = browser.find_element(By.ID, "q")
    box.send_keys("compress gzip data")
    wait_for_answer(browser, "compress gzip data")
    qv = table.encoder.encode(["compress gzip data"])[0]
    expected = table.search(qv, k=10)
    hits = shown_hits(browser)
    assert hits[0]["id"] == expected.ids[0] == "doc-02"
    assert [h["id"] for h in hits] == list(expected.ids)
    assert "compress data with gzip" in hits[0]["text"]
    shot(browser, "serve_search")
    severe = [x for x in browser.get_log("browser") if x["level"] == "SEVERE"]
    assert not severe, severe  # no blocked script (CSP), no failed request


def test_moving_the_slider_shows_the_apis_weights_at_that_temperature(browser, server):
    browser.get(server.url + "?q=read+csv+rows&k=6")
    wait_for_answer(browser, "read csv rows")
    slider = browser.find_element(By.ID, "t")
    grid = json.loads(browser.find_element(By.ID, "config").get_attribute("textContent"))["grid"]
    start = int(slider.get_attribute("value"))
    for _ in range(12):  # twelve grid steps up: τ grows by 2^(12/8)
        slider.send_keys(Keys.ARROW_RIGHT)
    idx = int(slider.get_attribute("value"))
    assert idx == start + 12
    tau = grid[idx]
    wait_for_answer(browser, "read csv rows", temperature=tau)
    assert float(browser.find_element(By.ID, "tau").get_attribute("data-temperature")) == tau
    shown = shown_hits(browser)
    ref = api(server, q="read csv rows", k=6, temperature=repr(tau))
    assert [h["id"] for h in shown] == [h["id"] for h in ref["hits"]]
    for s, r in zip(shown, ref["hits"]):
        assert s["weight"] == r["weight"]
        assert math.isclose(float(s["weight_text"]), r["weight"], rel_tol=1e-3, abs_tol=1e-9)
    # and the weights really moved with τ
    base = api(server, q="read csv rows", k=6)
    assert ref["hits"][0]["weight"] < base["hits"][0]["weight"]
    shot(browser, "serve_slider")


def test_a_shared_url_opens_answered(browser, server, table):
    browser.get(server.url + "?" + urllib.parse.urlencode({"q": "parse json", "k": 3, "t": "0.1", "mode": "soft"}))
    grid = json.loads(browser.find_element(By.ID, "config").get_attribute("textContent"))["grid"]
    snapped = min(grid, key=lambda g: abs(math.log(g) - math.log(0.1)))
    wait_for_answer(browser, "parse json", temperature=snapped)
    hits = shown_hits(browser)
    assert len(hits) == 3
    assert browser.find_element(By.ID, "q").get_attribute("value") == "parse json"
    qv = table.encoder.encode(["parse json"])[0]
    assert [h["id"] for h in hits] == list(table.search(qv, k=3, temperature=snapped).ids)
    # the page keeps its URL shareable as it changes
    assert "q=parse%20json" in browser.current_url or "q=parse+json" in browser.current_url
    browser.get(server.url + "?q=parse+json&k=3&mode=hard")
    wait_for_answer(browser, "parse json", mode="hard")
    assert not browser.find_element(By.CSS_SELECTOR, "#hits th.soft-only").is_displayed()


def test_an_xss_payload_renders_as_text(browser, server):
    browser.get(server.url + "?q=evil+payload&k=3")
    wait_for_answer(browser, "evil payload")
    hits = shown_hits(browser)
    assert hits[0]["id"] == "doc-04"
    assert hits[0]["text"] == f"{XSS} evil payload"  # the markup is shown, as text
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text  # noqa: B018 - no alert ever opened
    assert browser.execute_script("return document.querySelectorAll('#hits script').length") == 0
    shot(browser, "serve_xss_as_text")


def test_compare_heatmap_has_ids_on_the_axes(browser, server, table):
    browser.get(server.url)
    queries = ["csv rows", "gzip", "json", "email smtp"]
    area = browser.find_element(By.ID, "cq")
    area.send_keys("\n".join(queries))
    ck = browser.find_element(By.ID, "ck")
    ck.clear()
    ck.send_keys("3")
    browser.find_element(By.ID, "compare").click()
    WebDriverWait(browser, 20).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#heatmap td.cell"))
    cols = [th.get_attribute("textContent") for th in browser.find_elements(By.CSS_SELECTOR, "#heatmap th.col")]
    rows = [th.get_attribute("textContent") for th in browser.find_elements(By.CSS_SELECTOR, "#heatmap th.row")]
    assert rows == queries
    qv = table.encoder.encode(queries)
    top = table.search(qv, k=3).ids  # (4, 3)
    assert set(cols) == set(top.reshape(-1))
    cells = browser.find_elements(By.CSS_SELECTOR, "#heatmap td.cell")
    w = np.array([float(c.get_attribute("data-weight")) for c in cells]).reshape(len(queries), len(cols))
    ref = table.weights(qv)[:, [table.row_of(i) for i in cols]]
    np.testing.assert_allclose(w, ref, atol=1e-6)
    shot(browser, "serve_compare")


def test_standalone_explorer_renders_offline_and_its_slider_is_exact(table, tmp_path):
    e = explain_view(table, "read csv rows", k=10)
    path = tmp_path / "explain.html"
    page = e.to_html(path)
    size = path.stat().st_size
    print(f"\nstandalone explorer: {size} bytes for k=10")
    assert size < 300 * 1024
    d = _driver(("--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9"))
    try:
        d.execute_cdp_cmd("Network.enable", {})
        d.execute_cdp_cmd(
            "Network.emulateNetworkConditions",
            {"offline": True, "latency": 0, "downloadThroughput": 0, "uploadThroughput": 0},
        )
        d.get_log("performance")  # drain what the browser's own start page requested
        d.get(path.as_uri())
        rows = WebDriverWait(d, 20).until(lambda x: x.find_elements(By.CSS_SELECTOR, "tr.sdbx-hit"))
        assert len(rows) == 10
        assert [r.find_element(By.CSS_SELECTOR, "td.sdbx-id").text for r in rows] == e.ids
        shot(d, "explorer_offline")
        # move the slider to five grid points and compare with search() at those temperatures
        grid = explanation_grid(e)
        qv = table.encoder.encode(["read csv rows"])[0]
        for i in (0, 17, grid.base, 55, len(grid.temperatures) - 1):
            d.execute_script(
                "var s = document.querySelector('input.sdbx-slider'); s.value = arguments[0];"
                "s.dispatchEvent(new Event('input'));",
                i,
            )
            tau = float(d.find_element(By.CSS_SELECTOR, ".sdbx-tau").get_attribute("data-temperature"))
            assert tau == grid.temperatures[i]
            shown = [float(c.get_attribute("data-weight")) for c in d.find_elements(By.CSS_SELECTOR, "td.sdbx-w")]
            ref = table.search(qv, k=10, temperature=tau)
            np.testing.assert_allclose(shown, ref.weights, rtol=2e-4, atol=1e-7)
            if i == 55:
                shot(d, "explorer_slider_hot")
        # nothing but the file itself was requested
        urls = []
        for entry in d.get_log("performance"):
            msg = json.loads(entry["message"])["message"]
            if msg["method"] == "Network.requestWillBeSent":
                urls.append(msg["params"]["request"]["url"])
        assert urls and urls[0] == path.as_uri(), urls
        assert all(u.startswith(("file:", "data:")) for u in urls), urls
        errors = [x for x in d.get_log("browser") if x["level"] == "SEVERE"]
        assert not errors, errors
    finally:
        d.quit()
    assert "http:" not in page and "https:" not in page
