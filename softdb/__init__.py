"""softdb: attention as a soft database lookup."""

from ._fit import FitReport
from .projection import Projection
from ._version import __version__
from .table import SearchResult, SoftTable

__all__ = ["SoftTable", "SearchResult", "Projection", "FitReport", "__version__"]
