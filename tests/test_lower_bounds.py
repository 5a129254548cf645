"""Tests of gilora_theory.lower_bounds: the formula, its domain, the class K, the volume
argument, and the bound against exact optima of tiny layers drawn from K."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gilora_theory.exact import exact_optimum
from gilora_theory.lower_bounds import (EXTRA_DIMS, NET_CONSTANT, VOLUME_CONSTANT, _log_volume_ratio,
                                        bad_fraction, class_k_radius, degrees_ratio, in_class_k,
                                        log_lower_bound, lower_bound, sample_class_k,
                                        scaling_comparison, volume_lower_bound)
from gilora_theory.testing.budget import scaled

EPS = np.finfo(np.float64).eps


# ------------------------------------------------------------ the formula

def test_value_by_hand():
    """s = 1, b = 1 (3 symbols), r = 0, N = N_out = 2: J = 4 / 2 = 2."""
    expect = 1.0 / (3 ** 4 * (41 * math.sqrt(math.pi * math.e / 6)) ** 2)
    assert lower_bound(1.0, 1, 0, 2, 2) == pytest.approx(expect, rel=8 * EPS)
    assert degrees_ratio(2, 2, 0) == 2.0
    assert degrees_ratio(3, 4, 1) == 12 / 10
    assert degrees_ratio(3, 4, 0, extra_dims=0) == math.inf


@st.composite
def bound_args(draw):
    N, N_out = draw(st.integers(1, 64)), draw(st.integers(1, 64))
    return dict(s_min=draw(st.floats(1e-3, 1e3)), bits=draw(st.integers(1, 12)),
                rank=draw(st.integers(0, min(8, N, N_out))), N=N, N_out=N_out,
                rho=draw(st.floats(0.01, 100.0)), extra_dims=draw(st.sampled_from([0, 1, 2, 5])),
                convention=draw(st.sampled_from(["rank", "alphabet"])))


@settings(max_examples=scaled(400))
@given(bound_args())
def test_zero_exactly_when_J_at_most_one(kw):
    J = degrees_ratio(kw["N"], kw["N_out"], kw["rank"], extra_dims=kw["extra_dims"])
    log_lb = log_lower_bound(**kw)
    if J <= 1:
        assert log_lb == -math.inf and lower_bound(**kw) == 0.0
    else:
        assert math.isfinite(log_lb)
        assert lower_bound(**kw) == math.exp(log_lb)
        if log_lb > math.log(np.finfo(float).tiny):
            assert lower_bound(**kw) > 0


@settings(max_examples=scaled(2000))
@given(bound_args(), st.integers(1, 4), st.integers(1, 4), st.floats(1.01, 10.0))
def test_monotone_decreasing_in_bits_rank_rho(kw, db, dr, frho):
    base = log_lower_bound(**kw)
    more_bits = log_lower_bound(**{**kw, "bits": kw["bits"] + db})
    room = kw["rank"] + dr <= min(kw["N"], kw["N_out"])     # a larger rank must still fit
    more_rank = log_lower_bound(**{**kw, "rank": kw["rank"] + dr}) if room else -math.inf
    more_rho = log_lower_bound(**{**kw, "rho": kw["rho"] * frho})
    tol = 64 * EPS * (abs(base) + 1) if math.isfinite(base) else 0
    assert more_bits <= base + tol and more_rank <= base + tol and more_rho <= base + tol
    if math.isfinite(base):                    # strictly: every factor that is present matters
        assert more_bits < base and (more_rank < base or not room)
        J = degrees_ratio(kw["N"], kw["N_out"], kw["rank"], extra_dims=kw["extra_dims"])
        assert more_rho < base or J == math.inf


def test_constants_enter_as_the_formula_says():
    s, b, r, N, Nn = 2.0, 3, 1, 12, 10
    J = degrees_ratio(N, Nn, r)
    base = lower_bound(s, b, r, N, Nn, 1.5)
    assert lower_bound(s, b, r, N, Nn, 1.5, net_constant=1.0) / base == pytest.approx(
        41.0 ** (2 / (J - 1)), rel=64 * EPS)
    assert lower_bound(s, b, r, N, Nn, 1.5, convention="alphabet") == pytest.approx(
        base / VOLUME_CONSTANT ** 2, rel=64 * EPS)
    J0 = degrees_ratio(N, Nn, r, extra_dims=0)
    assert lower_bound(s, b, r, N, Nn, 1.5, extra_dims=0) == pytest.approx(
        s ** 2 / (9 ** (2 * J0 / (J0 - 1)) * (NET_CONSTANT * VOLUME_CONSTANT * 1.5) ** (2 / (J0 - 1))),
        rel=64 * EPS)
    assert EXTRA_DIMS == 2 and lower_bound(0.0, b, r, N, Nn) == 0.0


def test_rho_below_domain_is_refused():
    with pytest.raises(ValueError, match="rho"):
        lower_bound(1.0, 1, 1, 10, 10, rho=1e-3)
    lower_bound(1.0, 1, 1, 10, 10, rho=1 / (3 * NET_CONSTANT * VOLUME_CONSTANT))
    with pytest.raises(ValueError, match="convention"):
        lower_bound(1.0, 2, 0, 4, 4, convention="paper")
    with pytest.raises(TypeError, match="bits"):
        lower_bound(1.0, 2.0, 0, 4, 4)


# ----------------------------------------------------------- the class K

def test_class_k_sampler():
    W = sample_class_k(6, 5, rng=3)
    assert W.shape == (6, 5) and in_class_k(W)
    assert np.array_equal(W, sample_class_k(6, 5, rng=3))
    a = class_k_radius(6, 5)
    assert np.max(np.abs(W)) <= a and a == math.sqrt(3 / 30)
    Ws = np.stack([sample_class_k(6, 5, rng=np.random.default_rng(i)) for i in range(400)])
    norms = np.sum(Ws ** 2, axis=(1, 2))       # mean 1, sd sqrt(30 * 4/5 a^4) per sample
    sd = math.sqrt(30 * 0.8 * a ** 4) / math.sqrt(len(norms))
    assert abs(np.mean(norms) - 1) < 5 * sd
    assert not in_class_k(3 * W)               # negative case


def test_volume_constant_is_the_cube_to_ball_ratio():
    """vol(B_D(1)) / vol(K) <= c_vol^D for every D, and the gap per dimension vanishes."""
    for D in (1, 2, 5, 32, 1000, 10 ** 5):
        assert _log_volume_ratio(D) <= D * math.log(VOLUME_CONSTANT)
    assert _log_volume_ratio(10 ** 6) / 10 ** 6 == pytest.approx(math.log(VOLUME_CONSTANT), abs=1e-5)


def test_bad_fraction_and_volume_bound_agree():
    for (N, Nn, r, A) in [(8, 4, 0, 4), (6, 6, 1, 3), (20, 10, 2, 17), (3, 4, 1, 2)]:
        E = volume_lower_bound(1.0, r, N, Nn, 1.0, levels=A)
        assert E > 0
        assert bad_fraction(0.999 * E, 1.0, r, N, Nn, 1.0, levels=A) < 1
        assert bad_fraction(E, 1.0, r, N, Nn, 1.0, levels=A) == pytest.approx(1.0, rel=1e-9)
        assert bad_fraction(0.25 * E, 1.0, r, N, Nn, 1.0, levels=A) < \
            bad_fraction(0.5 * E, 1.0, r, N, Nn, 1.0, levels=A)
    assert volume_lower_bound(1.0, 1, 2, 2, levels=3) == 0.0       # d >= D


# --------------------------------------------- against exact optima of W drawn from K

def _calibrations(N, rng):
    X_orth = np.linalg.qr(rng.standard_normal((2 * N, N)))[0]
    X_gauss = rng.standard_normal((3 * N, N)) / math.sqrt(3 * N)
    return [X_orth, X_gauss]


def _symmetric_alphabet(N, Nn, bits):
    B = 2 ** (bits - 1)
    return class_k_radius(N, Nn) / B * np.arange(-B, B + 1.0)


@pytest.mark.parametrize("N,Nn,bits", [(8, 4, 1), (8, 4, 2), (8, 4, 3), (6, 3, 2), (4, 3, 1),
                                       (4, 2, 3), (6, 6, 4)])
def test_lower_bound_below_exact_optimum_rank_zero(N, Nn, bits):
    """r = 0, W drawn from K. On the theorem's fixed (2B+1)-symbol alphabet the sphere-decoded
    optimum of every W is above the bound; on the package's fitted grid the minimax
    statement holds (the worst W found is above it). Margins: docs/lower_bound.md."""
    rng = np.random.default_rng(100 * N + 10 * Nn + bits)
    alphabet = _symmetric_alphabet(N, Nn, bits)
    for X in _calibrations(N, rng):
        H = X.T @ X
        s_min = float(np.linalg.svd(X, compute_uv=False)[-1])
        lb = lower_bound(s_min, bits, 0, N, Nn)
        fitted = []
        for _ in range(6):
            W = sample_class_k(N, Nn, rng=rng)
            fitted.append(exact_optimum(W, H, bits).value)
            assert lb <= exact_optimum(W, H, alphabet=alphabet).value
        assert lb <= max(fitted)


def test_finding_fitted_grid_optimum_of_some_W_is_below_the_bound():
    """A finding, not a contradiction (the bound is minimax, and the fitted per-column grid
    adapts its step and zero point to W, which the bound's count does not include): for
    6 x 6 at 4 bits with orthonormal X, some W from K have a fitted-grid optimum below the
    bound, while the fixed symmetric alphabet never does and the worst W stays above it."""
    rng = np.random.default_rng(7)
    N = Nn = 6
    X = np.linalg.qr(rng.standard_normal((2 * N, N)))[0]
    H = X.T @ X
    lb = lower_bound(1.0, 4, 0, N, Nn)
    alphabet = _symmetric_alphabet(N, Nn, 4)
    fitted, fixed = [], []
    for _ in range(30):
        W = sample_class_k(N, Nn, rng=rng)
        fitted.append(exact_optimum(W, H, 4).value / lb)
        fixed.append(exact_optimum(W, H, alphabet=alphabet).value / lb)
    assert min(fitted) < 1 < max(fitted)
    assert min(fixed) > 1


def test_lower_bound_below_exact_optimum_rank_one():
    """r = 1 by enumeration (3 x 4 layer, 1 bit: 4096 Q, each with its optimal rank-1 LR)."""
    rng = np.random.default_rng(7)
    N, Nn = 3, 4
    for X in _calibrations(N, rng):
        H = X.T @ X
        s_min = float(np.linalg.svd(X, compute_uv=False)[-1])
        lb = lower_bound(s_min, 1, 1, N, Nn)
        assert lb > 0
        for _ in range(3):
            W = sample_class_k(N, Nn, rng=rng)
            ex = exact_optimum(W, H, 1, 1)
            assert ex.candidates == 2 ** 12 and lb <= ex.value


def test_volume_statement_for_a_fixed_alphabet():
    """For W uniform on K and a fixed alphabet, P(opt < E) <= bad_fraction(E): at the E
    where that is 1e-6, every sample stays above E (the rigorous form of the bound)."""
    rng = np.random.default_rng(11)
    N, Nn, bits = 8, 4, 2
    alphabet = _symmetric_alphabet(N, Nn, bits)
    X = np.linalg.qr(rng.standard_normal((2 * N, N)))[0]
    H = X.T @ X
    E_star = volume_lower_bound(1.0, 0, N, Nn, levels=alphabet.size)
    E = E_star * (1e-6) ** (2 / (N * Nn))         # bad_fraction scales as (E / E*)^{D/2}
    assert bad_fraction(E, 1.0, 0, N, Nn, levels=alphabet.size) == pytest.approx(1e-6, rel=1e-6)
    for _ in range(10):
        W = sample_class_k(N, Nn, rng=rng)
        assert exact_optimum(W, H, alphabet=alphabet).value >= E


# ------------------------------------------------------------ dominant scaling

def test_dominant_scaling_rank_zero_ratio_bounded():
    sc = scaling_comparison([8, 32, 128], [2, 3, 4, 6, 8], rank=0, rng=0)
    assert np.all(sc.ratio >= 1)
    assert np.max(sc.ratio) / np.min(sc.ratio) < 4       # bounded as N and b vary
    np.testing.assert_array_equal(sc.upper_rank_factor, 1.0)


def test_compensation_capacity_factor():
    damp = 0.01
    sc = scaling_comparison([16, 64, 256], [2, 4, 8], rank=2, damp=damp, rng=1)
    N = sc.N_values[:, None]
    expect = np.broadcast_to(((N - 2) + (N + 2) * damp) / (N * (1 + damp)), sc.upper.shape)
    np.testing.assert_allclose(sc.upper_rank_factor, expect, rtol=64 * EPS)
    np.testing.assert_allclose(sc.capacity, 1 - 2 / sc.N_values)
    assert np.all(sc.lower_rank_factor < 1)
    # the lower bound's rank factor ((2B+1) c rho)^{-2/(J-1)} shrinks with b; the upper's does not
    assert np.all(np.diff(sc.lower_rank_factor, axis=1) < 0)
    assert np.all(sc.ratio[-1] < sc.ratio[0])          # closer as N grows


def test_a_rank_larger_than_the_layer_is_refused():
    """Issue 14: rank 99 of an 8 x 5 layer is no budget at all; it used to give 0.0."""
    with pytest.raises(ValueError, match=r"rank must be in \[0, 5\]"):
        lower_bound(1.0, 3, 99, 8, 5)
    assert lower_bound(1.0, 3, 5, 8, 5) == 0.0          # the largest valid rank: J <= 1, bound 0
