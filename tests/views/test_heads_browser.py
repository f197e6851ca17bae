"""The head view in a real browser (Debian's Chromium): click a token, read its weights, compare with weights().

The standalone file is opened with the network off and every request it makes is recorded
(the technique of test_browser.py); ``/heads`` of ``softdb serve`` runs under its CSP. The real
model's view (slow) is checked the same way. Screenshots go to ``artifacts/screenshots/``.
"""

from __future__ import annotations

import json

import numpy as np
from _fake_heads import fake_heads
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait
from test_browser import _driver

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


def choose(d, layer: int, head: int) -> None:
    Select(d.find_element(By.ID, "layer")).select_by_value(str(layer))
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
        np.testing.assert_allclose(w, ref[pos], atol=5e-7, rtol=0)
        assert list(w) == sorted(w, reverse=True)  # ranked by weight
        hard = d.find_element(By.ID, "hard-token").text
        assert hard == f"{heads.tokens[int(np.argmax(ref))]} ({int(np.argmax(ref))})"
        cells = d.find_elements(By.CSS_SELECTOR, f'#heatmap tr[data-i="{token}"] td.cell')
        np.testing.assert_allclose([float(c.get_attribute("data-weight")) for c in cells], ref, atol=5e-7, rtol=0)


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
