"""softdb: attention as a soft database lookup."""

from softdb._version import __version__
from softdb.engine._certified import Certificate
from softdb.learn._fit import FitReport
from softdb.learn._projection import Projection
from softdb.table._compressed import CertifiedLookup, CertifiedSearch, CompressedTable
from softdb.table._table import SearchResult, SoftTable

__all__ = [
    "Certificate",
    "CertifiedLookup",
    "CertifiedSearch",
    "CompressedTable",
    "FitReport",
    "Projection",
    "SearchResult",
    "SoftTable",
    "__version__",
]
