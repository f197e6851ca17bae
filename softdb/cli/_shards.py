"""The command line's sharded side: ``index --shards`` / ``--vectors`` and opening sharded tables.

``softdb index`` (:mod:`softdb.cli._index`) adds these arguments and calls :func:`index`
for its sharded and vector forms; ``softdb search`` (:mod:`softdb.cli._search`) opens
every ``--table`` through :func:`open_table`, which gives a SoftTable or, for a folder
holding ``shards.json``, a :class:`~softdb.distributed.ShardedTable` (on ``--scheduler``
if given, else on a LocalCluster of this machine).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time
from collections.abc import Iterator
from typing import Any

from softdb.cli._args import positive_float, positive_int, text_table

__all__ = [
    "add_index_arguments",
    "add_search_arguments",
    "check_table_folder",
    "index",
    "is_sharded",
    "is_sharded_table",
    "open_table",
    "search_answers",
]


def add_index_arguments(ix: argparse.ArgumentParser) -> None:
    """``--shards``, ``--vectors``, ``--values``, ``--ids``, ``--metric``, ``--encoder`` of ``softdb index``."""
    ix.add_argument(
        "--shards",
        type=positive_int,
        help="write a sharded table of N shards (for `softdb search --table` on a Dask cluster)",
    )
    ix.add_argument(
        "--vectors",
        metavar="EMB.npy",
        help="index precomputed embeddings (n, d) instead of a corpus; streamed, never loaded whole",
    )
    ix.add_argument("--values", metavar="V.npy", help="with --vectors: values (n, d_v); default: the vectors")
    ix.add_argument("--ids", metavar="IDS.txt", help="with --vectors: one id per line (default 0..n-1)")
    ix.add_argument(
        "--metric",
        choices=["cosine", "dot"],
        default="dot",
        help="with --vectors: the similarity (default dot at τ = √d, as SoftTable(keys); for unit "
        "embeddings meant for search, --metric cosine gives τ = 0.05)",
    )
    ix.add_argument(
        "--temperature",
        type=positive_float,
        help="with --vectors: the table's τ (default √d for dot, 0.05 for cosine)",
    )
    ix.add_argument(
        "--encoder",
        metavar="NAME",
        help="with --vectors: the model that made them (e.g. all-MiniLM-L6-v2), so that "
        "`softdb search` can encode text queries",
    )


def add_search_arguments(s: argparse.ArgumentParser) -> None:
    """``--scheduler`` of ``softdb search``."""
    s.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="with a sharded --table: the Dask scheduler to use, e.g. tcp://scheduler-host:8786 "
        "(default: a local cluster on this machine)",
    )


def is_sharded(path: str) -> bool:
    """The folder holds a sharded table (``shards.json``)."""
    return os.path.isfile(os.path.join(path, "shards.json"))


def is_sharded_table(table: Any) -> bool:
    """``table`` is a :class:`~softdb.distributed.ShardedTable`."""
    from softdb.distributed._table import ShardedTable

    return isinstance(table, ShardedTable)


def search_answers(table: Any, queries: Any, k: int, *, temperature: float | None = None, where: Any = None) -> list:
    """:func:`softdb.views.search_answers` for a ShardedTable: hits, entropy and effective rows.

    Two passes on the workers (``search``, then ``weight_stats``); no weights move.
    """
    from softdb.engine._plan import Ask
    from softdb.views._model import SearchAnswer

    # as table.search (filtered on the workers), with no_terms
    reply = table._answer(queries, Ask(lse=True), temperature=temperature, k=k, where=where)
    hits = reply.hits()  # (m, k) each
    entropy, effective = table.weight_stats(queries, temperature=temperature, where=where)  # (m,) each
    tau = table.temperature if temperature is None else temperature
    out = []
    for j in range(hits.rows.shape[0]):
        found = hits.rows[j] >= 0  # (k,)
        pays = [None] * int(found.sum()) if hits.payloads is None else hits.payloads[j][found].tolist()
        out.append(
            SearchAnswer(
                hits.ids[j][found].tolist(),
                hits.scores[j][found].astype(float).tolist(),
                hits.weights[j][found].astype(float).tolist(),
                pays,
                float(tau),
                float(entropy[j]),
                float(effective[j]),
                reply.no_terms is not None and bool(reply.no_terms[j]),
            )
        )
    return out


def _read_ids(path: str, n: int) -> list[str]:
    try:
        with open(path, encoding="utf-8-sig") as f:
            ids = f.read().splitlines()
    except OSError as exc:
        raise ValueError(
            f"cannot read --ids {path!r}: {exc.strerror}; hint: a text file with one id per line"
        ) from None
    if len(ids) != n:
        raise ValueError(
            f"--ids {path!r} has {len(ids)} lines but the vectors have {n} rows; hint: one id per line, in row order"
        )
    return ids


def _load_npy(path: str, what: str) -> Any:
    import numpy as np

    try:
        arr = np.load(path, mmap_mode="r")  # memory-mapped: rows are read chunk by chunk
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} {path!r} does not exist") from None
    except (OSError, ValueError) as exc:
        raise ValueError(
            f"{what} {path!r} is not a readable .npy file ({exc}); hint: save it with numpy.save"
        ) from None
    if not isinstance(arr, np.ndarray) or arr.ndim != 2:
        raise ValueError(f"{what} {path!r} must hold a 2-D array (n, d), got shape {getattr(arr, 'shape', None)}")
    return arr


def index(args: argparse.Namespace) -> int | None:
    """Run the sharded or vector forms of ``softdb index``; None: the plain form is :mod:`softdb.cli._index`'s."""
    from softdb.distributed._table import ShardedTable

    if args.vectors is None:
        if args.shards is None:
            if args.values or args.ids or args.encoder or args.temperature is not None:
                raise ValueError("--values, --ids, --encoder and --temperature go with --vectors EMB.npy")
            return None
        if args.corpus is None:
            raise ValueError("give a CORPUS to index, or --vectors EMB.npy")
        t0 = time.perf_counter()
        table = text_table(args.corpus, args.text_column, args.id_column)
        ShardedTable.create(args.output, table, shards=args.shards)
        print(
            f"indexed {len(table)} rows from {args.corpus!r} into {args.output} as {args.shards} shards "
            f"({table.dim}-d keys, encoder {table.encoder.name}) in {time.perf_counter() - t0:.1f} s"
        )
        return 0
    if args.corpus is not None:
        raise ValueError(f"give either a CORPUS ({args.corpus!r}) or --vectors, not both")
    t0 = time.perf_counter()
    keys = _load_npy(args.vectors, "--vectors")
    values = None if args.values is None else _load_npy(args.values, "--values")
    ids = None if args.ids is None else _read_ids(args.ids, len(keys))
    shards = args.shards or 1
    ShardedTable.create(
        args.output, keys, values, ids=ids, shards=shards, metric=args.metric, temperature=args.temperature
    )
    if args.encoder:
        _record_encoder(args.output, args.encoder)
    print(
        f"indexed {len(keys)} vectors ({keys.shape[1]}-d, {args.metric}) from {args.vectors} into "
        f"{args.output} as {shards} shard{'s' * (shards > 1)} in {time.perf_counter() - t0:.1f} s"
    )
    return 0


def _record_encoder(path: str, name: str) -> None:
    """Name the encoder in shards.json, atomically (its checksum is recomputed)."""
    import json

    from softdb.distributed import _shards

    where = os.path.join(path, _shards.FILE)
    with open(where, "rb") as f:
        layout = json.load(f)
    layout["encoder"] = {"name": name}
    layout.pop("checksum", None)
    _shards.write_layout(path, layout, replace=True)


def check_table_folder(path: str) -> None:
    """A folder that is neither a table nor a sharded table: say what it holds and what was expected."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"no table at {path!r}; hint: build one with `softdb index CORPUS -o {path}`")
    if not os.path.isdir(path):
        raise ValueError(
            f"{path!r} is a file, but a table is a folder holding manifest.json (`softdb index`) or "
            "shards.json (`softdb index --shards N`); hint: pass the table's folder"
        )
    if os.path.isfile(os.path.join(path, "manifest.json")) or is_sharded(path):
        return
    names = sorted(os.listdir(path))
    held = "nothing" if not names else f"{len(names)} entries ({', '.join(names[:5])}{', …' if len(names) > 5 else ''})"
    raise ValueError(
        f"{path!r} is not a softdb table: it holds {held}, but a table folder holds manifest.json "
        "(written by `softdb index`) or shards.json (a sharded table, `softdb index --shards N`); "
        f"hint: build one with `softdb index CORPUS -o {path}`"
    )


@contextlib.contextmanager
def open_table(path: str, *, verify: bool = True, scheduler: str | None = None) -> Iterator[Any]:
    """The table at ``path``: a SoftTable, or a ShardedTable (closed on exit) for a sharded folder."""
    check_table_folder(path)
    if not is_sharded(path):
        if scheduler is not None:
            raise ValueError(
                f"--scheduler needs a sharded table, but {path!r} is an ordinary one; "
                "hint: build one with `softdb index ... --shards N`, or drop --scheduler"
            )
        from softdb.table._table import SoftTable

        yield SoftTable.load(path, verify=verify)
        return
    from softdb.distributed._table import ShardedTable
    from softdb.distributed._tasks import dask

    if scheduler is None:
        with ShardedTable.open(path, verify=verify) as t:
            yield t
        return
    distributed = dask()
    try:
        client = distributed.Client(scheduler, timeout=30)
    except OSError as exc:
        raise ValueError(
            f"cannot reach the Dask scheduler at {scheduler!r} ({exc}); hint: start one with "
            "`dask scheduler` and workers with `dask worker ADDRESS`"
        ) from None
    try:
        with ShardedTable.open(path, client=client, verify=verify) as t:
            yield t
    finally:
        client.close()
