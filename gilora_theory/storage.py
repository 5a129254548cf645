"""Storage accounting: effective bits per weight of ``Q + L R``.

Everything a deployment stores is counted: ``Q``'s integer codes, its grid
parameters (a step and a zero point per output column per static group),
and the branch, either at full precision or as codes plus its own grid
parameters (one grid per branch direction, see :mod:`gilora_theory.branch`).

Hand-countable formula. ``W`` is N x N_out, the main grid has ``b`` bits and
``G = ceil(N / groupsize)`` groups (``G = 1`` without groups), the branch has
rank ``r``; every step and every zero point takes ``p = param_bits`` bits and a
full-precision branch entry ``f = full_precision_bits`` bits::

    Q codes   N * N_out * b
    Q grid    G * N_out * 2p
    L         N * r * f                          (l_bits = None)
              N * r * b_L  +  r * 2p             (one grid per column of L)
    R         r * N_out * f                      (r_bits = None)
              r * N_out * b_R  +  r * 2p         (r_axis = "row": one grid per row)
              r * N_out * b_R  +  N_out * 2p     (r_axis = "column")

    effective bits per weight = (sum of the lines) / (N * N_out)

Example: N = 4, N_out = 3, b = 2, no groups, r = 1, L at 4 bits, R at 8 bits
(row grids), p = 16: ``24 + 96 + (16 + 32) + (24 + 32) = 224`` bits, i.e.
``224 / 12 = 18.67`` bits per weight (small layers are dominated by grid
parameters; at N = N_out = 4096 the same settings cost about 2.01).

Only bounded grids have a storage cost: an unbounded grid's codes are
unbounded integers, and asking for its storage raises ``ValueError``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from . import _validation as _v
from .branch import R_AXES, QuantizedBranch
from .grid import Grid

__all__ = ["Storage", "storage", "storage_of", "compression_storage"]


@dataclass(frozen=True)
class Storage:
    """Bits stored for ``Q + L R``, line by line (module docstring).

    Attributes
    ----------
    n_weights : int
        ``N * N_out``.
    q_codes : int
        ``N * N_out * b``.
    q_grid : int
        ``G * N_out * 2p``.
    l_codes, l_grid : int
        ``N r b_L`` and ``r 2p`` (or ``N r f`` and 0 at full precision).
    r_codes, r_grid : int
        ``r N_out b_R`` and ``r 2p`` / ``N_out 2p`` (or ``r N_out f`` and 0).
    """

    n_weights: int
    q_codes: int
    q_grid: int
    l_codes: int
    l_grid: int
    r_codes: int
    r_grid: int

    @property
    def total(self) -> int:
        """Sum of every line, in bits."""
        return (self.q_codes + self.q_grid + self.l_codes + self.l_grid
                + self.r_codes + self.r_grid)

    @property
    def branch(self) -> int:
        """Bits of the branch ``L R`` (codes and grids)."""
        return self.l_codes + self.l_grid + self.r_codes + self.r_grid

    @property
    def effective_bits(self) -> float:
        """``total / (N * N_out)``: bits per weight of ``W``."""
        return self.total / self.n_weights


def _storage(N, N_out, bits, G, r, l_bits, r_bits, r_axis, p, f) -> Storage:
    l_codes = N * r * (f if l_bits is None else l_bits)
    l_grid = 0 if l_bits is None or r == 0 else r * 2 * p
    r_codes = r * N_out * (f if r_bits is None else r_bits)
    r_grid = 0 if r_bits is None or r == 0 else (r if r_axis == "row" else N_out) * 2 * p
    return Storage(N * N_out, N * N_out * bits, G * N_out * 2 * p,
                   l_codes, l_grid, r_codes, r_grid)


def _check_precisions(param_bits, full_precision_bits):
    return (_v.check_int("param_bits", param_bits, low=1, high=64),
            _v.check_int("full_precision_bits", full_precision_bits, low=1, high=64))


def storage(N: int, N_out: int, *, bits: int, rank: int = 0, groupsize: int | None = None,
            l_bits: int | None = None, r_bits: int | None = None, r_axis: str = "row",
            param_bits: int = 16, full_precision_bits: int = 16) -> Storage:
    """Bits of ``Q + L R`` from the shapes and bit-widths (formula in the module docstring).

    Parameters
    ----------
    N, N_out : int
        Shape of ``W``.
    bits : int
        Main grid bit-width ``b``.
    rank : int, default 0
        ``r``.
    groupsize : int or None, default None
        Static groups of input rows (``G = ceil(N / groupsize)``).
    l_bits, r_bits : int or None, default None
        Branch bit-widths; None: stored at ``full_precision_bits``.
    r_axis : {"row", "column"}, default "row"
    param_bits : int, default 16
        Bits of every step and every zero point.
    full_precision_bits : int, default 16
        Bits of an unquantized branch entry (fp16/bf16 deployment).

    Returns
    -------
    Storage
    """
    N = _v.check_int("N", N, low=1)
    N_out = _v.check_int("N_out", N_out, low=1)
    bits = _v.check_bits("bits", bits)
    r = _v.check_rank(rank, N, N_out)
    G = 1 if groupsize is None else math.ceil(N / _v.check_int("groupsize", groupsize, low=1))
    for name, b in (("l_bits", l_bits), ("r_bits", r_bits)):
        if b is not None:
            _v.check_bits(name, b)
    if r_axis not in R_AXES:
        raise ValueError(f"r_axis must be one of {R_AXES}; got {r_axis!r}")
    p, f = _check_precisions(param_bits, full_precision_bits)
    return _storage(N, N_out, bits, G, r, l_bits, r_bits, r_axis, p, f)


def storage_of(grid: Grid, N: int, branch: QuantizedBranch | None = None, *,
               param_bits: int = 16, full_precision_bits: int = 16) -> Storage:
    """Bits of a stored reconstruction, counted from the grid and factor arrays themselves.

    Counts the entries of ``grid.step`` and ``grid.zero`` (and of the branch
    grids) rather than using the formula, so it is an independent route to
    :func:`storage`.

    Parameters
    ----------
    grid : Grid
        The main grid (bounded).
    N : int
        Rows of ``W``.
    branch : QuantizedBranch, optional
        The branch; None for no branch (r = 0).
    param_bits, full_precision_bits : int, default 16

    Returns
    -------
    Storage
    """
    if not isinstance(grid, Grid):
        raise TypeError(f"grid must be a Grid; got {type(grid).__name__}")
    if not grid.bounded:
        raise ValueError("an unbounded grid stores unbounded integer codes: its storage "
                         "is undefined. Use a bounded grid (fit_grid(..., bounded=True))")
    N = _v.check_int("N", N, low=1)
    p, f = _check_precisions(param_bits, full_precision_bits)
    N_out = grid.step.shape[1]
    counts = [N * N_out * grid.bits, (grid.step.size + grid.zero.size) * p]
    if branch is not None:
        if not isinstance(branch, QuantizedBranch):
            raise TypeError(f"branch must be a QuantizedBranch; got {type(branch).__name__}")
        counts += _factor_bits(branch.L, branch.L_grid, p, f)
        counts += _factor_bits(branch.R, branch.R_grid, p, f)
    else:
        counts += [0, 0, 0, 0]
    return Storage(N * N_out, *counts)


def _factor_bits(A, g, p, f) -> list[int]:
    """Codes and grid bits of one factor: entries x bits, grid entries x p (none at full precision)."""
    if g is None:
        return [A.size * f, 0]
    return [A.size * g.bits, (g.step.size + g.zero.size) * p]


def compression_storage(c, *, param_bits: int = 16, full_precision_bits: int = 16) -> Storage:
    """Bits of a :class:`gilora_theory.methods.Compression` (its grid, rank and branch bits).

    The branch bit-widths come from ``c.info`` (``"l_bits"``, ``"r_bits"``,
    ``"r_axis"``, set by ``compress(..., l_bits=, r_bits=)``); absent means
    full precision.

    Raises
    ------
    ValueError
        For an unbounded grid (no finite code width).
    """
    grid = c.grid
    if not grid.bounded:
        raise ValueError("an unbounded grid stores unbounded integer codes: its storage "
                         "is undefined. Use a bounded grid")
    N, r = c.L.shape
    return storage(N, c.Q.shape[1], bits=grid.bits, rank=r, groupsize=grid.groupsize,
                   l_bits=c.info.get("l_bits"), r_bits=c.info.get("r_bits"),
                   r_axis=c.info.get("r_axis", "row"), param_bits=param_bits,
                   full_precision_bits=full_precision_bits)
