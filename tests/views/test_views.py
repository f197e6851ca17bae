"""softdb.views without a browser: notebook displays, to_dicts / to_pandas, the explorer's data and grid."""

from __future__ import annotations

import html.parser
import json
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import logsumexp, softmax

from softdb import FitReport, SoftTable
from softdb.cli import main
from softdb.intuitions import Intuition
from softdb.render._results import PANDAS_HINT
from softdb.text import HashEncoder
from softdb.views import (
    explain_view,
    explanation_data,
    explanation_grid,
    grid_log_sum_exp,
    search_record,
    temperature_grid,
)

XSS = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def texts_table():
    texts = [
        "read rows from a csv file",
        "compress data with gzip",
        f"{XSS} evil payload",
        "parse json text",
        "run a shell command",
        "open a zip archive",
    ]
    return SoftTable.from_texts(texts, ids=[f"d{i}" for i in range(len(texts))], encoder=HashEncoder())


def _random_table(seed: int, n: int = 40, d: int = 8, metric: str = "cosine") -> SoftTable:
    rng = np.random.default_rng(seed)
    keys = rng.normal(size=(n, d)).astype(np.float32)
    return SoftTable(
        keys,
        rng.normal(size=(n, 3)).astype(np.float32),
        ids=[f"r{i}" for i in range(n)],
        payloads=[f"row {i}" for i in range(n)],
        metric=metric,
        temperature=0.1,
    )


class _Scripts(html.parser.HTMLParser):
    """Collects the text of every <script> element (what a browser would run or parse)."""

    def __init__(self) -> None:
        super().__init__()
        self.inside, self.scripts, self.tags = False, [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "script":
            self.inside = True
            self.scripts.append("")

    def handle_endtag(self, tag):
        if tag == "script":
            self.inside = False

    def handle_data(self, data):
        if self.inside:
            self.scripts[-1] += data


# ------------------------------------------------------------------- the grid
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), metric=st.sampled_from(["dot", "cosine"]), i=st.integers(0, 80))
def test_grid_reweights_exactly_like_search_at_that_temperature(seed, metric, i):
    """w_j(τ) = exp(s_j/τ − lse(τ)) from the grid equals search(temperature=τ) and a float64 softmax.

    Both sides hold the logits s/τ in float32, so they agree to a few float32 ulps of
    the largest logit (relative error of a weight = absolute error of its logit).
    """
    t = _random_table(seed, metric=metric)
    q = np.random.default_rng(seed + 1).normal(size=8).astype(np.float32)
    grid = grid_log_sum_exp(t, q)
    tau = float(grid.temperatures[i])
    hits = t.search(q, k=5, temperature=tau)
    w_grid = np.exp(hits.scores.astype(np.float64) / tau - grid.lse[i])  # (5,)
    rtol = 1e-5 + 16 * np.finfo(np.float32).eps * float(np.abs(hits.scores).max()) / tau
    np.testing.assert_allclose(w_grid, hits.weights, rtol=rtol, atol=1e-7)
    # the float64 reference: scores of every row, softmax and logsumexp by scipy
    keys = t.keys.astype(np.float64)
    qq = q.astype(np.float64) / (np.linalg.norm(q) if metric == "cosine" else 1.0)
    s = keys @ qq  # (n,)
    np.testing.assert_allclose(grid.lse[i], logsumexp(s / tau), rtol=1e-5, atol=rtol)
    ref = softmax(s / tau)
    np.testing.assert_allclose(grid.effective_rows()[i], 1 / (ref @ ref), rtol=2e-3)


def test_grid_is_centred_on_the_explained_temperature():
    g = temperature_grid(0.05)
    assert g[40] == 0.05 and len(g) == 81
    np.testing.assert_allclose(g[1:] / g[:-1], 2 ** (1 / 8))


def test_several_heads_have_no_grid_one_head_reweights_exactly():
    from softdb import Projection

    t = _random_table(0)
    q = np.random.default_rng(1).normal(size=8).astype(np.float32)
    t.projection = Projection(8, 4, 4, heads=2, init="random", seed=3)
    assert grid_log_sum_exp(t, q) is None
    assert explanation_data(explain_view(t, q, k=3))["grid"] is None
    t.projection = Projection(8, 4, init="random", seed=3)  # one head: one projected score per row
    e = explain_view(t, q, k=3)
    g = explanation_grid(e)
    for i in (0, 30, 80):
        tau = float(g.temperatures[i])
        hits = t.search(q, k=3, temperature=tau)
        assert list(hits.ids) == e.ids
        np.testing.assert_allclose(np.exp(np.asarray(e.scores) / tau - g.lse[i]), hits.weights, rtol=1e-3)


def test_explain_view_encodes_once_and_keeps_the_text(texts_table):
    calls = []
    enc = texts_table.encoder

    class Counting:
        name, dim = enc.name, enc.dim

        def encode(self, texts, **kw):
            calls.append(list(texts))
            return enc.encode(texts, **kw)

    t = SoftTable.from_texts(["a csv file", "gzip it"], encoder=enc)
    t.encoder = Counting()
    e = explain_view(t, "csv", k=2)
    assert calls == [["csv"]]
    assert e.query == "csv" and explanation_grid(e) is not None and calls == [["csv"]]
    assert len(e.lse_at) == 2 * len(explanation_grid(e).temperatures)  # the grid came from the same pass


# ------------------------------------------------------------ search record
def test_search_record_matches_search_and_is_strict_json(texts_table):
    from softdb.views import search_answer

    qv = texts_table.encoder.encode(["csv file"])[0]
    rec = search_record(search_answer(texts_table, qv, 3), "csv file", table_rows=len(texts_table))
    assert rec == search_record(texts_table.explain(qv, k=3), "csv file", table_rows=len(texts_table)) | {
        "entropy": rec["entropy"],
        "effective_rows": rec["effective_rows"],
        "covered": rec["covered"],
        "hits": rec["hits"],
    }
    hits = texts_table.search(qv, k=3)
    assert [h["id"] for h in rec["hits"]] == list(hits.ids)
    np.testing.assert_allclose([h["weight"] for h in rec["hits"]], hits.weights, atol=1e-6)
    json.loads(json.dumps(rec), parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
    hard = search_record(search_answer(texts_table, qv, 3), "csv file", mode="hard", table_rows=6)
    assert all("weight" not in h for h in hard["hits"]) and hard["mode"] == "hard"


def test_cli_search_json_is_the_api_object(texts_table, tmp_path, capsys):
    """`softdb search --json` and /api/search print the same object for the same query."""
    from softdb.views._app import App

    path = tmp_path / "t"
    texts_table.save(path)
    assert main(["search", "csv file", "gzip", "--table", str(path), "-k", "2", "--json"]) == 0
    lines = capsys.readouterr().out.splitlines()
    app = App(SoftTable.load(path))
    for line, q in zip(lines, ["csv file", "gzip"], strict=True):
        status, _, body = app.handle("/api/search", f"q={q.replace(' ', '+')}&k=2")
        assert status == 200 and json.loads(line) == json.loads(body)


# ------------------------------------------------------- to_dicts / to_pandas
def test_to_dicts_per_query_lists_like_semantic_search():
    t = _random_table(3)
    q = np.random.default_rng(4).normal(size=(3, 8)).astype(np.float32)
    res = t.search(q, k=4)
    d = res.to_dicts()
    assert len(d) == 3 and all(len(x) == 4 for x in d)
    for qi in range(3):
        assert [h["id"] for h in d[qi]] == list(res.ids[qi])
        np.testing.assert_array_equal([h["score"] for h in d[qi]], res.scores[qi])
        np.testing.assert_array_equal([h["weight"] for h in d[qi]], res.weights[qi])
        assert [h["payload"] for h in d[qi]] == list(res.payloads[qi])
        assert all(type(h["score"]) is float and type(h["weight"]) is float for h in d[qi])
    single = t.search(q[0], k=2).to_dicts()
    assert [h["id"] for h in single] == list(res.ids[0][:2])


def test_to_dicts_leaves_out_no_match_slots():
    t = _random_table(5, n=6)
    mask = np.array([True, False, False, False, False, False])
    out = t.search(np.ones(8, np.float32), k=3, mask=mask).to_dicts()
    assert [h["id"] for h in out] == ["r0"]


def test_to_pandas_rows_and_columns():
    pd = pytest.importorskip("pandas", reason="pandas is the optional extra softdb[views]")
    t = _random_table(6)
    q = np.random.default_rng(7).normal(size=(2, 8)).astype(np.float32)
    res = t.search(q, k=3)
    df = res.to_pandas()
    assert isinstance(df, pd.DataFrame)
    assert list(df.columns) == ["query", "rank", "id", "score", "weight", "payload"]
    assert df["query"].tolist() == [0, 0, 0, 1, 1, 1] and df["rank"].tolist() == [1, 2, 3, 1, 2, 3]
    assert df["id"].tolist() == list(res.ids.reshape(-1))
    np.testing.assert_array_equal(df["weight"].to_numpy(), res.weights.reshape(-1))


def test_to_pandas_without_pandas_names_the_extra(monkeypatch):
    import builtins

    real = builtins.__import__

    def no_pandas(name, *a, **kw):
        if name == "pandas":
            raise ImportError("No module named 'pandas'")
        return real(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_pandas)
    res = _random_table(8).search(np.ones(8, np.float32), k=2)
    with pytest.raises(ImportError, match=re.escape(PANDAS_HINT)):
        res.to_pandas()
    assert 'pip install "softdb[views]"' in PANDAS_HINT


# ------------------------------------------------------------ HTML displays
def _assert_escaped(page: str) -> None:
    parsed = _Scripts()
    parsed.feed(page)
    assert XSS not in page, "the payload's markup reached the page unescaped"
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    for s in parsed.scripts:
        assert "alert(1)" not in s or "\\u003cscript\\u003ealert(1)" in s


def test_every_display_escapes_payloads(texts_table):
    qv = texts_table.encoder.encode(["evil payload"])[0]
    assert texts_table.search(qv, k=1).ids[0] == "d2"
    for page in (
        texts_table._repr_html_(),
        texts_table.search(qv, k=3)._repr_html_(),
        texts_table.explain(qv, k=3)._repr_html_(),
        texts_table.explain(qv, k=3).to_html(),
    ):
        _assert_escaped(page)


def test_explorer_embeds_its_data_and_loads_nothing(texts_table, tmp_path):
    e = explain_view(texts_table, "evil payload", k=3)
    path = tmp_path / "e.html"
    page = e.to_html(path)
    assert path.read_text(encoding="utf-8") == page
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:|//)""", page, re.I)
    assert "http:" not in page and "https:" not in page
    parsed = _Scripts()
    parsed.feed(page)
    assert "link" not in parsed.tags and "img" not in parsed.tags and "iframe" not in parsed.tags
    data = json.loads(parsed.scripts[0])
    assert [h["id"] for h in data["hits"]] == e.ids
    assert data["grid"]["temperatures"][data["grid"]["base"]] == e.temperature


def test_notebook_displays_of_intuitions_and_fit_reports():
    r = Intuition("one-hot", "a <b>claim</b>", {"error": 0.5, "n": 3, "note": "<i>x</i>"}, False, "s")
    page = r._repr_html_()
    assert "FAILS" in page and "&lt;b&gt;claim" in page and "<i>x</i>" not in page
    rep = FitReport((2.0, 1.0, 0.5), 2, 0.25, (0.1, 0.4), 0.4, "lbfgs", True, val_metric="recall@1")
    page = rep._repr_html_()
    assert "lbfgs" in page and "recall@1" in page and page.count("<svg") == 2


def test_table_display_is_bounded():
    t = _random_table(9, n=40)
    page = t._repr_html_()
    assert "40 rows" in page and "… and 32 more rows" in page and page.count("<tr>") == 8 + 1


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    metric=st.sampled_from(["dot", "cosine"]),
    k=st.integers(1, 40),
    tau=st.floats(0.01, 10.0),
)
def test_search_answer_one_pass_equals_explain_and_scipy(seed, metric, k, tau):
    """The API's one-pass answer equals explain() (4 passes) and a float64 scipy reference."""
    from softdb.views import search_answer

    t = _random_table(seed, metric=metric)
    q = np.random.default_rng(seed + 2).normal(size=8).astype(np.float32)
    a = search_answer(t, q, k, temperature=tau)
    e = t.explain(q, k=k, temperature=tau)
    assert a.ids == e.ids and a.payloads == e.payloads and a.temperature == e.temperature
    np.testing.assert_allclose(a.scores, e.scores, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(a.weights, e.weights, rtol=1e-4, atol=1e-7)
    qq = q.astype(np.float64) / (np.linalg.norm(q) if metric == "cosine" else 1.0)
    w = softmax(t.keys.astype(np.float64) @ qq / tau)  # (n,)
    nz = w[w > 0]
    assert a.entropy == pytest.approx(float(-(nz * np.log(nz)).sum()), rel=1e-3, abs=1e-5)
    assert a.effective_rows == pytest.approx(float(1 / (w @ w)), rel=1e-3)


def test_search_answers_of_several_heads_match_explain():
    from softdb import Projection
    from softdb.views import search_answers

    t = _random_table(11)
    t.projection = Projection(8, 4, 4, heads=2, init="random", seed=1)
    q = np.random.default_rng(12).normal(size=(3, 8)).astype(np.float32)
    answers = search_answers(t, q, 4)
    for j, a in enumerate(answers):
        e = t.explain(q[j], k=4)
        assert a.ids == e.ids
        np.testing.assert_allclose(a.weights, e.weights, rtol=1e-5, atol=1e-7)
        assert a.entropy == pytest.approx(e.entropy, rel=1e-4) and a.effective_rows == pytest.approx(
            e.effective_rows, rel=1e-4
        )
