"""The head view's data and page (random projected tables standing in for a model's heads: no model)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from _fake_heads import TOKENS, fake_heads

from softdb.render._heads import heads_html
from softdb.text import HashEncoder
from softdb.views import heads_summary, heads_view_data, write_heads_html
from softdb.views._app import App
from softdb.views._heads import WEIGHT_DECIMALS, pick_layers
from softdb.views._heads_route import MAX_HEADS_CHARS, script_hash


@pytest.fixture(scope="module")
def heads():
    return fake_heads()


@pytest.fixture(scope="module")
def data(heads):
    return heads_view_data(heads, text="the cat sat")


def _ref(t):
    """float64 numpy reference of one head: weights, entropy, effective rows, soft and hard answers."""
    p = t.projection
    x = np.asarray(t.keys, np.float64)  # (n, d)
    s = (x @ p.W_Q) @ (x @ p.W_K).T / t.temperature  # (n, n)
    w = np.exp(s - s.max(axis=1, keepdims=True))
    w /= w.sum(axis=1, keepdims=True)
    v = x @ p.W_V  # (n, d_head)
    ent = -(w * np.log(np.maximum(w, 1e-300))).sum(axis=1)
    return w, ent, 1 / (w**2).sum(axis=1), w @ v, v[w.argmax(axis=1)]


def test_every_heads_weights_and_answers_match_a_float64_reference(heads, data):
    assert data["layers"] == [0, 1] and data["heads"] == 3 and data["tokens"] == TOKENS
    for li in range(2):
        for h in range(3):
            v, t = data["views"][str(li)][h], heads.table(li, h)
            w, ent, eff, soft, hard = _ref(t)
            np.testing.assert_allclose(v["weights"], w, atol=2e-6, rtol=0)  # float32 softmax vs float64
            np.testing.assert_allclose(v["weights"], t.weights(t.keys), atol=0.5 * 10.0**-WEIGHT_DECIMALS + 1e-9)
            np.testing.assert_allclose(v["entropy"], ent, rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(v["effective_rows"], eff, rtol=1e-4)
            assert v["hard_row"] == list(w.argmax(axis=1))
            np.testing.assert_allclose(v["soft"], soft, rtol=2e-3, atol=1e-5)
            np.testing.assert_allclose(v["hard"], hard, rtol=2e-3, atol=1e-5)
            cos = (soft * hard).sum(1) / np.linalg.norm(soft, axis=1) / np.linalg.norm(hard, axis=1)
            np.testing.assert_allclose(v["cosine"], cos, atol=1e-4)


def test_one_layer_only_and_a_layer_out_of_range(heads):
    d = heads_view_data(heads, layer=1)
    assert d["layers"] == [1] and list(d["views"]) == ["1"]
    msg = "layer must be in 0..1 (the model has 2 layers), got 2; hint: --layer 1 is the last one"
    with pytest.raises(ValueError, match=re.escape(msg)):
        pick_layers(heads, 2)
    with pytest.raises(ValueError, match=re.escape("got -1")):
        heads_view_data(heads, layer=-1)


def test_the_page_is_strict_json_escaped_and_offline(heads, tmp_path):
    evil = "<script>alert(1)</script>"
    d = heads_view_data(fake_heads(["[CLS]", evil, "&amp;", "[SEP]"]), text=evil)
    page = heads_html(d)
    assert evil not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    blob = re.search(r'<script type="application/json" id="heads-data">(.*?)</script>', page, re.S).group(1)
    assert json.loads(blob)["tokens"][1] == evil  # the data keeps the token, as JSON that cannot close the tag
    assert "http:" not in page and "https:" not in page and "<link" not in page and " src=" not in page
    size = write_heads_html(heads_view_data(heads), tmp_path / "h.html")
    assert size == (tmp_path / "h.html").stat().st_size > 0


def test_the_text_summary_names_each_heads_top_tokens(data):
    out = heads_summary(data)
    lines = out.splitlines()
    assert lines[0].startswith('fake-bert · "the cat sat" · 13 tokens: [CLS] the cat')
    assert sum(1 for line in lines if line.startswith("layer ")) == 2
    v = data["views"]["0"][2]
    row = next(line for line in lines if re.match(r"\s+2\s", line))  # layer 0, head 2
    ent = float(row.split()[1])
    assert abs(ent - np.mean(v["entropy"])) < 1e-3
    assert f"the→{TOKENS[v['hard_row'][1]]}" in row and f"cat→{TOKENS[v['hard_row'][2]]}" in row


# ------------------------------------------------------------------------ /heads in the app
@pytest.fixture(scope="module")
def app():
    from softdb import SoftTable

    return App(SoftTable.from_texts(["read a csv file", "gzip a file"], encoder=HashEncoder()))


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("text=", "the text is empty; hint: /heads?text=The+cat+sat+on+the+mat"),
        ("text=a&layer=x", "layer must be a whole number, got 'x'; hint: e.g. layer=2"),
        ("text=a&layer=6", "layer must be in 0..5 (the model has 6 layers), got 6; hint: leave it out"),
        ("text=a&text=b", "parameter 'text' must be given once, got it 2 times"),
        ("text=a&q=b", "unknown parameter 'q'; /heads takes text and layer"),
        (f"text={'a' * (MAX_HEADS_CHARS + 1)}", f"the text has {MAX_HEADS_CHARS + 1} characters but at most"),
    ],
)
def test_bad_heads_requests_are_json_400s(app, query, message):
    status, ctype, body = app.handle("/heads", query)
    assert status == 400 and ctype.startswith("application/json")
    assert json.loads(body)["error"].startswith(message)


def test_heads_without_text_is_the_text_box(app):
    status, ctype, body = app.handle("/heads", "")
    page = body.decode()
    assert status == 200 and ctype.startswith("text/html")
    assert '<form id="heads-form" method="get" action="/heads"' in page and "heads-data" not in page


def test_heads_with_text_is_the_view_and_is_cached(app, fake_all_heads):
    status, _, body = app.handle("/heads", "text=the+cat+sat&layer=1")
    assert status == 200 and fake_all_heads == [("the cat sat", None, False)]
    page = body.decode()
    blob = re.search(r'id="heads-data">(.*?)</script>', page, re.S).group(1)
    assert json.loads(blob)["layers"] == [1]
    assert 'value="the cat sat"' in page  # the text box keeps the sentence
    assert app.handle("/heads", "text=the+cat+sat&layer=1")[2] == body and len(fake_all_heads) == 1
    assert script_hash() in app.script_hashes
