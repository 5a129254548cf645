"""Data-free compensation: a low-rank branch for ``W - Q`` fitted without ``X``.

Baselines beside the calibration-aware OLrC and GILoRA: they see only the
weights, so their objective is the Frobenius norm (``H = I``)::

    f(L, R) = ||W - Q - L R||_F^2

**SVD fit** (:func:`svd_fit`). ``W - Q = sum_i s_i u_i v_i^T``: by Eckart-Young
the best rank-r ``L R`` is ``T_r(W - Q)``, with ``L = U_r diag(s_1..s_r)``,
``R = V_r^T`` and value ``sum_{i>r} s_i^2``.

**A quantized branch, alternating** (:func:`alternating_fit`). LoRaQ [2] fits
a (quantized) branch to ``W - Q`` without data by gradient descent; this is an
alternating least-squares scheme with the same goal, not a reimplementation of
it. From the SVD fit, repeat ``iters`` times::

    L <- quant(L)        ("quantize-L": grid refitted to the current L)
    R <- argmin_R f      ("refit-R": least squares, L fixed)
    R <- quant(R)        ("quantize-R"; (L, R) is now a stored candidate)
    L <- argmin_L f      ("refit-L": least squares, R fixed)

Only the two refit steps are guaranteed not to increase ``f`` (each is an exact
minimiser over a factor). A quantize step can increase it by any amount, so
the trace is **not** monotone in general; the result is the best quantized
candidate visited, and :func:`guaranteed_increase` checks only refit steps.

**A quantized branch, coordinate descent** (:func:`coordinate_fit`). Grids
fixed once (from the start). A sweep updates column ``k`` of ``L`` and then
row ``k`` of ``R``, ``k = 1..r``, each to the nearest grid point of the exact
1-D minimiser (rows of ``L`` and columns of ``R`` are decoupled, so a whole
column/row moves at once, as Bid-Up does for ``Q`` in [1])::

    L[:, k] <- quant_k(L[:, k] + E R[k]^T / ||R[k]||^2),   E = W - Q - L R
    R[k, :] <- quant(R[k, :] + L[:, k]^T E / ||L[:, k]||^2)

A 1-D convex quadratic on a uniform grid is minimised by its nearest grid
point, so every update, hence the whole trace, never increases ``f``.

References
----------
[1] S. Zhang, R. Saab, "GPTQ-intrinsic LoRA", arXiv:2606.01412 (2026).
[2] Y. Bouquet, A. Khodamoradi, S. Y. Shen, K. Denolf, M. Salzmann, "LoRaQ:
    Optimized Low Rank Approximation for 4-bit Quantization", arXiv:2604.18117 (2026).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg

from . import _validation as _v
from .branch import QuantizedBranch, _branch, _check_options
from .grid import Grid

__all__ = ["SVDFit", "svd_fit", "QuantizedFit", "alternating_fit", "coordinate_fit",
           "guaranteed_increase"]


@dataclass(frozen=True)
class SVDFit:
    """The Frobenius-optimal rank-r fit of ``W - Q`` (Eckart-Young).

    Attributes
    ----------
    L : (N, r) ndarray
        ``U_r diag(s_1..s_r)``.
    R : (r, N_out) ndarray
        ``V_r^T`` (orthonormal rows).
    value : float
        ``||W - Q - L R||_F^2 = sum_{i>r} s_i^2``.
    singular_values : (min(N, N_out),) ndarray
        ``s_i`` of ``W - Q``, descending.
    """

    L: np.ndarray
    R: np.ndarray
    value: float
    singular_values: np.ndarray


@dataclass(frozen=True)
class QuantizedFit:
    """A data-free quantized branch and the record of its objective.

    Attributes
    ----------
    branch : QuantizedBranch
        The returned factors (on their grids) and the grids.
    value : float
        ``f(branch.L, branch.R) = ||W - Q - L R||_F^2``.
    trace : (n,) ndarray
        ``f`` after every step (entry 0: the start).
    steps : tuple of str
        Label of each trace entry (``"svd"``, ``"start"``, ``"quantize-L"``,
        ``"refit-R"``, ``"quantize-R"``, ``"refit-L"``, ``"sweep"``).
    guaranteed : tuple of bool
        Per entry: the step is guaranteed not to increase ``f`` over the previous entry.
    """

    branch: QuantizedBranch
    value: float
    trace: np.ndarray
    steps: tuple
    guaranteed: tuple


def _f(D: np.ndarray, L: np.ndarray, R: np.ndarray) -> float:
    E = D - L @ R
    return float(np.einsum("ij,ij->", E, E))


def _svd(D: np.ndarray, r: int):
    U, s, Vt = scipy.linalg.svd(D, full_matrices=False, check_finite=False,
                                lapack_driver="gesdd")
    return U[:, :r] * s[:r], Vt[:r].copy(), float(np.sum(s[r:] ** 2)), s


def _check_pair(W, Q, rank):
    W = _v.as_matrix("W", W)
    Q = _v.as_matrix("Q", Q)
    _v.check_same_shape("Q", Q, "W", W)
    return W, Q, _v.check_rank(rank, *W.shape)


def svd_fit(W, Q, rank: int) -> SVDFit:
    """Best rank-``rank`` approximation of ``W - Q`` in Frobenius norm (no calibration data).

    Parameters
    ----------
    W, Q : (N, N_out) array_like
    rank : int
        ``r`` in [0, min(N, N_out)].

    Returns
    -------
    SVDFit
    """
    W, Q, r = _check_pair(W, Q, rank)
    return SVDFit(*_svd(W - Q, r))


def _lstsq(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Minimum-norm ``argmin_X ||A X - B||_F``."""
    return scipy.linalg.lstsq(A, B, check_finite=False)[0]


def alternating_fit(W, Q, rank: int, *, l_bits: int | None = None, r_bits: int | None = None,
                    iters: int = 5, r_axis: str = "row") -> QuantizedFit:
    """Alternate quantize / least-squares refit of ``L`` and ``R`` from the SVD fit (module docstring).

    Parameters
    ----------
    W, Q : (N, N_out) array_like
    rank : int
    l_bits, r_bits : int or None, default None
        Bit-widths of the factors' grids (None: full precision, the step is the identity).
    iters : int, default 5
        Rounds of the four steps.
    r_axis : {"row", "column"}, default "row"
        Grid axis of ``R`` (see :mod:`gilora_theory.branch`).

    Returns
    -------
    QuantizedFit
        The best quantized candidate ``(quant L, quant R)`` visited; the trace is
        monotone only over the refit steps (``guaranteed``).
    """
    W, Q, r = _check_pair(W, Q, rank)
    _check_options(l_bits, r_bits, r_axis)
    iters = _v.check_int("iters", iters, low=1)
    D = W - Q
    L, R, value, _ = _svd(D, r)
    trace, steps = [value], ["svd"]
    best = (value, _branch(L, R, None, None, r_axis)) if r == 0 else None
    for _ in range(iters if r > 0 else 0):
        qL = _branch(L, R, l_bits, None, r_axis)
        trace.append(_f(D, qL.L, R))
        R = _lstsq(qL.L, D)
        trace.append(_f(D, qL.L, R))
        qR = _branch(qL.L, R, None, r_bits, r_axis)
        trace.append(_f(D, qL.L, qR.R))
        if best is None or trace[-1] < best[0]:
            best = (trace[-1], QuantizedBranch(qL.L, qR.R, qL.L_grid, qR.R_grid, r_axis))
        R = qR.R
        L = _lstsq(R.T, D.T).T
        trace.append(_f(D, L, R))
        steps += ["quantize-L", "refit-R", "quantize-R", "refit-L"]
    guaranteed = tuple(s.startswith("refit") for s in steps)
    return QuantizedFit(best[1], best[0], np.array(trace), tuple(steps), guaranteed)


def _subgrid(g: Grid, k: int) -> Grid:
    """Column ``k`` of a grid as a one-column grid."""
    return Grid(g.step[:, k:k + 1], g.zero[:, k:k + 1], g.bits, g.beta, g.bounded, g.groupsize)


def _sweep(D, L, R, Lg, Rg, r_axis) -> None:
    """One coordinate sweep over the columns of ``L`` and rows of ``R`` (in place)."""
    for k in range(L.shape[1]):
        E = D - L @ R
        nrm = float(R[k] @ R[k])
        if nrm > 0:
            c = L[:, k] + E @ R[k] / nrm
            L[:, k] = c if Lg is None else _subgrid(Lg, k).quantize(c[:, None])[:, 0]
    for k in range(R.shape[0]):
        E = D - L @ R
        nrm = float(L[:, k] @ L[:, k])
        if nrm > 0:
            c = R[k] + L[:, k] @ E / nrm
            if Rg is not None:
                c = (_subgrid(Rg, k).quantize(c[:, None])[:, 0] if r_axis == "row"
                     else Rg.quantize(c))
            R[k] = c


def coordinate_fit(W, Q, rank: int, *, l_bits: int | None = None, r_bits: int | None = None,
                   sweeps: int = 5, r_axis: str = "row",
                   start: QuantizedBranch | None = None) -> QuantizedFit:
    """Exact coordinate descent of ``f`` over the quantized factors on fixed grids (monotone).

    Parameters
    ----------
    W, Q : (N, N_out) array_like
    rank : int
    l_bits, r_bits : int or None, default None
        Bit-widths (None: that factor is updated continuously). Ignored when
        ``start`` is given (its grids are used).
    sweeps : int, default 5
    r_axis : {"row", "column"}, default "row"
    start : QuantizedBranch, optional
        Starting factors and grids (e.g. ``alternating_fit(...).branch``);
        default: the SVD fit put on grids fitted to it.

    Returns
    -------
    QuantizedFit
        ``trace[0]`` is ``f`` at the start, then one entry per sweep; every
        entry is guaranteed not to exceed the previous one.
    """
    W, Q, r = _check_pair(W, Q, rank)
    sweeps = _v.check_int("sweeps", sweeps, low=0)
    D = W - Q
    if start is None:
        _check_options(l_bits, r_bits, r_axis)
        L, R, _, _ = _svd(D, r)
        start = _branch(L, R, l_bits, r_bits, r_axis)
    elif not isinstance(start, QuantizedBranch):
        raise TypeError(f"start must be a QuantizedBranch; got {type(start).__name__}")
    elif start.L.shape != (W.shape[0], r) or start.R.shape != (r, W.shape[1]):
        raise ValueError(f"start must have L {(W.shape[0], r)} and R {(r, W.shape[1])}; "
                         f"got L {start.L.shape}, R {start.R.shape}")
    L, R = start.L.copy(), start.R.copy()
    trace = [_f(D, L, R)]
    for _ in range(sweeps):
        _sweep(D, L, R, start.L_grid, start.R_grid, start.r_axis)
        trace.append(_f(D, L, R))
    branch = QuantizedBranch(L, R, start.L_grid, start.R_grid, start.r_axis)
    steps = ("start",) + ("sweep",) * sweeps
    return QuantizedFit(branch, trace[-1], np.array(trace), steps,
                        (False,) + (True,) * sweeps)


def guaranteed_increase(fit: QuantizedFit) -> float:
    """Largest ``trace[i] - trace[i-1]`` over the steps guaranteed not to increase ``f``.

    At most rounding (``<= 0`` in exact arithmetic); a positive value well above
    ``eps * trace[0]`` is a bug. Returns ``-inf`` when no step is guaranteed.
    """
    t = np.asarray(fit.trace)
    g = np.asarray(fit.guaranteed, dtype=bool)[1:]
    d = np.diff(t)[g]
    return float(np.max(d)) if d.size else float("-inf")
