"""numba, imported lazily for softdb's optional compiled loops (``pip install "softdb[fast]"``).

One place for what both compiled loops (:mod:`softdb.engine._fused`, :mod:`softdb.engine._certjit`)
do before compiling: import numba, and when an installed numba cannot be imported (one built for
another numpy, say), warn once with what runs instead and a hint, rather than fail.

Examples
--------
>>> numba = import_numba("the example uses numpy")
>>> numba is None or hasattr(numba, "njit")
True
"""

from __future__ import annotations

import warnings
from typing import Any

__all__ = ["import_numba"]


def import_numba(instead: str) -> Any:
    """The numba module, or None after a warning that says ``instead`` runs (what numpy does then).

    Parameters
    ----------
    instead : str
        What the caller falls back to, for the warning: e.g. "one-query soft answers use numpy's loop".

    Returns
    -------
    module or None
    """
    try:
        import numba
    except Exception as e:  # noqa: BLE001 - e.g. a numba built for another numpy
        warnings.warn(
            f'softdb: numba is installed but cannot be imported ({e}); {instead}; hint: pip install -U "softdb[fast]"',
            stacklevel=4,  # the caller of the loop that asked for its compilation
        )
        return None
    return numba
