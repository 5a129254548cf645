"""Calibration data: a synthetic gallery of ``X`` with exactly known spectra, and weights.

Every calibration matrix is built as ``X = U diag(s) V^T`` with orthonormal
``U`` (m x k) and ``V`` (N x k), ``k = min(m, N)``, so its singular values ``s``
are known by construction and so are its tail energies
``||X - X_r||_F^2 = sum_{i > r} s_i^2`` (docs/theory.md, "Notation"), the quantity in the
upper bound of Cor. 3.9 of [1]. The families differ in the profile ``p`` of
``s = scale sqrt(m) p`` and in how ``U`` and ``V`` are drawn:

================== ===============================================================
``isotropic``      ``p_i = 1`` (``H / m`` is ``scale^2 I`` up to rotation)
``power_law``      ``p_i = i^(-exponent)``
``exponential``    ``p_i = exp(-rate (i - 1))``
``outliers``       ``p_i = magnitude`` for ``i <= n_outliers``, else 1; the top
                   right singular vectors are close to coordinate vectors (a few
                   dominant input channels, as in transformer activations [2])
``low_rank_noise`` ``p_i = 1`` for ``i <= rank``, else ``noise`` (a rank-``rank``
                   signal over a flat noise floor)
``heavy_rows``     ``p_i = 1``; ``U`` spans a Gaussian matrix whose rows are scaled
                   by Student-t draws, so a few rows (tokens) carry most energy
``rank_deficient`` ``m < N``: ``p_i = i^(-exponent)`` for ``i <= m``, else 0
                   (``H`` is exactly singular)
``conditioned``    ``p_i`` geometric from 1 to ``1 / cond`` (``kappa(X) = cond``,
                   ``kappa(H) = cond^2``)
================== ===============================================================

``i`` runs from 1. Weight generators: ``gaussian``, ``heavy_tailed`` (Student t)
and ``class_k`` (the class K of the lower bound, from
:func:`gilora_theory.lower_bounds.sample_class_k`). Every generator takes an
``rng`` (Generator, int or None, through ``numpy.random.default_rng``).

References
----------
[1] S. Zhang, R. Saab, "GPTQ-intrinsic LoRA", arXiv:2606.01412 (2026).
[2] T. Dettmers et al., "LLM.int8()", arXiv:2208.07339 (2022) (outlier features).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import _validation as _v
from ..lower_bounds import sample_class_k

__all__ = [
    "KINDS", "WEIGHT_KINDS", "Calibration", "from_spectrum", "calibration", "weights",
    "isotropic", "power_law", "exponential", "outliers", "low_rank_noise", "heavy_rows",
    "rank_deficient", "conditioned",
    "gaussian_weights", "heavy_tailed_weights", "class_k_weights",
]


@dataclass(frozen=True)
class Calibration:
    """A calibration matrix with exactly known singular values.

    Attributes
    ----------
    X : (m, N) ndarray
        ``U diag(s) V^T``.
    s : (N,) ndarray
        Singular values as built, descending, zero-padded to length N when m < N.
    tail : (N + 1,) ndarray
        ``tail[r] = ||X - X_r||_F^2 = sum_{i > r} s_i^2``; ``tail[0] = ||X||_F^2``,
        ``tail[N] = 0``.
    kind : str
    params : dict
        The generator's parameters (for tables and provenance).
    """

    X: np.ndarray
    s: np.ndarray
    tail: np.ndarray
    kind: str
    params: dict = field(default_factory=dict)

    @property
    def H(self) -> np.ndarray:
        """``H = X^T X``, (N, N)."""
        return self.X.T @ self.X

    def tail_energy(self, r: int) -> float:
        """``||X - X_r||_F^2`` for a rank ``r`` in [0, N]."""
        return float(self.tail[_v.check_int("r", r, low=0, high=self.s.size)])


def _orthonormal(G: np.ndarray) -> np.ndarray:
    """Orthonormal basis of the columns of ``G`` (QR with the sign fix that makes it Haar)."""
    Q, R = np.linalg.qr(G)
    return Q * np.where(np.diag(R) < 0, -1.0, 1.0)


def _tails(s: np.ndarray) -> np.ndarray:
    """``tail[r] = sum_{i > r} s_i^2`` for r = 0..N."""
    return np.append(np.cumsum((s ** 2)[::-1])[::-1], 0.0)


def _build(s, m, N, rng, kind, params, *, U=None, V=None) -> Calibration:
    """``X = U diag(s_k) V^T`` with Haar factors unless given; ``s`` has length N."""
    k = min(m, N)
    U = _orthonormal(rng.standard_normal((m, k))) if U is None else U
    V = _orthonormal(rng.standard_normal((N, k))) if V is None else V
    X = (U * s[:k]) @ V.T
    return Calibration(X, s, _tails(s), kind, dict(params, m=m, N=N))


def _sizes(m, N, *, full_rank: bool = True) -> tuple[int, int]:
    m = _v.check_int("m", m, low=1)
    N = _v.check_int("N", N, low=1)
    if full_rank and m < N:
        raise ValueError(f"m must be >= N = {N} for a full-rank X; got m = {m}. "
                         f"Use rank_deficient for m < N")
    if not full_rank and m >= N:
        raise ValueError(f"rank_deficient needs m < N; got m = {m}, N = {N}")
    return m, N


def _scaled(profile: np.ndarray, m: int, scale: float) -> np.ndarray:
    return _v.check_float("scale", scale, low=0.0, low_open=True) * np.sqrt(m) * profile


def from_spectrum(s, m: int, *, rng=None, kind: str = "custom") -> Calibration:
    """``X = U diag(s) V^T`` (m x N) with Haar-random ``U``, ``V`` and the given ``s``.

    Parameters
    ----------
    s : (N,) array_like
        Non-negative singular values; sorted descending here. When ``m < N``
        only ``m`` of them can be non-zero.
    m : int
        Rows (samples) of ``X``.
    rng : Generator, int or None
    kind : str, default "custom"
        Label stored in the result.
    """
    s = _v.as_matrix("s", s, ndim=1)
    if np.any(s < 0):
        raise ValueError(f"s must be non-negative; smallest entry is {s.min():.3g}")
    m = _v.check_int("m", m, low=1)
    s = np.sort(s)[::-1]
    if m < s.size and np.any(s[m:] > 0):
        raise ValueError(f"with m = {m} < N = {s.size} rows, at most m singular values can "
                         f"be non-zero; got {np.count_nonzero(s)}")
    return _build(s, m, s.size, np.random.default_rng(rng), kind, {})


def isotropic(m: int, N: int, *, scale: float = 1.0, rng=None) -> Calibration:
    """All singular values ``scale sqrt(m)``: ``p_i = 1`` (module table).

    ``m >= N``; ``H = m scale^2 I`` exactly (up to rounding).
    """
    m, N = _sizes(m, N)
    s = _scaled(np.ones(N), m, scale)
    return _build(s, m, N, np.random.default_rng(rng), "isotropic", {"scale": scale})


def power_law(m: int, N: int, *, exponent: float = 1.0, scale: float = 1.0,
              rng=None) -> Calibration:
    """Power-law decay ``s_i = scale sqrt(m) i^(-exponent)``, ``m >= N``."""
    m, N = _sizes(m, N)
    a = _v.check_float("exponent", exponent)
    s = _scaled(np.arange(1.0, N + 1) ** -a, m, scale)
    return _build(s, m, N, np.random.default_rng(rng), "power_law",
                  {"exponent": a, "scale": scale})


def exponential(m: int, N: int, *, rate: float = 0.1, scale: float = 1.0,
                rng=None) -> Calibration:
    """Exponential decay ``s_i = scale sqrt(m) exp(-rate (i - 1))``, ``m >= N``."""
    m, N = _sizes(m, N)
    rate = _v.check_float("rate", rate)
    s = _scaled(np.exp(-rate * np.arange(N)), m, scale)
    return _build(s, m, N, np.random.default_rng(rng), "exponential",
                  {"rate": rate, "scale": scale})


def outliers(m: int, N: int, *, n_outliers: int = 2, magnitude: float = 20.0,
             spread: float = 0.1, scale: float = 1.0, rng=None) -> Calibration:
    """A few dominant input channels: ``s_i = scale sqrt(m) magnitude`` for ``i <= n_outliers``.

    The channels are ``n_outliers`` distinct coordinates ``c_1..c_k`` drawn by
    ``rng``. The top right singular vectors are the Gram-Schmidt orthonormalisation
    of ``e_{c_j} + spread g_j / sqrt(N)`` (``g_j`` standard Gaussian, completed by
    Haar directions): about ``spread^2 / (1 + spread^2)`` of ``v_j``'s energy leaks
    out of channel ``c_j``, so for small ``spread`` ``diag(H)`` is dominated by those
    channels; the spectrum stays exact.

    Parameters
    ----------
    m, N : int
        ``m >= N``.
    n_outliers : int, default 2
        In [0, N].
    magnitude : float, default 20.0
        Ratio of outlier to bulk singular values (> 0).
    spread : float, default 0.1
        Norm of the leak of each outlier direction into other channels, relative
        to its own channel (>= 0).
    scale : float, default 1.0
    rng : Generator, int or None
    """
    m, N = _sizes(m, N)
    k = _v.check_int("n_outliers", n_outliers, low=0, high=N)
    mag = _v.check_float("magnitude", magnitude, low=0.0, low_open=True)
    spread = _v.check_float("spread", spread)
    rng = np.random.default_rng(rng)
    channels = rng.choice(N, size=k, replace=False)
    G = rng.standard_normal((N, N))
    G[:, :k] *= spread / np.sqrt(N)
    G[channels, np.arange(k)] += 1.0
    profile = np.where(np.arange(N) < k, mag, 1.0)
    params = {"n_outliers": k, "magnitude": mag, "spread": spread, "scale": scale,
              "channels": sorted(int(c) for c in channels)}
    return _build(_scaled(profile, m, scale), m, N, rng, "outliers", params,
                  V=_orthonormal(G))


def low_rank_noise(m: int, N: int, *, rank: int = 4, noise: float = 0.05,
                   scale: float = 1.0, rng=None) -> Calibration:
    """A rank-``rank`` signal over a flat floor: ``p_i = 1`` (``i <= rank``), else ``noise``.

    ``m >= N``; ``0 <= noise <= 1`` (``noise = 0`` makes ``X`` exactly of rank ``rank``).
    """
    m, N = _sizes(m, N)
    k = _v.check_int("rank", rank, low=0, high=N)
    noise = _v.check_float("noise", noise, high=1.0)
    s = _scaled(np.where(np.arange(N) < k, 1.0, noise), m, scale)
    return _build(s, m, N, np.random.default_rng(rng), "low_rank_noise",
                  {"rank": k, "noise": noise, "scale": scale})


def heavy_rows(m: int, N: int, *, df: float = 1.5, scale: float = 1.0,
               rng=None) -> Calibration:
    """Flat spectrum with heavy-tailed row norms (a few tokens carry most energy).

    ``U`` is the orthonormal basis of ``D G`` with ``G`` standard Gaussian (m x N)
    and ``D = diag(|t_1|, ..., |t_m|)``, ``t_i`` Student-t with ``df`` degrees of
    freedom; rows with a large ``|t_i|`` get a leverage near 1 and dominate ``X``.
    ``s_i = scale sqrt(m)`` exactly. ``m >= N``.
    """
    m, N = _sizes(m, N)
    df = _v.check_float("df", df, low=0.0, low_open=True)
    rng = np.random.default_rng(rng)
    t = np.abs(rng.standard_t(df, size=m))
    U = _orthonormal(t[:, None] * rng.standard_normal((m, N)))
    return _build(_scaled(np.ones(N), m, scale), m, N, rng, "heavy_rows",
                  {"df": df, "scale": scale}, U=U)


def rank_deficient(m: int, N: int, *, exponent: float = 0.5, scale: float = 1.0,
                   rng=None) -> Calibration:
    """Fewer samples than features, ``m < N``: ``p_i = i^(-exponent)`` for ``i <= m``, else 0.

    ``H`` is exactly singular with rank ``m``; ``tail[r] = 0`` for ``r >= m``.
    """
    m, N = _sizes(m, N, full_rank=False)
    a = _v.check_float("exponent", exponent)
    i = np.arange(1.0, N + 1)
    s = _scaled(np.where(i <= m, i ** -a, 0.0), m, scale)
    return _build(s, m, N, np.random.default_rng(rng), "rank_deficient",
                  {"exponent": a, "scale": scale})


def conditioned(m: int, N: int, *, cond: float = 1e3, scale: float = 1.0,
                rng=None) -> Calibration:
    """A chosen condition number: ``p_i = cond^(-(i - 1) / (N - 1))``, ``m >= N``.

    ``kappa(X) = s_1 / s_N = cond`` and ``kappa(H) = cond^2``; ``cond >= 1``.
    """
    m, N = _sizes(m, N)
    cond = _v.check_float("cond", cond, low=1.0)
    profile = cond ** -(np.arange(N) / max(N - 1, 1))
    return _build(_scaled(profile, m, scale), m, N, np.random.default_rng(rng),
                  "conditioned", {"cond": cond, "scale": scale})


_GENERATORS = {
    "isotropic": isotropic, "power_law": power_law, "exponential": exponential,
    "outliers": outliers, "low_rank_noise": low_rank_noise, "heavy_rows": heavy_rows,
    "rank_deficient": rank_deficient, "conditioned": conditioned,
}
KINDS = tuple(_GENERATORS)


def calibration(kind: str, m: int, N: int, *, rng=None, **params) -> Calibration:
    """The named generator of :data:`KINDS` called with ``m, N, rng`` and ``params``."""
    if kind not in _GENERATORS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}; got {kind!r}")
    return _GENERATORS[kind](m, N, rng=rng, **params)


def gaussian_weights(N: int, N_out: int, *, std: float | None = None, rng=None) -> np.ndarray:
    """``W`` (N, N_out) with i.i.d. ``N(0, std^2)`` entries; default ``std = 1 / sqrt(N)``."""
    N = _v.check_int("N", N, low=1)
    N_out = _v.check_int("N_out", N_out, low=1)
    std = 1.0 / np.sqrt(N) if std is None else _v.check_float("std", std)
    return std * np.random.default_rng(rng).standard_normal((N, N_out))


def heavy_tailed_weights(N: int, N_out: int, *, df: float = 3.0, rng=None) -> np.ndarray:
    """``W`` (N, N_out) with i.i.d. Student-t entries scaled by ``1 / sqrt(N)``.

    For ``df > 2`` the entries are also divided by ``sqrt(df / (df - 2))`` so their
    variance is ``1 / N`` like :func:`gaussian_weights`; for ``df <= 2`` the
    variance is infinite and only the ``1 / sqrt(N)`` factor applies.
    """
    N = _v.check_int("N", N, low=1)
    N_out = _v.check_int("N_out", N_out, low=1)
    df = _v.check_float("df", df, low=0.0, low_open=True)
    unit = np.sqrt(df / (df - 2.0)) if df > 2 else 1.0
    return np.random.default_rng(rng).standard_t(df, size=(N, N_out)) / (unit * np.sqrt(N))


def class_k_weights(N: int, N_out: int, *, rng=None) -> np.ndarray:
    """A draw from the class K of the lower bound (Sec. 5 of docs/theory.md, [1]).

    Delegates to :func:`gilora_theory.lower_bounds.sample_class_k`, which states K.
    """
    return sample_class_k(_v.check_int("N", N, low=1), _v.check_int("N_out", N_out, low=1),
                          rng=np.random.default_rng(rng))


_WEIGHTS = {"gaussian": gaussian_weights, "heavy_tailed": heavy_tailed_weights,
            "class_k": class_k_weights}
WEIGHT_KINDS = tuple(_WEIGHTS)


def weights(kind: str, N: int, N_out: int, *, rng=None, **params) -> np.ndarray:
    """The named weight generator of :data:`WEIGHT_KINDS`."""
    if kind not in _WEIGHTS:
        raise ValueError(f"kind must be one of {', '.join(WEIGHT_KINDS)}; got {kind!r}")
    return _WEIGHTS[kind](N, N_out, rng=rng, **params)
