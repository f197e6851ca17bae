"""The on-disk format (kept at this path): the folder format lives in :mod:`softdb.store`,
the conversion of a table state to and from it in :mod:`softdb.table._persist`."""

from softdb.store import NpyWriter, open_arrays, publish, write_manifest
from softdb.table._persist import load_state, save_state

__all__ = ["NpyWriter", "load_state", "open_arrays", "publish", "save_state", "write_manifest"]
