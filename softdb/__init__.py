"""softdb: attention as a soft database lookup."""

from .table import SearchResult, SoftTable

__version__ = "0.1.0"
__all__ = ["SoftTable", "SearchResult", "__version__"]
