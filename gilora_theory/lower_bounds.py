"""The information-theoretic lower bound of [1] and the class K (docs/theory.md, "Lower bound").

For a symmetric alphabet of half-width ``B = 2^{b-1}`` (``2B + 1`` symbols), a
rank budget r and ``||L R||_F <= rho``, the bound reads (squared-error convention)::

    E  >~  s_min(X)^2 / ( (2B + 1)^{2J/(J-1)} (c_net c_vol rho)^{2/(J-1)} ),
    J  =  N N_out / ( r (N + N_out + 1) + e ),

with ``c_net = 41``, ``c_vol = sqrt(pi e / 6)`` and ``e = 2`` extra dimensions
(:func:`lower_bound`; all three are keyword parameters, docs/theory.md marks the formula
[likely]). It is 0 exactly when ``J <= 1`` (or ``s_min = 0``).

It is a **minimax** statement: *some* W in the class K cannot be represented
better, for every Q on the alphabet and every admissible ``L R``; it is not a
bound for every W. The volume argument behind it (docs/lower_bound.md, and
:func:`volume_lower_bound` with every constant explicit) shows more: the set of
W in K whose optimum is below the bound has small volume (:func:`bad_fraction`),
so W drawn uniformly from K (:func:`sample_class_k`) meets the bound with high
probability.

The class K (our reading of the paper's "non-spiky unit ball")::

    K = { W in R^{N x N_out} : |W_ij| <= a },   a = sqrt(3 / (N N_out))

the cube whose uniform distribution has ``E ||W||_F^2 = 1``; its volume
``(2a)^D``, ``D = N N_out``, is what produces ``c_vol = sqrt(pi e / 6)``:
``vol(ball of radius R) / vol(K) <= (c_vol R)^D``.

Domain: the formula is decreasing in b, r and rho, finite as ``J -> 1+`` and 0 at
``J = 1`` only when ``(2B + 1) c_net c_vol rho >= 1``; smaller rho is refused.

References
----------
[1] S. Zhang, R. Saab, "GPTQ-intrinsic LoRA", arXiv:2606.01412 (2026).
[2] E. J. Candes, Y. Plan, "Tight oracle inequalities for low-rank matrix recovery
    from a minimal number of noisy random measurements", IEEE Trans. Inf. Theory
    57(4) (2011), Lemma 3.1 (epsilon-nets of rank-r matrices), arXiv:1001.0339.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import _validation as _v
from .grid import fit_grid

__all__ = ["NET_CONSTANT", "VOLUME_CONSTANT", "EXTRA_DIMS", "class_k_radius", "sample_class_k",
           "in_class_k", "degrees_ratio", "lower_bound", "log_lower_bound",
           "volume_lower_bound", "bad_fraction", "ScalingComparison", "scaling_comparison"]

NET_CONSTANT = 41.0
"""``c_net`` of [1]'s bound."""

VOLUME_CONSTANT = math.sqrt(math.pi * math.e / 6.0)
"""``c_vol = sqrt(pi e / 6)``: ``(ball volume / vol K)^{1/D} <= c_vol R`` for K the cube."""

EXTRA_DIMS = 2
"""``e`` in ``J = N N_out / (r (N + N_out + 1) + e)`` of [1]."""

_CONVENTIONS = ("rank", "alphabet")


def class_k_radius(N: int, N_out: int) -> float:
    """``a = sqrt(3 / (N N_out))``: the entry bound of the class K."""
    N = _v.check_int("N", N, low=1)
    N_out = _v.check_int("N_out", N_out, low=1)
    return math.sqrt(3.0 / (N * N_out))


def sample_class_k(N: int, N_out: int, *, rng=None) -> np.ndarray:
    """Draw W uniformly from the class K (``|W_ij| <= sqrt(3 / (N N_out))``).

    Parameters
    ----------
    N, N_out : int
        Shape of W (rows = input features).
    rng : Generator, int or None
        Through ``numpy.random.default_rng``.

    Returns
    -------
    W : (N, N_out) ndarray
        ``E ||W||_F^2 = 1``.
    """
    a = class_k_radius(N, N_out)
    return np.random.default_rng(rng).uniform(-a, a, size=(N, N_out))


def in_class_k(W) -> bool:
    """Whether every ``|W_ij| <= sqrt(3 / (N N_out))``."""
    W = _v.as_matrix("W", W)
    return bool(np.max(np.abs(W)) <= class_k_radius(*W.shape))


def degrees_ratio(N: int, N_out: int, rank: int, *, extra_dims: float = EXTRA_DIMS) -> float:
    """``J = N N_out / (r (N + N_out + 1) + e)``: entries per continuous degree of freedom.

    ``r (N + N_out + 1)`` is the exponent of the epsilon-net of rank-r matrices [2];
    ``e`` counts further continuous parameters (``e = 2`` in [1]). ``inf`` when the
    denominator is 0.
    """
    N = _v.check_int("N", N, low=1)
    N_out = _v.check_int("N_out", N_out, low=1)
    r = _v.check_int("rank", rank, low=0, high=min(N, N_out))  # r <= min(N, N_out)
    e = _v.check_float("extra_dims", extra_dims)
    d = r * (N + N_out + 1) + e
    return math.inf if d == 0 else N * N_out / d


def log_lower_bound(s_min: float, bits: int, rank: int, N: int, N_out: int, rho: float = 1.0,
                    *, net_constant: float = NET_CONSTANT, volume_constant: float = VOLUME_CONSTANT,
                    extra_dims: float = EXTRA_DIMS, convention: str = "rank") -> float:
    """Natural log of :func:`lower_bound`; ``-inf`` exactly when ``J <= 1`` or ``s_min = 0``.

    Same parameters as :func:`lower_bound`; never underflows.
    """
    s_min = _v.check_float("s_min", s_min)
    b = _v.check_bits("bits", bits)
    rho = _v.check_float("rho", rho, low=0.0, low_open=True)
    c_net = _v.check_float("net_constant", net_constant, low=0.0, low_open=True)
    c_vol = _v.check_float("volume_constant", volume_constant, low=0.0, low_open=True)
    if convention not in _CONVENTIONS:
        raise ValueError(f"convention must be one of {_CONVENTIONS}; got {convention!r}")
    J = degrees_ratio(N, N_out, rank, extra_dims=extra_dims)
    A = 2.0 ** b + 1.0                      # 2B + 1 symbols, B = 2^{b-1}
    if A * c_net * c_vol * rho < 1:
        raise ValueError(
            f"rho = {rho:.3g} is below 1 / ((2B + 1) c_net c_vol) = {1 / (A * c_net * c_vol):.3g}: "
            "there the formula increases with r and blows up as J -> 1. Use a larger rho")
    if J <= 1 or s_min == 0:
        return -math.inf
    if math.isinf(J):
        return 2 * math.log(s_min) - 2 * math.log(A * (c_vol if convention == "alphabet" else 1.0))
    p, q = 2 * J / (J - 1), 2 / (J - 1)
    if convention == "rank":                 # [1]: (2B+1)^{2J/(J-1)} (c_net c_vol rho)^{2/(J-1)}
        return 2 * math.log(s_min) - p * math.log(A) - q * math.log(c_net * c_vol * rho)
    return 2 * math.log(s_min) - p * math.log(A * c_vol) - q * math.log(c_net * rho)


def lower_bound(s_min: float, bits: int, rank: int, N: int, N_out: int, rho: float = 1.0,
                *, net_constant: float = NET_CONSTANT, volume_constant: float = VOLUME_CONSTANT,
                extra_dims: float = EXTRA_DIMS, convention: str = "rank") -> float:
    """The minimax lower bound of [1] on ``E = ||X (W - Q - L R)||_F^2`` (docs/theory.md).

    ``s_min^2 / ((2B + 1)^{2J/(J-1)} (c_net c_vol rho)^{2/(J-1)})`` with ``B = 2^{b-1}``,
    ``J = N N_out / (r (N + N_out + 1) + e)``; 0 when ``J <= 1``. For W in the class K
    (:func:`sample_class_k`), full-column-rank X, any Q on an alphabet of at most
    ``2B + 1`` symbols and ``rank(L R) <= r``, ``||L R||_F <= rho``: sup over K of the
    best error is at least this (up to the constants). Underflows to 0.0 for J very
    close to 1; :func:`log_lower_bound` does not.

    Parameters
    ----------
    s_min : float
        Smallest singular value of X (``sqrt(lambda_min(H))``).
    bits : int
        ``b``; the alphabet has ``2B + 1 = 2^b + 1`` symbols.
    rank : int
        ``r >= 0``.
    N, N_out : int
        Shape of W.
    rho : float, default 1.0
        ``||L R||_F`` budget, in the units of K (``||W||_F ~ 1``); must satisfy
        ``(2B + 1) c_net c_vol rho >= 1``.
    net_constant : float, default 41
        ``c_net`` (an epsilon-net constant; 9 in [2]'s lemma, 41 in [1]).
    volume_constant : float, default sqrt(pi e / 6)
        ``c_vol`` (ball-to-K volume ratio per dimension).
    extra_dims : float, default 2
        ``e`` in J.
    convention : {"rank", "alphabet"}, default "rank"
        Where ``c_vol`` sits: with rho under the exponent ``2/(J-1)`` ([1]), or with
        ``2B + 1`` under ``2J/(J-1)`` (as the volume argument produces it, see
        :func:`volume_lower_bound`).

    Returns
    -------
    float
    """
    return math.exp(log_lower_bound(s_min, bits, rank, N, N_out, rho, net_constant=net_constant,
                                    volume_constant=volume_constant, extra_dims=extra_dims,
                                    convention=convention))


def _dims(N, N_out, rank) -> tuple[int, int]:
    """``D = N N_out`` and ``d = r (N + N_out + 1)`` (validated: a rank-``r`` ``L R`` of an
    ``N x N_out`` layer needs ``r <= min(N, N_out)``)."""
    N = _v.check_int("N", N, low=1)
    N_out = _v.check_int("N_out", N_out, low=1)
    return N * N_out, _v.check_int("rank", rank, low=0, high=min(N, N_out)) * (N + N_out + 1)


def _log_volume_ratio(D: int) -> float:
    """``log(vol(unit ball in R^D) / vol(K))`` with ``vol K = (12 / D)^{D/2}`` (<= D log c_vol)."""
    return 0.5 * D * math.log(math.pi) - math.lgamma(0.5 * D + 1) - 0.5 * D * math.log(12.0 / D)


def _log_fraction(log_tau: float, D: int, d: int, log_A: float, rho: float) -> float:
    """Log of the volume-fraction bound at radius ``tau = eta / s_min`` (theta = d / D)."""
    theta = d / D
    log_R = log_tau - math.log1p(-theta)
    net = 0.0 if d == 0 else max(0.0, d * (math.log(9 * rho) - math.log(theta) - log_R))
    return D * log_A + net + _log_volume_ratio(D) + D * log_R


def bad_fraction(E: float, s_min: float, rank: int, N: int, N_out: int, rho: float = 1.0, *,
                 levels: int) -> float:
    """Upper bound on the fraction (by volume) of K whose best error is below ``E``.

    For a fixed alphabet of ``levels`` symbols, rank budget r and ``||L R||_F <= rho``::

        frac <= min(1, A^D max(1, (9 rho / eps)^d) vol(B_D(R)) / vol(K)),
        R = tau / (1 - theta), eps = theta R, tau = sqrt(E) / s_min, theta = d / D,

    ``d = r (N + N_out + 1)``, ``D = N N_out`` (docs/lower_bound.md). Hence
    ``P(best error < E) <= frac`` for W uniform on K.

    Parameters
    ----------
    E : float
        Error level (>= 0).
    s_min : float
        Smallest singular value of X (> 0).
    rank, N, N_out : int
    rho : float, default 1.0
    levels : int
        Alphabet size A (``2^b + 1`` for [1]'s symmetric alphabet, ``2^b`` for the grid).

    Returns
    -------
    float in [0, 1]
    """
    E = _v.check_float("E", E)
    s_min = _v.check_float("s_min", s_min, low=0.0, low_open=True)
    rho = _v.check_float("rho", rho, low=0.0, low_open=True)
    A = _v.check_int("levels", levels, low=1)
    D, d = _dims(N, N_out, rank)
    if d >= D:
        return 1.0
    if E == 0:
        return 0.0
    return math.exp(min(0.0, _log_fraction(0.5 * math.log(E) - math.log(s_min), D, d,
                                           math.log(A), rho)))


def volume_lower_bound(s_min: float, rank: int, N: int, N_out: int, rho: float = 1.0, *,
                       levels: int) -> float:
    """The minimax bound the volume argument proves, every constant explicit.

    The largest ``E`` with :func:`bad_fraction` ``(E) < 1`` (so some W in K has best error
    ``>= E``). In closed form, ``theta = d / D``, ``J0 = D / d``, when the net term is active::

        E* = s_min^2 (1 - theta)^2 (V A^D)^{-2/(D-d)} (9 rho / theta)^{-2/(J0-1)}

    with ``V = vol(B_D(1)) / vol(K) <= c_vol^D``; ``E* = s_min^2 (V A^D)^{-2/D}`` for r = 0.
    0 when ``d >= D``. Parameters as in :func:`bad_fraction`.
    """
    s_min = _v.check_float("s_min", s_min)
    rho = _v.check_float("rho", rho, low=0.0, low_open=True)
    A = _v.check_int("levels", levels, low=1)
    D, d = _dims(N, N_out, rank)
    if d >= D or s_min == 0:
        return 0.0
    base = D * math.log(A) + _log_volume_ratio(D)
    if d == 0:
        return s_min ** 2 * math.exp(-2 * base / D)
    theta = d / D
    log_R = -(base + d * (math.log(9 * rho) - math.log(theta))) / (D - d)
    if theta * math.exp(log_R) > 9 * rho:        # net of a single point suffices
        log_R = -base / D
    return s_min ** 2 * (1 - theta) ** 2 * math.exp(2 * log_R)


@dataclass(frozen=True)
class ScalingComparison:
    """Upper (Cor. 3.9) against lower bound for well-conditioned X (``H = s^2 I``).

    Arrays are indexed ``[i, k]`` for ``N_values[i]`` and ``bits_values[k]``.

    Attributes
    ----------
    N_values : (n,) ndarray of int
    bits_values : (m,) ndarray of int
    rank : int
    upper : (n, m) ndarray
        ``C (tail_r + (N + r) lam)`` with ``C`` from the grid of a W drawn from K.
    upper_r0 : (n, m) ndarray
        The same with r = 0.
    lower : (n, m) ndarray
        :func:`lower_bound` with rank r.
    lower_r0 : (n, m) ndarray
        :func:`lower_bound` with r = 0.
    ratio : (n, m) ndarray
        ``upper / lower`` (inf where the lower bound is 0).
    capacity : (n,) ndarray
        ``1 - r / N``: the compensation-capacity factor.
    upper_rank_factor, lower_rank_factor : (n, m) ndarray
        ``upper / upper_r0`` (~ ``1 - r/N`` for small damping) and ``lower / lower_r0``.
    """

    N_values: np.ndarray
    bits_values: np.ndarray
    rank: int
    upper: np.ndarray
    upper_r0: np.ndarray
    lower: np.ndarray
    lower_r0: np.ndarray
    ratio: np.ndarray
    capacity: np.ndarray
    upper_rank_factor: np.ndarray
    lower_rank_factor: np.ndarray


def scaling_comparison(N_values, bits_values, *, rank: int = 0, N_out: int | None = None,
                       s: float = 1.0, damp: float = 0.01, rho: float = 1.0,
                       rng=None) -> ScalingComparison:
    """Dominant scaling (docs/theory.md, "Lower bound and the class K"): upper/lower bound as N and b vary.

    For ``X = s I`` (every ``s_i = s``, so ``s_min = s`` and ``tail_r = (N - r) s^2``)
    and W drawn from K (``N x N_out``, default ``N_out = N``), the upper bound is
    ``C ((N - r) s^2 + (N + r) lam)`` with ``lam = damp s^2`` and C from the
    ``b``-bit grid of W; for W in K, ``C ~ 3 / (N (2^b - 1)^2)`` so the upper bound
    is ``~ 3 (1 - r/N) s^2 / (2^b - 1)^2``, while the lower bound is
    ``~ s^2 / (2^b + 1)^2`` times ``((2B+1) c_net c_vol rho)^{-2/(J-1)}``.

    Parameters
    ----------
    N_values, bits_values : sequence of int
    rank : int, default 0
    N_out : int, optional
    s : float, default 1.0
    damp : float, default 0.01
    rho : float, default 1.0
    rng : Generator, int or None

    Returns
    -------
    ScalingComparison
    """
    Ns = np.array([_v.check_int("N", n, low=1) for n in N_values], dtype=int)
    bs = np.array([_v.check_bits("bits", b) for b in bits_values], dtype=int)
    r = _v.check_int("rank", rank, low=0, high=int(Ns.min()))
    s = _v.check_float("s", s, low=0.0, low_open=True)
    lam = _v.check_damp(damp) * s * s
    rng = np.random.default_rng(rng)
    out = {k: np.zeros((len(Ns), len(bs))) for k in ("upper", "upper_r0", "lower", "lower_r0")}
    for i, N in enumerate(Ns):
        n_out = N if N_out is None else _v.check_int("N_out", N_out, low=1)
        W = sample_class_k(N, n_out, rng=rng)
        for k, b in enumerate(bs):
            C = 0.25 * float(np.sum(fit_grid(W, int(b)).step ** 2))
            out["upper"][i, k] = C * ((N - r) * s * s + (N + r) * lam)
            out["upper_r0"][i, k] = C * (N * s * s + N * lam)
            out["lower"][i, k] = lower_bound(s, int(b), r, int(N), n_out, rho)
            out["lower_r0"][i, k] = lower_bound(s, int(b), 0, int(N), n_out, rho)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(out["lower"] > 0, out["upper"] / np.where(out["lower"] > 0, out["lower"], 1), np.inf)
        lower_f = np.where(out["lower_r0"] > 0, out["lower"] / np.where(out["lower_r0"] > 0, out["lower_r0"], 1), 0.0)
    return ScalingComparison(Ns, bs, r, out["upper"], out["upper_r0"], out["lower"], out["lower_r0"],
                             ratio, 1 - r / Ns, out["upper"] / out["upper_r0"], lower_f)
