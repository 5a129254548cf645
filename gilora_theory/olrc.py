"""Optimal low-rank compensation (OLrC): Alg. 2 of [1] (THEORY.md section 3).

For a fixed ``Q``::

    min_{rank M <= r} tr((W - Q - M)^T H_lam (W - Q - M))

With ``A = H_lam^{1/2} (W - Q) = sum_i a_i u_i v_i^T`` (Eckart-Young in the
``H_lam`` inner product): ``M* = H_lam^{-1/2} T_r(A)``,
``L = H_lam^{-1/2} U_r diag(a_1..a_r)``, ``R = V_r^T`` and the optimal value is
``sum_{i>r} a_i^2``. With ``lam = 0`` and singular ``H`` the pseudo-inverse on
the range of ``H`` is used (directions in the null space cost nothing), which is
QERA's closed form [2].

Using the cached ``H = V diag(e) V^T``: ``A = V B`` with
``B = diag(sqrt(e + lam)) V^T (W - Q)``, so ``A`` and ``B`` share singular values
and ``U_A = V U_B``; only ``B`` is decomposed.

References
----------
[1] S. Zhang, R. Saab, "GPTQ-intrinsic LoRA", arXiv:2606.01412 (2026).
[2] C. Zhang et al., "QERA: an analytical framework for quantization error
    reconstruction", arXiv:2410.06040 (2024).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg

from . import _validation as _v
from .objective import HessianSpectrum, hessian_spectrum, resolve_lam

__all__ = ["OLrCResult", "olrc", "range_tolerance"]


@dataclass(frozen=True)
class OLrCResult:
    """Output of :func:`olrc`.

    Attributes
    ----------
    L : (N, r) ndarray
        ``H_lam^{-1/2} U_r diag(a_1..a_r)``.
    R : (r, N_out) ndarray
        ``V_r^T`` (orthonormal rows), each row's sign fixed so that its
        largest-magnitude entry is positive (deterministic output).
    value : float
        Optimal damped objective ``sum_{i>r} a_i^2`` (undamped when ``lam = 0``).
    singular_values : (min(N, N_out),) ndarray
        ``a_i``, descending.
    lam : float
        Absolute damping used.
    """

    L: np.ndarray
    R: np.ndarray
    value: float
    singular_values: np.ndarray
    lam: float


def range_tolerance(e: np.ndarray) -> float:
    """Eigenvalues of ``H_lam`` at or below ``N eps max(e)`` are treated as zero (its null space)."""
    return e.shape[0] * np.finfo(np.float64).eps * max(float(np.max(e)), 0.0)


def _olrc(D: np.ndarray, spec: HessianSpectrum, r: int, lam: float):
    """Kernel: optimal rank-r ``L, R`` for the residual ``D = W - Q``."""
    e = spec.eigvals + lam
    keep = e > range_tolerance(e)
    root = np.where(keep, np.sqrt(np.where(keep, e, 1.0)), 0.0)
    inv_root = np.where(keep, 1.0 / np.where(keep, root, 1.0), 0.0)
    V = spec.eigvecs
    B = root[:, None] * (V.T @ D)
    Ub, a, Vt = scipy.linalg.svd(B, full_matrices=False, check_finite=False,
                                 lapack_driver="gesdd")
    Ub, Vt = Ub[:, :r], Vt[:r]
    # Singular pairs are unique up to sign only; LAPACK's choice can change with the
    # BLAS thread count. Fix it: the largest-magnitude entry of each row of R is positive.
    sign = np.sign(Vt[np.arange(Vt.shape[0]), np.argmax(np.abs(Vt), axis=1)])
    sign[sign == 0] = 1.0
    L = V @ (inv_root[:, None] * (Ub * (a[:r] * sign)))
    return L, Vt * sign[:, None], float(np.sum(a[r:] ** 2)), a


def olrc(W, Q, H, rank: int, *, damp: float = 0.01, lam: float | None = None,
         spectrum: HessianSpectrum | None = None) -> OLrCResult:
    """Optimal rank-``rank`` compensation of ``W - Q`` under ``H_lam`` (Alg. 2 of [1]).

    Parameters
    ----------
    W, Q : (N, N_out) array_like
    H : (N, N) array_like
        ``X^T X``.
    rank : int
        ``r`` in [0, min(N, N_out)].
    damp : float, default 0.01
        Relative damping ``alpha`` (``lam = alpha * mean(diag H)``).
    lam : float, optional
        Absolute damping, overriding ``damp``; ``0`` gives the undamped optimum.
    spectrum : HessianSpectrum, optional
        Cached ``hessian_spectrum(H)``; computed if omitted.

    Returns
    -------
    OLrCResult
    """
    W = _v.as_matrix("W", W)
    Q = _v.as_matrix("Q", Q)
    if Q.shape != W.shape:
        raise ValueError(f"Q must have W's shape {W.shape}; got {Q.shape}")
    H = _v.check_hessian(H, W.shape[0])
    r = _v.check_rank(rank, *W.shape)
    lam = resolve_lam(H, damp, lam)
    spec = spectrum if spectrum is not None else hessian_spectrum(H)
    if spec.eigvecs.shape[0] != W.shape[0]:
        raise ValueError(f"spectrum is for N = {spec.eigvecs.shape[0]}, W has N = {W.shape[0]}")
    with np.errstate(over="ignore", invalid="ignore"):
        L, R, value, a = _olrc(W - Q, spec, r, lam)
    _v.check_finite_output("OLrC", "Rescale W and Q, or H.", L=L, R=R, value=value)
    return OLrCResult(L, R, value, a, lam)
