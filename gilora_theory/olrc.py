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

After a GPTQ pass on the same ``H_lam`` no factorisation is needed at all: the
pass's ``Psi`` (``Psi Psi^T = H_lam^{-1}``) and scaled errors ``E = Psi^{-1} (W - Q)``
give ``M* = Psi T_r(E)`` (``_olrc_psi``), certified a posteriori by
:class:`PsiCertificate` (``compress(..., "gptq+olrc")`` uses it).

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
from .objective import HessianSpectrum, _lam_is_safe, damped, hessian_spectrum, resolve_lam

__all__ = ["OLrCResult", "olrc", "range_tolerance", "SVD_ROUTES", "PsiCertificate"]


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
    """The partial route is used for ``r >= 1``, ``min(N, N_out) >= 512`` and ``r <= min / 32``
    (at ``N = N_out = 1024``, ``r = 32``: Gram matrix and ``?syevr`` 0.12 s, full SVD 0.6 s)."""
    n = min(shape)
    return r >= 1 and n >= 512 and 32 * r <= n


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
    """Kernel: optimal rank-r ``L, R`` for ``D = W - Q``; ``(L, R, value, a)``. Picks a route.

    - :func:`_olrc_gram` when ``K = D^T H_lam D`` is given (the caller checked
      :func:`_gram_route`), or ``svd="partial"``, :func:`_gram_route` holds and
      ``GD = H_lam D`` is given or ``spec`` is None (then ``GD`` comes from ``H``);
      with neither ``GD`` nor ``spec`` given, :func:`_olrc_cholesky` first (no product
      with ``H``; certified, else the Gram route);
    - else :func:`_olrc_partial` for ``svd="partial"`` where :func:`_partial_applies`;
    - else :func:`_olrc_full` (``spec`` computed from ``H`` when None).

    ``start`` seeds the eigensolver of the partial routes (e.g. the previous ``R^T``).
    """
    if K is not None:
        return _olrc_gram(D, GD, K, r, start)
    if svd == "partial" and (GD is not None or spec is None) and _gram_route(
            D.shape, r, lam, spec=spec, H=H):
        if GD is None and spec is None:
            out = _olrc_cholesky(D, H, r, lam)
            if out is not None:
                return out
        if GD is None:
            GD = H @ D
            GD += lam * D
        return _olrc_gram(D, GD, D.T @ GD, r, start)
    spec = hessian_spectrum(H) if spec is None else spec
    if svd == "partial" and _partial_applies(D.shape, r):
        out = _olrc_partial(D, spec, r, lam, start)
        if out is not None:
            return out
    return _olrc_full(D, spec, r, lam)


def _scaled_residual(D: np.ndarray, spec: HessianSpectrum, lam: float):
    """``B = diag(sqrt(e + lam)) V^T D`` and ``diag(e + lam)^{-1/2}`` on the range (0 off it)."""
    e = spec.eigvals + lam
    keep = e > range_tolerance(e)
    root = np.where(keep, np.sqrt(np.where(keep, e, 1.0)), 0.0)
    inv_root = np.where(keep, 1.0 / np.where(keep, root, 1.0), 0.0)
    return root[:, None] * (spec.eigvecs.T @ D), inv_root


def _olrc_full(D: np.ndarray, spec: HessianSpectrum, r: int, lam: float):
    """Alg. 2 of [1] as written: ``A = H_lam^{1/2} D`` (through ``B``), its full SVD, ``T_r``.

    ``L = H_lam^{-1/2} U_r diag(a_1..a_r)``, ``R = V_r^T``, value ``sum_{i>r} a_i^2``;
    ``a`` holds every singular value.
    """
    B, inv_root = _scaled_residual(D, spec, lam)
    Ub, a, Vt = scipy.linalg.svd(B, full_matrices=False, check_finite=False,
                                 lapack_driver="gesdd")
    return _factors(spec, inv_root, Ub[:, :r] * a[:r], Vt[:r]) + (float(np.sum(a[r:] ** 2)), a)


def _olrc_partial(D: np.ndarray, spec: HessianSpectrum, r: int, lam: float,
                  start: np.ndarray | None):
    """Alg. 2 from the top-r singular triplets of ``B`` only (:func:`_top_singular`); value
    the explicit residual ``||B - B V_r V_r^T||_F^2``; ``a = a_1..a_r``. None if not certified."""
    B, inv_root = _scaled_residual(D, spec, lam)
    top = _top_singular(B, r, start)
    if top is None:
        return None
    Ua, a, Vt = top                          # Ua = U_r diag(a_r) = B V_r
    return _factors(spec, inv_root, Ua, Vt) + (float(np.sum((B - Ua @ Vt) ** 2)), a)


def _factors(spec: HessianSpectrum, inv_root: np.ndarray, Ua: np.ndarray, Vt: np.ndarray):
    """``(L, R) = (V diag(inv_root) Ua, Vt)`` with the sign convention of :func:`_signs`."""
    sign = _signs(Vt)
    return spec.eigvecs @ (inv_root[:, None] * (Ua * sign)), Vt * sign[:, None]


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
        eigenpairs of the same matrix; for ``n >= 512`` and ``r <= n / 32``
        (otherwise the full route). The value is then the explicit residual
        ``||B - B V_r V_r^T||_F^2`` (exact to rounding like the full route) and
        ``singular_values`` holds ``a_1..a_r`` only.

    Returns
    -------
    OLrCResult
    """
    W = _v.as_matrix("W", W)
    Q = _v.as_matrix("Q", Q)
    _v.check_same_shape("Q", Q, "W", W)
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


# ---------------------------------------------------------------------------------------
# OLrC after a GPTQ pass: no new factorisation (issue 15)
# ---------------------------------------------------------------------------------------

def _olrc_psi(Psi: np.ndarray, E: np.ndarray, r: int):
    """Alg. 2 of [1] in GPTQ's coordinates: ``(L_p, R, value, a, slack, EV)`` (processing order).

    After a pass on ``H_lam``, ``W - Q = Psi E`` (Alg. 1) with ``Psi Psi^T = H_lam^{-1}``,
    so ``G = H_lam^{1/2} Psi`` is orthogonal and ``tr((D - Psi N)^T H_lam (D - Psi N))
    = ||E - N||_F^2``: the optimal branch is ``M* = Psi T_r(E)`` (Eckart-Young for
    ``E``), ``L_p = Psi E V_r``, ``R = V_r^T``, value ``||E - E V_r V_r^T||_F^2``
    (the tail ``sum_{i>r} a_i(E)^2``; ``||E||_F^2`` for ``r = 0``, with ``a`` empty: no
    SVD is computed). ``E``'s top-r triplets come from
    :func:`_top_singular` where :func:`_partial_applies` (else a full SVD).
    ``EV = E V_r`` (signs as ``R``); ``slack`` (:func:`_tail_slack`) bounds how far
    ``value`` may exceed the exact tail.
    """
    n = E.shape[0]
    if r == 0:                   # T_0(E) = 0: the value is ||E||_F^2, no singular values needed
        EV, Vt = np.zeros((n, 0)), np.zeros((0, E.shape[1]))
        value = _tail_energy(E, EV, Vt)
        return np.zeros((n, 0)), Vt, value, np.empty(0), _tail_slack(E, EV, value, 0.0), EV
    top = _top_singular(E, r) if _partial_applies(E.shape, r) else None
    if top is not None:
        EV, a, Vt = top
    else:
        U, a, Vt = scipy.linalg.svd(E, full_matrices=False, check_finite=False,
                                    lapack_driver="gesdd")
        EV, Vt = U[:, :r] * a[:r], Vt[:r]
    sign = _signs(Vt)
    EV, Vt = EV * sign, Vt * sign[:, None]
    value = _tail_energy(E, EV, Vt)
    L_p = _apply(Psi, EV) if r else np.zeros((n, 0))
    return L_p, Vt, value, a, _tail_slack(E, EV, value, float(a[0]) if a.size else 0.0), EV


def _tail_energy(E: np.ndarray, EV: np.ndarray, Vt: np.ndarray) -> float:
    """``||E - (E V) V^T||_F^2``: row sums (dot products), then NumPy's pairwise sum."""
    rows = np.empty(E.shape[0])
    for i in range(0, E.shape[0], _ROWS):
        B = E[i:i + _ROWS] - EV[i:i + _ROWS] @ Vt
        rows[i:i + _ROWS] = np.einsum("ij,ij->i", B, B)
    return float(np.sum(rows))


def _tail_slack(E: np.ndarray, EV: np.ndarray, value: float, a_1: float) -> float:
    """Bound on ``value - t_r(E)^2`` (``value`` never falls below it, by Ky Fan, to rounding).

    Three rounding terms, with ``u = eps``: the summation (``N_out`` terms per row,
    then a pairwise sum over ``N`` rows: ``(N_out + log2 N + 2) u value``); the
    entries of ``E - EV V^T`` (``(r + 1) u (|E| + |EV| |V^T|)``, bounded through
    ``||E||_F + sqrt(r) ||EV||_F``, doubled for the square); and the Ritz values'
    residual acceptance ``r n u a_1^2`` (:func:`gilora_theory._krylov.top_eigenpairs_explicit`,
    ``n`` the Gram order), assuming, as that solver does, that they are the top ``r``.
    """
    u = np.finfo(np.float64).eps
    N, N_out = E.shape
    r = EV.shape[1]
    size = float(np.sqrt(np.einsum("ij,ij->", E, E))) + np.sqrt(r) * float(np.linalg.norm(EV))
    return ((N_out + np.log2(max(N, 2)) + 2) * u * value
            + 2 * (r + 1) * u * size * np.sqrt(value) + r * min(N, N_out) * u * a_1 ** 2)


@dataclass(frozen=True)
class PsiCertificate:
    """A posteriori bounds on an optimum read off GPTQ's ``E`` (``_psi_certificate``).

    With ``G = H_lam^{1/2} Psi`` (``Psi`` of the pass, processing order),
    ``Phi = G^T G - I = Psi^T H_lam Psi - I``, its polar form ``G = U (I + Phi)^{1/2}``
    (``U`` orthogonal), ``f(x) = sqrt(1 + x) - 1`` and ``Delta = (W - Q)_p - Psi E``
    (the pass's rounding): ``H_lam^{1/2} (W - Q)_p = U (E + f(Phi) E) + H_lam^{1/2} Delta``.
    Since ``t_r(A) = min_{rank M <= r} ||A - M||_F`` is unitarily invariant and
    1-Lipschitz in the Frobenius norm, the optimum ``v*`` of Alg. 2 and the value
    ``F`` of the branch ``M = Psi T_r(E)`` satisfy::

        sqrt(v*) >= sqrt(value - slack) - ||f(Phi) E||_F - delta
        sqrt(F)  <= sqrt(value) + ||f(Phi) (E - T_r(E))||_F + delta

    and ``||f(Phi) Y||_F <= ||Phi Y||_F / 2 + ||Phi||_F^2 ||Y||_F / 4`` when
    ``||Phi||_F <= 1/2`` (``|f(x) - x / 2| <= x^2 / 4`` on ``|x| <= 1/2``). Each norm is
    bounded by Gaussian probes (``_psi_certificate``); only ``Phi``'s action on
    ``E`` enters to first order, which is why the bound is tight (``Phi`` acts on
    rounding noise; ``||Phi||_F`` itself only enters squared).

    Attributes
    ----------
    value : float
        ``||E - T_r(E)||_F^2`` as computed.
    lower, upper : float
        The bounds above, squared: ``lower <= v* <= F <= upper``.
    phi : float
        Bound on ``||Phi||_F``.
    delta : float
        Bound on ``||H_lam^{1/2} Delta||_F``.
    failure_probability : float
        Probability that one of the four probe bounds fails (union bound).
    """

    value: float
    lower: float
    upper: float
    phi: float
    delta: float
    failure_probability: float

    @property
    def relative_width(self) -> float:
        """``(upper - lower) / upper`` (0 when ``upper`` is 0): the certified relative accuracy."""
        return 0.0 if self.upper == 0 else (self.upper - self.lower) / self.upper


def _psi_certificate(W: np.ndarray, Q: np.ndarray, H: np.ndarray, lam: float, Psi: np.ndarray,
                     E: np.ndarray, perm: np.ndarray, value: float, slack: float,
                     EV: np.ndarray | None = None, Vt: np.ndarray | None = None, *,
                     probes: int = 32, beta: float = 10.0, rng=0) -> PsiCertificate:
    """Certify ``value`` (:class:`PsiCertificate`) by Gaussian probes, ``O((N^2 + N N_out) k)`` flops.

    For a matrix ``Y`` and ``k`` standard Gaussian probes ``z_i``,
    ``P(sum_i ||Y z_i||^2 <= k t ||Y||_F^2) <= (t e^{1 - t})^{k / 2}`` (Chernoff bound of
    a weighted chi-square; the worst case puts all weight on one singular value), so
    ``sqrt(beta mean_i ||Y z_i||^2)`` bounds ``||Y||_F`` except with that probability
    (``t = 1 / beta``; 32 probes, ``beta = 10``: about ``1.5e-10`` per bound). ``Q`` None:
    ``W`` is the residual ``D = W - Q`` itself. ``Psi`` is dense or a :class:`CholeskyPsi`. ``EV``,
    ``Vt`` give ``T_r(E) = EV Vt`` (None for ``r = 0``); ``perm`` is the pass's
    processing order (``(W - Q)_p = (W - Q)[perm]``).
    """
    rng = np.random.default_rng(rng)
    k = probes

    def H_lam_p(Y):                                   # H_lam in processing order
        Yf = np.empty_like(Y)
        Yf[perm] = Y
        return (H @ Yf)[perm] + lam * Y

    def Phi(Y):
        return _apply(Psi, H_lam_p(_apply(Psi, Y)), transpose=True) - Y

    def bound(sq_sum):
        return float(np.sqrt(max(beta * sq_sum / k, 0.0)))

    Z = rng.standard_normal((E.shape[1], k))
    EZ = E @ Z
    TZ = EZ if EV is None else EZ - EV @ (Vt @ Z)               # (E - T_r(E)) z
    phi = bound(np.sum(Phi(rng.standard_normal((E.shape[0], k))) ** 2))
    phi_E, phi_T = bound(np.sum(Phi(EZ) ** 2)), bound(np.sum(Phi(TZ) ** 2))
    DZ = W @ Z if Q is None else W @ Z - Q @ Z                  # (W - Q) z, or D z
    Delta_Z = DZ[perm] - _apply(Psi, EZ)
    delta = bound(np.sum(Delta_Z * H_lam_p(Delta_Z)))
    t = 1.0 / beta
    fail = 4.0 * (t * np.exp(1.0 - t)) ** (k / 2)
    if phi > 0.5:
        return PsiCertificate(value, 0.0, np.inf, phi, delta, float(fail))
    norm_E = float(np.sqrt(np.einsum("ij,ij->", E, E)))
    f_E = phi_E / 2 + phi * phi * norm_E / 4
    f_T = phi_T / 2 + phi * phi * np.sqrt(value) / 4
    lo = max(np.sqrt(max(value - slack, 0.0)) - f_E - delta, 0.0)
    hi = np.sqrt(value) + f_T + delta
    return PsiCertificate(value, float(lo * lo), float(hi * hi), phi, delta, float(fail))


class CholeskyPsi:
    """``Psi = C^{-T}`` from the Cholesky factor ``C`` of ``H_lam`` (``H_lam = C C^T``).

    Upper triangular, with ``Psi Psi^T = (C C^T)^{-1} = H_lam^{-1}``: any such ``Psi``
    serves ``_olrc_psi`` and ``_psi_certificate``; here ``E = Psi^{-1} D = C^T D``.
    Products with ``Psi`` are triangular solves (never formed).
    """

    def __init__(self, C: np.ndarray):
        self.C = C


def _apply(Psi, Y: np.ndarray, *, transpose: bool = False) -> np.ndarray:
    """``Psi Y`` (``Psi^T Y`` with ``transpose``) for a dense ``Psi`` or a :class:`CholeskyPsi`."""
    if isinstance(Psi, CholeskyPsi):       # Psi = C^{-T}, Psi^T = C^{-1}
        return scipy.linalg.solve_triangular(Psi.C, Y, lower=True, trans=0 if transpose else 1,
                                             check_finite=False)
    return Psi.T @ Y if transpose else Psi @ Y


def _olrc_cholesky(D: np.ndarray, H: np.ndarray, r: int, lam: float, tol: float = 1e-10):
    """OLrC given ``Q`` in ``(7/3) N^3`` flops (``N = N_out``), certified; None if not certified.

    ``H_lam = C C^T`` (Cholesky), ``E = C^T D`` (``D = W - Q``), ``Psi = C^{-T}``
    (:class:`CholeskyPsi`): the branch is ``Psi T_r(E)`` (``_olrc_psi``), kept when
    ``_psi_certificate`` bounds its relative width by ``tol``.
    Returns ``(L, R, value, a)`` like :func:`_olrc`.
    """
    try:
        C = scipy.linalg.cholesky(damped(H, lam), lower=True, overwrite_a=True,
                                  check_finite=False)
    except np.linalg.LinAlgError:
        return None
    E = scipy.linalg.blas.dtrmm(1.0, C, D, lower=1, trans_a=1)          # C^T D
    Psi = CholeskyPsi(C)
    L, R, value, a, slack, EV = _olrc_psi(Psi, E, r)
    cert = _psi_certificate(D, None, H, lam, Psi, E, np.arange(D.shape[0]), value, slack,
                            EV if r else None, R if r else None)
    if not cert.relative_width <= tol:
        return None
    return L, R, value, a
