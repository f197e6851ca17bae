"""The on-disk format (kept at this path; the code lives in :mod:`softdb.store`)."""

from softdb.store._storage import NpyWriter, load_state, open_arrays, publish, save_state, write_manifest

__all__ = ["NpyWriter", "load_state", "open_arrays", "publish", "save_state", "write_manifest"]
