"""The files on disk do not change: tables saved by commit 71a4ec0 load, and save back to the same bytes.

``tests/store/data/format_v1/<kind>/`` holds one table of each kind saved by the code of
commit 71a4ec0 (before the store was split from the table), written by
``build_tables()`` below::

    PYTHONPATH=<a checkout of 71a4ec0> python tests/store/test_format.py tests/store/data/format_v1

Loading one and saving it again involves no arithmetic (keys are stored unit, the
BM25 and projection states round-trip exactly), so the new save must write the same
file names and bytes on any machine; only ``created``, ``softdb_version`` and the
``checksum`` over them may differ.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from softdb import Projection, SoftTable
from softdb.text import BM25Encoder, HashEncoder, HybridEncoder

GOLDEN = Path(__file__).resolve().parent / "data" / "format_v1"
DOCS = [
    "the red fox jumps over the lazy dog",
    "a blue hen lays an egg",
    "red wine and blue cheese",
    "foxes and hens do not mix",
    "lazy sunday with a dog",
]
#: manifest fields, in file order, that every table has (ids, payloads and checksum end the file)
HEAD = ["format", "format_version", "softdb_version", "created", "n", "dim", "value_dim", "dtype"]
HEAD += ["metric", "temperature", "shared_kv", "files"]
TAIL = ["ids", "payloads", "checksum"]


class _VersionedEncoder:
    """A dense encoder that reports a version (the manifest records it)."""

    name, dim, version = "my-model", 4, "2.1"


def build_tables() -> dict[str, SoftTable]:
    """One small table of each kind a save distinguishes (only public API, so 71a4ec0 runs it too)."""
    rng = np.random.default_rng(7)
    out = {}
    out["dense"] = SoftTable(
        rng.normal(size=(5, 4)).astype(np.float32),
        rng.normal(size=(5, 3)).astype(np.float32),
        ids=["a", 1, "1", 2**70, "é"],
        payloads=[None, "text", 3, 2.5, {"k": [1, None, True]}],
        temperature=0.7,
    )
    out["cosine_shared"] = SoftTable(rng.normal(size=(4, 3)), ids=[3, 1, 2, 0], metric="cosine")
    out["empty"] = SoftTable(np.zeros((0, 3), np.float32), np.zeros((0, 2), np.float32))
    projected = SoftTable(rng.normal(size=(6, 4)).astype(np.float32), rng.normal(size=(6, 3)).astype(np.float32))
    projected.projection = Projection(4, d_k=2, d_out=2, d_v=3, heads=2, init="random", temperature=0.5)
    out["projected"] = projected
    out["encoder_name"] = SoftTable.from_texts(DOCS, encoder=HashEncoder(16))
    versioned = SoftTable(rng.normal(size=(3, 4)).astype(np.float32))
    versioned.encoder = _VersionedEncoder()
    out["encoder_version"] = versioned
    out["bm25"] = SoftTable.from_texts(DOCS, ids=[f"d{i}" for i in range(len(DOCS))], encoder=BM25Encoder())
    out["bm25_values"] = SoftTable.from_texts(
        DOCS, encoder=BM25Encoder(k1=1.5, stopwords="none"), values=rng.normal(size=(len(DOCS), 2)), payloads=DOCS
    )
    out["hybrid"] = SoftTable.from_texts(DOCS, encoder=HybridEncoder(dense=HashEncoder(8)))
    dense = rng.standard_normal((8, 3)).astype(np.float32)
    sparse = sp.random(8, 5, density=0.4, random_state=5, format="csr", dtype=np.float32)
    blocks = SoftTable([dense, sparse], block_weights=[1.0, 0.25], temperature=0.5, payloads=list(range(8)))
    blocks.fit([dense, sparse], list(range(8)), learn=("q",), reg=0.01, max_iter=5)  # a W_Q on the first block
    out["blocks_fitted"] = blocks
    out["csr_plain"] = SoftTable(sp.random(4, 6, density=0.5, random_state=1, format="csr"), np.eye(4))
    return out


#: Kinds whose load -> save round trip is exact; a loaded table keeps its encoder's name, not its version.
ROUND_TRIP = [
    "blocks_fitted",
    "bm25",
    "bm25_values",
    "cosine_shared",
    "csr_plain",
    "dense",
    "empty",
    "encoder_name",
    "hybrid",
]
ROUND_TRIP += ["projected"]


def _normalised_manifest(folder: Path) -> bytes:
    """manifest.json with the values of created, softdb_version and checksum blanked (one line each)."""
    text = (folder / "manifest.json").read_bytes()
    return re.sub(rb'^( "(?:created|softdb_version|checksum)": )"[^"]*"', rb'\1""', text, flags=re.M)


def test_every_golden_kind_is_here():
    assert sorted(os.listdir(GOLDEN)) == sorted([*ROUND_TRIP, "encoder_version"])


@pytest.mark.parametrize("kind", ROUND_TRIP)
@pytest.mark.parametrize("mmap", [False, True])
def test_tables_saved_by_71a4ec0_load_and_save_back_to_the_same_bytes(tmp_path, kind, mmap):
    old = GOLDEN / kind
    table = SoftTable.load(old, mmap=mmap)  # verified: checksums, shapes, finite rows
    table.save(tmp_path / kind)
    new = tmp_path / kind
    assert sorted(os.listdir(new)) == sorted(os.listdir(old))
    for name in sorted(os.listdir(old)):
        if name != "manifest.json":
            assert (new / name).read_bytes() == (old / name).read_bytes(), name
    assert _normalised_manifest(new) == _normalised_manifest(old)
    SoftTable.load(new)  # its checksum is right


def test_an_encoder_version_is_recorded_but_not_loaded(tmp_path):
    m = json.loads((GOLDEN / "encoder_version" / "manifest.json").read_text())
    assert m["encoder"] == {"name": "my-model", "version": "2.1"}
    assert SoftTable.load(GOLDEN / "encoder_version")._state.encoder_name == "my-model"
    build_tables()["encoder_version"].save(tmp_path / "t")
    assert _normalised_manifest(tmp_path / "t") == _normalised_manifest(GOLDEN / "encoder_version")


@pytest.mark.parametrize(
    ("kind", "fields", "files"),
    [
        ("dense", [], ["keys.npy", "values.npy"]),
        ("cosine_shared", [], ["keys.npy"]),
        ("empty", [], ["keys.npy", "values.npy"]),
        (
            "projected",
            ["projection"],
            [
                "keys.npy",
                "values.npy",
                "projection.W_Q.npy",
                "projection.W_K.npy",
                "projection.log_tau.npy",
                "projection.W_V.npy",
            ],
        ),
        ("encoder_name", ["encoder"], ["keys.npy"]),
        ("encoder_version", ["encoder"], ["keys.npy"]),
        (
            "bm25",
            ["keys", "encoder"],
            ["keys.data.npy", "keys.indices.npy", "keys.indptr.npy", "encoder.vocabulary.npy", "encoder.df.npy"],
        ),
        (
            "bm25_values",
            ["keys", "encoder"],
            [
                "keys.data.npy",
                "keys.indices.npy",
                "keys.indptr.npy",
                "encoder.vocabulary.npy",
                "encoder.df.npy",
                "values.npy",
            ],
        ),
        (
            "hybrid",
            ["keys", "encoder"],
            [
                "keys.0.npy",
                "keys.1.data.npy",
                "keys.1.indices.npy",
                "keys.1.indptr.npy",
                "encoder.vocabulary.npy",
                "encoder.df.npy",
            ],
        ),
        (
            "blocks_fitted",
            ["keys"],
            ["keys.0.npy", "keys.1.data.npy", "keys.1.indices.npy", "keys.1.indptr.npy", "keys.query_projection.npy"],
        ),
        ("csr_plain", ["keys"], ["keys.data.npy", "keys.indices.npy", "keys.indptr.npy", "values.npy"]),
    ],
)
def test_manifest_keys_and_file_order_are_pinned(tmp_path, kind, fields, files):
    build_tables()[kind].save(tmp_path / "t")
    m = json.loads((tmp_path / "t" / "manifest.json").read_text())  # json keeps the file's key order
    assert list(m) == HEAD + fields + TAIL
    assert list(m["files"]) == files
    assert all(list(e) == ["sha256", "bytes", "shape", "dtype"] for e in m["files"].values())
    if "keys" in m:
        blocks = ["kind", "blocks", "weights"] + (["query_projection"] if kind == "blocks_fitted" else [])
        assert list(m["keys"]) == (["kind"] if m["keys"]["kind"] == "csr" else blocks)
    if "projection" in m:
        assert list(m["projection"]) == ["config", "arrays"]
    if "encoder" in m and "state" in m["encoder"]:
        assert list(m["encoder"]) == ["name", "state", "arrays"]
        assert list(m["encoder"]["arrays"]) == ["vocabulary", "df"]  # a growing BM25 (state version 2)
        bm25 = ["version", "kind", "k1", "b", "stopwords", "stemmer", "n_docs", "total_len", "method"]
        state = m["encoder"]["state"]
        assert list(state) == (bm25 if kind.startswith("bm25") else ["kind", "dense", "weight", "sparse"])
        assert kind.startswith("bm25") or (state["kind"], state["dense"], list(state["sparse"])) == (
            "hybrid",
            "hash-8",
            bm25,
        )


if __name__ == "__main__":  # write the golden folders with whatever softdb is on the path
    root = Path(sys.argv[1])
    root.mkdir(parents=True, exist_ok=True)
    for kind, table in build_tables().items():
        table.save(root / kind)
        print(kind, sorted(os.listdir(root / kind)))
