"""Bid-Up and the refinement loop: Alg. 4 of [1] (docs/theory.md, Alg. 1-4).

**Bid-Up.** Fixed grid, target ``W~ = W - L R``, objective
``f(Q) = tr((W~ - Q)^T G (W~ - Q))`` with ``G = H_lam`` (default) or ``G = H``.
Rows ``i = 1..N`` are swept in place; row i moves to::

    c_i = Q_i + [G (W~ - Q)]_i / G_ii          (exact 1-D minimiser, all columns)
    Q_ij <- nearest point of A_j to c_ij

A 1-D convex quadratic on a finite uniform grid is minimised by its nearest
grid point, so ``f`` never increases (starting from a Q on the grid). Rows with
``G_ii = 0`` do not enter ``f`` and are left unchanged. The gradient
``G (W~ - Q)`` is kept up to date lazily: inside a block of rows by rank-one
updates, outside it by one matrix product per block.

**Refinement.** From a feasible start, ``K`` rounds of
``(L, R) <- OLrC(Q)``, ``Q <- BidUp(W - L R, Q)``, finishing with OLrC: exact
two-block coordinate descent on ``F(Q, M) = tr((W - Q - M)^T H_lam (W - Q - M))``,
whose trace is non-increasing.

References
----------
[1] S. Zhang, R. Saab, "GPTQ-intrinsic LoRA", arXiv:2606.01412 (2026).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import scipy.sparse

from . import _validation as _v
from ._lazy_batch import lazy_batch_sweep
from .grid import Grid, check_grid
from .objective import HessianSpectrum, _trace_quad, damped, hessian_spectrum, resolve_lam
from .olrc import _gram_route, _olrc, _olrc_full

__all__ = ["BidUpResult", "bid_up", "RefineResult", "refine", "refine_loop"]


def refine_loop(W, H, grid: Grid, Q0, rank: int, *, L0=None, R0=None, rounds: int = 1,
                damp: float = 0.01, lam: float | None = None, sweeps: int = 1) -> RefineResult:
    """The refinement loop of [1] exactly as the paper writes it (the definition)::

        repeat K times:
            (L, R) <- OLrC(Q)                  Alg. 2: optimal rank-r branch for Q
            Q      <- BidUp(W - L R, Q)        Alg. 4: exact coordinate descent on the grid
        (L, R) <- OLrC(Q)

    Plainly written: OLrC by a full SVD (:func:`gilora_theory.olrc.olrc`'s
    ``svd="full"`` route), each Bid-Up row from a fresh gradient row
    ``[H_lam (W - L R - Q)]_i`` (``N^2 N_out`` flops per sweep, BLAS-2) and every
    trace entry ``F(Q, L R) = tr(D^T H_lam D)`` by a direct product. :func:`refine`
    (same arguments) runs the same steps with carried gradients and Gram matrices;
    the tests compare the two (same ``Q``, traces equal to rounding).

    Parameters
    ----------
    W, H, grid, Q0, rank, L0, R0, rounds, damp, lam, sweeps
        As in :func:`refine`.

    Returns
    -------
    RefineResult
    """
    W, Q, H, r, rounds, lam = _check_refine(W, H, grid, Q0, rank, rounds, damp, lam)
    G = damped(H, lam)                               # H_lam
    spec = hessian_spectrum(H)

    def F(Q, L, R):                                                # F(Q, L R) of [1]
        return _trace_quad(G, W - Q - L @ R)

    L, R = (L0, R0) if L0 is not None and R0 is not None else _zero_branch(W)
    trace, steps = [F(Q, L, R)], ["start"]
    for _ in range(rounds):
        L, R = _olrc_full(W - Q, spec, r, lam)[:2]                 # (L, R) <- OLrC(Q)
        trace.append(F(Q, L, R))
        for _ in range(sweeps):
            Q = _bid_up_sweep_loop(W - L @ R, Q, G, grid)          # Q <- BidUp(W - L R, Q)
        trace.append(F(Q, L, R))
        steps += ["olrc", "bidup"]
    L, R = _olrc_full(W - Q, spec, r, lam)[:2]
    trace.append(F(Q, L, R))
    steps.append("olrc")
    _v.check_finite_output("the refinement loop", "Rescale W, or H.", Q=Q, L=L, R=R, trace=trace)
    return RefineResult(Q, L, R, np.array(trace), tuple(steps), lam)


def _bid_up_sweep_loop(T: np.ndarray, Q: np.ndarray, G: np.ndarray, grid: Grid) -> np.ndarray:
    """One Bid-Up sweep (Alg. 4 of [1]) row by row, each from a fresh gradient row."""
    Q = Q.copy()
    for i in range(Q.shape[0]):
        if G[i, i] > 0:                                  # rows with G_ii = 0 do not enter f
            c = Q[i] + (G[i] @ (T - Q)) / G[i, i]        # exact 1-D minimiser
            Q[i] = grid.quantize(c, i)                   # nearest point of A_j
    return Q


def _zero_branch(W: np.ndarray):
    return np.zeros((W.shape[0], 0)), np.zeros((0, W.shape[1]))


@dataclass(frozen=True)
class BidUpResult:
    """Output of :func:`bid_up`.

    Attributes
    ----------
    Q : (N, N_out) ndarray
        Updated weights on the grid.
    trace : (sweeps + 1,) ndarray
        ``f(Q)`` before the first sweep and after each sweep.
    hessian : str
        ``"H_lam"`` or ``"H"``: the matrix ``G`` of the objective descended.
    lam : float
        Damping in ``G = H + lam I`` (0 when ``hessian == "H"``).
    """

    Q: np.ndarray
    trace: np.ndarray
    hessian: str
    lam: float


def _sweep(T: np.ndarray, Q: np.ndarray, G: np.ndarray, Gr: np.ndarray, grid: Grid,
           blocksize: int, moves: list | None = None) -> None:
    """One in-place Gauss-Seidel sweep over the rows of ``Q``, from ``Gr = G (T - Q)``.

    The sweep of :func:`_bid_up_sweep_loop` in lazy batches: row ``i`` needs
    ``[G (T - Q)]_i`` with the moves ``dQ_j`` of rows ``j < i`` of this sweep,
    i.e. ``Gr_i -= G_ij dQ_j``, which
    :func:`gilora_theory._lazy_batch.lazy_batch_sweep` applies (``N^2 N_out``
    flops, nearly all BLAS-3). On return ``Gr`` is stale (rows miss the moves
    of later rows): the caller recomputes ``G (T - Q)``. ``moves``, if given,
    receives per row (in order) the columns that moved and their moves (see
    :func:`_moves_matrix`).
    """
    N, N_out = Q.shape
    dQ = np.empty((min(blocksize, N), N_out))      # the moves of the current lazy batch
    c = np.empty(N_out)
    diag = np.diagonal(G)

    def step(i):
        d = dQ[i % blocksize]
        g = diag[i]
        if g <= 0:  # the row does not enter f: left unchanged
            d[:] = 0.0
            if moves is not None:
                moves.append((np.empty(0, dtype=np.intp), np.empty(0)))
            return
        np.divide(Gr[i], g, out=c)
        np.add(Q[i], c, out=c)          # c_i = Q_i + [G (T - Q)]_i / G_ii
        grid.quantize(c, i, out=c)      # nearest point of A_j (Alg. 4 of [1])
        np.subtract(c, Q[i], out=d)     # dQ_i
        Q[i] = c
        if moves is not None:
            j = np.flatnonzero(d)
            moves.append((j, d[j]))

    lazy_batch_sweep(Gr, G, dQ, N, blocksize, step, window=True)


def bid_up(target, Q0, H, grid: Grid, *, damp: float = 0.01, lam: float | None = None,
           use_damping: bool = True, sweeps: int = 1, blocksize: int = 128) -> BidUpResult:
    """Bid-Up (Alg. 4 of [1]): exact coordinate descent of ``f`` on the fixed grid.

    Parameters
    ----------
    target : (N, N_out) array_like
        ``W~ = W - L R``.
    Q0 : (N, N_out) array_like
        Start, on ``grid`` (otherwise the first move may increase ``f``).
    H : (N, N) array_like
    grid : Grid
    damp : float, default 0.01
        Relative damping ``alpha`` for ``G = H + lam I``.
    lam : float, optional
        Absolute damping, overriding ``damp``.
    use_damping : bool, default True
        Descend ``f`` with ``G = H_lam`` (True) or ``G = H`` (False). Which one
        the paper uses is open; the result records it.
    sweeps : int, default 1
    blocksize : int, default 128
        Rows per lazy gradient update (results agree for every block size).

    Returns
    -------
    BidUpResult
    """
    T = _v.as_matrix("target", target)
    Q = _v.as_matrix("Q0", Q0).copy()
    _v.check_same_shape("Q0", Q, "target", T)
    H = _v.check_hessian(H, T.shape[0])
    check_grid(grid, T)
    sweeps = _v.check_int("sweeps", sweeps, low=0)
    blocksize = _v.check_int("blocksize", blocksize, low=1)
    lam = resolve_lam(H, damp, lam) if use_damping else 0.0
    G = damped(H, lam)
    with np.errstate(over="ignore", invalid="ignore"):
        trace = _bid_up(T, Q, G, grid, sweeps, blocksize)[0]
    _v.check_finite_output("Bid-Up", "Rescale target and Q0, or H.", Q=Q, trace=trace)
    return BidUpResult(Q, np.array(trace), "H_lam" if use_damping else "H", lam)


def _bid_up(T, Q, G, grid, sweeps, blocksize, Gr=None):
    """Kernel: ``sweeps`` sweeps on ``Q`` in place; ``(trace, G (T - Q), dQ)``.

    ``trace`` holds ``f = tr(D^T G D)`` (``D = T - Q``) before and after each
    sweep, evaluated from the gradient ``G D``, which is also the next sweep's
    starting point. After a sweep that moved few entries (:func:`_moves_matrix`)
    the gradient is ``G D_before - G dQ`` by a sparse product, else afresh
    ``G D``. ``dQ`` is the sparse total move of all sweeps, or None when a
    sweep moved too many entries. ``Gr``, if given, is the gradient ``G (T - Q)``
    and is updated in place.

    Memory: the sweep works on a copy of the gradient (it leaves its rows stale),
    ``D`` exists only while ``f`` is evaluated, and the new gradient is written into
    ``Gr``'s own buffer (sparse update in column blocks, :func:`_subtract_times`), so
    two ``N x N_out`` arrays beyond ``T``, ``Q`` and ``G`` are live at once.
    """
    Gr = G @ (T - Q) if Gr is None else Gr
    trace = [_f(T, Q, Gr)]
    total = scipy.sparse.csr_array(Q.shape) if sweeps else None
    for _ in range(sweeps):
        work, moves = Gr.copy(), []
        _sweep(T, Q, G, work, grid, blocksize, moves)
        del work                                  # stale: rows miss later rows' moves
        dQ = _moves_matrix(moves, Q.shape)
        if dQ is None:
            np.matmul(G, T - Q, out=Gr)
            total = None
        else:
            _subtract_times(Gr, dQ, G)            # G D_before - G dQ
            total = None if total is None else total + dQ
        trace.append(_f(T, Q, Gr))
    return trace, Gr, total


def _f(T: np.ndarray, Q: np.ndarray, Gr: np.ndarray) -> float:
    """``f = tr(D^T G D)`` with ``D = T - Q`` from the gradient ``Gr = G D``."""
    return float(np.einsum("ij,ij->", T - Q, Gr))


_SPARSE_MOVES = 0.01
"""Largest fraction of moved entries for which products with the moves use a sparse matrix
(measured break-even against a BLAS-3 product of the same shape at N = 4096: about 1%)."""


def _moves_matrix(moves: list, shape: tuple[int, int]):
    """The sweep's moves ``dQ`` as a CSR matrix, or None if more than ``_SPARSE_MOVES`` moved.

    Bid-Up moves few entries once the start is good (0.3% in a sweep after
    GPTQ and OLrC on a 4096 layer), so products with ``dQ`` cost
    ``2 nnz(dQ) n`` flops instead of a dense ``2 N N_out n``.
    """
    counts = np.array([len(j) for j, _ in moves], dtype=np.intp)
    if counts.sum() > _SPARSE_MOVES * shape[0] * shape[1]:
        return None
    indptr = np.concatenate([[0], np.cumsum(counts)])
    cols = np.concatenate([j for j, _ in moves]) if moves else np.empty(0, dtype=np.intp)
    vals = np.concatenate([v for _, v in moves]) if moves else np.empty(0)
    return scipy.sparse.csr_array((vals, cols, indptr), shape=shape)


_COLUMN_BLOCK = 512
"""Columns of the dense factor per sparse product in :func:`_subtract_times`."""


def _subtract_times(C: np.ndarray, dQ, A: np.ndarray, *, transpose: bool = False) -> None:
    """``C -= A^T dQ`` (``C -= dQ^T A`` with ``transpose``) in place, for a sparse ``dQ``.

    The product is formed in blocks of :data:`_COLUMN_BLOCK` columns of ``A``, so no
    temporary of ``C``'s size exists (one such array is 512 MiB at 8192 x 8192). Each
    entry is the same sparse dot product as in the one product ``(dQ^T A)^T``, in the
    same order, so the bits are those of ``C -= (dQ^T A)^T`` (tested).
    """
    dQT = dQ.T
    for a in range(0, A.shape[1], _COLUMN_BLOCK):
        b = min(a + _COLUMN_BLOCK, A.shape[1])
        part = dQT @ A[:, a:b]                      # rows a:b of A^T dQ, transposed
        if transpose:
            C[:, a:b] -= part
        else:
            C[a:b] -= part.T


@dataclass(frozen=True)
class RefineResult:
    """Output of :func:`refine`.

    Attributes
    ----------
    Q : (N, N_out) ndarray
    L : (N, r) ndarray
    R : (r, N_out) ndarray
    trace : ndarray
        ``F(Q, L R)`` at the start and after every half-step.
    steps : tuple of str
        Label of each trace entry: ``"start"``, ``"olrc"`` or ``"bidup"``.
    lam : float
        Damping of ``F`` (``H_lam = H + lam I``) used throughout.
    """

    Q: np.ndarray
    L: np.ndarray
    R: np.ndarray
    trace: np.ndarray
    steps: tuple
    lam: float

    @property
    def rounds_run(self) -> int:
        """Rounds actually run (fewer than asked when ``stop_rtol`` stopped the loop)."""
        return self.steps.count("bidup")


def refine(W, H, grid: Grid, Q0, rank: int, *, L0=None, R0=None, rounds: int = 1,
           damp: float = 0.01, lam: float | None = None, sweeps: int = 1,
           blocksize: int = 128, spectrum: HessianSpectrum | None = None,
           stop_rtol: float | None = None) -> RefineResult:
    """Refinement loop of [1]: ``rounds`` x (OLrC, Bid-Up), then a final OLrC.

    The steps of :func:`refine_loop` (the definition), with the caching that
    makes a round cost about one GPTQ pass: ``H_lam (W - Q)`` and the Gram
    matrix ``(W - Q)^T H_lam (W - Q)`` are carried from round to round and
    updated by sparse products with Bid-Up's moves when few entries moved;
    OLrC then takes its ``svd="partial"`` route (certified top-r singular pairs
    from the Gram matrix) and the Bid-Up sweep its lazy-batch form. Same ``Q``
    as the definition and the same trace to rounding (tested).

    Parameters
    ----------
    W : (N, N_out) array_like
    H : (N, N) array_like
    grid : Grid
    Q0 : (N, N_out) array_like
        Feasible start on the grid (e.g. GILoRA's Q).
    rank : int
        ``r`` for every OLrC step.
    L0, R0 : array_like, optional
        Starting branch (only the trace's first entry uses it).
    rounds : int, default 1
        ``K``.
    damp, lam
        Damping of ``F`` (relative or absolute), shared by OLrC and Bid-Up.
    sweeps : int, default 1
        Bid-Up sweeps per round.
    blocksize : int, default 128
    spectrum : HessianSpectrum, optional
        Cached spectrum of ``H``; otherwise computed once when the Gram route
        does not apply (e.g. ``lam = 0`` on a singular ``H``), not at all when it does.
    stop_rtol : float, optional
        Stop after a round that lowers ``F`` by at most ``stop_rtol * F`` (its
        value before the round): the loop no longer makes progress. ``None``
        (default) runs all ``rounds``. ``result.rounds_run`` says how many ran.

    Returns
    -------
    RefineResult
    """
    W, Q, H, r, rounds, lam = _check_refine(W, H, grid, Q0, rank, rounds, damp, lam)
    if stop_rtol is not None:
        stop_rtol = _v.check_float("stop_rtol", stop_rtol, low=0.0)
    M0 = L0 @ R0 if L0 is not None and R0 is not None else 0.0
    with np.errstate(over="ignore", invalid="ignore"):
        res = _refine_cached(W, Q, H, grid, r, M0, rounds, lam, sweeps, blocksize, spectrum,
                             stop_rtol)
    _v.check_finite_output("the refinement loop", "Rescale W, or H.", Q=res.Q, L=res.L, R=res.R,
                           trace=res.trace)
    return res


def _check_refine(W, H, grid, Q0, rank, rounds, damp, lam):
    """Validation shared by :func:`refine` and :func:`refine_loop` (``Q`` is a copy)."""
    W = _v.as_matrix("W", W)
    Q = _v.as_matrix("Q0", Q0).copy()
    _v.check_same_shape("Q0", Q, "W", W)
    H = _v.check_hessian(H, W.shape[0])
    check_grid(grid, W)
    r = _v.check_rank(rank, *W.shape)
    rounds = _v.check_int("rounds", rounds, low=0)
    return W, Q, H, r, rounds, resolve_lam(H, damp, lam)


def _refine_cached(W, Q, H, grid, r, M0, rounds, lam, sweeps, blocksize, spec,
                   stop_rtol=None) -> RefineResult:
    """The fast path of :func:`refine` (``Q`` updated in place; inputs validated)."""
    G = damped(H, lam)
    D = W - Q
    trace, steps = [_trace_quad(G, D - M0)], ["start"]
    GD = G @ D                            # H_lam (W - Q), carried from round to round
    K = D.T @ GD if _gram_route(W.shape, r, lam, spec=spec, H=H) else None
    del D
    if K is None and spec is None:
        spec = hessian_spectrum(H)        # OLrC of B every round: computed once
    R = None
    for _ in range(rounds):
        rnd = _round(W, Q, G, grid, spec, r, lam, GD, K, R, sweeps, blocksize)
        L, R, GD, K = rnd.L, rnd.R, rnd.GD, rnd.K
        before = trace[-1]
        trace += [rnd.value, rnd.f[-1]]
        steps += ["olrc", "bidup"]
        if stop_rtol is not None and before - trace[-1] <= stop_rtol * before:
            break                         # the round no longer lowered F
    L, R, value, _a = _olrc(W - Q, spec, r, lam, svd="partial", GD=GD, K=K,
                            start=None if R is None else R.T)
    trace.append(value)
    steps.append("olrc")
    return RefineResult(Q, L, R, np.array(trace), tuple(steps), lam)


class _Round(NamedTuple):
    """One round of :func:`_refine_cached`: OLrC's ``L``, ``R`` and ``value``
    (``F`` after it), Bid-Up's trace ``f`` and the carried ``GD = H_lam (W - Q)``
    and ``K = (W - Q)^T H_lam (W - Q)`` (None off the Gram route) for the new ``Q``."""

    L: np.ndarray
    R: np.ndarray
    value: float
    f: list
    GD: np.ndarray
    K: np.ndarray | None


def _round(W, Q, G, grid, spec, r, lam, GD, K, R_prev, sweeps, blocksize) -> _Round:
    """One refinement round, ``Q`` in place: OLrC, then Bid-Up towards ``W - L R``.

    Carries ``GD = H_lam (W - Q)`` and, on the Gram route of :func:`_olrc`,
    ``K = (W - Q)^T H_lam (W - Q)``, both updated in place when Bid-Up moved
    few entries ``dQ`` (sparse): ``K' = K - (dQ^T GD)^T - dQ^T GD'`` with
    ``GD' = GD - G dQ``; else recomputed. OLrC's eigensolver starts from the
    previous ``R^T``.
    """
    D = W - Q
    L, R, value, _a = _olrc(D, spec, r, lam, svd="partial", GD=GD, K=K,
                            start=None if R_prev is None else R_prev.T)
    T = np.subtract(W, np.matmul(L, R, out=D), out=D)      # D's buffer reused: W - L R
    Gr = (G @ L) @ R
    np.subtract(GD, Gr, out=Gr)                    # G (W - L R - Q)
    f, _Gr, dQ = _bid_up(T, Q, G, grid, sweeps, blocksize, Gr=Gr)
    del T, D, Gr, _Gr
    if dQ is None:
        GD = G @ (W - Q)
        return _Round(L, R, value, f, GD, None if K is None else (W - Q).T @ GD)
    if K is not None:
        _subtract_times(K, dQ, GD)
    _subtract_times(GD, dQ, G)
    if K is not None:
        _subtract_times(K, dQ, GD, transpose=True)
    return _Round(L, R, value, f, GD, K)
