"""Tables whose rows live on a Dask cluster, answered by the same front end."""

from softdb.distributed._compressed import CompressedShardedTable
from softdb.distributed._table import ShardedTable

__all__ = ["CompressedShardedTable", "ShardedTable"]
