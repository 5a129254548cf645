"""Tests of gilora_theory.datafree: the SVD fit and the quantized-branch fits without calibration data."""
import numpy as np
import pytest
import scipy.linalg
from hypothesis import given, settings
from hypothesis import strategies as st

from gilora_theory import fit_grid
from gilora_theory.branch import quantize_branch
from gilora_theory.datafree import alternating_fit, coordinate_fit, guaranteed_increase, svd_fit
from gilora_theory.testing.budget import scaled
from gilora_theory.testing.strategies import weights

EPS = np.finfo(np.float64).eps


def _pair(seed, N=24, N_out=16, bits=3):
    W = np.random.default_rng(seed).standard_normal((N, N_out))
    return W, fit_grid(W, bits).quantize(W, np.arange(N))


def _tol(D):
    """Rounding scale of ``f = ||D - L R||_F^2`` evaluated from scratch."""
    return 64 * EPS * max(D.shape) * float(np.sum(D * D))


# --- the SVD fit is the Eckart-Young optimum -----------------------------------------

@st.composite
def _residuals(draw):
    N = draw(st.integers(1, 8))
    W = draw(weights(N, max_out=8))
    Q = draw(weights(N, min_out=W.shape[1], max_out=W.shape[1]))
    r = draw(st.integers(0, min(W.shape)))
    return W, Q, r


@given(_residuals())
@settings(max_examples=scaled(40))
def test_svd_fit_equals_eckart_young_by_an_independent_svd(case):
    W, Q, r = case
    fit = svd_fit(W, Q, r)
    D = W - Q
    # Independent route: NumPy's SVD (LAPACK gesdd via numpy) against SciPy's gesvd driver.
    s_np = np.linalg.svd(D, compute_uv=False)
    U, s, Vt = scipy.linalg.svd(D, full_matrices=False, lapack_driver="gesvd")
    opt = float(np.sum(s_np[r:] ** 2))
    tol = 64 * EPS * max(D.shape) * float(np.sum(D * D))
    assert abs(fit.value - opt) <= tol
    assert abs(float(np.sum((D - fit.L @ fit.R) ** 2)) - opt) <= tol
    T_r = (U[:, :r] * s[:r]) @ Vt[:r]
    # The truncation is unique when s_r > s_{r+1}; then the fitted product equals it.
    if 0 < r < len(s) and s[r - 1] - s[r] > 1e-6 * s[0]:
        gap = (s[r - 1] - s[r]) / s[0]
        assert np.max(np.abs(fit.L @ fit.R - T_r)) <= 64 * EPS * max(D.shape) * s[0] / gap


def test_svd_fit_beats_perturbed_competitors():
    W, Q = _pair(0)
    fit = svd_fit(W, Q, 4)
    rng = np.random.default_rng(1)
    D = W - Q
    for _ in range(30):
        L = fit.L + 1e-2 * rng.standard_normal(fit.L.shape)
        R = fit.R + 1e-2 * rng.standard_normal(fit.R.shape)
        assert np.sum((D - L @ R) ** 2) >= fit.value - _tol(D)


def test_svd_fit_rank_zero_and_full():
    W, Q = _pair(2, N=5, N_out=4)
    assert svd_fit(W, Q, 0).value == pytest.approx(np.sum((W - Q) ** 2), rel=64 * EPS)
    assert svd_fit(W, Q, 4).value <= _tol(W - Q)


# --- alternating fit: refit steps never increase f; quantize steps may ------------------

@pytest.mark.parametrize("l_bits, r_bits", [(2, 2), (4, 4), (8, 8), (3, None), (None, 3)])
def test_alternating_refit_steps_never_increase(l_bits, r_bits):
    for seed in range(3):
        W, Q = _pair(seed)
        fit = alternating_fit(W, Q, 6, l_bits=l_bits, r_bits=r_bits, iters=4)
        assert guaranteed_increase(fit) <= _tol(W - Q)
        assert fit.value == pytest.approx(np.sum((W - Q - fit.branch.L @ fit.branch.R) ** 2),
                                          rel=64 * EPS * 24)
        assert fit.value >= svd_fit(W, Q, 6).value - _tol(W - Q)   # nothing beats Eckart-Young
        assert len(fit.trace) == 1 + 4 * 4 and fit.steps[1:5] == (
            "quantize-L", "refit-R", "quantize-R", "refit-L")


def test_alternating_quantize_steps_do_increase_f():
    # Negative case: the full trace is not monotone, which is why only refit steps are checked.
    W, Q = _pair(0)
    fit = alternating_fit(W, Q, 6, l_bits=2, r_bits=2, iters=3)
    d = np.diff(fit.trace)
    assert np.max(d) > 1e3 * _tol(W - Q)
    assert not all(np.asarray(fit.guaranteed)[1:][d > 0])


def test_alternating_without_quantization_stays_at_the_svd_optimum():
    W, Q = _pair(3)
    fit = alternating_fit(W, Q, 5, iters=3)
    assert abs(fit.value - svd_fit(W, Q, 5).value) <= _tol(W - Q)
    assert fit.branch.L_grid is None and fit.branch.R_grid is None


def test_alternating_result_is_on_its_grids():
    W, Q = _pair(4)
    fit = alternating_fit(W, Q, 4, l_bits=3, r_bits=4, iters=3)
    b = fit.branch
    np.testing.assert_array_equal(b.L_grid.quantize(b.L), b.L)
    np.testing.assert_array_equal(b.R_grid.quantize(b.R.T).T, b.R)


# --- coordinate fit: every sweep is monotone (guaranteed) ------------------------------

@given(st.integers(0, 2**32 - 1), st.sampled_from([(2, 2), (3, None), (None, 4), (6, 6)]),
       st.sampled_from(["row", "column"]))
@settings(max_examples=scaled(25))
def test_coordinate_fit_is_monotone(seed, bits, r_axis):
    rng = np.random.default_rng(seed)
    N, N_out = rng.integers(2, 12, size=2)
    W = rng.standard_t(3, size=(N, N_out))
    Q = fit_grid(W, 2).quantize(W, np.arange(N))
    r = int(rng.integers(1, min(N, N_out) + 1))
    fit = coordinate_fit(W, Q, r, l_bits=bits[0], r_bits=bits[1], sweeps=4, r_axis=r_axis)
    assert guaranteed_increase(fit) <= _tol(W - Q)
    b = fit.branch
    if b.L_grid is not None:
        np.testing.assert_array_equal(b.L_grid.quantize(b.L), b.L)


def test_coordinate_fit_improves_on_its_start_and_polishes_alternating():
    W, Q = _pair(5)
    alt = alternating_fit(W, Q, 6, l_bits=2, r_bits=2, iters=3)
    pol = coordinate_fit(W, Q, 6, sweeps=5, start=alt.branch)
    assert pol.trace[0] == pytest.approx(alt.value, rel=64 * EPS * 24)
    assert pol.value < alt.value
    cold = coordinate_fit(W, Q, 6, l_bits=2, r_bits=2, sweeps=5)
    assert cold.trace[-1] < cold.trace[0]


def test_coordinate_update_is_the_exact_argmin_on_a_tiny_case():
    # Brute force: with r = 1 and 2-bit grids, enumerate every L column on its grid for fixed R.
    W, Q = _pair(6, N=3, N_out=4, bits=2)
    svd = svd_fit(W, Q, 1)
    start = quantize_branch(svd.L, svd.R, l_bits=2, r_bits=2)
    fit = coordinate_fit(W, Q, 1, sweeps=1, start=start)
    # The sweep moves L first (with the start's R), then only R: fit's L is that first update.
    D = W - Q
    levels = start.L_grid.levels(0)
    best = min(float(np.sum((D - np.array(c)[:, None] @ start.R) ** 2))
               for c in np.array(np.meshgrid(levels, levels, levels)).reshape(3, -1).T)
    got = float(np.sum((D - fit.branch.L @ start.R) ** 2))
    assert abs(got - best) <= _tol(D)


def test_bad_input():
    W, Q = _pair(7, N=6, N_out=5)
    with pytest.raises(ValueError, match="Q must have"):
        svd_fit(W, Q[:3], 2)
    with pytest.raises(ValueError, match="rank"):
        svd_fit(W, Q, 6)
    with pytest.raises(ValueError, match="iters"):
        alternating_fit(W, Q, 2, l_bits=4, iters=0)
    with pytest.raises(TypeError, match="start"):
        coordinate_fit(W, Q, 2, start=(W, Q))
    with pytest.raises(ValueError, match="start must have"):
        coordinate_fit(W, Q, 2, start=quantize_branch(np.ones((6, 3)), np.ones((3, 5))))
    with pytest.raises(ValueError, match="l_bits"):
        alternating_fit(W, Q, 2, l_bits=0)
