"""The on-disk format of a table: folders, array files, manifests, atomic saves, verified loads.

It knows nothing of tables: :mod:`softdb.table._persist` turns a table state into what is
written here (``softdb.storage.save_state`` / ``load_state``).
"""

from softdb.store._atomic import check_not_writing, writing
from softdb.store._storage import (
    NpyWriter,
    StoredTable,
    load_table,
    now,
    open_arrays,
    publish,
    save_table,
    write_manifest,
)

__all__ = [
    "NpyWriter",
    "StoredTable",
    "check_not_writing",
    "load_table",
    "now",
    "open_arrays",
    "publish",
    "save_table",
    "write_manifest",
    "writing",
]
