"""The quantization grid of [1] (docs/theory.md, "The grid").

An asymmetric uniform grid per output channel j (column of ``W``), with
bit-width ``b`` and clipping factor ``beta``::

    rho_j   = max_i W_ij - min_i W_ij
    delta_j = beta * rho_j / (2^b - 1)
    z_j     = round(-min_i W_ij * (2^b - 1) / rho_j)        (unscaled range)
    quant_j(x) = delta_j * (clip(round(x / delta_j) + z_j, 0, 2^b - 1) - z_j)

The grid is fitted once from the original ``W`` and stays fixed through every
algorithm. The *unbounded* variant keeps ``delta_j`` and the origin but drops
the clip, so its alphabet is ``delta_j * Z``. With static groups (``groupsize``)
each block of ``groupsize`` consecutive input rows gets its own grid per column,
fitted from the same block of the original ``W`` (the reference GPTQ's
``static_groups``).

A constant column (``rho_j = 0``, value ``c``) gets ``delta_j = |c|`` (or 1 when
``c = 0``) and ``z_j = -round(c / delta_j)`` so that ``c`` is a level: no NaN.

References
----------
[1] S. Zhang, R. Saab, "GPTQ-intrinsic LoRA", arXiv:2606.01412 (2026).
[2] E. Frantar et al., "GPTQ", arXiv:2210.17323 (2022).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import _validation as _v

__all__ = ["Grid", "fit_grid", "clipped_mask", "check_grid"]


@dataclass(frozen=True)
class Grid:
    """A fixed per-column (optionally per-group) uniform grid.

    Attributes
    ----------
    step : (G, N_out) ndarray
        ``delta`` per group and output column (``G = 1`` without groups).
    zero : (G, N_out) ndarray
        Integer zero point ``z`` (stored as float64) per group and column.
    bits : int
        Bit-width ``b``; the bounded alphabet has ``2^b`` levels.
    beta : float
        Clipping factor used when fitting.
    bounded : bool
        False for the unbounded grid ``delta * (Z - z)`` (theory only).
    groupsize : int or None
        Rows per static group, or None for one grid per column.
    """

    step: np.ndarray
    zero: np.ndarray
    bits: int
    beta: float = 1.0
    bounded: bool = True
    groupsize: int | None = None

    @property
    def maxq(self) -> int:
        """Largest integer code, ``2^b - 1``."""
        return 2**self.bits - 1

    def _rows(self, rows) -> tuple[np.ndarray, np.ndarray]:
        """Step and zero broadcastable against rows ``rows`` of a weight matrix."""
        if self.groupsize is None:
            return self.step[0], self.zero[0]
        g = np.asarray(rows) // self.groupsize
        return self.step[g], self.zero[g]

    def codes(self, x: np.ndarray, rows=0, *, out: np.ndarray | None = None) -> np.ndarray:
        """Integer codes ``clip(round(x / delta) + z, 0, 2^b - 1)`` (unclipped if unbounded).

        ``x`` is one row ``(N_out,)`` or a block ``(n, N_out)``; ``rows`` is the
        input-row index (int) or the 1-D array of ``n`` row indices, used only
        to pick the static group. ``out`` (float64, ``x``'s shape; may be ``x``
        itself) receives the codes in place, without temporaries.
        """
        step, zero = self._rows(rows)
        out = np.divide(x, step, out=out)
        np.rint(out, out=out)                   # np.round's rounding (half to even)
        out += zero
        if self.bounded:
            np.clip(out, 0, self.maxq, out=out)
        return out

    def quantize(self, x: np.ndarray, rows=0, *, out: np.ndarray | None = None) -> np.ndarray:
        """Nearest alphabet point of every entry: ``quant_j(x)`` of docs/theory.md, "The grid".

        A 1-D uniform grid's nearest point is the rounded, then clipped, code,
        so this is also the exact nearest-point map used by Bid-Up. ``out``
        (float64, ``x``'s shape; may be ``x`` itself) receives the result in
        place: the GPTQ pass and Bid-Up sweep quantize row by row through it.
        """
        step, zero = self._rows(rows)
        out = self.codes(x, rows, out=out)
        out -= zero
        out *= step                             # delta (code - z)
        return out

    def levels(self, column: int, row: int = 0) -> np.ndarray:
        """All ``2^b`` levels of column ``column``'s alphabet (bounded grids only)."""
        if not self.bounded:
            raise ValueError("an unbounded grid has infinitely many levels; use bounded=True")
        step, zero = self._rows(row)
        return step[column] * (np.arange(self.maxq + 1) - zero[column])

    def half_step(self, rows=0) -> np.ndarray:
        """``delta / 2`` broadcast for rows ``rows``: the no-clipping rounding radius."""
        return 0.5 * self._rows(rows)[0]

    def with_bounded(self, bounded: bool) -> "Grid":
        """The same step and origin, with or without clipping."""
        return Grid(self.step, self.zero, self.bits, self.beta, bounded, self.groupsize)


def _fit_columns(W: np.ndarray, maxq: int, beta: float) -> tuple[np.ndarray, np.ndarray]:
    """Step and zero of docs/theory.md, "The grid" for the columns of a block of W."""
    wmin, wmax = W.min(axis=0), W.max(axis=0)
    rho = wmax - wmin
    const = rho == 0
    safe_rho = np.where(const, 1.0, rho)
    step = beta * safe_rho / maxq
    zero = np.round(-wmin * maxq / safe_rho)
    # Constant column c: delta = |c| (1 if c == 0) and z = -round(c / delta), so c is a level.
    cstep = np.where(wmin == 0, 1.0, np.abs(wmin))
    step = np.where(const, cstep, step)
    zero = np.where(const, -np.round(wmin / cstep), zero)
    return step, zero


def fit_grid(W, bits: int, *, beta: float = 1.0, bounded: bool = True,
             groupsize: int | None = None) -> Grid:
    """Fit the asymmetric per-column grid of docs/theory.md, "The grid" to ``W``.

    Parameters
    ----------
    W : (N, N_out) array_like
        Weights, rows = input features.
    bits : int
        Bit-width ``b`` in [1, 16].
    beta : float, default 1.0
        Clipping factor in (0, 1]; ``delta = beta * rho / (2^b - 1)``, while the
        zero point uses the unscaled range.
    bounded : bool, default True
        False gives the unbounded grid ``delta * (Z - z)`` used by the theory.
    groupsize : int or None, default None
        Static groups of input rows, each with its own grid (reference GPTQ).

    Returns
    -------
    Grid
    """
    W = _v.as_matrix("W", W)
    bits = _v.check_bits("bits", bits)
    beta = _v.check_beta(beta)
    N = W.shape[0]
    if groupsize is None:
        blocks = [W]
    else:
        groupsize = _v.check_int("groupsize", groupsize, low=1, high=N)
        blocks = [W[i:i + groupsize] for i in range(0, N, groupsize)]
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        fits = [_fit_columns(B, 2**bits - 1, beta) for B in blocks]
    step = np.stack([f[0] for f in fits])
    zero = np.stack([f[1] for f in fits])
    _v.check_finite_output("fitting the grid", "Rescale W (Q scales with W).", step=step, zero=zero)
    if np.any(step == 0):
        raise _v.NumericalError(
            f"fitting the grid underflowed: a column of W spans {np.min(np.ptp(W, axis=0)):.3g}, "
            f"too small for a {bits}-bit step in float64. Rescale W (Q scales with W).")
    return Grid(step, zero, bits, beta, bool(bounded), groupsize)


def check_grid(grid, W: np.ndarray, name: str = "W") -> None:
    """Raise unless ``grid`` is a :class:`Grid` whose columns (and static groups) fit ``W``.

    Validation helper for public boundaries (``W`` already validated).
    """
    if not isinstance(grid, Grid):
        raise TypeError(f"grid must be a Grid (see fit_grid); got {type(grid).__name__}")
    if grid.step.shape[1] != W.shape[1]:
        raise ValueError(f"grid has {grid.step.shape[1]} columns but {name} has {W.shape[1]}")
    if grid.groupsize is not None and grid.step.shape[0] != -(-W.shape[0] // grid.groupsize):
        raise ValueError(f"grid has {grid.step.shape[0]} static groups of {grid.groupsize} rows, "
                         f"but {name} has {W.shape[0]} rows; fit the grid to {name}")


def clipped_mask(grid: Grid, target: np.ndarray, Q: np.ndarray, rows=None) -> np.ndarray:
    """Entries quantized with ``|target - Q| > delta / 2`` (docs/theory.md, "The grid").

    ``target`` is the value that was rounded (``w~`` in GPTQ). A relative
    tolerance of 8 machine epsilons of the step absorbs rounding of exact ties.

    Parameters
    ----------
    grid : Grid
    target, Q : (n, N_out) array_like
    rows : (n,) array_like of int, optional
        Input-row index of each row (picks static groups); default ``0..n-1``.
    """
    if not isinstance(grid, Grid):
        raise TypeError(f"grid must be a Grid (see fit_grid); got {type(grid).__name__}")
    target = _v.as_matrix("target", target)
    Q = _v.as_matrix("Q", Q)
    if Q.shape != target.shape or target.shape[1] != grid.step.shape[1]:
        raise ValueError(f"target and Q must both be (n, {grid.step.shape[1]}) for this grid; "
                         f"got {target.shape} and {Q.shape}")
    if rows is None:
        rows = np.arange(target.shape[0])
    half = grid.half_step(rows)
    return np.abs(target - Q) > half * (1 + 8 * np.finfo(np.float64).eps)
