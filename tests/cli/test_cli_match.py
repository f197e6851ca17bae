"""The command line says no match, weak match and near-uniform weights; `index --vectors` defaults as SoftTable."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from softdb import SoftTable
from softdb.cli import main
from softdb.table._match import near_uniform

pytest.importorskip("bm25s")

NOTES = {"fox.txt": "red fox in the snow", "hen.txt": "a blue hen lays an egg", "dog.txt": "lazy dog sleeps"}


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def strict_loads(text: str):
    def reject(name):
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=reject)


@pytest.fixture
def bm25_table(tmp_path, capsys):
    notes = tmp_path / "notes"
    notes.mkdir()
    for name, text in NOTES.items():
        (notes / name).write_text(text)
    table = tmp_path / "t"
    assert run(capsys, "index", notes, "--model", "bm25", "-o", table)[0] == 0
    return table


def test_a_bm25_query_with_no_known_term_gets_no_hits(bm25_table, capsys):
    code, out, err = run(capsys, "search", "zebra quokka", "red fox", "--table", bm25_table, "-k", "2", "--json")
    assert code == 0, err
    none, fox = (strict_loads(line) for line in out.splitlines())
    assert none["hits"] == [] and none["no_match"] is True and none["weak_match"] is True
    assert none["best_score"] is None and none["covered"] == 0 and none["weak_match_below"] is None
    assert fox["no_match"] is False and fox["weak_match"] is False and fox["hits"][0]["id"] == "fox.txt"
    code, out, _ = run(capsys, "search", "zebra quokka", "--table", bm25_table, "-k", "2")
    assert code == 0
    assert out.splitlines()[1:] == [
        "     no match: no row matches this query (it holds no term the table knows); "
        "no hits rather than arbitrary rows at weight 1/n"
    ]
    code, out, _ = run(capsys, "explain", "zebra quokka", "--table", bm25_table)
    assert code == 0 and "no match: no row matches this query" in out and "None" not in out


def test_near_uniform_weights_are_said_with_a_temperature_to_try(bm25_table, capsys):
    code, out, _ = run(capsys, "search", "red fox", "--table", bm25_table, "--temperature", "1000", "--json")
    assert code == 0
    rec = strict_loads(out)
    table = SoftTable.load(bm25_table)
    w = table.weights("red fox", temperature=1000.0).astype(np.float64)  # (n,) every weight, the reference
    assert w.max() * len(table) - 1 <= 0.01 and rec["near_uniform"] is True
    tau = near_uniform(float(w.max()), len(table), 1000.0).suggested_temperature
    assert rec["suggested_temperature"] == pytest.approx(tau, rel=1e-4)
    code, out, _ = run(capsys, "search", "red fox", "--table", bm25_table, "--temperature", "1000")
    line = (
        "     near-uniform weights: at τ = 1000 every weight is within 10% of uniform at the top (the weights say "
        f"nothing); try --temperature {rec['suggested_temperature']:.3g}, where the best row would weigh about as "
        "much as the rest"
    )
    assert line in out.splitlines()
    code, out, _ = run(capsys, "search", "red fox", "--table", bm25_table, "--temperature", f"{tau:.3g}")
    assert "near-uniform" not in out
    code, out, _ = run(capsys, "explain", "red fox", "--table", bm25_table, "--temperature", "1000")
    assert re.search(r"near-uniform weights: at τ = 1000 .* try temperature=", out)
    code, out, _ = run(capsys, "search", "red fox", "--table", bm25_table, "--json")
    assert strict_loads(out)["near_uniform"] is False and strict_loads(out)["suggested_temperature"] is None


def test_index_vectors_defaults_to_the_metric_and_temperature_of_softtable(tmp_path, capsys):
    rng = np.random.default_rng(5)
    keys = rng.normal(size=(12, 6)).astype(np.float32)
    np.save(tmp_path / "e.npy", keys)
    code, out, err = run(capsys, "index", "--vectors", tmp_path / "e.npy", "-o", tmp_path / "v")
    assert code == 0, err
    assert "indexed 12 vectors (6-d, dot)" in out
    shard = SoftTable.load(tmp_path / "v" / "shard-0000.g0")  # one shard: an ordinary table folder
    ref = SoftTable(keys)
    assert (shard.metric, shard.temperature) == (ref.metric, ref.temperature) == ("dot", pytest.approx(np.sqrt(6)))
    q = rng.normal(size=(3, 6)).astype(np.float32)
    np.testing.assert_allclose(shard.weights(q), ref.weights(q), rtol=1e-6)
    code, out, err = run(
        capsys,
        "index",
        "--vectors",
        tmp_path / "e.npy",
        "-o",
        tmp_path / "c",
        "--metric",
        "cosine",
        "--temperature",
        0.1,
    )
    assert code == 0, err
    shard = SoftTable.load(tmp_path / "c" / "shard-0000.g0")
    assert (shard.metric, shard.temperature) == ("cosine", 0.1)
    code, _, err = run(capsys, "index", "stdlib", "-o", tmp_path / "x", "--temperature", "0.1")
    assert code == 2
    assert err == "softdb: error: --values, --ids, --encoder and --temperature go with --vectors EMB.npy\n"
