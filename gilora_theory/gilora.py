"""GPTQ-intrinsic LoRA (GILoRA): Alg. 3 of [1] (docs/theory.md, "GPTQ-intrinsic LoRA").

Fix ``L`` (by default ``V_r``, the top-r eigenvectors of ``H``; optionally on
its own ``b_L``-bit grid first so the pass absorbs that rounding). With the
augmented calibration ``[X, X L]`` the augmented Hessian is::

    H_aug = [[H,       H L    ],
             [L^T H,   L^T H L]]          ((N + r) square, singular undamped)

Damp it, take its ``Psi``, set ``W_aug = [W; 0]`` and run the Alg. 1 loop for
``t = 1..N`` only. Rows ``N+1..N+r`` are never quantized; they absorb the
diffused error and are ``R`` at the end. Then (tested facts):
``r = 0`` is GPTQ exactly; ``R = (L^T H L + lam I)^{-1} L^T H (W - Q)``;
``Q`` is GPTQ run on the Schur complement ``S`` (:func:`schur_complement`).

Damping convention **[open in the paper]**: ``damp_from="augmented"`` (default,
``lam = alpha * mean(diag H_aug)``, as the public re-implementation does) or
``damp_from="hessian"`` (``lam = alpha * mean(diag H)``).

References
----------
[1] S. Zhang, R. Saab, "GPTQ-intrinsic LoRA", arXiv:2606.01412 (2026).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg

from . import _memo
from . import _validation as _v
from ._krylov import top_eigenpairs
from .grid import Grid, fit_grid
from .gptq import PassSummary, _check_common, _prepare, _run
from .objective import HessianSpectrum

__all__ = ["GILoRAResult", "gilora", "augmented_hessian", "schur_complement",
           "top_eigenvectors", "eigen_subspace", "EigenSubspace", "relative_gap", "DAMP_FROM", "SUBSPACE_TOL"]

DAMP_FROM = ("augmented", "hessian")

_EPS = np.finfo(np.float64).eps
SUBSPACE_TOL = float(np.sqrt(_EPS))
"""Largest accepted Davis-Kahan bound on ``sin angle(range(V_r), true top-r subspace)``.

Half of float64's digits: a subspace known to ``sqrt(eps)`` moves ``W~`` by far less
than a grid step, so ``Q`` agrees between eigensolvers except at exact rounding ties.
The same threshold decides whether the gap at ``r`` is *resolvable* (below)."""


@dataclass(frozen=True)
class GILoRAResult(PassSummary):
    """Output of :func:`gilora`.

    Attributes
    ----------
    Q : (N, N_out) ndarray
        Quantized weights on the grid.
    L : (N, r) ndarray
        The fixed left factor (``V_r``, possibly quantized).
    R : (r, N_out) ndarray
        Final working rows ``N+1..N+r`` (the ridge solution given ``Q``).
    lam : float
        Absolute damping of the augmented Hessian actually used.
    psi_diag : (N,) ndarray
        ``Psi_tt`` of the augmented factor for the quantized steps, in processing order.
    step_terms : (N,) ndarray
        Per-step terms; their sum is ``E_lam_aug = E + lam ||W - Q||^2 + lam ||R||^2``.
    clipped : (N, N_out) ndarray of bool
        Entries rounded with ``|w~ - q| > delta / 2``.
    perm : (N,) ndarray of int
        Processing order of the input rows.
    L_grid : Grid or None
        The grid ``L`` was quantized to, if any.
    damp_from : str
        ``"augmented"`` or ``"hessian"``.
    g_r : float or None
        Relative eigengap ``(s_r^2 - s_{r+1}^2) / s_r^2`` of ``H`` at ``r``
        (:class:`EigenSubspace`); None for ``r = 0`` or a supplied ``L``.
    gap_resolvable : bool or None
        Whether float64 determines ``span(V_r)`` (hence ``Q``) to
        :data:`SUBSPACE_TOL` (:class:`EigenSubspace`); None when ``g_r`` is.
    """

    Q: np.ndarray
    L: np.ndarray
    R: np.ndarray
    lam: float
    psi_diag: np.ndarray
    step_terms: np.ndarray
    clipped: np.ndarray
    perm: np.ndarray
    L_grid: Grid | None
    damp_from: str
    g_r: float | None = None
    gap_resolvable: bool | None = None


@dataclass(frozen=True)
class EigenSubspace:
    """Top-r eigenvectors of ``H`` with the certificate of their subspace.

    Attributes
    ----------
    V : (N, r) ndarray
        ``V_r``, orthonormal, largest eigenvalue first, each column's
        largest-magnitude entry positive.
    theta : (min(r + 1, N),) ndarray
        ``s_1^2 >= ... >= s_{r+1}^2``: the top eigenvalues of ``H`` (Ritz values
        on the Krylov route); empty for ``r = 0`` (nothing is computed).
    g_r : float or None
        Relative eigengap ``(s_r^2 - s_{r+1}^2) / s_r^2`` (``s_{N+1} = 0``); None for
        ``r = 0`` and 0.0 when ``s_r = 0``.
    sin_theta_bound : float
        Davis-Kahan bound ``||H V_r - V_r diag(theta_r)||_2 / delta`` on the sine of the
        largest angle between ``range(V_r)`` and the exact top-r eigenspace, with
        ``delta = s_r^2 - s_{r+1}^2`` less the residual of the ``(r+1)``-th pair
        (``inf`` when ``delta <= 0``); 0.0 for ``r = 0``.
    resolvable : bool
        Whether float64 resolves the subspace at all: the bound a backward-stable
        dense solver achieves, ``N eps s_1^2 / (s_r^2 - s_{r+1}^2)``, is at most
        :data:`SUBSPACE_TOL`. When False, ``span(V_r)`` (and GILoRA's ``Q``) depends on
        rounding: C13/C14 report such cases apart.
    route : str
        ``"krylov"`` (block Krylov accepted by its subspace certificate) or ``"dense"``.
    """

    V: np.ndarray
    theta: np.ndarray
    g_r: float | None
    sin_theta_bound: float
    resolvable: bool
    route: str


def top_eigenvectors(H: np.ndarray, r: int) -> np.ndarray:
    """``V_r``: eigenvectors of the ``r`` largest eigenvalues of ``H``, largest first.

    For large ``H`` (``N >= 1024``, ``r <= N / 64``) a restarted block Krylov
    iteration with Rayleigh-Ritz runs first (``_krylov.top_eigenpairs``): ``H``
    enters only through products with ``N x k`` blocks (``k = r + max(16, r/2)``),
    at most ``max(20, N / (2 k))`` of them (about the cost of the dense solver's
    reduction to tridiagonal form), and its answer is accepted only when every
    Ritz pair has residual ``||H v_i - theta_i v_i|| <= N eps theta_1`` (the
    accuracy of a dense solver; the eigenvector error is that over the gap at
    ``r``) and the Davis-Kahan bound on the subspace angle is at most
    :data:`SUBSPACE_TOL` (:func:`eigen_subspace`). Otherwise,
    and for small ``H``, ``scipy.linalg.eigh(subset_by_index=...)`` is used: no
    full eigendecomposition either way. When ``theta_r = theta_{r+1}`` the top-r
    subspace is not unique and both routes return one valid choice.
    Each column's sign is fixed so that its largest-magnitude entry is positive
    (deterministic output; the Krylov start block has a fixed seed).

    Parameters
    ----------
    H : (N, N) array_like
        Symmetric positive semi-definite.
    r : int
        In [0, N].
    """
    H = _v.check_hessian(H)
    return _top_eigenvectors(H, _v.check_int("r", r, low=0, high=H.shape[0]))


def _top_eigenvectors(H: np.ndarray, r: int) -> np.ndarray:
    """Kernel of :func:`top_eigenvectors` (validated inputs)."""
    return _eigen_subspace(H, r).V


def eigen_subspace(H, r: int) -> EigenSubspace:
    """``V_r`` of ``H`` with its relative gap ``g_r`` and a Davis-Kahan subspace certificate.

    The Krylov route of :func:`top_eigenvectors` is accepted only when, beyond every
    pair's residual, the *subspace* is certified: ``sin_theta_bound <=``
    :data:`SUBSPACE_TOL` (Davis-Kahan sin-theta theorem [2]: ``||sin Theta||_2 <=
    ||H Y - Y Theta||_2 / delta`` for a separation ``delta`` of the Ritz values from the
    rest of the spectrum). Otherwise the dense solver (``?syevr`` on the top ``r + 1``
    indices) is used, whose bound is ``N eps s_1^2 / (s_r^2 - s_{r+1}^2)``.

    Parameters
    ----------
    H : (N, N) array_like
        Symmetric positive semi-definite.
    r : int
        In [0, N].

    Returns
    -------
    EigenSubspace

    References
    ----------
    [2] C. Davis, W. M. Kahan, "The rotation of eigenvectors by a perturbation. III",
        SIAM J. Numer. Anal. 7 (1970).
    """
    H = _v.check_hessian(H)
    return _eigen_subspace(H, _v.check_int("r", r, low=0, high=H.shape[0]))


def _eigen_subspace(H: np.ndarray, r: int) -> EigenSubspace:
    """Kernel of :func:`eigen_subspace` (validated inputs)."""
    N = H.shape[0]
    if r == 0:
        return EigenSubspace(np.zeros((N, 0)), np.zeros(0), None, 0.0, True, "dense")
    theta, V, bound, route = _memo.memo("subspace", H, _top_pairs, r)   # kept per bytes of H
    theta = theta.copy()
    idx = np.argmax(np.abs(V), axis=0)
    V = V * np.sign(V[idx, np.arange(r)])
    g_r, resolvable = relative_gap(theta, r, N)
    return EigenSubspace(V, theta, g_r, float(bound), resolvable, route)


def _top_pairs(H: np.ndarray, r: int) -> tuple:
    """``(theta, V, bound, route)``: certified block Krylov for ``N >= 1024``, ``64 r <= N``,
    else (or uncertified) the dense solver."""
    N = H.shape[0]
    found = None
    if N >= 1024 and 64 * r <= N:
        found = _krylov_subspace(H, r)
    return _dense_subspace(H, r) if found is None else found


def _dense_bound(theta: np.ndarray, r: int, N: int) -> float:
    """``N eps s_1^2 / (s_r^2 - s_{r+1}^2)``: Davis-Kahan bound of a backward-stable solver."""
    gap = theta[r - 1] - (theta[r] if r < N else 0.0)
    return float(N * _EPS * max(theta[0], 0.0) / gap) if gap > 0 else np.inf


def relative_gap(theta, r: int, N: int) -> tuple:
    """``(g_r, resolvable)`` of :class:`EigenSubspace` from the top eigenvalues of ``H``.

    Parameters
    ----------
    theta : (>= min(r + 1, N),) array_like
        ``s_1^2 >= s_2^2 >= ...``, the largest eigenvalues of ``H`` (descending).
    r : int
        Rank, in [0, N]; ``r = 0`` gives ``(None, None)``.
    N : int
        Order of ``H`` (``s_{N+1} = 0``).
    """
    if r == 0:
        return None, None
    theta = np.asarray(theta, dtype=np.float64)
    s_r2, s_next2 = theta[r - 1], (theta[r] if r < N else 0.0)
    g_r = float((s_r2 - s_next2) / s_r2) if s_r2 > 0 else 0.0
    return g_r, bool(_dense_bound(theta, r, N) <= SUBSPACE_TOL)


def _krylov_subspace(H: np.ndarray, r: int):
    """``(theta, V, bound, "krylov")`` from block Krylov for ``r + 1`` pairs, or None if uncertified."""
    N = H.shape[0]
    k = r + 1 + max(16, (r + 1) // 2)
    found = top_eigenpairs(lambda X: H @ X, N, r + 1, max_blocks=10,
                           max_products=max(20, N // (2 * k)))
    if found is None:
        return None
    theta, Y = found
    res = np.linalg.norm(H @ Y - Y * theta, axis=0)
    delta = theta[r - 1] - theta[r] - res[r]
    bound = np.linalg.norm(H @ Y[:, :r] - Y[:, :r] * theta[:r], 2) / delta if delta > 0 else np.inf
    if bound > SUBSPACE_TOL:
        return None
    return theta, Y[:, :r], bound, "krylov"


def _dense_subspace(H: np.ndarray, r: int):
    """``(theta, V, bound, "dense")`` from ``?syevr`` on the top ``min(r + 1, N)`` indices."""
    N = H.shape[0]
    lo = max(N - r - 1, 0)
    try:
        theta, V = scipy.linalg.eigh(H, subset_by_index=[lo, N - 1], check_finite=False)
    except np.linalg.LinAlgError:  # ?syevr can fail on an exactly repeated eigenvalue
        theta, V = np.zeros(0), np.zeros((N, 0))
    if V.shape[1] != N - lo:  # ?syevr may return fewer vectors for a tight eigenvalue cluster
        theta, V = scipy.linalg.eigh(H, check_finite=False)
        theta, V = theta[lo:], V[:, lo:]
    theta, V = theta[::-1], V[:, ::-1][:, :r]
    return theta, V, _dense_bound(theta, r, N), "dense"


def augmented_hessian(H, L) -> np.ndarray:
    """``[[H, H L], [L^T H, L^T H L]]`` (Alg. 3 of [1]); exactly symmetric.

    Parameters
    ----------
    H : (N, N) array_like
        Symmetric positive semi-definite.
    L : (N, r) array_like
    """
    H = _v.check_hessian(H)
    L = _v.as_matrix("L", L, allow_empty=True)
    if L.shape[0] != H.shape[0]:
        raise ValueError(f"L must have H's {H.shape[0]} rows; got shape {L.shape}")
    return _augmented_hessian(H, L)


def _augmented_hessian(H: np.ndarray, L: np.ndarray) -> np.ndarray:
    """Kernel of :func:`augmented_hessian` (validated inputs)."""
    HL = H @ L
    LHL = L.T @ HL
    LHL = 0.5 * (LHL + LHL.T)
    return np.block([[H, HL], [HL.T, LHL]])


def schur_complement(H, L, lam: float) -> np.ndarray:
    """``S = H_lam - H L (L^T H L + lam I)^{-1} L^T H`` (the Hessian GILoRA's Q sees).

    Parameters
    ----------
    H : (N, N) array_like
    L : (N, r) array_like
    lam : float
        Absolute damping (> 0 unless ``L^T H L`` is invertible).
    """
    H = _v.check_hessian(H)
    L = _v.as_matrix("L", L, allow_empty=True)
    lam = _v.check_float("lam", lam)
    HL = H @ L
    K = L.T @ HL + lam * np.eye(L.shape[1])
    S = H + lam * np.eye(H.shape[0]) - HL @ scipy.linalg.solve(K, HL.T, assume_a="pos")
    return 0.5 * (S + S.T)


def gilora(W, H, grid: Grid, rank: int, *, L=None, l_bits: int | None = None,
           damp: float = 0.01, lam: float | None = None, damp_from: str = "augmented",
           blocksize: int = 128, route: str = "cholesky", act_order: bool = False,
           dead_channels: bool = True, damp_policy: str = "raise",
           spectrum: HessianSpectrum | None = None) -> GILoRAResult:
    """GPTQ-intrinsic LoRA (Alg. 3 of [1]): quantize ``W`` while a rank-r branch absorbs the error.

    Parameters
    ----------
    W : (N, N_out) array_like
    H : (N, N) array_like
    grid : Grid
        Fixed grid of ``W``.
    rank : int
        ``r`` in [0, min(N, N_out)]; ignored in favour of ``L.shape[1]`` if ``L`` is given.
    L : (N, r) array_like, optional
        Left factor; default ``V_r`` (top-r eigenvectors of ``H``).
    l_bits : int, optional
        Quantize ``L`` on its own per-column grid of ``l_bits`` bits before the pass.
    damp : float, default 0.01
        Relative damping ``alpha``.
    lam : float, optional
        Absolute damping of ``H_aug``, overriding ``damp`` and ``damp_from``.
    damp_from : {"augmented", "hessian"}, default "augmented"
        ``lam = alpha * mean(diag H_aug)`` or ``alpha * mean(diag H)`` (open in [1]).
    blocksize, route, act_order, dead_channels, damp_policy
        As in :func:`gilora_theory.gptq.gptq`; ``act_order`` permutes the N
        quantized rows only.
    spectrum : HessianSpectrum, optional
        Cached spectrum of ``H``, used for ``V_r`` when given.

    Returns
    -------
    GILoRAResult
    """
    W, H = _check_common(W, H, grid, blocksize, route, damp_policy)
    if damp_from not in DAMP_FROM:
        raise ValueError(f"damp_from must be one of {DAMP_FROM}; got {damp_from!r}")
    g_r = resolvable = None
    if L is None:
        r = _v.check_rank(rank, *W.shape)
        sub = _spectrum_subspace(spectrum, r) if spectrum is not None else _eigen_subspace(H, r)
        L, g_r, resolvable = sub.V, sub.g_r, (sub.resolvable if r > 0 else None)
    else:
        L = _v.as_matrix("L", L, allow_empty=True)
        if L.shape[0] != W.shape[0]:
            raise ValueError(f"L must have W's {W.shape[0]} rows; got shape {L.shape}")
    L_grid = None
    if l_bits is not None and L.shape[1] > 0:
        L_grid = fit_grid(L, l_bits)
        L = L_grid.quantize(L)
    Wd, Hd = _prepare(W, H, dead_channels)
    # The dead-channel H_ii := 1 goes into the N x N block only; the branch blocks use H
    # as given, so a dead row stays decoupled and R is the ridge solution for the real H.
    H_aug = _augmented_hessian(H, L)
    H_aug[:W.shape[0], :W.shape[0]] = Hd
    if lam is None:
        alpha = _v.check_damp(damp)
        # mean(diag H_aug) over diag H and diag L^T H L, on the H as given; computed as
        # GPTQ computes alpha * mean(diag H), so that r = 0 gives GPTQ's lam bit for bit.
        diag = np.diag(H)
        if damp_from == "augmented":
            diag = np.concatenate([diag, np.einsum("ij,ij->j", L, H @ L)])
        lam = float(alpha * np.mean(diag))
    else:
        lam = _v.check_float("lam", lam)
    W_aug = np.vstack([Wd, np.zeros((L.shape[1], W.shape[1]))])
    Q, R, lam, pdiag, terms, clipped, perm = _run(
        W_aug, H_aug, grid, W.shape[0], lam=lam, route=route, blocksize=blocksize,
        act_order=act_order, damp_policy=damp_policy)
    return GILoRAResult(Q, L, R, lam, pdiag, terms, clipped, perm, L_grid, damp_from, g_r,
                        resolvable)


def _spectrum_subspace(spectrum: HessianSpectrum, r: int) -> EigenSubspace:
    """:class:`EigenSubspace` from a cached full eigendecomposition (the dense route)."""
    N = spectrum.eigvals.shape[0]
    theta = spectrum.eigvals[::-1][:r + 1]
    if r == 0:
        return EigenSubspace(np.zeros((N, 0)), theta, None, 0.0, True, "dense")
    g_r, resolvable = relative_gap(theta, r, N)
    return EigenSubspace(spectrum.top(r), theta, g_r, _dense_bound(theta, r, N), resolvable, "dense")
