"""Every public import path that worked before the layers moved into folders keeps working.

``PUBLIC`` is the specification: each public module of softdb at commit fa34b68 (the last flat
layout) and the names in its ``__all__`` then, read from that commit's files. A user's import of any
of them must work in a fresh interpreter, whatever was imported before it.
"""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

PUBLIC: dict[str, list[str]] = {
    "softdb": ["FitReport", "Projection", "SearchResult", "SoftTable", "__version__"],
    "softdb.text": [
        "BM25Encoder",
        "Corpus",
        "DEFAULT_MODEL",
        "EmbeddingCache",
        "Encoder",
        "HashEncoder",
        "HybridEncoder",
        "Queries",
        "SentenceEncoder",
        "beir_corpus",
        "beir_qrels",
        "beir_queries",
        "cache_dir",
        "default_encoder",
        "encoder_from_name",
        "folder_corpus",
        "load_corpus",
        "stdlib_corpus",
        "table_file_corpus",
        "text_encoder",
        "verify_default_model",
    ],
    "softdb.distributed": ["ShardedTable"],
    "softdb.testing": [
        "assert_attends_more",
        "assert_retrieves",
        "assert_soft_close_to_hard",
        "assert_weight_at_least",
    ],
    "softdb.views": [
        "SearchAnswer",
        "TemperatureGrid",
        "explain_view",
        "explanation_data",
        "explanation_grid",
        "explanation_html",
        "fit_report_html",
        "grid_log_sum_exp",
        "intuition_html",
        "jsonable",
        "search_answer",
        "search_answers",
        "search_record",
        "search_result_html",
        "table_html",
        "temperature_grid",
        "to_dicts",
        "to_pandas",
        "write_explanation_html",
        "write_html",
    ],
    "softdb.evaluate": [
        "BeirFit",
        "BeirReport",
        "Metrics",
        "SplitReport",
        "evaluate_beir",
        "evaluate_table",
        "fit_beir_projection",
        "rank",
        "summarize",
        "trec_eval",
        "unseen_queries",
    ],
    "softdb.data": ["BeirDataset", "DATASETS", "DataError", "data_dir", "dataset_path", "get", "resolve"],
    "softdb.projection": ["FIT_BYTES", "Projection", "rows_loss", "values_loss"],
    "softdb.plot": ["heatmap", "temperature_sweep", "weights"],
    "softdb.intuitions": [
        "Intuition",
        "LANGUAGE",
        "REGISTRY",
        "approximate_select",
        "causal",
        "dot_vs_additive",
        "keys_values",
        "multi_head",
        "one_hot",
        "qk_differ",
        "run",
        "search_engine",
        "self_attention",
        "self_vs_cross",
        "sqrt_d",
    ],
    "softdb.storage": ["NpyWriter", "load_state", "open_arrays", "publish", "save_state", "write_manifest"],
    "softdb.table": ["COSINE_TEMPERATURE", "CompactReport", "SearchResult", "SoftTable"],
    "softdb.explain": ["Explanation", "WEAK_MATCH_COSINE", "explain", "snippet", "weight_stats"],
    "softdb.cli": ["main"],
    "softdb.intuitions.figures": ["draw", "save_figures"],
}


@pytest.mark.parametrize("path", sorted(PUBLIC))
def test_public_names_still_import(path: str) -> None:
    module = importlib.import_module(path)
    missing = [name for name in PUBLIC[path] if not hasattr(module, name)]
    assert not missing, f"{path} lost {missing}"


@pytest.mark.parametrize("path", sorted(PUBLIC))
def test_each_path_imports_alone_in_a_fresh_interpreter(path: str) -> None:
    names = ", ".join(n for n in PUBLIC[path] if n != "__version__") or "*"
    stmt = f"from {path} import {names}" if names != "*" else f"import {path}"
    proc = subprocess.run([sys.executable, "-c", stmt], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_old_and_new_paths_are_the_same_objects() -> None:
    import softdb
    from softdb import evaluate, explain, learn, projection, storage, table

    assert projection.Projection is softdb.Projection is learn.Projection
    assert table.SoftTable is softdb.SoftTable
    assert explain.explain is importlib.import_module("softdb.table._explain").explain
    assert evaluate.evaluate_beir is importlib.import_module("softdb.eval").evaluate_beir
    assert callable(storage.save_state) and callable(storage.load_state)
