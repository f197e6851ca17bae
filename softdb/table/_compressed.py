"""A compressed table: one version of a table's rows, its keys also in int8 or bf16, answered with certificates.

``table.compress("int8" | "bf16")`` returns a :class:`CompressedTable` that shares the table's
version of the rows (ids, values, payloads and the full-precision keys, in memory or memory-mapped:
nothing is copied) and adds one compressed copy of each segment's keys (a *compressed segment*:
codes, scales, residual norms; :mod:`softdb.engine._compressed`). Sealed segments keep their
compressed copy, so compressing a later version of the same table compresses only new segments.

Writes: a compressed table is a read-only snapshot of the version it was made from. ``add``,
``remove`` and ``compact`` raise; write to the table, then call ``table.compress(...)`` again
(sealed segments reuse their compressed keys, only new rows are compressed).

``search`` is the certified exact top-k (:mod:`softdb.engine._certified`): ids and scores equal
those of the table's fp32 ``search``, each query with a :class:`~softdb.engine._certified.Certificate`;
``weight_tolerance`` narrows the hits' certified weight intervals. ``lookup`` (soft or hard) runs
the fp32 pass and says so in its certificate.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

import numpy as np

from softdb import _checks
from softdb.engine._certified import (
    Certificate,
    CertifiedTopK,
    certified_search,
    lse_slack,
    tighten,
    weight_interval,
)
from softdb.engine._compressed import CompressedKeys, compress_keys
from softdb.engine._plan import values_at
from softdb.engine._rescore import rescore_cells, unscale
from softdb.engine._segmented import Parts
from softdb.table._frontend import QuerySpec, prepare_queries
from softdb.table._projected import heads_of
from softdb.table._state import SearchResult, TableState

__all__ = ["CertifiedLookup", "CertifiedSearch", "CompressedTable", "Compressing", "compress_state", "full_pass"]

#: Rows of fp32 keys per step of the full fp32 pass (a fallback).
FULL_STEP = 16384


@dataclass
class CertifiedSearch:
    """Certified top-k hits: the fields of a :class:`~softdb.SearchResult` and their certificate.

    Attributes
    ----------
    ids, scores, weights, payloads, rows
        As in :class:`~softdb.SearchResult` ((m, k), or (k,) for one query); ids and scores
        equal those of the table's fp32 ``search``.
    weight_lo, weight_hi : ndarray of float64, shape (m, k) or (k,)
        Certified interval of each hit's exact full-table weight (``weights`` lies inside).
    certificate : Certificate
        Per query: rows rescored in fp32, the margin, whether a full fp32 pass ran.
    """

    ids: np.ndarray
    scores: np.ndarray
    weights: np.ndarray
    payloads: np.ndarray | None
    rows: np.ndarray
    weight_lo: np.ndarray
    weight_hi: np.ndarray
    certificate: Certificate

    @property
    def hits(self) -> SearchResult:
        """The hits as a plain :class:`~softdb.SearchResult`."""
        return SearchResult(self.ids, self.scores, self.weights, self.payloads, self.rows)


@dataclass
class CertifiedLookup:
    """A lookup's answer ((m, d_v) or (d_v,)) and its certificate.

    Hard lookups: the certified top-1's certificate; soft lookups: the fp32 pass ran (``fallback``).
    """

    answer: np.ndarray
    certificate: Certificate


def _compress_view(view: Any, precision: str) -> CompressedKeys:
    """The compressed segment of one segment view (cached for sealed segments)."""
    seg = view.seg
    if not view.growing:
        got = seg.__dict__.setdefault("compressed", {})  # a sealed segment never changes: its compressed keys neither
        if precision not in got:
            got[precision] = _checked(view.keys, precision)
        return got[precision]
    return _checked(view.keys, precision)  # the growing segment's rows of this version


def _checked(keys: np.ndarray, precision: str) -> CompressedKeys:
    ck = compress_keys(keys, precision)
    bad = np.flatnonzero(~np.isfinite(ck.key_norm) | ~np.isfinite(ck.rho))
    _checks.check_finite_keys(bad, ck.n)
    return ck


def compress_state(st: TableState, precision: Any) -> tuple[str, list[CompressedKeys]]:
    """Check a table version and compress each of its segments: (precision, compressed segments)."""
    precision = _checks.as_precision(precision)
    _checks.check_compressible(st.kind, st.dtype, st.projection is not None)
    return precision, [_compress_view(v, precision) for v in st.rows.views]


class CompressedTable:
    """A read-only version of a table with compressed keys; search is certified exact.

    Made by :meth:`softdb.SoftTable.compress`; see :mod:`softdb.table._compressed`.

    Examples
    --------
    >>> import numpy as np
    >>> from softdb import SoftTable
    >>> K = np.random.default_rng(0).standard_normal((200, 16)).astype(np.float32)
    >>> t = SoftTable(K, temperature=1.0)
    >>> c = t.compress("int8")
    >>> hits = c.search(K[3], k=3)
    >>> hits.rows.tolist() == t.search(K[3], k=3).rows.tolist(), bool(hits.certificate.holds.all())
    (True, True)
    """

    def __init__(self, table: Any, state: TableState, precision: str, cks: list[CompressedKeys]) -> None:
        self._table, self._state, self.precision, self._cks = table, state, precision, cks

    def __len__(self) -> int:
        return self._state.rows.n

    def __repr__(self) -> str:
        st = self._state
        return f"CompressedTable(n={len(self)}, dim={st.dim}, precision={self.precision!r}, metric={st.metric!r})"

    @property
    def ids(self) -> tuple:
        return self._state.rows.ids

    @property
    def dim(self) -> int:
        return self._state.dim

    @property
    def metric(self) -> str:
        return self._state.metric

    @property
    def temperature(self) -> float:
        return self._state.tau()

    @property
    def nbytes(self) -> int:
        """Bytes of the compressed keys (with their scales and norms); the fp32 keys are not counted."""
        return sum(ck.nbytes for ck in self._cks)

    @property
    def compressed_segments(self) -> list[CompressedKeys]:
        """One :class:`~softdb.engine._compressed.CompressedKeys` per segment, in row order."""
        return list(self._cks)

    def _refuse(self, what: str) -> None:
        raise TypeError(
            f"a compressed table is a read-only snapshot of one version of its table, so it has no {what}(); "
            f"hint: table.{what}(...) on the table itself, then table.compress({self.precision!r}) again "
            "(sealed segments keep their compressed keys)"
        )

    def add(self, *args: Any, **kwargs: Any) -> None:
        """Refused: see the module docstring (write to the table, then compress again)."""
        self._refuse("add")

    def remove(self, *args: Any, **kwargs: Any) -> None:
        """Refused: see :meth:`add`."""
        self._refuse("remove")

    def compact(self, *args: Any, **kwargs: Any) -> None:
        """Refused: see :meth:`add`."""
        self._refuse("compact")

    # ------------------------------------------------------------ questions
    def _prepare(self, queries: Any, mask: Any, temperature: float | None) -> tuple[np.ndarray, bool, Any, float]:
        st = self._state
        spec = QuerySpec(st.rows.n, st.kind, st.template, st.dtype, st.dim, st.metric)
        q, single = prepare_queries(queries, spec, self._encoder)
        mask = _checks.as_mask(mask, q.shape[0], st.rows.n, single)
        return q, single, mask, st.tau(temperature)

    def _encoder(self) -> Any:
        return self._table._query_encoder()

    def search(
        self,
        queries: Any,
        k: int = 10,
        *,
        temperature: float | None = None,
        mask: Any = None,
        weight_tolerance: float | None = None,
    ) -> CertifiedSearch:
        """The certified exact top-k: ids and scores equal the fp32 search's, with certificates.

        Parameters
        ----------
        queries : array_like of shape (m, d) or (d,), or str / list of str
        k : int
            1 <= k <= len(table).
        temperature : float, optional
        mask : array_like of bool, shape (n,) or (m, n), optional
        weight_tolerance : float, optional
            Rescore rows (largest bound contributions first) until each hit's certified weight
            interval is narrower than this, up to a full fp32 pass.

        Returns
        -------
        CertifiedSearch

        Examples
        --------
        >>> import numpy as np
        >>> from softdb import SoftTable
        >>> K = np.random.default_rng(1).standard_normal((100, 8)).astype(np.float32)
        >>> c = SoftTable(K, metric="cosine", temperature=1.0).compress("bf16")
        >>> r = c.search(K[:2], k=2, weight_tolerance=1e-3)
        >>> r.rows[:, 0].tolist(), bool(((r.weight_hi - r.weight_lo) <= 1e-3).all())
        ([0, 1], True)
        """
        st = self._state
        k = _checks.as_k(k, st.rows.n)
        if weight_tolerance is not None:
            weight_tolerance = _checks.as_tolerance(weight_tolerance)
        q, single, mask, tau = self._prepare(queries, mask, temperature)
        parts = st.rows.parts
        res = certified_search(parts, self._cks, q, k=k, tau=tau, mask=mask)
        if weight_tolerance is not None and not res.cert.fallback.all():
            still = tighten(parts, self._cks, q, res, tau=tau, tol=weight_tolerance, mask=mask)
            res.cert.fallback |= still
        if res.cert.fallback.any():
            full_pass(parts, q, k, tau, mask, res)
        lo, hi = weight_interval(res.scores, res.rows, res.lse_lo, res.lse_hi, tau)
        mid = 0.5 * (res.lse_lo + res.lse_hi)  # (m,)
        with np.errstate(over="ignore", invalid="ignore"):
            w = np.exp(res.scores.astype(np.float64) / tau - mid[:, None])  # (m, k)
        w = np.where(res.rows >= 0, np.clip(w, lo, hi), 0.0).astype(st.dtype)  # (m, k)
        _checks.check_finite_result(res.scores[res.rows >= 0], "search scores", tau)
        ids, pays = st.rows.labels(res.rows)
        if not st.has_payloads:
            pays = None
        elif pays is None:
            pays = np.full(res.rows.shape, None, object)
        out: list[Any] = [ids, res.scores, w, pays, res.rows, lo, hi]
        if single:
            out = [None if x is None else x[0] for x in out]
        ids, scores, w, pays, rows, lo, hi = out
        return CertifiedSearch(ids, scores, w, pays, rows, lo, hi, res.cert)

    def lookup(
        self, queries: Any, *, mode: str = "soft", temperature: float | None = None, mask: Any = None
    ) -> CertifiedLookup:
        """The table's lookup: hard from the certified top-1, soft by the fp32 pass (its certificate says so).

        ``mode="hard"``: the value of the best-scoring row (ties to the lowest row), the row found
        by the certified search (k = 1) with the hard lookup's own fp32 arithmetic, so the answer
        equals the table's hard lookup; the certificate is the search's.

        ``mode="soft"``: a soft answer reads every value whatever the keys cost, and the
        compressed scores' bounds (|Δs| / τ of order 0.3 at τ = 0.05 for int8 unit keys) give no
        useful bound on the weights of *all* rows, so the soft answer is the table's own fp32
        answer and its certificate says ``fallback``.

        Examples
        --------
        >>> import numpy as np
        >>> from softdb import SoftTable
        >>> c = SoftTable(np.eye(2, dtype=np.float32), temperature=1.0).compress("int8")
        >>> r = c.lookup([1.0, 0.0], mode="hard")
        >>> r.answer.tolist(), bool(r.certificate.fallback.all())
        ([1.0, 0.0], False)
        >>> bool(c.lookup([1.0, 0.0]).certificate.fallback.all())  # soft: the fp32 pass
        True
        """
        mode = _checks.as_mode(mode)
        if mode == "hard":
            return self._hard(queries, temperature, mask)
        t = type(self._table)._from_state(self._state)
        ans = t.lookup(queries, mode=mode, temperature=temperature, mask=mask)
        m = 1 if ans.ndim == 1 else ans.shape[0]
        n = np.full(m, self._state.rows.n, np.int64)
        cert = Certificate(n, np.full(m, np.inf), np.ones(m, bool), np.ones(m, bool), "soft lookups read every row")
        return CertifiedLookup(ans, cert)

    def _hard(self, queries: Any, temperature: float | None, mask: Any) -> CertifiedLookup:
        """The hard lookup: certified top-1 on raw scores (the hard pass scores at τ = 1), its row's value."""
        st = self._state
        q, single, mask, _ = self._prepare(queries, mask, temperature)
        parts = st.rows.parts
        res = certified_search(parts, self._cks, q, k=1, tau=1.0, mask=mask, hard=True)
        if res.cert.fallback.any():
            full_pass(parts, q, 1, 1.0, mask, res, hard=True)
        rows = res.rows[:, 0]  # (m,)  -1: no allowed row
        ans = values_at(heads_of(st, None), rows, st.dtype)  # (m, d_v)  zeros where no row
        return CertifiedLookup(ans[0] if single else ans, res.cert)

    def save(self, path: Any) -> None:
        """Save the table's version and its compressed segments (format 2; ``docs/format.md``).

        ``SoftTable.load(path, mmap=True).compress(precision)`` then reads the compressed keys
        (in memory) and memory-maps the fp32 keys for rescoring; nothing is compressed again.
        """
        from softdb.table._persist import save_state

        save_state(self._state, path, compressed=(self.precision, self._cks))

    def row_of(self, id: Hashable) -> int:  # noqa: A002 - as SoftTable.row_of
        """Row position of ``id``."""
        try:
            return self._state.rows.index[id]
        except (KeyError, TypeError):
            raise KeyError(f"unknown id {id!r}; hint: table.ids lists the ids in the table") from None


def full_pass(
    parts: Parts, q: np.ndarray, k: int, tau: float, mask: Any, res: CertifiedTopK, hard: bool = False
) -> None:
    """The fallback: every row of the fallback queries scored as the fp32 search (or hard lookup) scores them."""
    fb = np.flatnonzero(res.cert.fallback)
    mf = None if mask is None else (mask if mask.ndim == 1 else mask[fb])
    f = len(fb)
    best_r = np.full((f, k), -1, np.int64)
    best_s = np.full((f, k), -np.inf, q.dtype)
    qi = np.repeat(fb, FULL_STEP)  # (f·step,)
    mx, se = np.full(f, -np.inf), np.zeros(f)
    for a in range(0, parts.n, FULL_STEP):
        rows = np.arange(a, min(a + FULL_STEP, parts.n))
        c = len(rows)
        cells = qi if c == FULL_STEP else np.repeat(fb, c)
        s = rescore_cells(parts, q, tau, cells, np.tile(rows, f), scaled=True, hard=hard)
        s = s.reshape(f, c)  # as the kernel ranks
        ok = np.ones(s.shape, bool) if mf is None else np.broadcast_to(mf[..., a : a + len(rows)], s.shape)
        s = np.where(ok, s, -np.inf)  # (f, c)
        cat_s = np.concatenate([best_s, s], axis=1)  # (f, k + c)
        cat_r = np.concatenate([best_r, np.where(ok, rows[None, :], -1)], axis=1)
        order = np.lexsort((np.where(cat_r < 0, np.iinfo(np.int64).max, cat_r), -cat_s.astype(np.float64)), axis=-1)
        best_s = np.take_along_axis(cat_s, order[:, :k], axis=1)
        best_r = np.take_along_axis(cat_r, order[:, :k], axis=1)
        x = unscale(s, tau).astype(np.float64) / tau  # (f, c)
        cm = x.max(axis=1)
        nm = np.maximum(mx, cm)
        safe = np.where(np.isfinite(nm), nm, 0.0)
        with np.errstate(invalid="ignore", over="ignore"):
            se = np.where(np.isfinite(mx), se * np.exp(mx - safe), 0.0) + np.exp(x - safe[:, None]).sum(axis=1)
        mx = nm
    best_r[~np.isfinite(best_s)] = -1
    res.rows[fb], res.scores[fb] = best_r, unscale(best_s, tau)
    if res.scaled is not None:
        res.scaled[fb] = best_s
    with np.errstate(divide="ignore"):
        lse = mx + np.log(se)
    slack = lse_slack(parts.n, lse)
    res.lse_lo[fb], res.lse_hi[fb] = lse - slack, lse + slack
    res.cert.rescored[fb] = parts.n
    res.cert.margin[fb] = np.inf
    res.cert.holds[fb] = True


class Compressing:
    """``compress`` of :class:`~softdb.SoftTable` (a mixin: the table's module is at its size limit)."""

    _state: TableState

    def compress(self, precision: str = "int8") -> CompressedTable:
        """This version of the table with compressed keys: certified exact search from int8 or bf16.

        Parameters
        ----------
        precision : {"int8", "bf16"}
            "int8": one byte per number and one scale per row; "bf16": two bytes per number.

        Returns
        -------
        CompressedTable
            Shares ids, values, payloads and the fp32 keys with this table (no copies); a
            read-only snapshot of this version (write to the table, then compress again).

        Examples
        --------
        >>> import numpy as np
        >>> from softdb import SoftTable
        >>> t = SoftTable(np.eye(3, dtype=np.float32), ids=["x", "y", "z"], temperature=1.0)
        >>> t.compress("int8").search([0.0, 2.0, 1.0], k=2).ids
        array(['y', 'z'], dtype=object)
        """
        st = self._state
        precision, cks = compress_state(st, precision)
        return CompressedTable(self, st, precision, cks)
