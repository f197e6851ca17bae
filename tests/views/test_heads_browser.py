"""The head view in a real browser (Debian's Chromium): click a token, read its weights, compare with weights().

The standalone file is opened with the network off and every request it makes is recorded
(the technique of test_browser.py); ``/heads`` of ``softdb serve`` runs under its CSP. The real
model's view (slow) is checked the same way. Screenshots go to ``artifacts/screenshots/``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from _fake_heads import fake_heads
from test_browser import By, WebDriverWait, _driver, shot  # test_browser skips without Chromium or selenium

from softdb.views import heads_view_data, write_heads_html

SENTENCE = "The cat sat on the mat because it was warm."


def offline_driver():
    d = _driver(("--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9"))
    d.execute_cdp_cmd("Network.enable", {})
    d.execute_cdp_cmd(
        "Network.emulateNetworkConditions",
        {"offline": True, "latency": 0, "downloadThroughput": 0, "uploadThroughput": 0},
    )
    d.get_log("performance")  # drain what the browser's own start page requested
    return d


def requested(d) -> list[str]:
    urls = []
    for entry in d.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg["method"] == "Network.requestWillBeSent":
            urls.append(msg["params"]["request"]["url"])
    return urls


def select_option(d, select_id: str, value: str) -> None:
    d.find_element(By.CSS_SELECTOR, f'#{select_id} option[value="{value}"]').click()


def choose(d, layer: int, head: int) -> None:
    select_option(d, "layer", str(layer))
    d.find_element(By.CSS_SELECTOR, f'button.head[data-head="{head}"]').click()


def click_token(d, i: int) -> list[tuple[int, float]]:
    """Click token i of the sentence strip; the lookup table's rows as (position, weight)."""
    d.find_element(By.CSS_SELECTOR, f'#sentence span.tok[data-i="{i}"]').click()
    WebDriverWait(d, 10).until(lambda x: x.find_element(By.ID, "lookup").get_attribute("data-token") == str(i))
    rows = d.find_elements(By.CSS_SELECTOR, "#lookup-table tr.hit")
    return [
        (
            int(r.get_attribute("data-j")),
            float(r.find_element(By.CSS_SELECTOR, "td.weight").get_attribute("data-weight")),
        )
        for r in rows
    ]


def check_clicks(d, heads, picks) -> None:
    for layer, head, token in picks:
        choose(d, layer, head)
        shown = click_token(d, token)
        box = d.find_element(By.ID, "lookup")
        assert (box.get_attribute("data-layer"), box.get_attribute("data-head")) == (str(layer), str(head))
        t = heads.table(layer, head)
        ref = np.asarray(t.weights(t.keys[token]), dtype=np.float64)  # (n,)  the head table's own weights
        pos = [j for j, _ in shown]
        assert sorted(pos) == list(range(len(ref)))  # every token, once
        w = np.array([wj for _, wj in shown])
        np.testing.assert_allclose(w, ref[pos], atol=3e-7, rtol=0)
        assert list(w) == sorted(w, reverse=True)  # ranked by weight
        hard = d.find_element(By.ID, "hard-token").text
        assert hard == f"{heads.tokens[int(np.argmax(ref))]} ({int(np.argmax(ref))})"
        cells = d.find_elements(By.CSS_SELECTOR, f'#heatmap tr[data-i="{token}"] td.cell')
        np.testing.assert_allclose([float(c.get_attribute("data-weight")) for c in cells], ref, atol=3e-7, rtol=0)


def test_fake_heads_click_a_token_and_read_its_weights_offline(tmp_path):
    heads = fake_heads()
    path = tmp_path / "heads.html"
    write_heads_html(heads_view_data(heads, text=SENTENCE), path)
    d = offline_driver()
    try:
        d.get(path.as_uri())
        WebDriverWait(d, 20).until(lambda x: x.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")
        assert len(d.find_elements(By.CSS_SELECTOR, "button.head")) == 3
        check_clicks(d, heads, [(0, 0, 1), (1, 2, 8), (0, 1, 12)])
        urls = requested(d)
        assert urls == [path.as_uri()], urls  # the file itself, nothing else
        assert not [x for x in d.get_log("browser") if x["level"] == "SEVERE"]
    finally:
        d.quit()


# ------------------------------------------------------------------ the real model (slow)
@pytest.fixture(scope="module")
def minilm_heads(_offline_and_private_cache):
    from softdb.heads import all_heads

    return all_heads(SENTENCE)


@pytest.mark.slow
def test_minilm_standalone_view_click_a_token_weights_equal_weights_offline(minilm_heads, tmp_path):
    path = tmp_path / "minilm_heads.html"
    size = write_heads_html(heads_view_data(minilm_heads, text=SENTENCE), path)
    print(f"\nstandalone head view: {size / 1024:.0f} KB for 6 layers × 12 heads × {len(minilm_heads.tokens)} tokens")
    d = offline_driver()
    try:
        d.set_window_size(1400, 1000)
        d.get(path.as_uri())
        WebDriverWait(d, 20).until(lambda x: x.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")
        assert len(d.find_elements(By.CSS_SELECTOR, "button.head")) == 12
        it = list(minilm_heads.tokens).index("it")
        check_clicks(d, minilm_heads, [(0, 2, 5), (5, 11, 1), (3, 4, it)])
        shot(d, "heads_minilm_it")
        assert requested(d) == [path.as_uri()]
        assert not [x for x in d.get_log("browser") if x["level"] == "SEVERE"]
    finally:
        d.quit()


@pytest.mark.slow
def test_serve_heads_page_under_its_csp(minilm_heads):
    from softdb import SoftTable
    from softdb.text import HashEncoder
    from softdb.views._server import start_server

    srv = start_server(SoftTable.from_texts(["a b", "c d"], encoder=HashEncoder()), port=0)
    d = _driver()
    try:
        d.get(srv.url + "heads")
        box = d.find_element(By.ID, "text")
        box.send_keys(SENTENCE)
        select_option(d, "layer-param", "3")
        d.find_element(By.CSS_SELECTOR, "#heads-form button").click()
        WebDriverWait(d, 60).until(lambda x: x.find_elements(By.CSS_SELECTOR, "body[data-ready='1']"))
        assert [o.get_attribute("value") for o in d.find_elements(By.CSS_SELECTOR, "#layer option")] == ["3"]
        check_clicks(d, minilm_heads, [(3, 7, 2)])
        assert not [x for x in d.get_log("browser") if x["level"] == "SEVERE"]  # the CSP let the script run
    finally:
        d.quit()
        srv.shutdown()
