"""softdb: attention as a soft database lookup."""

from ._fit import FitReport
from .projection import Projection
from .table import SearchResult, SoftTable

__version__ = "0.1.0"
__all__ = ["SoftTable", "SearchResult", "Projection", "FitReport", "__version__"]
