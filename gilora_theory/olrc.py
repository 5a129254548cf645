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
from ._krylov import top_eigenpairs
from .objective import HessianSpectrum, hessian_spectrum, resolve_lam

__all__ = ["OLrCResult", "olrc", "range_tolerance", "SVD_ROUTES"]


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
        ``a_i``, descending (``(r,)``, the top ``r`` only, when ``svd="partial"``
        took its certified Krylov route).
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


SVD_ROUTES = ("full", "partial")


def _olrc(D: np.ndarray, spec: HessianSpectrum, r: int, lam: float, *, svd: str = "full",
          H: np.ndarray | None = None, GD: np.ndarray | None = None):
    """Kernel: optimal rank-r ``L, R`` for the residual ``D = W - Q``.

    ``svd="full"``: LAPACK's SVD of ``B``; ``a`` holds every singular value.
    ``svd="partial"``: the top-r singular pairs only, ``a = a_1..a_r``, with the
    dense route as fallback. When ``H`` is given and ``H_lam`` is positive
    definite, :func:`_olrc_gram` works from ``H`` alone (no ``B``); otherwise
    :func:`_top_singular` decomposes ``B`` and the value is the explicit
    residual ``||B - B V_r V_r^T||_F^2``. ``GD = H_lam D`` may be passed when known.
    """
    e = spec.eigvals + lam
    keep = e > range_tolerance(e)
    if svd == "partial" and H is not None and keep.all():
        found = _olrc_gram(D, H, r, lam, GD)
        if found is not None:
            return found
    root = np.where(keep, np.sqrt(np.where(keep, e, 1.0)), 0.0)
    inv_root = np.where(keep, 1.0 / np.where(keep, root, 1.0), 0.0)
    V = spec.eigvecs
    B = root[:, None] * (V.T @ D)
    top = _top_singular(B, r) if svd == "partial" else None
    if top is not None:
        Ua, a, Vt = top                          # Ua = U_r diag(a_r) = B V_r
        value = float(np.sum((B - Ua @ Vt) ** 2))
    else:
        Ub, a, Vt = scipy.linalg.svd(B, full_matrices=False, check_finite=False,
                                     lapack_driver="gesdd")
        Ua, Vt, value = Ub[:, :r] * a[:r], Vt[:r], float(np.sum(a[r:] ** 2))
    sign = _signs(Vt)
    L = V @ (inv_root[:, None] * (Ua * sign))
    return L, Vt * sign[:, None], value, a


def _signs(Vt: np.ndarray) -> np.ndarray:
    """Singular pairs are unique up to sign only; LAPACK's choice can change with the
    BLAS thread count. Fix it: the largest-magnitude entry of each row of R is positive."""
    sign = np.sign(Vt[np.arange(Vt.shape[0]), np.argmax(np.abs(Vt), axis=1)])
    sign[sign == 0] = 1.0
    return sign


def _olrc_gram(D: np.ndarray, H: np.ndarray, r: int, lam: float, GD: np.ndarray | None):
    """Partial OLrC from ``H`` alone, for positive definite ``H_lam``; None if not certified.

    ``B^T B = D^T H_lam D``: its top-r eigenvectors ``V_r`` (block Krylov with the
    residual certificate of :func:`gilora_theory._krylov.top_eigenpairs`, products
    ``X -> D^T (H (D X)) + lam D^T (D X)``, ``6 N N_out k`` flops each) are ``B``'s
    right singular vectors, ``a_i = sqrt(theta_i)``, and
    ``M* = H_lam^{-1/2} T_r(A) = D V_r V_r^T``: ``L = D V_r``, ``R = V_r^T``.
    Value ``tr(E^T H_lam E)`` with ``E = D - L R``, from ``H_lam D`` (``GD``,
    computed when not given): ``H_lam E = GD - (GD V_r) V_r^T``.
    """
    N, N_out = D.shape
    if r == 0 or N_out < 512 or 64 * r > N_out or N_out > N:
        return None
    k = r + max(16, r // 2)

    def apply(X):
        DX = D @ X
        return D.T @ (H @ DX + lam * DX)

    found = top_eigenpairs(apply, N_out, r, max_blocks=N_out // (2 * k), max_products=N_out // k)
    if found is None:
        return None
    theta, Vr = found
    sign = _signs(Vr.T)
    Vr = Vr * sign
    GD = H @ D + lam * D if GD is None else GD
    L = D @ Vr
    E = D - L @ Vr.T
    value = float(np.einsum("ij,ij->", E, GD - (GD @ Vr) @ Vr.T))
    return L, Vr.T.copy(), value, np.sqrt(np.maximum(theta, 0.0))


def _top_singular(B: np.ndarray, r: int):
    """``(B V_r, a_1..a_r, V_r^T)`` from the Gram operator of ``B``, or None.

    Block Krylov on ``B^T B`` (or on ``B B^T`` when ``B`` is wide) with the
    residual certificate of :func:`gilora_theory._krylov.top_eigenpairs`
    (``n eps a_1^2``, ``n = min(B.shape)``); used when ``n >= 512`` and
    ``r <= n / 64``, within ``n / k`` block products (``4 N N_out k`` flops each),
    i.e. below the cost of the dense SVD. ``a_i = ||B v_i||``.
    """
    N, N_out = B.shape
    n = min(N, N_out)
    if r == 0 or n < 512 or 64 * r > n:
        return None
    k = r + max(16, r // 2)
    wide = N < N_out
    apply = (lambda X: B @ (B.T @ X)) if wide else (lambda X: B.T @ (B @ X))
    found = top_eigenpairs(apply, n, r, max_blocks=n // (2 * k), max_products=n // k)
    if found is None:
        return None
    Y = found[1]
    if wide:                                     # Y = U_r: B^T U_r = V_r diag(a)
        BtU = B.T @ Y
        a = np.linalg.norm(BtU, axis=0)
        return None if np.any(a == 0) else (Y * a, a, (BtU / a).T)
    BV = B @ Y
    return BV, np.linalg.norm(BV, axis=0), Y.T


def olrc(W, Q, H, rank: int, *, damp: float = 0.01, lam: float | None = None,
         spectrum: HessianSpectrum | None = None, svd: str = "full") -> OLrCResult:
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
    svd : {"full", "partial"}, default "full"
        ``"full"``: LAPACK's SVD of ``B`` (``singular_values`` holds every ``a_i``).
        ``"partial"``: only the top-r singular pairs, by block Krylov on the Gram
        operator ``B^T B = D^T H_lam D`` (from ``H`` itself when ``H_lam`` is
        positive definite, then ``L = D V_r``; else on ``B``), accepted only with
        residuals ``<= n eps a_1^2`` (``n`` the Gram operator's order; otherwise
        the full SVD is used), for ``n >= 512`` and ``r <= n / 64``. The value is
        then the explicit residual ``tr(E^T H_lam E)``, ``E = D - L R`` (exact to
        rounding like the full route) and ``singular_values`` holds ``a_1..a_r`` only.

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
    if svd not in SVD_ROUTES:
        raise ValueError(f"svd must be one of {SVD_ROUTES}; got {svd!r}")
    lam = resolve_lam(H, damp, lam)
    spec = spectrum if spectrum is not None else hessian_spectrum(H)
    if spec.eigvecs.shape[0] != W.shape[0]:
        raise ValueError(f"spectrum is for N = {spec.eigvecs.shape[0]}, W has N = {W.shape[0]}")
    with np.errstate(over="ignore", invalid="ignore"):
        L, R, value, a = _olrc(W - Q, spec, r, lam, svd=svd, H=H)
    _v.check_finite_output("OLrC", "Rescale W and Q, or H.", L=L, R=R, value=value)
    return OLrCResult(L, R, value, a, lam)
