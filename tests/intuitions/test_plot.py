"""softdb.plot and the intuition figures: labelled pictures, lazy matplotlib."""

from __future__ import annotations

import re
import sys

import numpy as np
import pytest

pytest.importorskip("matplotlib")
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from softdb import Projection, SoftTable, intuitions, plot
from softdb.intuitions.figures import draw, save_figures
from softdb.text import HashEncoder


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_weights_heatmap_has_ids_on_the_axes():
    t = SoftTable(np.eye(3, dtype=np.float32), ids=["a", "b", "c"], temperature=0.5)
    ax = plot.weights(t, np.eye(3)[:2], query_labels=["first", "second"])
    assert [x.get_text() for x in ax.get_xticklabels()] == ["a", "b", "c"]
    assert [y.get_text() for y in ax.get_yticklabels()] == ["first", "second"]
    assert ax.get_title() == "attention weights (τ = 0.5)"
    assert ax.get_xlabel() == "row id" and ax.get_ylabel() == "query"
    np.testing.assert_allclose(ax.images[0].get_array(), t.weights(np.eye(3)[:2]), rtol=1e-6)


def test_weights_with_text_queries_labels_them():
    t = SoftTable.from_texts(["read a csv file", "compress with gzip"], ids=["csv", "gzip"], encoder=HashEncoder())
    ax = plot.weights(t, ["gzip it", "a csv"])
    assert [y.get_text() for y in ax.get_yticklabels()] == ["gzip it", "a csv"]


def test_weights_on_a_multi_head_table_and_a_given_axes():
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    t = SoftTable(x, ids=list("vwxyz"), projection=Projection(4, d_k=4, heads=2, init="random"))
    _, ax = plt.subplots()
    assert plot.weights(t, x, ax=ax, annotate=False) is ax
    assert len(ax.texts) == 0


def test_many_rows_thin_the_ticks():
    t = SoftTable(np.random.default_rng(0).standard_normal((200, 4)).astype(np.float32))
    ax = plot.weights(t, np.ones((3, 4)))
    assert len(ax.get_xticks()) <= 40


def test_label_count_mismatch_is_an_error():
    with pytest.raises(ValueError, match=re.escape("col_labels has 1 labels but w has 2 columns (w has shape (1, 2))")):
        plot.heatmap([[0.5, 0.5]], col_labels=["a"])


def test_temperature_sweep_follows_the_top_rows():
    t = SoftTable(np.eye(3, dtype=np.float32), ids=["a", "b", "c"])
    ax = plot.temperature_sweep(t, [1.0, 0.5, 0.0], k=2, temperatures=[0.01, 1, 100])
    first = ax.get_lines()[0].get_ydata()
    assert first[0] > 0.99 and abs(first[-1] - 1 / 3) < 0.01  # hard at small τ, mean at large τ
    assert ax.get_xlabel().startswith("temperature τ") and ax.get_ylabel() == "weight"


def test_missing_matplotlib_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    t = SoftTable(np.eye(2, dtype=np.float32))
    with pytest.raises(ImportError, match=re.escape('pip install "softdb[plot]"')):
        plot.weights(t, np.eye(2))


CHEAP = [
    "one-hot",
    "qk-differ",
    "sqrt-d",
    "dot-vs-additive",
    "keys-values",
    "multi-head",
    "self-vs-cross",
    "causal",
    "approximate-select",
]


@pytest.mark.parametrize("name", CHEAP)
def test_each_figure_is_titled_and_labelled(name):
    kwargs = {"sizes": (64, 128)} if name == "dot-vs-additive" else {}
    fig = draw(intuitions.REGISTRY[name](**kwargs))
    main = [ax for ax in fig.axes if ax.get_title()]
    assert main, "every figure has a titled plot"
    for ax in main:
        assert ax.get_xlabel() and ax.get_ylabel(), (name, ax.get_title())


def test_save_figures_writes_pngs(tmp_path):
    results = [intuitions.causal(), intuitions.one_hot()]
    paths = save_figures(results, tmp_path / "new")
    assert [p.name for p in paths] == ["causal.png", "one-hot.png"]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in paths)
