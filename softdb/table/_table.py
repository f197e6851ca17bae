"""SoftTable: rows of (id, key, value, payload) answered by soft, hard and top-k lookups.

The table wires three parts: its state (:mod:`softdb.table._state`, swapped whole on
every change), the query plan (:mod:`softdb.engine._plan`, one kernel pass per question)
and, in projected mode, a cache of projected rows (:mod:`softdb.table._projected`).

Its methods come in four parts: construction, properties, the plan's hooks and
persistence here; ``lookup``, ``weights`` and ``search`` from the front end every table
shares (:mod:`softdb.table._frontend`); ``add``, ``remove`` and ``compact`` from
:mod:`softdb.table._mutation` (over the segments of :mod:`softdb.table._segments`); ``fit`` and
``block_scores`` from :mod:`softdb.table._fitting`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Hashable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from softdb import _checks
from softdb.engine import _keys
from softdb.engine._plan import Ask, answer
from softdb.table._compressed import Compressing
from softdb.table._fitting import Fitting
from softdb.table._frontend import NO_K, FrontEnd, QuerySpec, prepare_queries
from softdb.table._merge import merge_tail
from softdb.table._mutation import Mutation
from softdb.table._projected import ProjectionCache, check_head, heads_of, output
from softdb.table._state import COSINE_TEMPERATURE, Planned, SearchResult, TableState
from softdb.table._texts import TextWrites

if TYPE_CHECKING:  # pragma: no cover
    from os import PathLike

    from softdb.learn._projection import Projection

__all__ = ["COSINE_TEMPERATURE", "SearchResult", "SoftTable"]


def _readonly(a: np.ndarray) -> np.ndarray:
    v = a.view()
    v.flags.writeable = False
    return v


def _spec_of(st: TableState) -> QuerySpec:
    return QuerySpec(st.rows.n, st.kind, st.template, st.dtype, st.dim, st.metric)


class SoftTable(FrontEnd, Mutation, Fitting, TextWrites, Compressing):
    """A table of keys and values answered by soft (attention) lookups.

    A query q scores every key, s_j = q·k_j (or the cosine), the scores become
    weights w = softmax(s / τ), and the soft answer is w·V. ``mode="hard"``
    returns the value of the best-scoring row instead: the classic exact lookup
    that soft lookup approaches as τ → 0.

    Parameters
    ----------
    keys : array_like of shape (n, d)
        One key per row. float64 stays float64; other numbers become float32.
    values : array_like of shape (n, d_v), optional
        One value per row. ``None`` means the values are the keys (K = V).
    ids : sequence of str or int, optional
        n unique ids; default ``0 .. n-1``.
    payloads : sequence, optional
        Any per-row objects (e.g. the row's text), returned with search hits.
    metric : {"dot", "cosine"}
        "cosine" L2-normalises keys and queries (a zero vector is an error);
        the table then stores the unit keys.
    temperature : float, optional
        τ > 0. Default √d for "dot" (the Transformer's scaling) and 0.05 for
        "cosine" (the scale at which sentence encoders are trained: cosine
        scores lie in [-1, 1], so √d would make every weight nearly equal).
    projection : Projection, optional
        Projected mode: lookups, weights and search score ``(q W_Q)·(k W_K)``
        and blend ``v W_V`` (see :class:`softdb.Projection` and :meth:`fit`).

    Notes
    -----
    Projected mode. With metric="cosine" the raw keys and queries are
    L2-normalised first, then projected (the projected vectors are not
    renormalised). τ is the projection's own if it has one, else this
    table's; for metric="dot" without an explicit τ it is √(d_k / heads), the
    per-head Transformer scaling. The projected rows are computed once per
    version of the rows and of the projection, and cached. With ``heads > 1``
    each head runs its own softmax through the kernel: ``lookup`` concatenates
    the heads' answers (``mode="hard"``: each head's best row, the τ → 0 limit),
    ``weights`` is the mean of the heads' weights (still summing to 1), and
    ``search`` ranks rows by that mean weight, reporting score = log(mean weight).

    The rows are segments (sealed ones, one growing segment, a live bitmap each):
    ``add`` appends to the growing segment, ``remove`` clears live bits,
    :meth:`compact` merges them (see ``docs/format.md``). Lookups read one
    immutable version of the rows, and a write swaps in a new version whole, so
    a concurrent reader sees either the old rows or the new ones, never a mix.

    A query whose rows are all masked gets "no match": a zero answer, a row of
    zero weights, and search hits with id None, score -inf and weight 0.

    Examples
    --------
    >>> import numpy as np
    >>> from softdb import SoftTable
    >>> keys = np.array([[1, 0], [0, 1], [1, 1]], dtype=np.float32)
    >>> values = np.array([[10.0], [20.0], [30.0]], dtype=np.float32)
    >>> table = SoftTable(keys, values, ids=["a", "b", "c"], temperature=0.1)
    >>> table.lookup([2, 0.5], mode="hard")
    array([30.], dtype=float32)
    >>> table.search([2, 0.5], k=2).ids
    array(['c', 'a'], dtype=object)
    """

    def __init__(
        self,
        keys: Any,
        values: Any = None,
        *,
        ids: Iterable[Hashable] | None = None,
        payloads: Sequence[Any] | None = None,
        metric: str = "dot",
        temperature: float | None = None,
        projection: Projection | None = None,
        block_weights: Sequence[float] | None = None,
    ) -> None:
        _checks.as_metric(metric)
        if temperature is not None:
            _checks.as_temperature(temperature)
        k = _keys.as_keys(keys, "keys", copy=True)  # dense, scipy CSR, or blocks [dense | sparse]
        v = None
        if values is not None:
            v = _checks.as_matrix(
                values, "values", dtype=k[0].dtype if isinstance(k, _keys.Blocks) else k.dtype, copy=True
            )
            _checks.check_same_rows(k.shape[0], "keys", len(v), "values")
        self._adopt(
            TableState.build(
                k, v, ids=ids, payloads=payloads, metric=metric, temperature=temperature, block_weights=block_weights
            )
        )
        if projection is not None:
            self.projection = projection

    @classmethod
    def _from_state(cls, state: TableState) -> SoftTable:
        """A table over an existing state, arrays not copied (how :meth:`load` builds tables).

        ``state`` comes from :meth:`TableState.build` (the one construction path,
        also behind ``__init__``); its arrays may be read-only memory maps.
        """
        table = cls.__new__(cls)
        table._adopt(state)
        return table

    def _adopt(self, state: TableState) -> None:
        self._lock = threading.Lock()  # serialises writers; readers take one state and go
        self._proj_cache = ProjectionCache()
        self._state = state
        self._home: str | None = None  # the folder last saved to or loaded from (compact checks its lock)

    # ------------------------------------------------------------ properties
    def __len__(self) -> int:
        return self._state.rows.n

    def _repr_html_(self) -> str:
        from softdb.render import table_html

        return table_html(self)

    def __repr__(self) -> str:
        st = self._state
        return (
            f"SoftTable(n={len(self)}, dim={st.dim}, value_dim={st.value_dim}, "
            f"metric={st.metric!r}, temperature={self.temperature:g}, dtype={st.dtype.name})"
        )

    @property
    def dim(self) -> int:
        """Width d of the keys (and of queries)."""
        return self._state.dim

    @property
    def value_dim(self) -> int:
        """Width d_v of the values (and of soft answers)."""
        return self._state.value_dim

    @property
    def dtype(self) -> np.dtype:
        """float32, or float64 when the keys were given as float64."""
        return self._state.dtype

    @property
    def metric(self) -> str:
        return self._state.metric

    @property
    def temperature(self) -> float:
        """The default τ of lookups (see the class docstring for the default)."""
        return self._state.tau()

    @property
    def ids(self) -> tuple:
        """Row ids, in row order."""
        return self._state.rows.ids

    @property
    def key_kind(self) -> str:
        """ "dense", "csr" (scipy.sparse keys) or "blocks" (e.g. [dense | sparse] hybrid keys)."""
        return self._state.kind

    @property
    def block_weights(self) -> tuple[float, ...] | None:
        """β_b of each key block (score = Σ_b β_b q_b·k_b); None unless the keys are blocks."""
        return self._state.block_weights

    @property
    def query_projection(self) -> np.ndarray | None:
        """(d_0, d_0) W_Q applied to the first query block (set by fitting a hybrid), or None."""
        return self._state.query_w

    @property
    def keys(self) -> np.ndarray:
        """Read-only keys: (n, d) (unit rows when metric="cosine"), a CSR matrix, or the blocks."""
        k = self._state.rows.keys
        return _readonly(k) if isinstance(k, np.ndarray) else k

    @property
    def values(self) -> np.ndarray:
        """Read-only values (n, d_v) (a CSR matrix for a K = V table of CSR keys)."""
        v = self._state.rows.values
        return _readonly(v) if isinstance(v, np.ndarray) else v

    @property
    def payloads(self) -> tuple | None:
        """Per-row payloads, or None if the table has none."""
        st = self._state
        if not st.has_payloads:
            return None
        return st.rows.payloads or (None,) * st.rows.n

    def row_of(self, id: Hashable) -> int:  # noqa: A002 - public keyword: row_of(id=...) must keep working
        """Row position of ``id``."""
        try:
            return self._state.rows.index[id]
        except (KeyError, TypeError):
            raise KeyError(f"unknown id {id!r}; hint: table.ids lists the ids in the table") from None

    @property
    def encoder(self) -> Any:
        """The text encoder of a table built from texts (None otherwise).

        A loaded table rebuilds it from the name its manifest recorded, lazily.
        """
        st = self._state
        if st.encoder is None and st.encoder_name:
            from softdb.text import encoder_from_name

            enc = encoder_from_name(st.encoder_name)
            with self._lock:
                if self._state.encoder is None and self._state.encoder_name == st.encoder_name:
                    self._state = self._state.with_(encoder=enc)
            return enc
        return st.encoder

    @encoder.setter
    def encoder(self, encoder: Any) -> None:
        with self._lock:
            self._state = self._state.with_(encoder=encoder, encoder_name=getattr(encoder, "name", None))

    @property
    def projection(self) -> Projection | None:
        """The table's :class:`softdb.Projection`, or None (plain mode).

        Setting it checks the widths (creating W_V for this table's value width
        if the projection has none yet); ``None`` returns to plain mode.

        Examples
        --------
        >>> from softdb import Projection, SoftTable
        >>> t = SoftTable(np.eye(2, dtype=np.float32), [[1.0], [2.0]], temperature=1.0)
        >>> t.projection = Projection(2)
        >>> t.projection.W_V.shape
        (1, 1)
        """
        return self._state.projection

    @projection.setter
    def projection(self, projection: Projection | None) -> None:
        from softdb.learn._projection import Projection

        st = self._state
        if projection is not None:
            if not isinstance(projection, Projection):
                raise TypeError(
                    f"projection must be a softdb.Projection or None, got {type(projection).__name__}; "
                    f"hint: Projection({st.dim})"
                )
            if st.kind != "dense":
                raise ValueError(
                    f"a projection needs dense keys, but this table's keys are {st.kind}; "
                    "hint: fit() of a block table learns W_Q of its dense block"
                )
            projection.bind(st.dim, st.value_dim)
        with self._lock:
            self._state = self._state.with_(projection=projection)
            self._proj_cache.clear()

    # --------------------------------------------------------------- lookups
    def _snapshot(self) -> tuple[TableState, Any]:
        """One consistent (state, projected rows or None); projects at most once per version."""
        st = self._state
        if st.projection is None:
            return st, None
        return st, self._proj_cache.get(st.rows, st.projection)

    def _spec(self, snap: tuple[TableState, Any]) -> QuerySpec:
        return _spec_of(snap[0])

    def _tau(self, snap: tuple[TableState, Any], temperature: float | None) -> float:
        st, proj = snap
        return st.tau(temperature, None if proj is None else proj.params)

    def _check_ask(self, snap: tuple[TableState, Any], ask: Ask, m: int) -> None:
        check_head(ask.head, 1 if snap[1] is None else len(snap[1].keys))

    def _queries(self, queries: Any, st: TableState) -> tuple[Any, bool]:
        """Queries → (m, d) in the table's dtype (encoded, checked, unit for "cosine"), and single."""
        return prepare_queries(queries, _spec_of(st), lambda: st.encoder or self._query_encoder())  # st's vocabulary

    def _query_encoder(self) -> Any:
        encoder = self.encoder
        if encoder is None:
            raise TypeError(
                "string queries need a table built from texts (SoftTable.from_texts), "
                "which knows its encoder; this table has none; hint: encode the query "
                "yourself, or set table.encoder"
            )
        return encoder

    def _prepare(self, queries: Any) -> Any:
        """Queries (m, d) as the plan takes them (encoded, checked, unit): encode once, ask many times."""
        return self._queries(queries, self._state)[0]

    def _run(
        self, snap: tuple[TableState, Any], q: Any, single: bool, ask: Ask, tau: float, mask: np.ndarray | None
    ) -> Planned:
        """In process: one pass of the query plan per head (see :mod:`softdb.engine._plan`)."""
        st, proj = snap
        heads = heads_of(st, proj)
        answers = output(answer(heads, q, ask, tau, mask, dtype=st.dtype), proj, ask)
        if ask.head is not None:
            heads = [heads[ask.head]]
        out = None if proj is None or ask.head is not None else proj
        return Planned(answers, tau, single, state=st, heads=heads, queries=q, taus=ask.taus, out=out)

    def _answer(
        self, queries: Any, ask: Ask, *, temperature: float | None = None, mask: Any = None, k: Any = NO_K
    ) -> Planned:
        """:meth:`FrontEnd._answer <softdb.table._frontend.FrontEnd._answer>`, answered by the plan."""
        return cast(Planned, super()._answer(queries, ask, temperature=temperature, mask=mask, k=k))

    def explain(self, query: Any, k: int = 5, *, temperature: float | None = None, head: int | None = None) -> Any:
        """A readable "soft SELECT" for one query (see :func:`softdb.table._explain.explain`).

        ``head=h`` shows head h of a table with several heads (its weights, hits and answer).

        Examples
        --------
        >>> t = SoftTable(np.eye(2, dtype=np.float32), ids=["x", "y"], temperature=1.0)
        >>> print(t.explain([1.0, 0.0], k=1))  # doctest: +ELLIPSIS
        query: [1. 0.]
        ...
           1  x ... 0.731  ███████████████ ...
        """
        from softdb.table._explain import explain

        return explain(self, query, k, temperature=temperature, head=head)

    @classmethod
    def from_texts(
        cls,
        texts: Sequence[str],
        *,
        ids: Iterable[Hashable] | None = None,
        payloads: Sequence[Any] | None = None,
        values: Any = None,
        encoder: Any = None,
        temperature: float | None = None,
    ) -> SoftTable:
        """Encode texts into a cosine table that also accepts string queries.

        Parameters
        ----------
        texts : sequence of str
            One text per row; the keys are their embeddings.
        ids, payloads, values : optional
            As in :class:`SoftTable`; payloads default to the texts.
        encoder : optional
            Any object with ``name``, ``dim`` and ``encode(texts)``; default
            all-MiniLM-L6-v2 (``softdb.text.default_encoder()``). ``"bm25"``:
            :class:`softdb.text.BM25Encoder` (sparse BM25 keys, metric "dot", τ 1);
            ``"hybrid"``: :class:`softdb.text.HybridEncoder`, block keys
            [MiniLM | BM25] scored cos + β·BM25 (β = 0.05, τ = 0.05). An encoder
            with ``encode_corpus`` (BM25, hybrid) fits its statistics on ``texts``.

        Examples
        --------
        >>> from softdb.text import HashEncoder
        >>> t = SoftTable.from_texts(["read a csv file", "compress with gzip"], encoder=HashEncoder())
        >>> t.search("gzip compression", k=1).payloads
        array(['compress with gzip'], dtype=object)
        """
        if isinstance(texts, str):
            raise TypeError("texts must be a sequence of strings, got one string; hint: wrap it in a list")
        texts = list(texts)
        if encoder is None:
            from softdb.text import default_encoder

            encoder = default_encoder()
        elif isinstance(encoder, str):
            from softdb.text import text_encoder

            encoder = text_encoder(encoder)
        payloads = texts if payloads is None else payloads
        if not hasattr(encoder, "encode_corpus"):
            keys = encoder.encode(texts)
            table = cls(keys, values, ids=ids, payloads=payloads, metric="cosine", temperature=temperature)
        else:
            if getattr(encoder, "grows", False):  # BM25 / hybrid: term counts, statistics that grow
                encoder, keys = encoder.grow(texts)
            else:
                keys = encoder.encode_corpus(texts)  # CSR, or blocks [dense | sparse]
            if temperature is None:
                temperature = getattr(encoder, "temperature", None)
            table = cls(
                keys,
                values,
                ids=ids,
                payloads=payloads,
                metric="dot",
                temperature=temperature,
                block_weights=getattr(encoder, "weights", None),
            )
        table.encoder = encoder
        return table

    # ----------------------------------------------------------- persistence
    def save(self, path: str | PathLike[str]) -> None:
        """Save the table to a folder, atomically, writing only what the folder lacks.

        The growing segment is sealed first (a save is a flush, as in Lucene), so each row is
        written once: a save after adds writes the new segment, the live bitmaps that changed
        and the manifest (the format: ``docs/format.md``, :mod:`softdb.store._segmented`).
        """
        from softdb.table._persist import save_state

        with self._lock:
            st = self._state
            views = list(st.rows.views)
            if views[-1].growing and views[-1].n_live:
                sealed = merge_tail([*views[:-1], views[-1].seg.seal(views[-1].live)], st.shared_kv)
                st = st.with_(rows=st.rows.with_views(sealed))
                self._state = st
        save_state(st, path)
        self._home = os.path.abspath(os.fspath(path))

    @classmethod
    def load(cls, path: str | PathLike[str], *, mmap: bool = False, verify: bool = True) -> SoftTable:
        """Load a table saved by :meth:`save` (the format: ``docs/format.md``; format 1 still loads)."""
        from softdb.table._persist import load_state

        state = load_state(path, mmap=mmap, verify=verify)
        table = cls._from_state(state.with_(projection=None))
        if state.projection is not None:
            table.projection = state.projection
        table._home = os.path.abspath(os.fspath(path))
        return table
