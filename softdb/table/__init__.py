"""The table: SoftTable, its state, its results and the one front end every table shares."""

from softdb.table._mutation import CompactReport
from softdb.table._table import COSINE_TEMPERATURE, SearchResult, SoftTable

__all__ = ["COSINE_TEMPERATURE", "CompactReport", "SearchResult", "SoftTable"]
