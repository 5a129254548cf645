"""The layer-wise objective of [1] (docs/theory.md, "Notation").

``E = ||X (W - Q - L R)||_F^2 = tr(D^T H D)`` with ``D = W - Q - L R`` and
``H = X^T X``; damped ``E_lam = E + lam ||D||_F^2`` with
``lam = alpha * mean(diag H)``; relative error ``E / ||X W||_F^2``.

References
----------
[1] S. Zhang, R. Saab, "GPTQ-intrinsic LoRA", arXiv:2606.01412 (2026).
[2] E. Frantar et al., "GPTQ", arXiv:2210.17323 (2022) (relative damping).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg

from . import _memo
from . import _validation as _v

__all__ = ["hessian", "damping", "residual", "layer_error", "Objective", "evaluate",
           "evaluate_validated", "objective_from_damped", "IDENTITY_TOL",
           "HessianSpectrum", "hessian_spectrum", "resolve_lam"]


def hessian(X) -> np.ndarray:
    """``H = X^T X`` in float64.

    Parameters
    ----------
    X : (m, N) array_like
        Calibration matrix, one row per token/sample.
    """
    X = _v.as_matrix("X", X)
    with np.errstate(over="ignore", invalid="ignore"):
        H = X.T @ X
    _v.check_finite_output("H = X^T X", "Rescale X (every error scales by c^2 and no Q "
                           "changes under relative damping).", H=H)
    if np.any((np.diag(H) == 0) & np.any(X != 0, axis=0)):
        raise _v.NumericalError("H = X^T X underflowed float64: a nonzero column of X has "
                                "H_ii = 0. Rescale X.")
    return H


def damping(H, alpha: float = 0.01) -> float:
    """``lam = alpha * mean(diag H)`` (relative damping of [2]).

    Parameters
    ----------
    H : (N, N) array_like
    alpha : float, default 0.01
    """
    H = _v.check_hessian(H)
    alpha = _v.check_float("alpha", alpha)
    return resolve_lam(H, alpha, None)


def _damping(H: np.ndarray, alpha: float) -> float:
    with np.errstate(over="ignore"):
        return float(alpha * np.mean(np.diag(H)))


def _lam_is_safe(H: np.ndarray, lam: float) -> bool:
    """``H + lam I`` is surely numerically positive definite (no spectrum check needed).

    A validated ``H`` has ``min(e) >= -64 n eps max|H|`` and ``max(e) <= n max|H|``,
    so ``lam > 2 (64 n + n^2) eps max|H|`` lifts ``min(e)`` above ``n eps max(e + lam)``.
    """
    n = H.shape[0]
    return lam > 2 * (64 * n + n * n) * np.finfo(np.float64).eps * _v.max_abs(H)


def resolve_lam(H: np.ndarray, damp: float, lam: float | None) -> float:
    """Absolute damping: ``lam`` if given, else ``damp * mean(diag H)`` (finite, or NumericalError)."""
    if lam is not None:
        return _v.check_float("lam", lam)
    lam = _damping(H, _v.check_damp(damp))
    _v.check_finite_output("lam = damp * mean(diag H)", "Reduce damp or rescale H.", lam=lam)
    return lam


def damped(H: np.ndarray, lam: float) -> np.ndarray:
    """``H_lam = H + lam I`` in one new array (``H + lam * np.eye(N)`` holds three ``N x N``
    arrays at once: 1.5 GB more at N = 8192). The same values (``H_ij + 0`` off the diagonal)."""
    G = np.array(H, dtype=np.float64, order="C")
    G.flat[::G.shape[0] + 1] += lam
    return G


def residual(W: np.ndarray, Q: np.ndarray, L=None, R=None) -> np.ndarray:
    """``D = W - Q - L R`` (``L R`` omitted when either factor is None or rank 0)."""
    D = W - Q
    if L is not None and R is not None and L.shape[1] > 0:
        D = D - L @ R
    return D


def _trace_quad(H: np.ndarray, D: np.ndarray) -> float:
    """``tr(D^T H D)`` as a sum of elementwise products (no N_out x N_out product)."""
    return float(np.einsum("ij,ij->", D, H @ D))


_SIGNAL_ROWS = 512


def _signal(H: np.ndarray, W: np.ndarray) -> float:
    """``||X W||_F^2 = tr(W^T H W)``, the relative error's reference.

    Small layers (``min(N, N_out) < 512``): :func:`_trace_quad`, the same bits as
    every committed table. Large layers: ``<H, W W^T>`` with ``H`` symmetric, from
    the lower block triangle of ``W W^T`` only (row blocks of 512: ``W_I W_J^T``
    for ``J <= I``, off-diagonal blocks counted twice), ``N^2 N_out`` flops instead
    of the ``2 N^2 N_out`` of ``H W``; temporaries ``512 x N``. The same sum of
    products in another order: the two routes agree to rounding (tested).
    """
    N = W.shape[0]
    if min(W.shape) < 512:
        return _trace_quad(H, W)
    b, total = _SIGNAL_ROWS, 0.0
    for i in range(0, N, b):
        e = min(i + b, N)
        G = W[i:e] @ W[:e].T                       # (W W^T)[I, :e]: blocks J <= I
        total += 2.0 * float(np.einsum("ij,ij->", H[i:e, :i], G[:, :i]))
        total += float(np.einsum("ij,ij->", H[i:e, i:e], G[:, i:e]))
    return total


def layer_error(W, Q, L=None, R=None, *, X=None, H=None, lam: float = 0.0) -> float:
    """Damped layer error ``tr(D^T H D) + lam ||D||_F^2`` (``lam = 0``: the error ``E``).

    Exactly one of ``X`` (then ``||X D||_F^2`` is used) or ``H`` must be given.

    Parameters
    ----------
    W, Q : (N, N_out) array_like
    L : (N, r) array_like, optional
    R : (r, N_out) array_like, optional
    X : (m, N) array_like, optional
    H : (N, N) array_like, optional
    lam : float, default 0.0
        Absolute damping added as ``lam * ||D||_F^2``.
    """
    W, Q, L, R, X, H = _check_factors(W, Q, L, R, X, H)
    lam = _v.check_float("lam", lam)
    with np.errstate(over="ignore", invalid="ignore"):
        D = residual(W, Q, L, R)
        base = float(np.sum((X @ D) ** 2)) if X is not None else _trace_quad(H, D)
        value = base + lam * float(np.sum(D * D))
    _v.check_finite_output("the layer error", "Rescale W (and Q, L R) or X / H.", error=value)
    return value


def _check_factors(W, Q, L, R, X, H):
    W = _v.as_matrix("W", W)
    Q = _v.as_matrix("Q", Q)
    _v.check_same_shape("Q", Q, "W", W)
    if (L is None) != (R is None):
        raise ValueError("L and R must be given together (or both omitted)")
    if L is not None:
        L = _v.as_matrix("L", L, allow_empty=True)
        R = _v.as_matrix("R", R, allow_empty=True)
        if L.shape[0] != W.shape[0] or R.shape[1] != W.shape[1] or L.shape[1] != R.shape[0]:
            raise ValueError(f"L must be (N, r) and R (r, N_out) with W {W.shape}; got L {L.shape}, R {R.shape}")
    if (X is None) == (H is None):
        raise ValueError("give exactly one of X (m x N) or H (N x N)")
    if X is not None:
        X = _v.as_matrix("X", X)
        _v.check_same_rows("X", X, "W", W, axis_a=1)
    else:
        H = _v.check_hessian(H, W.shape[0])
    return W, Q, L, R, X, H


@dataclass(frozen=True)
class Objective:
    """The objective values of one reconstruction ``Q + L R``.

    Attributes
    ----------
    error : float
        ``E = tr(D^T H D)`` with ``D = W - Q - L R``.
    damped_error : float
        ``E_lam = E + lam ||D||_F^2``.
    relative_error : float
        ``E / tr(W^T H W)`` (= ``E / ||X W||_F^2``); NaN-free: 0 when both are 0,
        inf when only ``||X W||`` is 0.
    lam : float
        The absolute damping used in ``damped_error``.
    """

    error: float
    damped_error: float
    relative_error: float
    lam: float


def evaluate(W, Q, L=None, R=None, *, X=None, H=None, lam: float = 0.0) -> Objective:
    """Error, damped error and relative error of ``Q + L R`` in one call.

    Same arguments as :func:`layer_error`; ``lam`` is the absolute damping.
    """
    W, Q, L, R, X, H = _check_factors(W, Q, L, R, X, H)
    lam = _v.check_float("lam", lam)
    return evaluate_validated(W, Q, L, R, X, H, lam)


def evaluate_validated(W, Q, L, R, X, H, lam: float) -> Objective:
    """:func:`evaluate` for inputs a caller has already validated (no checks repeated).

    For library code that validated ``W``, ``Q`` (same shape), ``L``, ``R``
    (``(N, r)``, ``(r, N_out)`` or both None), exactly one of ``X`` / ``H`` and
    ``lam >= 0`` once at its own public boundary (positional, in this order).
    """
    with np.errstate(over="ignore", invalid="ignore"):
        D = residual(W, Q, L, R)
        if X is not None:
            E, ref = float(np.sum((X @ D) ** 2)), float(np.sum((X @ W) ** 2))
        else:
            E, ref = _trace_quad(H, D), _signal(H, W)
        damped = E + lam * float(np.sum(D * D))
    return _objective(W, X, H, E, damped, ref, lam)


def _objective(W, X, H, E: float, damped: float, ref: float, lam: float) -> Objective:
    """The :class:`Objective` from ``E``, ``E_lam`` and ``ref = ||X W||^2`` (NaN-free)."""
    _v.check_finite_output("the layer error", "Rescale W (and Q, L R) or X / H.",
                           error=E, damped_error=damped, reference=ref)
    if ref > 0:
        rel = E / ref
    else:
        _check_underflow(W, X, H)
        rel = 0.0 if E == 0 else float("inf")
    return Objective(E, damped, rel, lam)


IDENTITY_TOL = 1e-10
"""Largest certified relative error of ``E`` for which :func:`objective_from_damped` keeps
the identity ``E = E_lam - lam ||D||_F^2`` instead of the direct product."""


def objective_from_damped(W, Q, L, R, H, lam: float, damped: float, damped_error_bound: float,
                          *, tol: float = IDENTITY_TOL) -> Objective:
    """The :class:`Objective` of ``Q + L R`` when a pass already knows ``E_lam`` (loss identity).

    ``E = E_lam - lam ||D||_F^2`` costs ``O(N N_out r)`` instead of a product with
    ``H``. It cancels when ``lam ||D||^2`` is close to ``E_lam``: with
    ``|E_lam - damped| <= damped_error_bound`` (a certified bound from the pass)
    and the sum ``||D||^2`` exact to ``N N_out eps`` relatively, ``E`` is off by
    at most ``b = damped_error_bound + (N + N_out + 3) eps lam ||D||^2`` (``||D||^2`` summed
    row by row, then over rows: any order of summing ``n`` non-negative terms is within
    ``(n - 1) eps`` of their sum; 3 roundings per term for ``D``, its square and ``lam``). It is used when
    ``b <= tol E``; otherwise ``E`` comes from the direct product
    (:func:`evaluate_validated`). ``||X W||^2`` (the relative error's reference)
    is ``_signal`` (private, in this module) either way. Validated inputs (as :func:`evaluate_validated`).
    """
    with np.errstate(over="ignore", invalid="ignore"):
        D = residual(W, Q, L, R)
        shrink = lam * float(np.sum(np.einsum("ij,ij->i", D, D)))
        E = damped - shrink
        bound = damped_error_bound + (sum(D.shape) + 3) * np.finfo(np.float64).eps * shrink
    if not (np.isfinite(E) and E > 0 and bound <= tol * E):
        return evaluate_validated(W, Q, L, R, None, H, lam)
    with np.errstate(over="ignore", invalid="ignore"):
        ref = _signal(H, W)
    return _objective(W, None, H, E, damped, ref, lam)


def _check_underflow(W, X, H) -> None:
    """``||X W||^2 = 0``: genuine (W in the null space of H) or float64 underflow of tiny W."""
    s = float(np.max(np.abs(W)))
    if s == 0:
        return
    Ws = W / s
    scaled = float(np.sum((X @ Ws) ** 2)) if X is not None else _trace_quad(H, Ws)
    if scaled > 0:
        raise _v.NumericalError(
            f"the layer error underflowed float64: ||X W||^2 rounds to 0 for |W| up to {s:.3g}. "
            "Rescale W (and Q, L R).")


@dataclass(frozen=True)
class HessianSpectrum:
    """Cached eigendecomposition ``H = V diag(e) V^T`` (ascending ``e``).

    Reused across OLrC calls (refinement rounds, several ranks, several
    damping levels): ``H_lam^{+-1/2} = V diag((e + lam)^{+-1/2}) V^T``.

    Attributes
    ----------
    eigvals : (N,) ndarray
        ``e``, ascending; ``e_i = s_i^2`` for ``H = X^T X``.
    eigvecs : (N, N) ndarray
        ``V``, orthonormal columns.
    """

    eigvals: np.ndarray
    eigvecs: np.ndarray

    def top(self, r: int) -> np.ndarray:
        """``V_r``: the eigenvectors of the ``r`` largest eigenvalues, largest first."""
        return self.eigvecs[:, ::-1][:, :r].copy()

    def tail_energy(self, r: int) -> float:
        """``||X - X_r||_F^2 = sum_{i>r} s_i^2`` (negative rounding noise clipped to 0)."""
        e = np.clip(self.eigvals[::-1], 0.0, None)
        return float(np.sum(e[r:]))


def hessian_spectrum(H) -> HessianSpectrum:
    """Eigendecomposition of ``H`` for reuse (``scipy.linalg.eigh``).

    Parameters
    ----------
    H : (N, N) array_like
        Symmetric PSD.
    """

    H = _v.check_hessian(H)
    e, V = _memo.memo("eigh", H, _eigh)
    return HessianSpectrum(e.copy(), V.copy())


def eigvalsh_kept(H: np.ndarray) -> np.ndarray:
    """``scipy.linalg.eigvalsh(H)`` (ascending, read-only), kept per bytes of ``H``
    (:mod:`gilora_theory._memo`): the bound chains of one layer need them once."""
    return _memo.memo("eigvalsh", H, _eigvalsh)


def norm2_kept(A: np.ndarray, shift: float = 0.0) -> float:
    """``||A + shift I||_2`` of a symmetric ``A``: its largest eigenvalue in magnitude, from
    :func:`eigvalsh_kept` (a tolerance's ``||H_lam||_2`` without a full SVD each time)."""
    e = eigvalsh_kept(A)
    return float(max(abs(e[0] + shift), abs(e[-1] + shift)))


def _eigvalsh(H: np.ndarray) -> np.ndarray:
    return scipy.linalg.eigvalsh(H, check_finite=False)


def _eigh(H: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``scipy.linalg.eigh(H)``, kept per bytes of ``H`` by :func:`hessian_spectrum`
    (:mod:`gilora_theory._memo`): the methods of one comparison decompose one ``H`` once."""
    return scipy.linalg.eigh(H, check_finite=False)
