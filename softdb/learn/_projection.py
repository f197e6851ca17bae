"""Projected mode: learnable W_Q, W_K, W_V (+ biases, W_O, heads, temperature) and their losses.

With a projection, a table is one attention layer: a query x scores row j as
``(x W_Q + b_Q)·(k_j W_K + b_K) / τ`` and the answer blends the projected values
``v_j W_V + b_V``. ``heads`` splits the projected widths evenly; each head has its own
softmax and the heads' answers are concatenated, then (with an output projection)
multiplied by W_O (+ b_O): exactly ``torch.nn.MultiheadAttention``
(:meth:`Projection.from_torch`, :meth:`Projection.to_torch`, in :mod:`softdb.learn._torch`).

The losses with their analytic gradients (``rows_loss``, ``values_loss``) live
in :mod:`softdb.learn._losses` and are re-exported here; the optimisers behind
:meth:`SoftTable.fit` live in :mod:`softdb.learn._fit`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from softdb.learn._losses import FIT_BYTES, rows_loss, values_loss
from softdb.learn._params import Params, ProjectedRows, check_split, frozen, init_matrix, positive_int

__all__ = ["FIT_BYTES", "Projection", "rows_loss", "values_loss"]

STATE_VERSION = 1
_PARTS = ("q", "k", "v")
#: What ``learn=`` may name: the matrices, the biases and the output projection.
LEARNABLE = (*_PARTS, "b_Q", "b_K", "b_V", "W_O", "b_O")
_EXTRAS = ("b_Q", "b_K", "b_V", "W_O", "b_O")  # optional arrays, saved only when set


class Projection:
    """Learnable query, key and value projections: one attention layer over a table.

    Parameters
    ----------
    d : int
        Width of the raw keys and queries.
    d_k : int, optional
        Projected key/query width (split across heads); default ``d``.
    d_out : int, optional
        Projected value width (split across heads); default ``d_v``.
    d_v : int, optional
        Width of the raw values; default: the value width of the table the
        projection is first attached to (W_V is created then).
    heads : int
        Number of heads. Each has its own softmax over the rows; the heads'
        answers are concatenated.
    tied : bool
        Force W_Q = W_K (symmetric scores: x_i scores x_j as x_j scores x_i).
    init : {"identity", "random"}
        "identity": ``eye(d, d_k)`` etc., so ``Projection(d)`` answers exactly like
        the plain table; "random": seeded N(0, 1/rows) entries.
    seed : int
        Seed of the random init (and of low-rank factors in :meth:`SoftTable.fit`).
    learn_temperature : bool
        Fit log τ too. The projection then owns its τ.
    temperature : float, optional
        The projection's own τ. Default: the table's τ (for metric="dot" without an
        explicit table τ, √(d_k / heads): the Transformer's per-head scaling).
    learn : iterable of {"q", "k", "v", "b_Q", "b_K", "b_V", "W_O", "b_O"}
        What ``fit`` updates (default the three matrices); the rest stays frozen.
        With ``tied``, "q" or "k" selects the shared matrix ("b_Q" or "b_K" the
        shared bias). A bias or W_O that is not set starts from 0 (W_O: the
        identity) when learned. b_V, W_O and b_O only matter to loss="values";
        b_K never changes a weight (it adds the same q·b_K to every row's score).
    rank : int, optional
        If set, ``fit`` learns a low-rank update W = W₀ + A Bᵀ (A: rows × rank,
        B: cols × rank) of each learned matrix instead of the full matrix.

    Attributes
    ----------
    W_Q, W_K : ndarray of shape (d, d_k)
    W_V : ndarray of shape (d_v, d_out), or None before the value width is known
    b_Q, b_K : ndarray of shape (d_k,), or None
    b_V : ndarray of shape (d_out,), or None
    W_O : ndarray of shape (d_out, d_o), or None
        The output projection: a table's answers are concat(heads) W_O + b_O.
    b_O : ndarray of shape (d_o,), or None
    version : int
        Increases whenever the weights change (tables re-project their rows then).

    Examples
    --------
    >>> import numpy as np
    >>> from softdb import Projection, SoftTable
    >>> keys = np.eye(3, dtype=np.float32)
    >>> plain = SoftTable(keys, temperature=1.0)
    >>> projected = SoftTable(keys, temperature=1.0, projection=Projection(3))
    >>> bool(np.allclose(plain.weights([1, 0, 0]), projected.weights([1, 0, 0])))
    True
    >>> Projection(8, d_k=4, heads=2, tied=True)
    Projection(d=8, d_k=4, d_v=None, d_out=None, heads=2, tied=True, init='identity', learn=('q', 'k', 'v'))
    """

    def __init__(
        self,
        d: int,
        d_k: int | None = None,
        d_out: int | None = None,
        *,
        d_v: int | None = None,
        heads: int = 1,
        tied: bool = False,
        init: str = "identity",
        seed: int = 0,
        learn_temperature: bool = False,
        temperature: float | None = None,
        learn: Iterable[str] = _PARTS,
        rank: int | None = None,
    ) -> None:
        self._d = positive_int(d, "d")
        self._d_k = self._d if d_k is None else positive_int(d_k, "d_k")
        self._heads = positive_int(heads, "heads")
        check_split(self._d_k, self._heads, "d_k")
        self._d_v = None if d_v is None else positive_int(d_v, "d_v")
        self._d_out = None if d_out is None else positive_int(d_out, "d_out")
        if self._d_out is not None:
            check_split(self._d_out, self._heads, "d_out")
        if init not in ("identity", "random"):
            raise ValueError(f"init must be 'identity' or 'random', got {init!r}")
        self._init = init
        self._tied = bool(tied)
        self._seed = int(seed)
        self._learn_temperature = bool(learn_temperature)
        learn = (learn,) if isinstance(learn, str) else tuple(learn)
        bad = [p for p in learn if p not in LEARNABLE]
        if bad:
            raise ValueError(
                f"learn must be a subset of {list(LEARNABLE)}, got {list(learn)}; "
                "hint: e.g. learn=('q',) fits W_Q only, learn=('q', 'k', 'b_Q') also the query bias"
            )
        self._learn = tuple(p for p in LEARNABLE if p in learn)
        self._rank = None if rank is None else positive_int(rank, "rank")
        log_tau = None
        if temperature is not None:
            from softdb._checks import as_temperature

            log_tau = math.log(as_temperature(temperature))
        rng = np.random.default_rng(self._seed)
        w_q = init_matrix(self._d, self._d_k, init, rng)  # (d, d_k)
        w_k = w_q if self._tied else init_matrix(self._d, self._d_k, init, rng)  # (d, d_k)
        self._rng_state = rng.bit_generator.state  # W_V drawn later from the same stream
        w_v = None
        if self._d_v is not None:
            w_v = self._make_w_v(self._d_v)
        q = frozen(w_q)
        self._params = Params(q, q if self._tied else frozen(w_k), None if w_v is None else frozen(w_v), log_tau, 0)
        self._batch_first: bool | None = None

    def _make_w_v(self, d_v: int) -> np.ndarray:
        d_out = d_v if self._d_out is None else self._d_out
        check_split(d_out, self._heads, "d_out")
        rng = np.random.default_rng()
        rng.bit_generator.state = self._rng_state
        self._d_v, self._d_out = d_v, d_out
        return init_matrix(d_v, d_out, self._init, rng)  # (d_v, d_out)

    # ------------------------------------------------------------- properties
    d = property(lambda self: self._d, doc="Width of the raw keys and queries.")
    d_k = property(lambda self: self._d_k, doc="Projected key/query width (all heads).")
    d_v = property(lambda self: self._d_v, doc="Width of the raw values (None until known).")
    d_out = property(lambda self: self._d_out, doc="Projected value width (None until known).")
    heads = property(lambda self: self._heads, doc="Number of heads.")
    tied = property(lambda self: self._tied, doc="Whether W_Q is W_K.")
    init = property(lambda self: self._init, doc="'identity' or 'random'.")
    seed = property(lambda self: self._seed, doc="Seed of random init and low-rank factors.")
    learn = property(lambda self: self._learn, doc="Matrices that fit updates.")
    rank = property(lambda self: self._rank, doc="Rank of fitted updates (None: full).")
    learn_temperature = property(lambda self: self._learn_temperature, doc="Whether fit learns log τ.")
    W_Q = property(lambda self: self._params.W_Q, doc="Read-only (d, d_k) float64.")
    W_K = property(lambda self: self._params.W_K, doc="Read-only (d, d_k) float64.")
    W_V = property(lambda self: self._params.W_V, doc="Read-only (d_v, d_out) float64, or None.")
    b_Q = property(lambda self: self._params.b_Q, doc="Read-only (d_k,) float64 query bias, or None.")
    b_K = property(lambda self: self._params.b_K, doc="Read-only (d_k,) float64 key bias, or None.")
    b_V = property(lambda self: self._params.b_V, doc="Read-only (d_out,) float64 value bias, or None.")
    W_O = property(lambda self: self._params.W_O, doc="Read-only (d_out, d_o) float64 output projection, or None.")
    b_O = property(lambda self: self._params.b_O, doc="Read-only (d_o,) float64 output bias, or None.")
    batch_first = property(
        lambda self: self._batch_first,
        doc="torch's ``batch_first`` recorded by :meth:`from_torch` (restored by :meth:`to_torch`), else None.",
    )

    @property
    def d_o(self) -> int | None:
        """Width of a table's answers: W_O's columns, else d_out (None until known)."""
        w_o = self._params.W_O
        return self._d_out if w_o is None else int(w_o.shape[1])

    version = property(lambda self: self._params.version, doc="Increases on every weight change.")
    params = property(
        lambda self: self._params,
        doc="The current immutable weights version: W_Q, W_K, W_V, "
        "log_tau (None: the table's τ) and version; read it once for a consistent set.",
    )

    @property
    def temperature(self) -> float | None:
        """The projection's own τ, or None when it uses the table's τ."""
        lt = self._params.log_tau
        return None if lt is None else math.exp(lt)

    def __repr__(self) -> str:
        return (
            f"Projection(d={self._d}, d_k={self._d_k}, d_v={self._d_v}, d_out={self._d_out}, "
            f"heads={self._heads}, tied={self._tied}, init={self._init!r}, learn={self._learn}"
            + (f", rank={self._rank}" if self._rank else "")
            + (", learn_temperature=True" if self._learn_temperature else "")
            + ")"
        )

    # ----------------------------------------------------------------- update
    def set_weights(
        self,
        *,
        W_Q: Any = None,
        W_K: Any = None,
        W_V: Any = None,
        temperature: float | None = None,
        b_Q: Any = None,
        b_K: Any = None,
        b_V: Any = None,
        W_O: Any = None,
        b_O: Any = None,
    ) -> None:
        """Replace some weights (copied to float64); tables re-project on next use.

        Parameters
        ----------
        W_Q, W_K : array_like of shape (d, d_k), optional
            With ``tied``, give either one (or both, equal).
        W_V : array_like of shape (d_v, d_out), optional
        temperature : float, optional
            The projection's own τ from now on.
        b_Q, b_K : array_like of shape (d_k,), optional
            Query and key biases: q' = x W_Q + b_Q, k' = k W_K + b_K (with ``tied``, one
            bias for both, like the matrices).
        b_V : array_like of shape (d_out,), optional
            Value bias: v' = v W_V + b_V.
        W_O : array_like of shape (d_out, d_o), optional
            Output projection: a table's answers become concat(heads) W_O (+ b_O), as in
            ``torch.nn.MultiheadAttention``; without it, the concatenated head answers.
        b_O : array_like of shape (d_o,), optional
            Output bias; needs W_O (now or already set).

        Examples
        --------
        >>> p = Projection(2)
        >>> p.set_weights(W_Q=2 * np.eye(2))
        >>> p.W_Q[0, 0], p.version
        (np.float64(2.0), 1)
        >>> p.set_weights(b_Q=[0.5, 0.0], W_O=np.ones((2, 1)))
        >>> p.b_Q.tolist(), p.d_o
        ([0.5, 0.0], 1)
        """
        old = self._params
        w_q = old.W_Q if W_Q is None else self._checked(W_Q, "W_Q", (self._d, self._d_k))
        w_k = old.W_K if W_K is None else self._checked(W_K, "W_K", (self._d, self._d_k))
        b_q = old.b_Q if b_Q is None else self._checked(b_Q, "b_Q", (self._d_k,))
        b_k = old.b_K if b_K is None else self._checked(b_K, "b_K", (self._d_k,))
        if self._tied:
            w_q, w_k = self._tie(W_Q, W_K, w_q, w_k, "W_Q", "W_K")
            b_q, b_k = self._tie(b_Q, b_K, b_q, b_k, "b_Q", "b_K")
        w_v = old.W_V
        if W_V is not None:
            if self._d_v is None:
                a = np.asarray(W_V)
                if a.ndim != 2:
                    raise ValueError(f"W_V must be 2-D (d_v, d_out), got shape {a.shape}")
                self._set_d_out(a.shape[1], "W_V")
                self._d_v = a.shape[0]
            w_v = self._checked(W_V, "W_V", (self._d_v, self._d_out))
        b_v, w_o, b_o = old.b_V, old.W_O, old.b_O
        if b_V is not None:
            self._set_d_out(np.shape(b_V)[0] if np.ndim(b_V) == 1 else -1, "b_V")
            b_v = self._checked(b_V, "b_V", (self._d_out,))
        if W_O is not None:
            a = np.asarray(W_O)
            if a.ndim != 2:
                raise ValueError(f"W_O must be 2-D (d_out, d_o), got shape {a.shape}")
            self._set_d_out(a.shape[0], "W_O")
            w_o = self._checked(W_O, "W_O", (self._d_out, a.shape[1]))
        if b_O is not None:
            if w_o is None:
                raise ValueError("b_O needs an output projection W_O; hint: set_weights(W_O=..., b_O=...)")
            b_o = self._checked(b_O, "b_O", (w_o.shape[1],))
        elif w_o is not None and b_o is not None and b_o.shape != (w_o.shape[1],):
            raise ValueError(
                f"the new W_O has {w_o.shape[1]} columns but b_O has shape {b_o.shape}; hint: give b_O too"
            )
        log_tau = old.log_tau
        if temperature is not None:
            from softdb._checks import as_temperature

            log_tau = math.log(as_temperature(temperature))
        self._params = old.but(W_Q=w_q, W_K=w_k, W_V=w_v, log_tau=log_tau, b_Q=b_q, b_K=b_k, b_V=b_v, W_O=w_o, b_O=b_o)

    @staticmethod
    def _tie(a_in: Any, b_in: Any, a: Any, b: Any, a_name: str, b_name: str) -> tuple[Any, Any]:
        """With ``tied``, one array for both (the one given; both given must be equal)."""
        if a_in is not None and b_in is not None and not np.array_equal(a, b):
            raise ValueError(
                f"this projection is tied ({a_name} = {b_name}) but {a_name} and {b_name} differ; "
                "hint: give one of them"
            )
        one = b if a_in is None else a
        return one, one

    def _set_d_out(self, width: int, name: str) -> None:
        """Learn d_out from the first array that shows it (W_V, b_V or W_O)."""
        if self._d_out is None and width > 0:
            check_split(width, self._heads, "d_out")
            self._d_out = width
        if self._d_out is None:
            raise ValueError(f"{name} must be 1-D of length d_out; hint: a vector of the projected value width")

    @staticmethod
    def _checked(a: Any, name: str, shape: tuple) -> np.ndarray:
        arr = np.asarray(a, dtype=np.float64)
        if arr.shape != shape:
            raise ValueError(f"{name} must have shape {shape}, got {arr.shape}")
        if not np.isfinite(arr).all():
            raise ValueError(f"{name} must be finite; hint: the fit may have diverged, lower the learning rate")
        return frozen(arr)

    def bind(self, d: int, d_v: int) -> None:
        """Check that a table of key width d and value width d_v fits; create W_V if unset."""
        if d != self._d:
            raise ValueError(
                f"the projection takes keys of width d={self._d} but the table's keys have {d}; "
                f"hint: Projection({d}, ...)"
            )
        if self._d_v is not None and self._d_v != d_v:
            raise ValueError(
                f"the projection's W_V takes values of width d_v={self._d_v} but the table's values "
                f"have {d_v}; hint: Projection(..., d_v={d_v})"
            )
        if self._params.W_V is None:
            self._params = self._params.but(W_V=frozen(self._make_w_v(d_v)))

    # ------------------------------------------------------------ projecting
    def project_rows(self, params: Params, keys: np.ndarray, values: np.ndarray) -> ProjectedRows:
        """Project a rows version with ``params`` (the table caches the result)."""
        dt = keys.dtype
        h = self._heads
        w_v = params.W_V
        if w_v is None:
            raise ValueError("the projection has no W_V yet; hint: attach it to a table (or call bind(d, d_v)) first")
        kp = keys @ params.W_K.astype(dt)  # (n, d_k)
        if params.b_K is not None:
            kp += params.b_K.astype(dt)  # (n, d_k)
        vp = values @ w_v.astype(dt)  # (n, d_out)
        if params.b_V is not None:
            vp += params.b_V.astype(dt)  # (n, d_out)
        dh, dvh = self._d_k // h, w_v.shape[1] // h
        k_heads = tuple(np.ascontiguousarray(kp[:, a * dh : (a + 1) * dh]) for a in range(h))  # h × (n, dh)
        v_heads = tuple(np.ascontiguousarray(vp[:, a * dvh : (a + 1) * dvh]) for a in range(h))  # h × (n, dvh)
        for a in k_heads + v_heads:
            a.flags.writeable = False
        norms = tuple(
            float(np.sqrt(np.einsum("ij,ij->i", k, k, dtype=np.float64)).max()) if len(k) else 0.0 for k in k_heads
        )
        w_q = tuple(np.ascontiguousarray(params.W_Q[:, a * dh : (a + 1) * dh].astype(dt)) for a in range(h))
        b_q = tuple(None if params.b_Q is None else params.b_Q[a * dh : (a + 1) * dh].astype(dt) for a in range(h))
        w_o = None if params.W_O is None else params.W_O.astype(dt)  # (d_out, d_o)
        b_o = None if params.b_O is None else params.b_O.astype(dt)  # (d_o,)
        return ProjectedRows(params, k_heads, v_heads, norms, w_q, b_q, w_o, b_o)

    # ------------------------------------------------------------------ torch
    @classmethod
    def from_torch(cls, mha: Any) -> Projection:
        """The projection of a ``torch.nn.MultiheadAttention`` (see :func:`softdb.learn._torch.from_torch`)."""
        from softdb.learn._torch import from_torch

        return from_torch(cls, mha)

    def to_torch(self, *, batch_first: bool | None = None) -> Any:
        """This projection as a ``torch.nn.MultiheadAttention`` (see :func:`softdb.learn._torch.to_torch`)."""
        from softdb.learn._torch import to_torch

        return to_torch(self, batch_first=batch_first)

    # ------------------------------------------------------------ persistence
    def get_state(self) -> tuple[dict, dict[str, np.ndarray]]:
        """JSON-able config and float64 arrays that :meth:`from_state` rebuilds from.

        Returns
        -------
        config : dict
            ``version`` (of this state format), the constructor options, ``d_v``
            and ``d_out`` (None before W_V exists).
        arrays : dict of str to ndarray
            ``W_Q`` (d, d_k), ``W_K`` (d, d_k), ``W_V`` (d_v, d_out) when it
            exists, ``log_tau`` of shape () (NaN: the projection uses the table's τ),
            and ``b_Q``, ``b_K``, ``b_V``, ``W_O``, ``b_O`` when set.

        Examples
        --------
        >>> p = Projection(4, d_k=2, d_out=2, d_v=3, heads=2, init="random", temperature=0.5)
        >>> config, arrays = p.get_state()
        >>> q = Projection.from_state(config, arrays)
        >>> bool(np.array_equal(q.W_V, p.W_V)), q.temperature
        (True, 0.5)
        """
        p = self._params
        config = {
            "version": STATE_VERSION,
            "d": self._d,
            "d_k": self._d_k,
            "d_v": self._d_v,
            "d_out": self._d_out,
            "heads": self._heads,
            "tied": self._tied,
            "init": self._init,
            "seed": self._seed,
            "learn_temperature": self._learn_temperature,
            "learn": list(self._learn),
            "rank": self._rank,
        }
        if self._batch_first is not None:  # only projections imported from torch record it
            config["batch_first"] = self._batch_first
        arrays = {
            "W_Q": np.array(p.W_Q),
            "W_K": np.array(p.W_K),
            "log_tau": np.array(np.nan if p.log_tau is None else p.log_tau),
        }
        for name in ("W_V", *_EXTRAS):  # biases and W_O only when set: older tables save byte-identically
            a = getattr(p, name)
            if a is not None:
                arrays[name] = np.array(a)
        return config, arrays

    @classmethod
    def from_state(cls, config: dict, arrays: dict[str, np.ndarray]) -> Projection:
        """Rebuild a projection saved by :meth:`get_state`."""
        version = config.get("version")
        if version != STATE_VERSION:
            raise ValueError(
                f"projection state version {version!r} is not supported (this softdb reads "
                f"version {STATE_VERSION}); hint: upgrade softdb"
            )
        p = cls(
            config["d"],
            config["d_k"],
            config["d_out"],
            d_v=config["d_v"],
            heads=config["heads"],
            tied=config["tied"],
            init=config["init"],
            seed=config["seed"],
            learn_temperature=config["learn_temperature"],
            learn=config["learn"],
            rank=config["rank"],
        )
        log_tau = float(np.asarray(arrays["log_tau"]))
        a = arrays.get
        p.set_weights(W_Q=a("W_Q"), W_K=a("W_K"), W_V=a("W_V"), b_Q=a("b_Q"), b_K=a("b_K"), b_V=a("b_V"))
        p.set_weights(W_O=a("W_O"), b_O=a("b_O"))
        p._params = p._params.but(log_tau=None if math.isnan(log_tau) else log_tau, version=0)
        bf = config.get("batch_first")
        p._batch_first = None if bf is None else bool(bf)
        return p
