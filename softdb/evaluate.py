"""BEIR evaluation (kept at this path; the code lives in :mod:`softdb.eval`)."""

from softdb.eval import *  # noqa: F403 - this old path re-exports exactly the package's public names
from softdb.eval import __all__ as __all__
