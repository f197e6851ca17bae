"""softdb.intuitions: every experiment runs, and each test asserts what it measured."""

from __future__ import annotations

import argparse
import itertools
import json
import re

import numpy as np
import pytest

from softdb import intuitions
from softdb.cli import _intuitions as _cli_intuitions
from softdb.intuitions import REGISTRY, Intuition


@pytest.fixture(scope="session")
def search_result(minilm):
    """Claim 10 on the stdlib corpus, once per session (the first encode fills the cache)."""
    return intuitions.search_engine(encoder=minilm)


@pytest.fixture(scope="session")
def self_attention_result(minilm):
    return intuitions.self_attention(encoder=minilm)


def _check_result(r: Intuition, name: str) -> None:
    assert isinstance(r, Intuition) and r.name == name
    assert r.claim and r.summary  # holds and the figures' types are enforced by Intuition itself
    json.dumps(r.to_dict(), allow_nan=False)  # strict JSON: no NaN or inf figure


# ------------------------------------------------------------------ the registry
def test_registry_has_the_fifteen_claims_in_order():
    assert list(REGISTRY) == [
        "one-hot",
        "qk-differ",
        "self-attention",
        "sqrt-d",
        "dot-vs-additive",
        "keys-values",
        "multi-head",
        "self-vs-cross",
        "causal",
        "search-engine",
        "approximate-select",
        "heads-hard",
        "heads-position",
        "heads-sink",
        "heads-asymmetric",
    ]
    assert set(list(REGISTRY)[11:]) == intuitions.REAL_HEADS


@pytest.mark.parametrize("name", list(REGISTRY))
def test_each_experiment_has_a_one_paragraph_claim(name):
    doc = REGISTRY[name].__doc__
    first = doc.strip().split("\n\n")
    assert len(first[0].splitlines()) == 1, "summary line"
    assert "Holds when" in " ".join(doc.split()), "the docstring states the verdict rule"


def test_run_rejects_unknown_names_before_running():
    with pytest.raises(KeyError, match=re.escape("unknown intuition 'nope'; valid names: one-hot, qk-differ")):
        list(intuitions.run(["causal", "nope"]))


def test_experiments_are_seeded():
    a, b = intuitions.approximate_select(seed=3), intuitions.approximate_select(seed=3)
    assert a.figures == b.figures
    assert intuitions.approximate_select(seed=4).figures != a.figures


# ------------------------------------------------------------------ each claim
def test_one_hot():
    r = intuitions.one_hot()
    _check_result(r, "one-hot")
    f = r.figures
    assert f["max_abs_soft_minus_hard_tau_min"] < 1e-6
    assert f["max_weight_tau_min"] > 1 - 1e-6
    assert f["max_abs_soft_minus_mean_tau_max"] < 1e-4
    assert f["in_hull_fraction"] == 1.0
    assert r.holds


def test_qk_differ():
    r = intuitions.qk_differ()
    _check_result(r, "qk-differ")
    assert r.figures["accuracy_separate"] >= 0.99
    assert r.figures["accuracy_tied"] <= 2 / 3
    assert r.holds


@pytest.mark.slow
def test_self_attention(self_attention_result):
    r = self_attention_result
    _check_result(r, "self-attention")
    f = r.figures
    assert f["self_top_unit"] == 1.0  # ⟨x, x⟩ ≥ ⟨x, y⟩ for unit vectors
    assert f["self_top_random_norms"] < 1.0
    assert f["pronoun_to_referent_plain"] == 0.0
    assert f["pronoun_to_referent_learned"] >= 0.75
    assert r.holds


def test_sqrt_d():
    r = intuitions.sqrt_d()
    _check_result(r, "sqrt-d")
    dims = r.plots["dims"]
    raw = [r.figures[f"entropy_unscaled_d{d}"] for d in dims]
    scaled = [r.figures[f"entropy_scaled_d{d}"] for d in dims]
    assert all(a > b for a, b in itertools.pairwise(raw)), raw  # saturates steadily as d grows
    assert max(scaled) < 1.5 * min(scaled)
    assert raw[-1] < 0.1 * scaled[-1]
    assert r.figures[f"grad_unscaled_d{dims[-1]}"] < 0.1 * r.figures[f"grad_scaled_d{dims[-1]}"]
    assert r.holds


def test_dot_vs_additive():
    sizes = (64, 256, 1024)
    r = intuitions.dot_vs_additive(sizes=sizes)
    _check_result(r, "dot-vs-additive")
    for n in sizes:  # timings: no timed assertion (the verdict's rule is the intuition's own)
        assert {f"additive_ms_n{n}", f"dot_ms_n{n}", f"ratio_n{n}"} <= set(r.figures)


def test_keys_values():
    r = intuitions.keys_values()
    _check_result(r, "keys-values")
    f = r.figures
    assert f["accuracy_separate"] >= 0.95 and f["cosine_separate"] >= 0.95
    assert f["cosine_k_equals_v"] <= f["cosine_separate"] - 0.3
    assert f["accuracy_content_keys"] <= 0.25
    assert f["k_equals_v_special_case_gap"] == 0.0
    assert r.holds


def test_multi_head():
    r = intuitions.multi_head()
    _check_result(r, "multi-head")
    f = r.figures
    assert f["relative_error_one_head"] >= f["one_head_error_floor"] - 1e-9  # the rank argument
    assert f["relative_error_two_heads"] <= 0.01
    assert f["relative_error_one_head"] >= 10 * f["relative_error_two_heads"]
    assert r.holds


def test_self_vs_cross():
    r = intuitions.self_vs_cross()
    _check_result(r, "self-vs-cross")
    assert r.figures["cross_alignment_accuracy"] >= 0.95
    assert r.figures["reordered_alignment_accuracy"] >= 0.95
    assert r.figures["self_attends_itself"] >= 0.95
    assert r.holds


def test_causal():
    r = intuitions.causal()
    _check_result(r, "causal")
    f = r.figures
    assert f["weight_on_future"] == 0.0
    assert f["masked_change_when_future_changes"] <= 1e-12
    assert f["unmasked_change_when_future_changes"] > 1e-3
    assert f["incremental_vs_masked_gap"] <= 1e-9
    assert r.holds


@pytest.mark.slow
def test_search_engine(search_result):
    r = search_result
    _check_result(r, "search-engine")
    f = r.figures
    assert f["rows"] > 1000 and f["modules"] > 50
    assert f["hit_at_3"] >= 0.8
    assert f["soft_argmax_is_top_hit_module"] >= 0.8
    l1 = r.plots["l1"]
    assert np.all(np.diff(l1) <= 1e-6), l1  # degrades gracefully: closer to the top hit as τ falls
    assert f["mean_l1_soft_vs_hard_tau_0.001"] < 0.05 < f["mean_l1_soft_vs_hard_tau_1"]
    assert r.holds


def test_approximate_select():
    r = intuitions.approximate_select()
    _check_result(r, "approximate-select")
    f = r.figures
    assert f["median_rel_error_clear"] < 0.05
    assert f["median_rel_error_ambiguous"] > 0.25
    assert f["median_rows_attended_clear"] < 1.5 < f["median_rows_attended_ambiguous"]
    assert r.holds


# ------------------------------------------------------------------ the command
def _cli(argv):
    parser = argparse.ArgumentParser(prog="softdb")
    _cli_intuitions.add_parser(parser.add_subparsers(dest="command"))
    return _cli_intuitions.run(parser.parse_args(["intuitions", *argv]))


def test_cli_unknown_name_is_a_user_error(capsys):
    assert _cli(["bogus"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("softdb: error: unknown intuition 'bogus'; valid names: one-hot, qk-differ, ")
    assert "approximate-select" in err


def test_cli_table_for_one_claim(capsys):
    assert _cli(["causal"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^causal\s+holds\s+Masked \(causal\) attention", out, re.M)
    assert "1 of 1 claims hold" in out


@pytest.mark.slow
def test_cli_all_claims_json_and_plots(search_result, self_attention_result, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    assert _cli(["--json", "--plots", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    data = json.loads(captured.out)  # exactly one JSON document on stdout
    assert [d["name"] for d in data] == list(REGISTRY)
    for d in data:
        assert set(d) == {"name", "claim", "figures", "holds"} and isinstance(d["holds"], bool)
    pngs = sorted(tmp_path.glob("*.png"))
    assert len(pngs) >= 6
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
