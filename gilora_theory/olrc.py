"""Optimal low-rank compensation (OLrC): Alg. 2 of [1] (docs/theory.md, Alg. 1-4).

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
from ._krylov import top_eigenpairs_explicit
from .objective import HessianSpectrum, _lam_is_safe, hessian_spectrum, resolve_lam

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
        was used).
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


def _partial_applies(shape: tuple[int, int], r: int) -> bool:
    """The partial route is used for ``r >= 1``, ``min(N, N_out) >= 512`` and ``r <= min / 64``."""
    n = min(shape)
    return r >= 1 and n >= 512 and 64 * r <= n


def _gram_route(shape: tuple[int, int], r: int, lam: float, *,
                spec: HessianSpectrum | None = None, H: np.ndarray | None = None) -> bool:
    """:func:`_olrc_gram` applies: the partial route, ``N_out <= N`` and ``H_lam`` positive definite.

    Positive definiteness is read from the cached spectrum when given, else
    from ``lam`` alone (:func:`gilora_theory.objective._lam_is_safe`: the damping
    surely lifts every eigenvalue of ``H_lam`` above the rounding level), so no
    eigendecomposition of ``H`` is needed at the default damping.
    """
    if not (_partial_applies(shape, r) and shape[1] <= shape[0]):
        return False
    if spec is None:
        return _lam_is_safe(H, lam)
    e = spec.eigvals + lam
    return bool(np.all(e > range_tolerance(e)))


def _olrc(D: np.ndarray, spec: HessianSpectrum | None, r: int, lam: float, *,
          svd: str = "full", GD: np.ndarray | None = None, K: np.ndarray | None = None,
          start: np.ndarray | None = None, H: np.ndarray | None = None):
    """Kernel: optimal rank-r ``L, R`` for the residual ``D = W - Q``; ``(L, R, value, a)``.

    ``svd="full"``: LAPACK's SVD of ``B``; ``a`` holds every singular value.
    ``svd="partial"`` (where :func:`_partial_applies`): the top-r pairs only
    (``a = a_1..a_r``) from the Gram matrix of ``B`` by
    :func:`gilora_theory._krylov.top_eigenpairs_explicit`, through
    :func:`_olrc_gram` (no ``B``) where :func:`_gram_route` holds and
    ``GD = H_lam D`` is given (the refinement loop carries it, and
    ``K = D^T H_lam D`` if known: a given ``K`` means the caller checked
    :func:`_gram_route`) or ``spec`` is None (then ``GD`` is computed from
    ``H``); otherwise :func:`_top_singular` decomposes ``B``. The value is then
    the explicit residual. ``spec`` None: computed from ``H`` when needed.
    ``start`` seeds the eigensolver (e.g. the previous ``R^T``).
    """
    if K is not None:
        return _olrc_gram(D, GD, K, r, start)
    if svd == "partial" and (GD is not None or spec is None) and _gram_route(
            D.shape, r, lam, spec=spec, H=H):
        if GD is None:
            GD = H @ D
            GD += lam * D
        return _olrc_gram(D, GD, D.T @ GD, r, start)
    spec = hessian_spectrum(H) if spec is None else spec
    e = spec.eigvals + lam
    keep = e > range_tolerance(e)
    partial = svd == "partial" and _partial_applies(D.shape, r)
    root = np.where(keep, np.sqrt(np.where(keep, e, 1.0)), 0.0)
    inv_root = np.where(keep, 1.0 / np.where(keep, root, 1.0), 0.0)
    V = spec.eigvecs
    B = root[:, None] * (V.T @ D)
    top = _top_singular(B, r, start) if partial else None
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


def _olrc_gram(D: np.ndarray, GD: np.ndarray, K: np.ndarray, r: int,
               start: np.ndarray | None):
    """Partial OLrC from ``GD = H_lam D`` and ``K = D^T H_lam D = B^T B`` (``H_lam`` PD).

    ``K`` may be symmetric to rounding only (a general product, or updated by
    the refinement loop); the eigensolver reads it through products and, on its
    dense fallback, through its lower triangle.

    The top-r eigenvectors ``V_r`` of ``K`` are ``B``'s right singular vectors,
    ``a_i = sqrt(theta_i)``, and ``M* = H_lam^{-1/2} T_r(A) = D V_r V_r^T``:
    ``L = D V_r``, ``R = V_r^T``. Value ``tr(E^T H_lam E)`` with ``E = D - L R``,
    ``H_lam E = GD - (GD V_r) V_r^T`` (``8 N N_out r`` flops after ``K``),
    summed over row blocks (no ``N x N_out`` temporaries).
    """
    theta, Vr, _route = top_eigenpairs_explicit(K, r, start=start)
    Vr = Vr * _signs(Vr.T)
    L, GDV = D @ Vr, GD @ Vr
    value = 0.0
    for i in range(0, D.shape[0], _ROWS):
        rows = slice(i, i + _ROWS)
        E = D[rows] - L[rows] @ Vr.T
        value += float(np.einsum("ij,ij->", E, GD[rows] - GDV[rows] @ Vr.T))
    return L, Vr.T.copy(), value, np.sqrt(np.maximum(theta, 0.0))


_ROWS = 256
"""Rows per block of the explicit residual in :func:`_olrc_gram` (temporaries stay in cache)."""


def _top_singular(B: np.ndarray, r: int, start: np.ndarray | None = None):
    """``(B V_r, a_1..a_r, V_r^T)``: top-r singular triplets of ``B`` from its Gram matrix.

    The Gram matrix of the smaller side (``B^T B``, or ``B B^T`` when ``B`` is
    wide; ``N N_out n`` flops) goes to
    :func:`gilora_theory._krylov.top_eigenpairs_explicit`; ``a_i = ||B v_i||``
    (``||B^T u_i||`` when wide). ``start`` seeds the right singular vectors
    (tall ``B`` only). None if a returned singular value is exactly 0 (wide).
    """
    N, N_out = B.shape
    wide = N < N_out
    Kb = B @ B.T if wide else B.T @ B
    Y = top_eigenpairs_explicit(Kb, r, start=None if wide else start)[1]
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
        ``"partial"``: only the top-r singular pairs, from the Gram matrix of ``B``
        (``B^T B``, or ``B B^T`` when ``B`` is wide) by Chebyshev-filtered
        subspace iteration, accepted only with residuals ``<= n eps a_1^2`` (``n``
        the Gram matrix's order), else LAPACK's ``?syevr`` for the top ``r``
        eigenpairs of the same matrix; for ``n >= 512`` and ``r <= n / 64``
        (otherwise the full route). The value is then the explicit residual
        ``||B - B V_r V_r^T||_F^2`` (exact to rounding like the full route) and
        ``singular_values`` holds ``a_1..a_r`` only.

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
    if spectrum is not None and spectrum.eigvecs.shape[0] != W.shape[0]:
        raise ValueError(f"spectrum is for N = {spectrum.eigvecs.shape[0]}, W has N = {W.shape[0]}")
    with np.errstate(over="ignore", invalid="ignore"):
        L, R, value, a = _olrc(W - Q, spectrum, r, lam, svd=svd, H=H)
    _v.check_finite_output("OLrC", "Rescale W and Q, or H.", L=L, R=R, value=value)
    return OLrCResult(L, R, value, a, lam)
