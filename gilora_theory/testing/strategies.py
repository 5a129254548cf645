"""Hypothesis strategies for calibration matrices, weights, bits and ranks.

Matrices are built from a drawn seed and drawn spectrum parameters through
``numpy.random.default_rng``, so examples are cheap, reproducible and shrink
towards small sizes and tame spectra. Spectrum kinds:

``isotropic``       all singular values equal
``power``           ``s_i = i^(-a)``
``exponential``     ``s_i = exp(-a i)``
``spiked``          a few large singular values over a flat floor
``near_singular``   condition number between 1e6 and 1e10
``rank_deficient``  fewer samples than features (``m < N``), ``H`` singular

Every ``X`` is ``U diag(s) V^T`` with Haar-random ``U``, ``V`` so that its singular
values are known exactly (returned by :func:`calibration` as ``Calib.s``).

Requires hypothesis (the ``dev`` extra).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st
from scipy.stats import ortho_group

__all__ = ["SPECTRA", "Calib", "make_calibration", "calibration", "weights", "bits",
           "layers", "Layer"]

SPECTRA = ("isotropic", "power", "exponential", "spiked", "near_singular", "rank_deficient")


@dataclass(frozen=True)
class Calib:
    """A calibration matrix with known singular values ``s`` (descending, length N)."""

    X: np.ndarray
    s: np.ndarray
    kind: str

    @property
    def H(self) -> np.ndarray:
        """``X^T X``."""
        return self.X.T @ self.X


def _orthogonal(n: int, rng: np.random.Generator) -> np.ndarray:
    if n == 1:
        return np.ones((1, 1))
    return ortho_group.rvs(n, random_state=rng)


def make_calibration(N: int, kind: str, seed: int, param: float = 1.0,
                     m: int | None = None) -> Calib:
    """Build ``X`` (m x N) with a spectrum of the named kind (deterministic in ``seed``).

    ``param`` in [0, 1] tunes the decay/spike/conditioning within the kind.
    """
    rng = np.random.default_rng(seed)
    i = np.arange(N, dtype=float)
    if kind == "isotropic":
        s = np.ones(N)
    elif kind == "power":
        s = (i + 1) ** -(0.25 + 1.5 * param)
    elif kind == "exponential":
        s = np.exp(-(0.05 + 0.6 * param) * i)
    elif kind == "spiked":
        k = max(1, N // 4)
        s = np.where(i < k, 5.0 + 20.0 * param, 0.5)
    elif kind == "near_singular":
        s = np.logspace(0, -3 - 2 * param, N)
    elif kind == "rank_deficient":
        rank = max(1, int(round((N - 1) * (0.3 + 0.5 * param))))
        s = np.where(i < rank, np.linspace(2.0, 0.5, N), 0.0)
    else:
        raise ValueError(f"kind must be one of {SPECTRA}; got {kind!r}")
    s = np.sort(s)[::-1] * (0.5 + rng.random())
    V = _orthogonal(N, rng)
    if kind == "rank_deficient":  # m = rank < N rows: H is exactly singular
        k = int(np.count_nonzero(s))
        U = _orthogonal(k, rng)
        return Calib((U * s[:k]) @ V[:, :k].T, s, kind)
    m = max(N, m or N)
    U = _orthogonal(m, rng)[:, :N]
    return Calib((U * s) @ V.T, s, kind)


@st.composite
def calibration(draw, min_n: int = 1, max_n: int = 8, kinds=SPECTRA) -> Calib:
    """Calibration matrices with N in [min_n, max_n] and a spectrum from ``kinds``."""
    N = draw(st.integers(min_n, max_n))
    kind = draw(st.sampled_from(kinds))
    seed = draw(st.integers(0, 2**32 - 1))
    param = draw(st.floats(0.0, 1.0))
    extra = draw(st.integers(0, 2 * N))
    return make_calibration(N, kind, seed, param, m=N + extra)


@st.composite
def weights(draw, N: int, min_out: int = 1, max_out: int = 6) -> np.ndarray:
    """Weights (N x N_out): Gaussian or heavy-tailed (Student t, 3 dof), random scale."""
    n_out = draw(st.integers(min_out, max_out))
    seed = draw(st.integers(0, 2**32 - 1))
    heavy = draw(st.booleans())
    scale = draw(st.sampled_from([1e-3, 1.0, 1e3]))
    rng = np.random.default_rng(seed)
    W = rng.standard_t(3, size=(N, n_out)) if heavy else rng.standard_normal((N, n_out))
    return scale * W


def bits(min_bits: int = 1, max_bits: int = 8):
    """Bit-widths."""
    return st.integers(min_bits, max_bits)


@dataclass(frozen=True)
class Layer:
    """A drawn layer: calibration, weights, bits, rank and relative damping."""

    calib: Calib
    W: np.ndarray
    bits: int
    rank: int
    damp: float

    @property
    def H(self) -> np.ndarray:
        """``X^T X``."""
        return self.calib.H


@st.composite
def layers(draw, min_n: int = 1, max_n: int = 8, max_out: int = 6, kinds=SPECTRA,
           min_bits: int = 1, max_bits: int = 8, damps=(1e-3, 1e-2, 1e-1, 1.0)) -> Layer:
    """Whole layers: rank in [0, min(N, N_out)], damping from ``damps`` (all > 0)."""
    calib = draw(calibration(min_n, max_n, kinds))
    N = calib.X.shape[1]
    W = draw(weights(N, max_out=max_out))
    b = draw(bits(min_bits, max_bits))
    r = draw(st.integers(0, min(N, W.shape[1])))
    damp = draw(st.sampled_from(damps))
    return Layer(calib, W, b, r, damp)
