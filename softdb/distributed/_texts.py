"""Text in for a sharded table: ``add_texts`` (encoded on the client) and ``compact`` (a report)."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from typing import Any

from softdb.table._texts import text_list

__all__ = ["ShardedTexts"]


class ShardedTexts:
    """``add_texts`` and ``compact`` of :class:`~softdb.distributed.ShardedTable` (a mixin over ``add``)."""

    encoder: Any

    @property
    def n_shards(self) -> int:
        raise NotImplementedError  # pragma: no cover - ShardedTable has it

    def add(self, keys: Any, values: Any = None, *, ids: Any = None, payloads: Any = None) -> tuple:
        raise NotImplementedError  # pragma: no cover - ShardedTable has it

    def add_texts(
        self,
        texts: Sequence[str],
        ids: Iterable[Hashable] | None = None,
        payloads: Sequence[Any] | None = None,
        *,
        values: Any = None,
    ) -> list:
        """Encode texts with the table's encoder (on the client) and append them; return their ids.

        As :meth:`SoftTable.add_texts`; payloads default to the texts. A sharded table holds
        dense keys, so its encoder is a dense one.
        """
        texts = text_list(texts)
        if self.encoder is None:
            raise TypeError(
                "add_texts needs a table that records its encoder (built from texts), but this sharded "
                "table has none; hint: encode the texts yourself and call add()"
            )
        keys = self.encoder.encode(texts)  # (n_new, d)
        return list(self.add(keys, values, ids=ids, payloads=texts if payloads is None else payloads))

    def compact(self) -> Any:
        """Report what compaction would do: nothing, since every write already rewrote the shard it touched.

        A sharded table's ``add`` and ``remove`` write new versions of whole shards (no deletion
        bits are left behind), so there are no removed rows to drop and no segments to merge.
        """
        import time

        from softdb.table._mutation import CompactReport

        t0 = time.perf_counter()
        n = self.n_shards
        return CompactReport(n, n, 0, time.perf_counter() - t0)
