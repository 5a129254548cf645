"""A low-rank branch on its own low-bit grids (a quantized ``L R``).

The branch ``L R`` (``L`` of shape (N, r), ``R`` of shape (r, N_out)) is stored
beside ``Q``. Each factor may be kept on its own asymmetric uniform grid (the
rule of :mod:`gilora_theory.grid`, ``beta = 1``) of ``l_bits`` / ``r_bits``
bits, as in the LoRaQ line of work [2] (8-, 6- or 4-bit branches beside a
4-bit main weight); ``None`` keeps a factor at full precision, and then every
function here returns exactly (bit for bit) what the unquantized routine returns.

Which axis gets a grid
----------------------
One grid per *branch direction* ``i = 1..r`` in both factors:

- ``L``: one grid per column ``L[:, i]``, fitted over its N entries
  (``fit_grid(L, l_bits)``, the rule ``gilora(l_bits=)`` already uses).
- ``R``: ``r_axis="row"`` (default), one grid per row ``R[i, :]``, fitted over
  its N_out entries (``fit_grid(R.T, r_bits)``; ``R_grid`` is then laid out
  for ``R^T``). ``r_axis="column"``: one grid per output column ``R[:, j]``
  over its r entries (the main grid's layout).

Why per direction: the branch is unchanged by ``L R = (L D)(D^{-1} R)`` for a
positive diagonal ``D``, and an asymmetric grid fitted to ``c x`` has step
``c delta`` and the same zero point, so per-direction grids quantize the
product the same way whatever the split of scale between the factors (OLrC
puts it in ``L``, the data-free SVD in either). Per-column grids of ``R`` over
only r entries degenerate for small r: at r = 1 every column is a constant,
which the grid stores exactly in its step, so "quantized" R is free of error
but costs ``2 * param_bits`` per column (see :mod:`gilora_theory.storage`).

Order of quantization
---------------------
GILoRA (Alg. 3 of [1]) with ``l_order="before"``: ``L = quant(V_r)`` enters the
augmented Hessian, so the pass's ``R`` is the ridge solution for the quantized
``L`` and ``Q`` is GPTQ on its Schur complement: ``L``'s rounding is absorbed by
the pass. ``"after"`` runs the pass with ``V_r`` and quantizes ``L`` afterwards
(``R`` kept); ``"after-refit"`` then refits ``R`` (:func:`refit_R`). In every
order ``R`` is quantized last. OLrC (Alg. 2) is followed by quantizing ``L``,
optionally refitting ``R`` to the quantized ``L``, and quantizing ``R``.

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
from .gilora import gilora
from .grid import Grid, fit_grid
from .objective import HessianSpectrum, Objective, evaluate_validated, resolve_lam
from .olrc import olrc

__all__ = ["R_AXES", "L_ORDERS", "QuantizedBranch", "BranchResult", "quantize_branch",
           "refit_R", "quantize_after", "quantize_after_validated", "olrc_branch",
           "gilora_branch"]

R_AXES = ("row", "column")
L_ORDERS = ("before", "after", "after-refit")


@dataclass(frozen=True)
class QuantizedBranch:
    """The factors of a branch, each on its own grid or at full precision.

    Attributes
    ----------
    L : (N, r) ndarray
        ``quant(L)`` column by column, or ``L`` itself (``l_bits=None``).
    R : (r, N_out) ndarray
        ``quant(R)`` row by row (``r_axis="row"``) or column by column, or ``R``.
    L_grid : Grid or None
        Grid of ``L`` (one per column), None at full precision.
    R_grid : Grid or None
        Grid of ``R^T`` (``r_axis="row"``) or of ``R`` (``"column"``), or None.
    r_axis : str
        ``"row"`` or ``"column"``: which axis of ``R`` each grid runs along.
    """

    L: np.ndarray
    R: np.ndarray
    L_grid: Grid | None
    R_grid: Grid | None
    r_axis: str

    @property
    def l_bits(self) -> int | None:
        """Bit-width of ``L`` (None: full precision)."""
        return None if self.L_grid is None else self.L_grid.bits

    @property
    def r_bits(self) -> int | None:
        """Bit-width of ``R`` (None: full precision)."""
        return None if self.R_grid is None else self.R_grid.bits


@dataclass(frozen=True)
class BranchResult:
    """A reconstruction ``Q + L R`` whose branch may be quantized, and its error.

    Attributes
    ----------
    Q : (N, N_out) ndarray
    branch : QuantizedBranch
        The stored factors and their grids.
    lam : float
        Damping of ``objective.damped_error`` and of any refit (``damp * mean(diag H)``).
    objective : Objective
        Error of ``Q + branch.L @ branch.R``.
    order : str
        How it was made: ``"before"`` (GILoRA, ``L`` quantized before the pass),
        ``"after"`` / ``"after-refit"`` (``L`` quantized after, ``R`` kept / refit),
        ``"olrc"`` / ``"olrc-refit"`` (:func:`olrc_branch`).
    """

    Q: np.ndarray
    branch: QuantizedBranch
    lam: float
    objective: Objective
    order: str

    @property
    def L(self) -> np.ndarray:
        """``branch.L``."""
        return self.branch.L

    @property
    def R(self) -> np.ndarray:
        """``branch.R``."""
        return self.branch.R


def _check_options(l_bits, r_bits, r_axis):
    if l_bits is not None:
        _v.check_bits("l_bits", l_bits)
    if r_bits is not None:
        _v.check_bits("r_bits", r_bits)
    if r_axis not in R_AXES:
        raise ValueError(f"r_axis must be one of {R_AXES}; got {r_axis!r}")


def _quantize_L(L: np.ndarray, bits: int | None):
    """One grid per column of ``L`` (over its N rows); identity when ``bits`` is None."""
    if bits is None or L.shape[1] == 0:
        return L, None
    g = fit_grid(L, bits)
    return g.quantize(L), g


def _quantize_R(R: np.ndarray, bits: int | None, axis: str):
    """One grid per row (``axis="row"``) or per column of ``R``; identity when ``bits`` is None."""
    if bits is None or R.shape[0] == 0:
        return R, None
    if axis == "row":
        g = fit_grid(R.T, bits)
        return np.ascontiguousarray(g.quantize(R.T).T), g
    g = fit_grid(R, bits)
    return g.quantize(R), g


def _branch(L, R, l_bits, r_bits, r_axis) -> QuantizedBranch:
    Lq, Lg = _quantize_L(L, l_bits)
    Rq, Rg = _quantize_R(R, r_bits, r_axis)
    return QuantizedBranch(Lq, Rq, Lg, Rg, r_axis)


def quantize_branch(L, R, *, l_bits: int | None = None, r_bits: int | None = None,
                    r_axis: str = "row") -> QuantizedBranch:
    """Put ``L`` and ``R`` on their own grids (module docstring: one grid per direction).

    Parameters
    ----------
    L : (N, r) array_like
    R : (r, N_out) array_like
    l_bits, r_bits : int or None, default None
        Bit-widths in [1, 16]; None keeps the factor unchanged (the same array).
    r_axis : {"row", "column"}, default "row"
        Grids per row of ``R`` (per branch direction) or per output column.

    Returns
    -------
    QuantizedBranch
    """
    L = _v.as_matrix("L", L, allow_empty=True)
    R = _v.as_matrix("R", R, allow_empty=True)
    if L.shape[1] != R.shape[0]:
        raise ValueError(f"L must be (N, r) and R (r, N_out); got L {L.shape}, R {R.shape}")
    _check_options(l_bits, r_bits, r_axis)
    return _branch(L, R, l_bits, r_bits, r_axis)


def _refit_R(W, Q, H, L, lam) -> np.ndarray:
    """Normal equations ``(L^T H_lam L) R = L^T H_lam (W - Q)``, minimum-norm solution."""
    HL = H @ L + lam * L
    K = L.T @ HL
    K = 0.5 * (K + K.T)
    R, *_ = scipy.linalg.lstsq(K, HL.T @ (W - Q), check_finite=False)
    return R


def refit_R(W, Q, H, L, *, damp: float = 0.01, lam: float | None = None) -> np.ndarray:
    """The ``R`` minimising the damped error ``tr(D^T H_lam D)``, ``D = W - Q - L R``, for fixed ``L``.

    ``R = (L^T H_lam L)^+ L^T H_lam (W - Q)`` (least squares in the ``H_lam``
    inner product; the minimum-norm solution when ``L^T H_lam L`` is singular).
    For ``L`` from OLrC this returns OLrC's own ``R`` (Alg. 2 of [1] is optimal
    in this objective); it is the "refit after quantizing L".

    Parameters
    ----------
    W, Q : (N, N_out) array_like
    H : (N, N) array_like
    L : (N, r) array_like
    damp : float, default 0.01
        Relative damping ``alpha``.
    lam : float, optional
        Absolute damping, overriding ``damp`` (``0``: plain least squares).

    Returns
    -------
    R : (r, N_out) ndarray
    """
    W, Q, H, L = _check_layer(W, Q, H, L)
    return _refit_R(W, Q, H, L, resolve_lam(H, damp, lam))


def _check_layer(W, Q, H, L=None):
    W = _v.as_matrix("W", W)
    Q = _v.as_matrix("Q", Q)
    _v.check_same_shape("Q", Q, "W", W)
    H = _v.check_hessian(H, W.shape[0])
    if L is not None:
        L = _v.as_matrix("L", L, allow_empty=True)
        if L.shape[0] != W.shape[0]:
            raise ValueError(f"L must have W's {W.shape[0]} rows; got shape {L.shape}")
    return W, Q, H, L


def quantize_after(W, Q, H, L, R, *, l_bits: int | None = None, r_bits: int | None = None,
                   refit: bool = True, r_axis: str = "row", damp: float = 0.01,
                   lam: float | None = None) -> BranchResult:
    """Quantize a finished branch: ``L`` on its grid, refit ``R`` (optional), ``R`` on its grid.

    With ``refit=True`` and ``l_bits`` given, ``R`` is replaced by
    :func:`refit_R` for the quantized ``L`` before ``R`` is quantized. With
    ``l_bits=None`` no refit happens, so ``l_bits = r_bits = None`` returns the
    branch unchanged.

    Parameters
    ----------
    W, Q : (N, N_out) array_like
    H : (N, N) array_like
    L : (N, r) array_like
    R : (r, N_out) array_like
    l_bits, r_bits : int or None
    refit : bool, default True
    r_axis : {"row", "column"}
    damp, lam
        Damping of the refit and of the reported damped error.

    Returns
    -------
    BranchResult
    """
    W, Q, H, L = _check_layer(W, Q, H, L)
    R = _v.as_matrix("R", R, allow_empty=True)
    if R.shape != (L.shape[1], W.shape[1]):
        raise ValueError(f"R must be {(L.shape[1], W.shape[1])} to match L and W; got {R.shape}")
    _check_options(l_bits, r_bits, r_axis)
    lam = resolve_lam(H, damp, lam)
    return quantize_after_validated(W, Q, H, L, R, l_bits, r_bits, refit, r_axis, lam,
                                    "after-refit" if refit else "after")


def quantize_after_validated(W, Q, H, L, R, l_bits, r_bits, refit, r_axis, lam,
                             order) -> BranchResult:
    """:func:`quantize_after` for validated inputs (positional; ``lam`` absolute): ``L``
    quantized, ``R`` refit if ``refit`` and ``l_bits``, ``R`` quantized; ``order`` is recorded."""
    Lq, Lg = _quantize_L(L, l_bits)
    if refit and Lg is not None:
        R = _refit_R(W, Q, H, Lq, lam)
    Rq, Rg = _quantize_R(R, r_bits, r_axis)
    branch = QuantizedBranch(Lq, Rq, Lg, Rg, r_axis)
    return BranchResult(Q, branch, lam, evaluate_validated(W, Q, Lq, Rq, None, H, lam), order)


def olrc_branch(W, Q, H, rank: int, *, l_bits: int | None = None, r_bits: int | None = None,
                refit: bool = True, r_axis: str = "row", damp: float = 0.01,
                lam: float | None = None, spectrum: HessianSpectrum | None = None) -> BranchResult:
    """OLrC (Alg. 2 of [1]) for a fixed ``Q``, then the branch on its own grids.

    ``L`` is quantized, ``R`` refit to it by :func:`refit_R` (``refit=True``)
    or kept, and then quantized. ``l_bits = r_bits = None`` gives OLrC's
    ``L``, ``R`` exactly.

    Parameters
    ----------
    W, Q : (N, N_out) array_like
    H : (N, N) array_like
    rank : int
    l_bits, r_bits : int or None, default None
    refit : bool, default True
    r_axis : {"row", "column"}, default "row"
    damp, lam, spectrum
        As in :func:`gilora_theory.olrc.olrc`.

    Returns
    -------
    BranchResult
    """
    W, Q, H, _ = _check_layer(W, Q, H)
    _check_options(l_bits, r_bits, r_axis)
    res = olrc(W, Q, H, rank, damp=damp, lam=lam, spectrum=spectrum)
    order = "olrc-refit" if refit else "olrc"
    return quantize_after_validated(W, Q, H, res.L, res.R, l_bits, r_bits, refit, r_axis,
                                    res.lam, order)


def gilora_branch(W, H, grid: Grid, rank: int, *, l_bits: int | None = None,
                  r_bits: int | None = None, l_order: str = "before", r_axis: str = "row",
                  damp: float = 0.01, damp_from: str = "augmented", blocksize: int = 128,
                  route: str = "cholesky", spectrum: HessianSpectrum | None = None) -> BranchResult:
    """GILoRA (Alg. 3 of [1]) with ``L`` and ``R`` on their own grids.

    ``l_order="before"``: ``gilora(..., l_bits=)``, the pass absorbs ``L``'s
    rounding. ``"after"``: the pass with ``V_r``, then ``L`` quantized and ``R``
    kept. ``"after-refit"``: as ``"after"`` with ``R`` refit (:func:`refit_R`,
    damping ``damp * mean(diag H)``). ``R`` is quantized last in every order.
    ``l_bits = r_bits = None`` gives :func:`gilora_theory.gilora.gilora` exactly.

    Parameters
    ----------
    W : (N, N_out) array_like
    H : (N, N) array_like
    grid : Grid
        Grid of ``W``.
    rank : int
    l_bits, r_bits : int or None, default None
    l_order : {"before", "after", "after-refit"}, default "before"
    r_axis : {"row", "column"}, default "row"
    damp, damp_from, blocksize, route, spectrum
        As in :func:`gilora_theory.gilora.gilora`; ``objective`` is evaluated
        with ``lam = damp * mean(diag H)``.

    Returns
    -------
    BranchResult
    """
    W = _v.as_matrix("W", W)
    H = _v.check_hessian(H, W.shape[0])
    _check_options(l_bits, r_bits, r_axis)
    if l_order not in L_ORDERS:
        raise ValueError(f"l_order must be one of {L_ORDERS}; got {l_order!r}")
    before = l_order == "before"
    res = gilora(W, H, grid, rank, l_bits=l_bits if before else None, damp=damp,
                 damp_from=damp_from, blocksize=blocksize, route=route, spectrum=spectrum)
    lam = resolve_lam(H, damp, None)
    if before:
        Rq, Rg = _quantize_R(res.R, r_bits, r_axis)
        branch = QuantizedBranch(res.L, Rq, res.L_grid, Rg, r_axis)
        obj = evaluate_validated(W, res.Q, res.L, Rq, None, H, lam)
        return BranchResult(res.Q, branch, lam, obj, l_order)
    return quantize_after_validated(W, res.Q, H, res.L, res.R, l_bits, r_bits,
                                    l_order == "after-refit", r_axis, lam, l_order)
