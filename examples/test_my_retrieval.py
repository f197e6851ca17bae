"""Test your own retrieval intuitions with softdb.testing (run: pytest examples/test_my_retrieval.py).

Each assertion fails with a small table of the rows the query did retrieve (rank,
id, score, weight, payload), so a failing test shows *why* at a glance.

This file uses softdb's small deterministic bag-of-words HashEncoder (queries must share
words with their page) so it runs anywhere in a second. For real semantic search,
build the table with the default model instead:
``SoftTable.from_texts(texts, ids=ids)`` (all-MiniLM-L6-v2, needs softdb[text]).
"""

import numpy as np
import pytest

from softdb import SoftTable
from softdb.testing import (
    assert_attends_more,
    assert_retrieves,
    assert_soft_close_to_hard,
    assert_weight_at_least,
)
from softdb.text import HashEncoder

HELP_PAGES = {
    "csv": "read and write csv files with rows and columns",
    "gzip": "compress and decompress files with gzip",
    "argparse": "parse command line arguments and options",
    "smtplib": "send an email message through a mail server",
    "re": "match text against a regular expression pattern",
}


@pytest.fixture(scope="module")
def help_table():
    """A searchable table of help pages: keys are embeddings, payloads the texts."""
    return SoftTable.from_texts(list(HELP_PAGES.values()), ids=list(HELP_PAGES), encoder=HashEncoder())


@pytest.fixture(scope="module")
def prices():
    """A numeric table: flavour (sweet, sour) -> price, answered by soft lookups."""
    names = ["apple", "lemon", "banana", "lime"]
    keys = np.array([[0.8, 0.3], [0.1, 0.9], [0.9, 0.1], [0.2, 1.0]], np.float32)
    return SoftTable(keys, [[2.0], [3.0], [1.5], [3.5]], ids=names, payloads=names, metric="cosine")


def test_each_question_finds_its_page(help_table):
    assert_retrieves(help_table, "compress and decompress with gzip", "gzip")
    assert_retrieves(help_table, "parse command line options", "argparse")
    assert_retrieves(help_table, "regular expression to match text", "re", k=2)


def test_a_clear_question_is_answered_confidently(help_table):
    # At the table's temperature (τ = 0.05 for text tables) a clear match should dominate.
    assert_weight_at_least(help_table, "send an email", "smtplib", 0.5)


def test_related_pages_outrank_unrelated_ones(help_table):
    assert_attends_more(help_table, "write rows to a csv file", "csv", "smtplib")


def test_sweet_queries_look_up_sweet_fruit(prices):
    assert_attends_more(prices, [1.0, 0.0], "banana", "lemon")


def test_cold_soft_lookup_is_an_exact_lookup(prices):
    # One-hot weights are an exact lookup: at a tiny τ the soft answer is the hard one.
    queries = np.array([[1.0, 0.1], [0.1, 1.0]], np.float32)
    assert_soft_close_to_hard(prices, queries, 1e-4, temperature=1e-4)
