"""``softdb heads``: the text summary, --html, and user errors (random tables stand in for the model)."""

from __future__ import annotations

import json
import os
import re
import sys
import types

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir, "views"))
from _fake_heads import TOKENS, fake_heads

from softdb.cli import main


@pytest.fixture
def calls(monkeypatch):
    seen = []

    def all_heads(text, *, model=None, truncate=False):
        seen.append((text, model, truncate))
        return fake_heads(TOKENS)

    try:
        import softdb.heads as mod
    except ImportError:
        mod = types.ModuleType("softdb.heads")
        monkeypatch.setitem(sys.modules, "softdb.heads", mod)
    monkeypatch.setattr(mod, "all_heads", all_heads, raising=False)
    return seen


def test_heads_prints_a_summary_per_head(calls, capsys):
    assert main(["heads", "the cat sat", "--layer", "1"]) == 0
    out = capsys.readouterr().out
    assert calls == [("the cat sat", None, False)]
    assert out.startswith('fake-bert · "the cat sat" · 13 tokens: [CLS] the cat sat')
    assert "layer 1\n" in out and "layer 0\n" not in out
    assert len(re.findall(r"^\s+\d\s+\d+\.\d{3}\s", out, re.M)) == 3  # one line per head


def test_heads_html_writes_the_view(calls, tmp_path, capsys):
    out = tmp_path / "h.html"
    assert main(["heads", "the cat sat", "--html", str(out), "--model", "/some/folder", "--truncate"]) == 0
    assert calls == [("the cat sat", "/some/folder", True)]
    msg = capsys.readouterr().out
    assert re.match(rf"wrote {re.escape(str(out))} \(\d+\.\d KB\): 2 layers × 3 heads over 13 tokens", msg)
    page = out.read_text(encoding="utf-8")
    blob = re.search(r'id="heads-data">(.*?)</script>', page, re.S).group(1)
    assert json.loads(blob)["layers"] == [0, 1]
    assert "http:" not in page and "https:" not in page


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["heads", "   "], 'the text is empty; hint: softdb heads "The cat sat on the mat because it was warm."'),
        (["heads", "a b", "--layer", "2"], "layer must be in 0..1 (the model has 2 layers), got 2; hint: --layer 1"),
    ],
)
def test_user_errors_exit_2(calls, capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"softdb: error: {message}") and "Traceback" not in err


def test_a_bad_layer_is_a_parse_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["heads", "a b", "--layer", "-1"])
    assert exc.value.code == 2
    assert "softdb: error: argument --layer: must be >= 0, got -1" in capsys.readouterr().err


def test_html_into_a_missing_folder_is_a_user_error(calls, tmp_path, capsys):
    out = tmp_path / "missing" / "h.html"
    assert main(["heads", "a b", "--html", str(out)]) == 2
    assert capsys.readouterr().err.startswith(f"softdb: error: cannot write {str(out)!r}: ")
