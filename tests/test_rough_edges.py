"""The rough edges a new user hit (issue 11, section 4), each pinned by a test.

Every test here failed on the behaviour the issue reported. They use the model-free
HashEncoder (or an explicit float64 reference) so that they run in seconds.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.special import softmax
from scipy.stats import entropy as scipy_entropy

import softdb
from softdb import SoftTable
from softdb.cli import main
from softdb.explain import WEAK_MATCH_COSINE, weight_stats
from softdb.text import HashEncoder, folder_corpus, load_corpus

REPO = Path(__file__).resolve().parent.parent
DIM = 1024  # wide enough that the few words below do not collide


def reject(constant: str):
    raise ValueError(f"not strict JSON: {constant}")


def strict_loads(text: str):
    return json.loads(text, parse_constant=reject)


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def hash_encoder(monkeypatch):
    """Corpora given to the CLI are encoded with a HashEncoder instead of MiniLM."""
    monkeypatch.setattr("softdb.text.default_encoder", lambda: HashEncoder(DIM))
    return HashEncoder(DIM)


NOTES = {
    "fruit.md": "bananas are yellow fruit\n\napples are red or green fruit",
    "pets.txt": "cats chase mice at night\n\ndogs fetch sticks in the park",
    "travel.md": "trains run on rails between cities",
}


@pytest.fixture
def notes(tmp_path):
    root = tmp_path / "notes"
    for name, text in NOTES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    return root


@pytest.fixture
def notes_table(notes, hash_encoder, tmp_path):
    """The notes indexed with `softdb index` (HashEncoder), as a saved table folder."""
    out = tmp_path / "notes.table"
    assert main(["index", str(notes), "-o", str(out)]) == 0
    return out


# --------------------------------------------------------------- --version, -m softdb
def test_version_flag(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"softdb {softdb.__version__}"


def test_python_dash_m_softdb():
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-m", "softdb", "--version"], capture_output=True, text=True, env=env, cwd=REPO, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"softdb {softdb.__version__}"
    proc = subprocess.run(
        [sys.executable, "-m", "softdb", "search", "-k", "0"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
    )
    assert proc.returncode == 2 and "softdb: error:" in proc.stderr and "Traceback" not in proc.stderr


# ------------------------------------------------------- binary and non-text files
ELF = b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 8


def test_folder_corpus_skips_binaries_and_decodes_legacy_text(tmp_path):
    root = tmp_path / "mixed"
    root.mkdir()
    (root / "a.txt").write_text("plain utf-8 note", encoding="utf-8")
    (root / "program.txt").write_bytes(ELF)  # an executable renamed .txt
    (root / "latin.md").write_bytes("Café crème\n\nà la carte".encode("latin-1"))
    (root / "quotes.txt").write_bytes("“smart” quotes – and a dash".encode("cp1252"))
    (root / "wide.txt").write_bytes("Grüße aus Köln".encode("utf-16"))  # with its BOM
    (root / "controls.md").write_bytes(b"\x01\x02\x03\x04\x05\x06 mostly control characters")
    corpus = folder_corpus(root)
    assert corpus.skipped == ("controls.md", "program.txt")
    by_path = {p["path"]: (title, text) for p, title, text in zip(corpus.payloads, corpus.titles, corpus.texts)}
    assert by_path == {
        "a.txt": (None, "plain utf-8 note"),
        "latin.md": ("Café crème", "à la carte"),
        "quotes.txt": (None, "“smart” quotes – and a dash"),
        "wide.txt": (None, "Grüße aus Köln"),
    }
    assert not any("\ufffd" in t or "\x7f" in t for t in corpus.texts)
    assert "2 files skipped" in repr(corpus)


def test_cli_says_what_it_skipped(tmp_path, hash_encoder, capsys):
    root = tmp_path / "notes"
    root.mkdir()
    (root / "note.md").write_text("bananas are yellow fruit")
    for i in range(7):
        (root / f"bin{i}.txt").write_bytes(ELF)
    code, out, err = run(capsys, "index", root, "-o", tmp_path / "t")
    assert code == 0, err
    assert (
        "softdb: warning: skipped 7 files that are not text: bin0.txt, bin1.txt, bin2.txt, bin3.txt, "
        f"bin4.txt, … (2 more) (in {root})"
    ) in err
    assert "indexed 1 rows" in out


def test_a_folder_of_only_binaries_is_an_error_naming_them(tmp_path):
    (tmp_path / "x.txt").write_bytes(ELF)
    with pytest.raises(
        ValueError, match=re.escape(f"corpus {str(tmp_path)!r} has no texts (skipped 1 file that is not text: x.txt)")
    ):
        load_corpus(tmp_path)


# ------------------------------------------------------------- CSV/JSONL columns
@pytest.fixture
def csv_corpus(tmp_path):
    f = tmp_path / "rows.csv"
    f.write_text(
        "name,body\nban,bananas are yellow fruit\ncat,cats chase mice at night\n"
        "rail,trains run on rails between cities\n"
    )
    return f


def test_column_hint_names_the_cli_flags(csv_corpus, hash_encoder, capsys):
    code, _, err = run(capsys, "search", "yellow bananas", "--corpus", csv_corpus)
    assert code == 2
    assert (
        f"softdb: error: line 2 of {csv_corpus} has no column 'text'; columns present: ['body', 'name']; pass "
        "text_column=/id_column= (on the command line --text-column/--id-column) to choose one"
    ) in err


def test_text_and_id_columns_on_search_and_index(csv_corpus, hash_encoder, capsys, tmp_path):
    code, out, err = run(
        capsys,
        "search",
        "yellow bananas",
        "--corpus",
        csv_corpus,
        "--text-column",
        "body",
        "--id-column",
        "name",
        "-k",
        "1",
        "--json",
    )
    assert code == 0, err
    assert strict_loads(out)["hits"][0]["id"] == "ban"
    code, out, err = run(
        capsys, "index", csv_corpus, "-o", tmp_path / "t", "--text-column", "body", "--id-column", "name"
    )
    assert code == 0, err
    assert SoftTable.load(tmp_path / "t").ids == ("ban", "cat", "rail")


def test_column_flags_on_a_folder_or_a_table_are_an_error(notes, notes_table, hash_encoder, capsys):
    code, _, err = run(capsys, "search", "x", "--corpus", notes, "--text-column", "body")
    assert (
        code == 2
        and (
            "text_column/id_column (--text-column/--id-column) choose the columns of a "
            f".jsonl or .csv file, but corpus {str(notes)!r} is not one"
        )
        in err
    )
    code, _, err = run(capsys, "search", "x", "--table", notes_table, "--id-column", "name")
    assert code == 2 and "--text-column/--id-column choose the columns of a --corpus .jsonl/.csv file" in err


# ------------------------------------------------------------------ k above rows
def test_api_raises_but_cli_clamps_and_says_so(notes_table, capsys):
    table = SoftTable.load(notes_table)
    n = len(table)
    with pytest.raises(ValueError, match=re.escape(f"k=99 but the table has {n} rows; hint: use k <= len(table)")):
        table.search("bananas", k=99)
    code, out, err = run(capsys, "search", "bananas", "--table", notes_table, "-k", "99", "--json")
    assert code == 0
    assert f"softdb: note: -k 99 is more than the table's {n} documents; showing all {n}" in err
    result = strict_loads(out)
    assert (result["k"], result["k_requested"], len(result["hits"])) == (n, 99, n)
    code, out, err = run(capsys, "search", "bananas", "--table", notes_table, "-k", "2", "--json")
    assert err == "" and "k_requested" not in strict_loads(out)


# ------------------------------------------------------------------ weak matches
def _best_cosine(table: SoftTable, query: str) -> float:
    q = table.encoder.encode([query])[0].astype(np.float64)  # (d,)
    return float((table.keys.astype(np.float64) @ q).max())  # unit keys: cosine


def test_weak_match_is_said_plainly(notes_table, capsys):
    table = SoftTable.load(notes_table)
    weak, strong = "quantum chromodynamics lattice gauge theory", "yellow bananas fruit"
    assert _best_cosine(table, weak) < WEAK_MATCH_COSINE <= _best_cosine(table, strong)  # the premise
    code, out, _ = run(capsys, "search", weak, "--table", notes_table)
    assert code == 0
    assert (
        f"weak match: even the best hit has cosine {_best_cosine(table, weak):.3f} (below "
        f"{WEAK_MATCH_COSINE:g}); the corpus may hold nothing on this query"
    ) in out
    code, out, _ = run(capsys, "search", strong, "--table", notes_table)
    assert code == 0 and "weak match" not in out
    code, out, _ = run(capsys, "search", weak, strong, "--table", notes_table, "--json")
    flags = [strict_loads(line)["weak_match"] for line in out.splitlines()]
    assert flags == [True, False]


def test_min_score_hides_weaker_hits(notes_table, capsys):
    table = SoftTable.load(notes_table)
    query = "yellow bananas fruit"
    q = table.encoder.encode([query])[0].astype(np.float64)
    cos = np.sort(table.keys.astype(np.float64) @ q)[::-1]  # (n,) the reference scores, best first
    cut = float((cos[0] + cos[1]) / 2)  # only the best row passes
    code, out, _ = run(capsys, "search", query, "--table", notes_table, "-k", "3", "--min-score", cut, "--json")
    result = strict_loads(out)
    assert code == 0 and len(result["hits"]) == 1 and result["hidden"] == 2
    assert result["hits"][0]["score"] == pytest.approx(cos[0], abs=1e-5)
    code, out, _ = run(capsys, "search", query, "--table", notes_table, "-k", "3", "--min-score", "0.99")
    assert code == 0 and f"no hit scores --min-score 0.99 or more (the best scores {cos[0]:.3f})" in out
    with pytest.raises(SystemExit) as exc:
        main(["search", query, "--table", str(notes_table), "--min-score", "nan"])
    assert exc.value.code == 2 and "--min-score: must be a finite number, got 'nan'" in capsys.readouterr().err


# ------------------------------------------------------- several queries, one call
def test_several_queries_one_encode_one_search(notes_table, tmp_path, capsys, monkeypatch):
    qfile = tmp_path / "queries.txt"
    qfile.write_text("trains between cities\n\n   \ndogs in the park\n")
    queries = ["yellow bananas", "cats at night", "trains between cities", "dogs in the park"]
    singles = []
    for q in queries:  # the reference: one call per query
        code, out, _ = run(capsys, "search", q, "--table", notes_table, "-k", "3", "--json")
        singles.append(strict_loads(out))

    from softdb.engine import _plan

    encodes, searches = [], []
    real_encode, real_run = HashEncoder.encode, _plan.run

    def spy_encode(self, texts, **kw):
        encodes.append(list(texts))
        return real_encode(self, texts, **kw)

    def spy_run(scorer, q, *a, **kw):  # every kernel pass of the query plan
        searches.append(np.shape(q))
        return real_run(scorer, q, *a, **kw)

    monkeypatch.setattr(HashEncoder, "encode", spy_encode)
    monkeypatch.setattr(_plan, "run", spy_run)
    code, out, err = run(
        capsys, "search", *queries[:2], "--queries", qfile, "--table", notes_table, "-k", "3", "--json"
    )
    assert code == 0, err
    assert encodes == [queries]  # one encoder call, every query, in order
    assert searches == [(4, DIM)]  # one kernel pass for the batch: hits, weights, entropy, effective rows
    lines = out.splitlines()
    assert len(lines) == 4
    batch = [strict_loads(line) for line in lines]
    for got, want in zip(batch, singles):
        assert got["query"] == want["query"]
        assert [h["id"] for h in got["hits"]] == [h["id"] for h in want["hits"]]
        assert [h["weight"] for h in got["hits"]] == pytest.approx([h["weight"] for h in want["hits"]], abs=1e-6)


def test_queries_file_errors(notes_table, tmp_path, capsys):
    (tmp_path / "blank.txt").write_text("\n  \n")
    code, _, err = run(capsys, "search", "--queries", tmp_path / "blank.txt", "--table", notes_table)
    assert code == 2 and f"--queries {str(tmp_path / 'blank.txt')!r} holds no queries" in err
    code, _, err = run(capsys, "search", "--queries", tmp_path / "missing.txt", "--table", notes_table)
    assert code == 2 and "cannot read --queries" in err
    code, _, err = run(capsys, "search", "--table", notes_table)
    assert code == 2 and "softdb: error: no query given" in err
    code, _, err = run(capsys, "search", "ok", "  ", "--table", notes_table)
    assert code == 2 and "softdb: error: a query is empty" in err


# ------------------------------------------------------- entropy in text output
def test_text_output_shows_entropy_and_effective_rows(notes_table, capsys):
    table = SoftTable.load(notes_table)
    query = "cats chase dogs"
    q = table.encoder.encode([query])[0].astype(np.float64)
    w = softmax(table.keys.astype(np.float64) @ q / table.temperature)  # (n,) float64 reference
    code, out, _ = run(capsys, "search", query, "--table", notes_table, "-k", "2")
    assert code == 0
    m = re.search(r"entropy (\S+) nats; effective rows 1/Σw² = (\S+)", out)
    assert m, out
    assert float(m.group(1)) == pytest.approx(scipy_entropy(w), abs=0.006)
    assert float(m.group(2)) == pytest.approx(1 / (w @ w), abs=0.06)


def test_weight_stats_match_a_float64_reference():
    rng = np.random.default_rng(7)
    keys, queries = rng.normal(size=(50, 8)), rng.normal(size=(13, 8))
    table = SoftTable(keys, metric="dot", temperature=0.7)
    ent, eff = weight_stats(table, queries, max_cells=120)  # batches of 2 queries
    w = softmax(queries @ keys.T / 0.7, axis=1)  # (13, 50)
    np.testing.assert_allclose(ent, scipy_entropy(w, axis=1), rtol=1e-9)
    np.testing.assert_allclose(eff, 1 / (w * w).sum(axis=1), rtol=1e-9)


# --------------------------------------------------------------------- strict JSON
def _tiny_beir(root: Path) -> None:
    (root / "qrels").mkdir(parents=True)
    docs = [
        ("d1", "cats", "cats chase mice"),
        ("d2", "dogs", "dogs chase cats"),
        ("d3", "fish", "fish swim"),
        ("d4", "birds", "birds fly south"),
        ("d5", "cows", "cows eat grass"),
        ("d6", "owls", "owls hoot"),
    ]
    (root / "corpus.jsonl").write_text("\n".join(json.dumps({"_id": i, "title": t, "text": x}) for i, t, x in docs))
    qs = [("q1", "what do cats chase"), ("q2", "where do birds fly"), ("q3", "cats chase"), ("q4", "birds fly")]
    (root / "queries.jsonl").write_text("\n".join(json.dumps({"_id": i, "text": x}) for i, x in qs))
    # every relevant test document is relevant in train too: the unseen subset is empty
    (root / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\nq3\td1\t1\nq4\td4\t1\n")
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td4\t1\n")


def test_eval_json_is_strict_with_an_empty_subset(tmp_path, hash_encoder, capsys):
    _tiny_beir(tmp_path / "beir")
    code, out, err = run(capsys, "eval", tmp_path / "beir", "--fit", "train", "--json")
    assert code == 0, err
    result = strict_loads(out)  # no NaN, no Infinity
    for model in ("baseline", "fitted"):
        assert result[model]["unseen"] == {"ndcg@10": None, "recall@100": None, "mrr@10": None, "queries": 0}
        assert result[model]["all"]["queries"] == 2
        assert all(isinstance(result[model]["all"][m], float) for m in ("ndcg@10", "recall@100", "mrr@10"))
    code, out, _ = run(capsys, "eval", tmp_path / "beir", "--fit", "train")
    assert code == 0 and "nan" not in out.lower()
    assert re.search(r"baseline\s+unseen\s+0\s+—\s+—\s+—", out), out


def test_search_json_is_strict_even_with_nan_in_a_payload(tmp_path, hash_encoder, capsys):
    f = tmp_path / "rows.jsonl"
    f.write_text('{"text": "bananas are yellow", "price": NaN}\n{"text": "cats chase mice", "price": Infinity}\n')
    code, out, err = run(capsys, "search", "bananas", "--corpus", f, "-k", "2", "--json")
    assert code == 0, err
    hits = strict_loads(out)["hits"]
    assert [h["payload"]["price"] for h in hits] == [None, None]


def test_intuitions_json_is_strict(capsys):
    code, out, _ = run(capsys, "intuitions", "one-hot", "--json")
    assert code == 0
    assert strict_loads(out)[0]["name"] == "one-hot"


# ------------------------------------------------------------------ named slices
def test_a_sliced_eval_says_so(tmp_path, hash_encoder, capsys):
    _tiny_beir(tmp_path / "beir")
    code, out, err = run(capsys, "eval", tmp_path / "beir", "--max-docs", "3", "--max-queries", "1", "--json")
    assert code == 0, err
    result = strict_loads(out)
    # one query (q1, relevant d1) kept; d1 plus the first two other documents
    assert result["slice"] == {
        "max_docs": 3,
        "max_queries": 1,
        "docs": 3,
        "docs_total": 6,
        "queries": 1,
        "queries_total": 2,
    }
    assert result["baseline"]["all"]["queries"] == 1
    code, out, _ = run(capsys, "eval", tmp_path / "beir", "--max-docs", "3")
    assert code == 0
    assert "on a slice: 3 of 6 documents (--max-docs 3); published figures use the whole split" in out
    code, out, _ = run(capsys, "eval", tmp_path / "beir")
    assert code == 0 and "on a slice" not in out


# ----------------------------------------------------------- hand-edited manifest
def _hand_edit(table_dir: Path) -> None:
    mpath = table_dir / "manifest.json"
    m = json.loads(mpath.read_text())
    m["payloads"][0]["text"] = "edited by hand"
    mpath.write_text(json.dumps(m))


def test_hand_edited_manifest_gets_a_hint_and_can_be_loaded_anyway(notes_table, capsys):
    _hand_edit(notes_table)
    mpath = notes_table / "manifest.json"
    msg = (
        f"{mpath} is corrupted: its checksum does not match its content (was it edited by hand?); "
        f"hint: rebuild the table with `softdb index CORPUS -o {notes_table}`, or load it anyway with "
        "SoftTable.load(…, verify=False) (on the command line: --no-verify)"
    )
    with pytest.raises(ValueError, match=re.escape(msg)):
        SoftTable.load(notes_table)
    assert SoftTable.load(notes_table, verify=False).payloads[0]["text"] == "edited by hand"
    code, _, err = run(capsys, "search", "bananas", "--table", notes_table)
    assert code == 2 and f"softdb: error: {msg}" in err
    code, out, err = run(capsys, "search", "edited by hand", "--table", notes_table, "--no-verify", "-k", "1", "--json")
    assert code == 0, err
    assert strict_loads(out)["hits"][0]["payload"]["text"] == "edited by hand"


def test_no_verify_needs_a_table(notes, hash_encoder, capsys):
    code, _, err = run(capsys, "search", "x", "--corpus", notes, "--no-verify")
    assert code == 2 and "--no-verify applies to a saved --table" in err


# ------------------------------------------------------- softdb.testing, wording
def test_assert_retrieves_unknown_id_is_an_assertion_naming_it():
    from softdb.testing import assert_attends_more, assert_retrieves, assert_weight_at_least

    t = SoftTable(np.eye(2, dtype=np.float32), ids=["apple", "banana"])
    msg = (
        "expected id 'durian' is not an id of the table (2 rows, ids ['apple', 'banana']); "
        "hint: check the id, and that its row was added"
    )
    with pytest.raises(AssertionError, match=re.escape(msg)):
        assert_retrieves(t, [1.0, 0.0], "durian")
    with pytest.raises(AssertionError, match=re.escape("row id 'durian' is not an id of the table")):
        assert_weight_at_least(t, [1.0, 0.0], "durian", 0.5)
    with pytest.raises(AssertionError, match=re.escape("id_b 'durian' is not an id of the table")):
        assert_attends_more(t, [1.0, 0.0], "apple", "durian")


def test_nan_in_a_query_gets_a_hint_about_the_query():
    t = SoftTable(np.eye(3, dtype=np.float32))
    msg = (
        "queries must be finite, but it has 1 NaN and 0 inf values (first at index (1,)); hint: the table "
        "is fine; fix the queries (a NaN often comes from normalising a zero vector) or drop those queries"
    )
    for call in (t.search, t.lookup, t.weights):
        with pytest.raises(ValueError, match=re.escape(msg)):
            call([1.0, np.nan, 0.0])
    with pytest.raises(ValueError, match=re.escape("hint: drop or impute those rows before building the table")):
        SoftTable([[1.0, np.nan]])


def test_duplicate_ids_are_listed_once_each():
    msg = "ids must be unique, but 2 ids appear more than once: ['a', 'b']; hint: de-duplicate the rows"
    with pytest.raises(ValueError, match=re.escape(msg)):
        SoftTable(np.ones((6, 2)), ids=["a", "a", "a", "b", "c", "b"])


# ------------------------------------------------------------------ small things
def test_fit_report_repr_is_short():
    rng = np.random.default_rng(0)
    keys = rng.normal(size=(20, 6))
    from softdb import Projection

    t = SoftTable(keys, ids=[f"r{i}" for i in range(20)], projection=Projection(6, learn=("q",)))
    report = t.fit(keys + 0.1 * rng.normal(size=keys.shape), [f"r{i}" for i in range(20)], max_iter=60)
    assert len(report.loss_history) > 10
    text = repr(report)
    assert "\n" not in text and len(text) < 200
    assert f"loss {report.loss_history[0]:.4g} → {report.loss_history[-1]:.4g}" in text
    assert f"({len(report.loss_history)} values in loss_history)" in text


def test_readme_says_to_activate_the_venv():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    first_bare = re.search(r"^softdb (demo|search|index|eval|data|intuitions)\b", readme, re.M).start()
    assert ". .venv/bin/activate" in readme[:first_bare]


def test_queries_from_stdin(notes_table, capsys, monkeypatch):
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("yellow bananas\ncats at night\n"))
    code, out, err = run(capsys, "search", "--queries", "-", "--table", notes_table, "-k", "1", "--json")
    assert code == 0, err
    assert [strict_loads(line)["query"] for line in out.splitlines()] == ["yellow bananas", "cats at night"]
