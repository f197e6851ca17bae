"""The on-disk format of a table: atomic saves, verified loads, the manifest."""

from softdb.store._storage import NpyWriter, load_state, open_arrays, publish, save_state, write_manifest

__all__ = ["NpyWriter", "load_state", "open_arrays", "publish", "save_state", "write_manifest"]
