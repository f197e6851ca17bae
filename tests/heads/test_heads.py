"""softdb.heads: head tables from a layer's weights (fast, synthetic), the errors, and (slow) the real
MiniLM checked against its own attention probabilities and head contexts, padded batch included."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from scipy.special import softmax

from softdb.heads import Heads, LayerWeights, all_heads, heads_of_run, layer_tables, model_attentions, transformer_heads
from softdb.heads._model import load

TEXTS = [
    "The cat sat on the mat.",
    "Attention is a soft database lookup: every head scores keys and blends their values.",
    "Why?",
    "Paris is the capital of France, and Berlin is the capital of Germany.",
]


# ------------------------------------------------------------ fast: synthetic
def test_layer_tables_are_each_heads_attention_in_float64_numpy():
    rng = np.random.default_rng(0)
    hidden, heads, n = 12, 3, 7
    w = LayerWeights(
        *(rng.standard_normal((hidden, hidden)).astype(np.float32) for _ in range(3)),
        *(rng.standard_normal(hidden).astype(np.float32) for _ in range(3)),
    )
    x = rng.standard_normal((n, hidden)).astype(np.float32)
    tokens = ("[CLS]", "a", "b", "a", "c", "d", "[SEP]")
    tables = layer_tables(x, tokens, w, heads)
    X = x.astype(np.float64)
    q, k, v = (X @ W.astype(np.float64) + b for W, b in ((w.W_Q, w.b_Q), (w.W_K, w.b_K), (w.W_V, w.b_V)))
    for a, t in enumerate(tables):
        s = slice(4 * a, 4 * a + 4)
        att = softmax(q[:, s] @ k[:, s].T / 2.0, axis=1)  # τ = √d_head = 2
        np.testing.assert_allclose(t.weights(x), att, atol=1e-5)
        np.testing.assert_allclose(t.lookup(x), att @ v[:, s], atol=1e-5)
        assert t.temperature == 2.0 and t.dtype == np.float32
    assert tables[0].ids == ("0:[CLS]", "1:a", "2:b", "3:a", "4:c", "5:d", "6:[SEP]")
    assert tables[2].payloads[3] == {"token": "a", "position": 3}
    assert tables[0].keys is tables[1].keys or np.shares_memory(tables[0].keys, tables[1].keys)  # rows shared


def test_heads_table_names_the_range():
    h = Heads(("[CLS]",), ((None, None),) * 3, 3, 2, 4, "m")
    with pytest.raises(ValueError, match=re.escape("layer must be an int in [0, 3) (the model has 3 layers), got 3")):
        h.table(3, 0)
    msg = "head must be an int in [0, 2) (each layer has 2 heads), got -1; hint: count from 0"
    with pytest.raises(ValueError, match=re.escape(msg)):
        h.table(0, -1)


def test_text_and_model_folder_errors(tmp_path):
    with pytest.raises(ValueError, match=re.escape("text is empty ('  '); hint: a head needs at least one word")):
        all_heads("  ")
    with pytest.raises(TypeError, match=re.escape("text must be a str, got list; hint: one text per call")):
        transformer_heads(["a"], 0)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    msg = (
        f"the model in {tmp_path.resolve()} has model_type='gpt2', but softdb.heads reads BERT-family encoders "
        "(bert, roberta, xlm-roberta, camembert, electra)"
    )
    with pytest.raises(ValueError, match=re.escape(msg)):
        all_heads("hello", model=tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert", "position_embedding_type": "relative_key"}))
    with pytest.raises(ValueError, match=re.escape("has position_embedding_type='relative_key': its heads add")):
        all_heads("hello", model=tmp_path)
    with pytest.raises(ValueError, match=re.escape("model must be None (the bundled all-MiniLM-L6-v2) or a local")):
        all_heads("hello", model=tmp_path / "nope")
    with pytest.raises(ValueError, match=re.escape("text 1 is empty ('')")):
        model_attentions(["a", ""])


# ------------------------------------------------------------ slow: the real model
@pytest.fixture(scope="session")
def run(_offline_and_private_cache):
    """MiniLM run once on a padded batch of texts of different lengths."""
    return model_attentions(TEXTS)


@pytest.mark.slow
def test_every_head_of_minilm_matches_the_model_on_a_padded_batch(run):
    """weights = the model's attention, lookup = the head's context, ≤ 1e-5; padding gets exactly 0."""
    assert run.layers == 6 and run.heads == 12 and run.d_head == 32
    lengths = run.lengths
    assert len(set(lengths.tolist())) == len(TEXTS)  # different lengths: the batch is padded
    worst_w = worst_c = 0.0
    for b in range(len(TEXTS)):
        n = int(lengths[b])
        h = heads_of_run(run, b)
        assert len(h.tokens) == n and h.tokens[0] == "[CLS]" and h.tokens[-1] == "[SEP]"
        for layer in range(6):
            A = run.attentions[layer, b]  # (12, T, T)
            assert not A[:, :n, n:].any()  # the model gives padded keys exactly 0
            X = run.hidden_states[layer, b, :n]  # (n, 384)
            for a in range(12):
                t = h.table(layer, a)
                assert len(t) == n  # padding never enters a table
                np.testing.assert_array_equal(t.keys, X)
                worst_w = max(worst_w, float(np.abs(t.weights(X) - A[a, :n, :n]).max()))
                ctx = run.contexts[layer, b, :n, 32 * a : 32 * (a + 1)]
                worst_c = max(worst_c, float(np.abs(t.lookup(X) - ctx).max()))
    print(f"max |weights - attention| = {worst_w:.2e}, max |lookup - context| = {worst_c:.2e}")
    assert worst_w <= 1e-5 and worst_c <= 1e-5


@pytest.mark.slow
def test_all_heads_and_transformer_heads_of_one_text(run):
    """One text alone (no padding) gives the same tables as in the batch, and transformer_heads one layer of them."""
    h = all_heads(TEXTS[1])
    assert (h.layers, h.heads, h.d_head) == (6, 12, 32) and h.model == "sentence-transformers/all-MiniLM-L6-v2"
    n = int(run.lengths[1])
    assert h.tokens == run.tokens[1] and len(h.tables) == 6 and all(len(t) == 12 for t in h.tables)
    X = np.asarray(h.table(3, 7).keys)
    np.testing.assert_allclose(X, run.hidden_states[3, 1, :n], atol=1e-4)  # batch vs alone: float32 rounding
    np.testing.assert_allclose(h.table(3, 7).weights(X), run.attentions[3, 1, 7, :n, :n], atol=1e-5)
    layer = transformer_heads(TEXTS[1], 3)
    assert len(layer) == 12
    np.testing.assert_array_equal(layer[7].weights(X), h.table(3, 7).weights(X))
    t = layer[0]
    assert t.ids[:3] == ("0:[CLS]", "1:attention", "2:is") and t.payloads[2] == {"token": "is", "position": 2}
    assert load() is load(None)  # cached per folder


@pytest.mark.slow
def test_real_model_errors_and_truncation(run):
    msg = "layer must be an int in [0, 6) (the model has 6 layers), got 6; hint: count from 0"
    with pytest.raises(ValueError, match=re.escape(msg)):
        transformer_heads("hello", 6)
    long = "word " * 600
    msg = "the text has 602 tokens but the model's window is 512 tokens; hint: truncate=True keeps the first 512"
    with pytest.raises(ValueError, match=re.escape(msg)):
        all_heads(long)
    h = all_heads(long, truncate=True)
    assert len(h.tokens) == 512 and len(h.table(0, 0)) == 512


@pytest.mark.slow
def test_a_sentence_transformers_folder_with_the_model_in_a_subfolder(tmp_path, run):
    """A sentence-transformers layout whose BERT sits in a module folder (modules.json) loads too."""
    src = load().model.config.name_or_path
    from pathlib import Path

    sub = tmp_path / "0_Transformer"
    sub.mkdir()
    for f in Path(src).iterdir():
        if f.is_file() and f.name not in ("modules.json",):
            (sub / f.name).symlink_to(f)
    (tmp_path / "modules.json").write_text(
        json.dumps(
            [{"idx": 0, "name": "0", "path": "0_Transformer", "type": "sentence_transformers.models.Transformer"}]
        )
    )
    h = all_heads(TEXTS[0], model=tmp_path)
    n = int(run.lengths[0])
    X = np.asarray(h.table(5, 11).keys)
    np.testing.assert_allclose(h.table(5, 11).weights(X), run.attentions[5, 0, 11, :n, :n], atol=1e-5)
    assert h.model == str(tmp_path)
