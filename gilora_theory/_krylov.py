"""Top eigenpairs of a symmetric positive semi-definite matrix, iteratively (private).

Used where a dense solver would cost ``O(n^3)`` at BLAS-2 speed while only a
few eigenpairs are needed: :func:`top_eigenpairs` (block Krylov on an
operator) finds ``V_r`` of ``H`` for GILoRA (Alg. 3 of [1]), whose spectrum
decays; :func:`top_eigenpairs_explicit` (Chebyshev-filtered subspace
iteration on an explicit matrix) finds the top singular pairs of OLrC's ``B``
(Alg. 2 of [1]) from its Gram matrix, whose spectrum is flat. An answer is
accepted only with a residual certificate (``||A v_i - theta_i v_i|| <= n eps
theta_1`` for every returned pair, the accuracy of a dense solver); otherwise
the dense route is taken (by the caller after ``None``, or inside).

References
----------
[1] S. Zhang, R. Saab, "GPTQ-intrinsic LoRA", arXiv:2606.01412 (2026).
[2] C. Musco, C. Musco, "Randomized block Krylov methods for stronger and
    faster approximate singular value decomposition", NeurIPS (2015).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import scipy.linalg

__all__ = ["top_eigenpairs", "top_eigenpairs_explicit"]

_GROWTH = 0.5
"""Rayleigh-Ritz checks happen when the basis has grown by this fraction (at least a block)."""


def _orthonormal_complement(Z: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Orthonormal basis of ``Z`` made orthogonal to ``range(B)`` (``B`` orthonormal).

    Projected, orthonormalised, projected again and orthonormalised again, so
    the result is orthogonal to working precision even where ``Z`` lies almost
    inside ``range(B)`` (an invariant subspace, e.g. a multiple of the identity).
    """
    Z = Z - B @ (B.T @ Z)
    Qz = np.linalg.qr(Z)[0]
    Qz -= B @ (B.T @ Qz)
    return np.linalg.qr(Qz)[0]


def top_eigenpairs(apply: Callable[[np.ndarray], np.ndarray], n: int, r: int, *,
                   max_blocks: int, max_products: int, block: int | None = None):
    """``(theta, Y)``: the ``r`` largest eigenpairs of ``A`` (descending), or None.

    Parameters
    ----------
    apply : callable
        ``X -> A X`` for an ``(n, k)`` block, ``A`` symmetric PSD (``n x n``).
    n, r : int
        Order of ``A`` and number of pairs wanted (``r >= 1``).
    max_blocks : int
        Basis size, in blocks of ``k = r + max(16, r // 2)`` columns, before a
        restart from the top ``k`` Ritz vectors.
    max_products : int
        Budget of block products with ``A``; None is returned when it runs out.
    block : int, optional
        Block size ``k`` (default ``r + max(16, r // 2)``).

    Notes
    -----
    The basis ``B`` grows by products of its last block, orthogonalised
    against all of ``B``. With ``T = B^T A B = S diag(theta) S^T`` the Ritz
    residuals are ``||Z S_last||`` (``Z`` the part of ``A B_last`` outside
    ``range(B)``, ``S_last`` the last block's rows of ``S``). When these
    estimates meet ``n eps theta_1`` the residuals are recomputed explicitly
    before the pairs are accepted. The start block is Gaussian with a fixed
    seed (deterministic output).
    """
    k = min(r + max(16, r // 2) if block is None else block, n)
    eps = np.finfo(np.float64).eps
    X = np.linalg.qr(np.random.default_rng(0).standard_normal((n, k)))[0]
    cap = max(1, min(max_blocks, n // k)) * k
    B, AB, T = np.empty((n, cap)), np.empty((n, cap)), np.empty((cap, cap))
    products = 0
    while products < max_products:
        B[:, :k], AB[:, :k] = X, apply(X)
        T[:k, :k] = X.T @ AB[:, :k]
        products, m, checked = products + 1, k, 0
        while True:
            full = m + k > cap or products >= max_products
            if m >= checked + max(k, int(_GROWTH * checked)) or full:
                checked = m
                found = _ritz(B[:, :m], AB[:, :m], T[:m, :m], k, r, n * eps)
                if found[0] is not None:
                    return found[0], found[1]
                S = found[2]
            if full:
                X = np.linalg.qr(B[:, :m] @ S)[0]
                break
            Z = AB[:, m - k:m] - B[:, :m] @ (B[:, :m].T @ AB[:, m - k:m])
            B[:, m:m + k] = _orthonormal_complement(Z, B[:, :m])
            AB[:, m:m + k] = apply(B[:, m:m + k])
            T[:m + k, m:m + k] = B[:, :m + k].T @ AB[:, m:m + k]
            T[m:m + k, :m] = T[:m, m:m + k].T
            products, m = products + 1, m + k
    return None


def _ritz(B, AB, T, k, r, rel_tol):
    """Rayleigh-Ritz on ``range(B)``: ``(theta_r, Y_r, S)`` if certified, else ``(None, None, S)``.

    Each block of ``B`` is ``A`` times the previous one made orthogonal to all
    earlier blocks, so ``T = B^T A B`` is block tridiagonal up to rounding: its
    top ``k`` eigenpairs are taken from its band of half-width ``2k - 1``
    (``?sbevx``, ``O(m^2 k)`` instead of a dense ``O(m^3)``). Entries outside the
    band are rounding-sized; the explicit residual check below is what certifies.
    """
    m = T.shape[0]
    band = min(2 * k - 1, m - 1)
    ab = np.zeros((band + 1, m))
    for d in range(band + 1):
        ab[d, :m - d] = 0.5 * (np.diagonal(T, -d) + np.diagonal(T, d))
    theta, S = scipy.linalg.eig_banded(ab, lower=True, select="i", select_range=(m - k, m - 1),
                                       check_finite=False)
    theta, S = theta[::-1], S[:, ::-1]
    tol = rel_tol * abs(theta[0])
    Z = AB[:, m - k:] - B @ (B.T @ AB[:, m - k:])
    if np.all(np.linalg.norm(Z @ S[m - k:, :r], axis=0) <= tol):
        Y, AY = B @ S[:, :r], AB @ S[:, :r]
        if np.all(np.linalg.norm(AY - Y * theta[:r], axis=0) <= tol):
            return theta[:r], Y, S
    return None, None, S


_DENSE_ORDER = 2048
"""Unseeded :func:`top_eigenpairs_explicit` on matrices of at most this order goes straight
to LAPACK: on OLrC's flat Gram spectra (r = 32, 4-bit residuals of the benchmark layers,
2 cores) ``?syevr`` took 0.07 s at n = 1024 and 0.5 s at 2048, where the filtered iteration
took 0.55 s and 1.07 s; at 4096 the iteration is ahead (3.3-3.8 s against 3.7-5.2 s)."""

_FILTER_GROWTH = 1e8
"""Cap on the Chebyshev filter's gain ``T_m(x_0)`` between orthonormalisations (see below)."""


def top_eigenpairs_explicit(G: np.ndarray, r: int, *, start: np.ndarray | None = None,
                            max_products: int | None = None):
    """``(theta, Y, route)``: the ``r`` largest eigenpairs of an explicit symmetric PSD ``G``.

    Chebyshev-filtered subspace iteration [3] on a block of ``k = max(2 r, r + 16)``
    columns, accepted only with the residual certificate of
    :func:`top_eigenpairs` (``||G y_i - theta_i y_i|| <= n eps theta_1``, checked
    by an explicit product); ``route = "filtered"``. When the budget of
    ``max_products`` block products (default ``max(16, 3 n / k)``, about the
    cost of the dense solver) runs out, LAPACK's ``?syevr`` on the top ``r``
    indices is used instead (``route = "dense"``). ``start`` (``n x s``, ``s <= k``)
    seeds the block, e.g. the previous round's vectors in the refinement loop.
    Without ``start`` and ``max_products``, a matrix of order ``n <= 2048``
    (``_DENSE_ORDER``) goes to ``?syevr`` directly: there it is the faster route.

    Notes
    -----
    Each filter step applies ``p(G) = T_m((G - c I) / e) / T_m(x_0)`` with
    ``[c - e, c + e] = [0, theta_k]`` (the smallest Ritz value of the block
    bounds the unwanted part of the spectrum of a PSD matrix from above, to
    Ritz accuracy) and ``x_0 = (theta_1 - c) / e``, by the scaled three-term
    recurrence, so the wanted directions keep unit size. The degree ``m`` keeps
    ``T_m(x_0) <= 1e8``: the weakest wanted direction keeps at least ``1e-8``
    of the strongest before the block is orthonormalised again.

    References
    ----------
    [3] Y. Zhou, Y. Saad, "A Chebyshev-Davidson algorithm for large symmetric
        eigenproblems", SIAM J. Matrix Anal. Appl. 29 (2007).
    """
    n = G.shape[0]
    k = min(n, max(2 * r, r + 16))
    budget = max(16, 3 * n // k) if max_products is None else max_products
    if start is None and max_products is None and n <= _DENSE_ORDER:
        return _dense_top(G, r)
    tol_rel = n * np.finfo(np.float64).eps
    X = np.random.default_rng(0).standard_normal((n, k))
    if start is not None:
        X[:, :start.shape[1]] = start
    X = np.linalg.qr(X)[0]
    GX, products = G @ X, 1
    while True:
        T = X.T @ GX
        theta, S = scipy.linalg.eigh(0.5 * (T + T.T), check_finite=False)
        theta, S = theta[::-1], S[:, ::-1]
        X, GX = X @ S, GX @ S
        tol = tol_rel * abs(theta[0])
        if np.all(np.linalg.norm(GX[:, :r] - X[:, :r] * theta[:r], axis=0) <= tol):
            Y = X[:, :r]
            if np.all(np.linalg.norm(G @ Y - Y * theta[:r], axis=0) <= tol):
                return theta[:r].copy(), Y, "filtered"
        c = e = 0.5 * theta[-1]
        x0 = (theta[0] - c) / e if e > tol else 0.0
        if products >= budget or x0 <= 1.0 + 1e-3:
            break
        m = int(min(budget - products, max(1, np.arccosh(_FILTER_GROWTH) // np.arccosh(x0))))
        X = np.linalg.qr(_chebyshev_filter(G, X, m, c, e, x0))[0]
        GX, products = G @ X, products + m + 1
    return _dense_top(G, r)


def _dense_top(G: np.ndarray, r: int):
    """LAPACK's ``?syevr`` on the top ``r`` indices: ``(theta, Y, "dense")``, descending."""
    n = G.shape[0]
    theta, Y = scipy.linalg.eigh(G, subset_by_index=[n - r, n - 1], driver="evr",
                                 check_finite=False)
    return theta[::-1].copy(), Y[:, ::-1].copy(), "dense"


def _chebyshev_filter(G, X, m, c, e, x0):
    """``T_m((G - c I) / e) X / T_m(x_0)`` by the scaled recurrence (``m >= 1`` products)."""
    s = 1.0 / x0
    Y0, Y1 = X, (s / e) * (G @ X - c * X)
    for _ in range(m - 1):
        s_next = 1.0 / (2.0 * x0 - s)
        Y0, Y1 = Y1, (2.0 * s_next / e) * (G @ Y1 - c * Y1) - (s * s_next) * Y0
        s = s_next
    return Y1
