"""Exact optima on tiny layers: the yardstick for every algorithm (docs/theory.md, "Claims").

``r = 0``: ``min_Q ||X (W - Q)||_F^2`` separates over output columns; column j is a
closest-vector problem on the finite alphabet ``A_j^N``. With ``H = R^T R``
(``R`` upper triangular) and ``y = R w``::

    ||R (w - q)||^2 = sum_i ( s_i - R_ii q_i )^2,    s_i = y_i - sum_{k>i} R_ik q_k

so a depth-first search from ``i = N`` down to 1 sees each term once its
coordinates are fixed. Schnorr-Euchner enumeration [2] visits the children of a
node in order of increasing term (zig-zag around the centre ``s_i / R_ii`` in the
sorted alphabet) and cuts a node, together with all its later siblings, as soon as
the partial sum reaches the best complete value found so far. The first leaf is
the Babai (successive rounding) point. A singular H (``R_ii = 0``) is handled:
the term is then the same for every child.

``r >= 1``: ``min_Q min_{rank M <= r} ||X (W - Q - M)||_F^2`` has no separable
structure; every Q on the alphabet (``A^{N N_out}``) is enumerated in batches and
the optimal branch for each is OLrC with ``lam = 0`` (Alg. 2 of [1]): the value is
``sum_{i>r} a_i^2``, ``a_i`` the singular values of ``R (W - Q)``. The search refuses
(``ValueError`` naming ``limit``) when the candidate count exceeds ``limit``.

Plain enumeration (``method="enumerate"``) also exists for ``r = 0`` as the
independent check of the sphere decoder.

References
----------
[1] S. Zhang, R. Saab, "GPTQ-intrinsic LoRA", arXiv:2606.01412 (2026).
[2] C. P. Schnorr, M. Euchner, "Lattice basis reduction: improved practical algorithms
    and solving subset sum problems", Math. Programming 66 (1994); E. Agrell et al.,
    "Closest point search in lattices", IEEE Trans. Inf. Theory 48(8) (2002).
"""
from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

import numpy as np
import scipy.linalg
import scipy.special

from . import _validation as _v
from .grid import Grid, fit_grid
from .olrc import olrc

__all__ = ["ExactOptimum", "exact_optimum",
           "square_root_factor", "EXACT_METHODS"]

EXACT_METHODS = ("auto", "sphere", "enumerate")


@dataclass(frozen=True)
class ExactOptimum:
    """The exact minimum of the undamped error over Q on a finite alphabet (and rank-r LR).

    Attributes
    ----------
    Q : (N, N_out) ndarray
        An optimal Q (entries on the alphabet).
    L : (N, r) ndarray
    R : (r, N_out) ndarray
        The optimal branch for ``Q`` (OLrC with ``lam = 0``; empty for r = 0).
    value : float
        ``min ||X (W - Q - L R)||_F^2``.
    rank : int
    method : str
        ``"sphere"`` or ``"enumerate"``.
    candidates : int
        Size of the searched space: ``sum_j prod_i |A_ij|`` for r = 0 (columns are
        independent), ``prod_ij |A_ij|`` for r >= 1.
    examined : int
        Complete candidates evaluated (leaves; all of them when enumerating).
    nodes : int
        Search-tree nodes visited (equal to ``examined`` when enumerating).
    grid : Grid or None
        The grid the alphabet came from (None for an explicit alphabet).
    """

    Q: np.ndarray
    L: np.ndarray
    R: np.ndarray
    value: float
    rank: int
    method: str
    candidates: int
    examined: int
    nodes: int
    grid: Grid | None = None

    @property
    def pruned(self) -> int:
        """Candidates never evaluated (excluded by pruning): ``candidates - examined``."""
        return self.candidates - self.examined


def square_root_factor(H) -> np.ndarray:
    """Upper-triangular ``R`` with ``R^T R = H`` for any symmetric PSD H.

    ``H = V diag(e) V^T`` (negative rounding noise in ``e`` set to 0), then the
    triangular factor of the QR of ``diag(sqrt(e)) V^T``: valid when H is singular
    (some ``R_ii = 0``), where Cholesky fails.

    Parameters
    ----------
    H : (N, N) array_like

    Returns
    -------
    R : (N, N) ndarray
    """
    H = _v.check_hessian(H)
    return _root(H)


def _root(H: np.ndarray) -> np.ndarray:
    e, V = scipy.linalg.eigh(H, check_finite=False)
    return scipy.linalg.qr(np.sqrt(np.clip(e, 0.0, None))[:, None] * V.T, mode="r",
                           check_finite=False)[0]


def _alphabet(grid: Grid | None, alphabet, N: int, N_out: int) -> np.ndarray:
    """Levels ``(N, N_out, K)``, ascending along the last axis."""
    if grid is not None:
        if not grid.bounded:
            raise ValueError("an exact optimum needs a finite alphabet; the grid is unbounded "
                             "(fit it with bounded=True)")
        if grid.step.shape[1] != N_out:
            raise ValueError(f"grid has {grid.step.shape[1]} columns but W has {N_out}")
        g = np.zeros(N, dtype=int) if grid.groupsize is None else np.arange(N) // grid.groupsize
        k = np.arange(grid.maxq + 1)
        return grid.step[g][:, :, None] * (k - grid.zero[g][:, :, None])
    a = np.unique(_v.as_matrix("alphabet", alphabet, ndim=1))
    return np.broadcast_to(a, (N, N_out, a.size))


def _sphere_column(Rm: list, y: list, levels: list, limit: int):
    """Schnorr-Euchner search for one column; returns (q, value, leaves, nodes).

    ``Rm`` rows as lists, ``y = R w``, ``levels[i]`` the sorted alphabet of row i.
    """
    n = len(y)
    tiny = n * 2.0 ** -52 * max(abs(Rm[i][i]) for i in range(n))
    q, dist = [0.0] * n, [0.0] * (n + 1)
    s, cen, lo, hi = [0.0] * n, [0.0] * n, [0] * n, [0] * n
    best, best_q, leaves, nodes = math.inf, None, 0, 0

    def start(i):
        si = y[i] - sum(Rm[i][k] * q[k] for k in range(i + 1, n))
        s[i] = si
        c = si / Rm[i][i] if abs(Rm[i][i]) > tiny else 0.0
        cen[i] = c
        hi[i] = bisect.bisect_left(levels[i], c)
        lo[i] = hi[i] - 1

    i = n - 1
    start(i)
    while True:
        lv, c, K = levels[i], cen[i], len(levels[i])
        if lo[i] >= 0 and (hi[i] >= K or c - lv[lo[i]] <= lv[hi[i]] - c):
            v = lv[lo[i]]
            lo[i] -= 1
        elif hi[i] < K:
            v = lv[hi[i]]
            hi[i] += 1
        else:
            v = None
        d = None if v is None else dist[i + 1] + (s[i] - Rm[i][i] * v) ** 2
        if d is None or d >= best:            # later siblings are no closer: cut them all
            i += 1
            if i == n:
                return best_q, best, leaves, nodes
            continue
        nodes += 1
        if nodes > limit:
            raise ValueError(f"sphere decoding visited more than limit={limit} nodes on one "
                             "column; pass a larger limit to continue")
        q[i], dist[i] = v, d
        if i == 0:
            leaves += 1
            best, best_q = d, list(q)
            i = 1                             # siblings at level 0 are no closer
            if i == n:
                return best_q, best, leaves, nodes
        else:
            i -= 1
            start(i)


def _search_order(H: np.ndarray) -> np.ndarray:
    """Row order for the decoder: the row searched first (placed last) has the largest
    Schur complement ``1 / (H^{-1})_ii`` w.r.t. all others, then recursively (the
    V-BLAST / sorted ordering of sphere decoding [2]); strong pruning near the root.

    Computed on ``H + delta I`` with ``delta = N eps tr H`` so that singular H is ordered too.
    """
    n = H.shape[0]
    delta = n * np.finfo(np.float64).eps * max(float(np.trace(H)), np.finfo(np.float64).tiny)
    G = scipy.linalg.inv(H + delta * np.eye(n), check_finite=False)
    left, first = list(range(n)), []
    for _ in range(n):
        k = min(left, key=lambda i: G[i, i])
        first.append(k)
        left.remove(k)
        G = G - np.outer(G[:, k], G[k, :]) / G[k, k]
    return np.array(first[::-1])


def _digits(ids: np.ndarray, K: int, n: int) -> np.ndarray:
    """Base-K digits (least significant first) of ``ids``: ``(len(ids), n)``."""
    return (ids[:, None] // (K ** np.arange(n, dtype=np.int64))) % K


def _enumerate_column(Rm: np.ndarray, y: np.ndarray, lv: np.ndarray, batch: int):
    """Every candidate of one column (levels ``lv`` (N, K)); returns (q, value)."""
    N, K = lv.shape
    best, best_q = math.inf, None
    for start in range(0, K ** N, batch):
        ids = np.arange(start, min(start + batch, K ** N), dtype=np.int64)
        Qc = lv[np.arange(N), _digits(ids, K, N)]
        err = np.sum((y - Qc @ Rm.T) ** 2, axis=1)
        k = int(np.argmin(err))
        if err[k] < best:
            best, best_q = float(err[k]), Qc[k]
    return best_q, best


def _enumerate_matrix(Rm, W, lv, r, batch):
    """Every Q on the alphabet with its optimal rank-r branch; returns (Q, value).

    The value of each candidate is ``sum_{i>r} a_i^2``, ``a_i`` the singular values of
    ``M = Rm (W - Q)``. A batched SVD of every ``M`` dominated the time, so each batch
    is screened first with the eigenvalues of the small Gram matrix (:func:`_tail_gram`),
    whose error is at most :func:`_screen_margin`; only candidates within twice that
    margin of the batch's smallest screened value get the SVD. The answer (``Q`` and
    value) is therefore the one the SVD of every candidate would give, first index on ties.
    """
    N, N_out, K = lv.shape
    n = N * N_out
    flat = lv.reshape(n, K)
    best, best_Q = math.inf, None
    for start in range(0, K ** n, batch):
        ids = np.arange(start, min(start + batch, K ** n), dtype=np.int64)
        Qs = flat[np.arange(n), _digits(ids, K, n)].reshape(-1, N, N_out)
        M = Rm @ (W - Qs)
        screen = _tail_gram(M, r)
        keep = np.flatnonzero(screen <= screen.min() + 2 * _screen_margin(M))
        a = np.linalg.svd(M[keep], compute_uv=False)
        val = np.sum(a[:, r:] ** 2, axis=1)
        k = int(np.argmin(val))
        if val[k] < best:
            best, best_Q = float(val[k]), Qs[keep[k]].copy()
    return best_Q, best


def _tail_gram(M: np.ndarray, r: int) -> np.ndarray:
    """``sum_{i>r} a_i^2`` of each ``M[b]`` from the eigenvalues of its smaller Gram matrix
    (closed form for 2 x 2): fast, with absolute error below :func:`_screen_margin`."""
    G = np.matmul(M.transpose(0, 2, 1), M) if M.shape[2] <= M.shape[1] else \
        np.matmul(M, M.transpose(0, 2, 1))
    m = G.shape[1]
    if r >= m:
        return np.zeros(G.shape[0])
    if r == 0:
        return np.trace(G, axis1=1, axis2=2)
    if m == 2:                        # r = 1: the smaller eigenvalue of [[a, b], [b, c]]
        a, b, c = G[:, 0, 0], G[:, 0, 1], G[:, 1, 1]
        return (a + c) / 2 - np.hypot((a - c) / 2, b)
    return np.sum(np.linalg.eigvalsh(G)[:, :m - r], axis=1)


def _screen_margin(M: np.ndarray) -> float:
    """A bound on the error of both routes to ``sum_{i>r} a_i^2`` over the batch ``M``.

    The computed Gram matrix is off by at most ``gamma_N ||M||_F^2`` in norm and a
    symmetric eigensolver or SVD adds a backward error of ``O(m eps)`` in ``||M||_F^2``,
    so each of at most ``m`` summed eigenvalues (Weyl) and each ``a_i^2`` is within
    ``(N + m) eps ||M||_F^2`` up to a modest constant; 64 covers the constant with room.
    """
    N, m = max(M.shape[1:]), min(M.shape[1:])
    return 64.0 * m * (N + m) * np.finfo(np.float64).eps * float(np.max(np.sum(M * M, axis=(1, 2))))


def exact_optimum(W, H, bits: int | None = None, rank: int = 0, *, beta: float = 1.0,
                  grid: Grid | None = None, alphabet=None, method: str = "auto",
                  limit: int = 2 ** 20, batch: int = 8192) -> ExactOptimum:
    """Exact ``min ||X (W - Q - L R)||_F^2`` over Q on a finite alphabet and rank-r ``L R``.

    Parameters
    ----------
    W : (N, N_out) array_like
    H : (N, N) array_like
        ``X^T X`` (singular allowed).
    bits : int, optional
        Fit the bounded grid ``fit_grid(W, bits, beta=beta)``; or give ``grid`` or ``alphabet``.
    rank : int, default 0
        ``r`` in [0, min(N, N_out)].
    beta : float, default 1.0
    grid : Grid, optional
        A bounded grid (per-column or static groups).
    alphabet : (K,) array_like, optional
        One explicit alphabet shared by every entry.
    method : {"auto", "sphere", "enumerate"}, default "auto"
        ``"sphere"`` (r = 0 only) or plain enumeration; ``"auto"`` picks sphere for r = 0.
    limit : int, default 2**20
        Refuse enumerations with more candidates (sphere: more nodes per column).
    batch : int, default 8192
        Candidates per vectorised batch.

    Returns
    -------
    ExactOptimum

    Raises
    ------
    ValueError
        Naming ``limit`` and giving the candidate count when the search is too large.
    """
    W = _v.as_matrix("W", W)
    H = _v.check_hessian(H, W.shape[0])
    N, N_out = W.shape
    r = _v.check_rank(rank, N, N_out)
    limit = _v.check_int("limit", limit, low=1)
    batch = _v.check_int("batch", batch, low=1)
    if method not in EXACT_METHODS:
        raise ValueError(f"method must be one of {EXACT_METHODS}; got {method!r}")
    if sum(x is not None for x in (bits, grid, alphabet)) != 1:
        raise ValueError("give exactly one of bits, grid or alphabet")
    if method == "sphere" and r > 0:
        raise ValueError("method='sphere' solves r = 0 only; use method='enumerate' for rank >= 1")
    if bits is not None:
        grid = fit_grid(W, bits, beta=beta)
    method = ("sphere" if r == 0 else "enumerate") if method == "auto" else method
    cand = _refuse_large(W, H, grid, alphabet, r, method, limit)
    lv = _alphabet(grid, alphabet, N, N_out)
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            if r == 0:
                Q, value, cand, examined, nodes = _columns(W, H, lv, method, limit, batch)
                L, Rf = np.zeros((N, 0)), np.zeros((0, N_out))
            else:
                Q, value = _enumerate_matrix(_root(H), W, lv, r, batch)
                examined = nodes = cand
                res = olrc(W, Q, H, r, lam=0.0)
                L, Rf = res.L, res.R
    except OverflowError:  # the sphere decoder's scalar arithmetic raises instead of giving inf
        value = float("inf")
    _v.check_finite_output("the exact search", "Rescale W or H.", value=value)
    return ExactOptimum(Q, L, Rf, value, r, method, cand, examined, nodes, grid)


SPHERE_MARGIN = 15
"""Orders of magnitude by which a sphere decoding's estimated node count must exceed
``limit`` to be refused before the search (the estimate overshoots ill-conditioned
``H`` by up to ~1e13 on layers the search finishes in well under a second)."""


def _refuse_large(W, H, grid, alphabet, r, method, limit) -> int | None:
    """Refuse, before any search, a search too large for ``limit``: the exact count of
    an enumeration, or for sphere decoding an estimate (:func:`_sphere_estimate`)
    more than :data:`SPHERE_MARGIN` orders of magnitude above ``limit``. Returns
    the enumeration's candidate count (None for sphere decoding)."""
    N, N_out = W.shape
    K = _levels_count(grid, alphabet)
    if r > 0:
        return _count(K, N * N_out, limit, "Q matrices")
    if method == "enumerate":
        return _count(K, N, limit, "candidate columns", copies=N_out)
    log_space = math.log10(N_out) + N * math.log10(K)
    if log_space <= math.log10(limit) + SPHERE_MARGIN:
        return None                    # small enough for the node limit to stop it quickly
    j, log_nodes = _sphere_estimate(H, W, _alphabet(grid, alphabet, N, N_out))
    if log_nodes > math.log10(limit) + SPHERE_MARGIN:
        raise ValueError(
            f"exact search by sphere decoding is estimated to visit {_sci(log_nodes)} nodes on "
            f"column {j} (of {_sci(log_space)} candidates), far more than limit={limit}; an "
            f"exact optimum is practical for tiny layers only (e.g. 4 x 2 at 2 bits, or N <= 16 "
            f"inputs at 2-3 bits for r = 0)")
    return None


def _levels_count(grid: Grid | None, alphabet) -> int:
    """``K``, the number of levels of every entry's alphabet."""
    if grid is not None:
        return grid.maxq + 1
    return int(np.unique(_v.as_matrix("alphabet", alphabet, ndim=1)).size)


def _sci(log10: float) -> str:
    """``10^log10`` as ``4.29e+09`` without forming a float that could overflow."""
    if log10 < 300:
        return f"{10.0 ** log10:.3g}"
    e = math.floor(log10)
    return f"{10.0 ** (log10 - e):.3g}e+{e}"


def _babai(Rp: np.ndarray, Y: np.ndarray, lv: np.ndarray) -> np.ndarray:
    """Successive rounding from the last row up, every column at once (the sphere
    decoder's first leaf); ``Y = Rp W``, ``lv`` (N, N_out, K). Returns squared radii."""
    N, N_out, _ = lv.shape
    tiny = N * np.finfo(np.float64).eps * np.max(np.abs(np.diag(Rp)))
    q = np.zeros((N, N_out))
    cols = np.arange(N_out)
    for i in range(N - 1, -1, -1):
        s = Y[i] - Rp[i, i + 1:] @ q[i + 1:]
        c = s / Rp[i, i] if abs(Rp[i, i]) > tiny else np.zeros(N_out)
        q[i] = lv[i, cols, np.argmin(np.abs(lv[i] - c[:, None]), axis=1)]
    return np.sum((Y - Rp @ q) ** 2, axis=0)


def _sphere_estimate(H: np.ndarray, W: np.ndarray, lv: np.ndarray) -> tuple[int, float]:
    """``(j, log10 n_j)``: the column with the largest estimated sphere-decoding node count.

    With ``rho`` the distance of the first leaf (the Babai point), the nodes at depth
    ``k`` (the last ``k`` rows in search order fixed) are estimated by the smaller
    of the Gaussian heuristic ``V_k rho^k / prod_i |R_ii| delta_i`` (``V_k`` the
    volume of the unit ``k``-ball, ``delta_i`` the level spacing: the
    expected-complexity estimate of [2]) and the box count ``prod_i min(K, 2 rho /
    (|R_ii| delta_i) + 1)`` (row ``i`` admits only levels within ``rho / |R_ii|`` of
    its centre). The search shrinks ``rho`` as it goes, so this overshoots.
    """
    p = _search_order(H)
    Rp = _root(H[np.ix_(p, p)])
    lv = lv[p]
    K = lv.shape[2]
    rho = np.sqrt(_babai(Rp, Rp @ W[p], lv))
    spacing = (lv[:, :, -1] - lv[:, :, 0]) / max(K - 1, 1)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        width = rho[None, :] / (np.abs(np.diag(Rp))[:, None] * spacing)         # (N, N_out)
        box = np.cumsum(np.log10(np.minimum(K, 2 * width + 1))[::-1], axis=0)
        k = np.arange(1, W.shape[0] + 1)[:, None]
        log_vk = (k / 2 * math.log(math.pi) - scipy.special.gammaln(k / 2 + 1)) / math.log(10)
        gauss = log_vk + np.cumsum(np.log10(width)[::-1], axis=0)
    log_nodes = np.fmin(np.nan_to_num(gauss, nan=np.inf), box)
    top = log_nodes.max(axis=0)
    total = top + np.log10(np.sum(10.0 ** (log_nodes - top), axis=0))
    j = int(np.argmax(total))
    return j, float(total[j])


def _count(K: int, n: int, limit: int, what: str, copies: int = 1) -> int:
    """``copies * K^n``, refused (ValueError naming ``limit``) above ``limit``.

    Compared in logarithms first, so that a count of thousands of digits is never formed.
    """
    log10 = math.log10(copies) + n * math.log10(K)
    if log10 <= math.log10(limit) + 1:
        count = copies * K ** n
        if count <= limit:
            return count
    raise ValueError(
        f"exact enumeration needs {copies} x {K}^{n} = {_sci(log10)} {what}, more than "
        f"limit={limit}; pass a larger limit (about 1e6 candidates per second) or a smaller layer")


def _columns(W, H, lv, method, limit, batch):
    """r = 0: each output column separately (sphere decoding or plain enumeration)."""
    N, N_out, K = lv.shape
    Q = np.empty_like(W)
    value, examined, nodes = 0.0, 0, 0
    if method == "sphere":
        p = _search_order(H)
        Rp = _root(H[np.ix_(p, p)])
        rows_p = Rp.tolist()
    else:
        Rm = _root(H)
    for j in range(N_out):
        if method == "enumerate":
            Q[:, j], v = _enumerate_column(Rm, Rm @ W[:, j], lv[:, j, :], batch)
            examined += K ** N
            nodes += K ** N
        else:
            q, v, leaves, n_nodes = _sphere_column(rows_p, (Rp @ W[p, j]).tolist(),
                                                    lv[p, j, :].tolist(), limit)
            Q[p, j] = q
            examined += leaves
            nodes += n_nodes
        value += v
    return Q, value, N_out * K ** N, examined, nodes
