"""OLrC, Alg. 2 of [1]: closed forms, optimality against competitors, the reference."""
import numpy as np
import pytest
from hypothesis import given, settings, target
from hypothesis import strategies as st

import reference as ref
from gilora_theory import check_olrc_optimality, fit_grid, gptq, hessian_spectrum, olrc
from gilora_theory.testing.budget import scaled
from gilora_theory.testing.strategies import layers

EPS = np.finfo(float).eps


def quad(G, D):
    return float(np.sum(D * (G @ D)))


# ---------------------------------------------------------------- tiny cases, exact answers

def test_identity_hessian_is_euclidean_truncation():
    D = np.diag([3.0, 2.0, 1.0])
    res = olrc(D, np.zeros((3, 3)), np.eye(3), 1, lam=0.0)
    assert res.value == pytest.approx(5.0, rel=8 * EPS)
    np.testing.assert_allclose(res.L @ res.R, np.diag([3.0, 0.0, 0.0]), atol=8 * EPS * 3)
    np.testing.assert_allclose(res.singular_values, [3.0, 2.0, 1.0], rtol=8 * EPS)


def test_diagonal_hessian_weights_rows():
    # A = diag(sqrt h) D = diag(1, 10) [[1, 0], [0, 1]]: keep the heavy row.
    res = olrc(np.eye(2), np.zeros((2, 2)), np.diag([1.0, 100.0]), 1, lam=0.0)
    assert res.value == pytest.approx(1.0, rel=16 * EPS)
    np.testing.assert_allclose(res.L @ res.R, [[0.0, 0.0], [0.0, 1.0]], atol=64 * EPS)


def test_rank_zero_and_full_rank():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((6, 4))
    H, W, Q = A.T @ A, rng.standard_normal((4, 3)), np.zeros((4, 3))
    lam = 0.1
    r0 = olrc(W, Q, H, 0, lam=lam)
    assert r0.L.shape == (4, 0) and r0.R.shape == (0, 3)
    assert r0.value == pytest.approx(quad(H + lam * np.eye(4), W), rel=64 * 4 * EPS)
    full = olrc(W, Q, H, 3, lam=lam)
    assert full.value <= 64 * 4 * EPS * quad(H + lam * np.eye(4), W)
    np.testing.assert_allclose(full.L @ full.R, W, atol=64 * 4 * EPS * np.linalg.cond(H + lam * np.eye(4)))


def test_singular_H_undamped_uses_the_range():
    X = np.array([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]])  # third input direction unseen
    D = np.array([[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]])
    res = olrc(D, np.zeros_like(D), X.T @ X, 1, lam=0.0)
    assert np.all(np.isfinite(res.L)) and np.all(np.isfinite(res.R))
    assert res.value == pytest.approx(1.0, rel=64 * EPS)  # keeps the weight-4 direction
    np.testing.assert_allclose(res.L[2], 0.0, atol=0)  # null-space direction costs nothing


def test_cached_spectrum_gives_the_same_result():
    rng = np.random.default_rng(1)
    A = rng.standard_normal((8, 5))
    H, W = A.T @ A, rng.standard_normal((5, 4))
    Q = np.round(W)
    a = olrc(W, Q, H, 2, damp=0.05)
    b = olrc(W, Q, H, 2, damp=0.05, spectrum=hessian_spectrum(H))
    np.testing.assert_array_equal(a.L, b.L)
    assert a.value == b.value and a.lam == b.lam == 0.05 * np.mean(np.diag(H))


def test_negative_euclidean_truncation_is_strictly_worse():
    """A competitor that ignores H loses by a clear margin when H is anisotropic."""
    rng = np.random.default_rng(2)
    X = rng.standard_normal((40, 6)) * np.array([10.0, 5.0, 2.0, 1.0, 0.5, 0.1])
    W = rng.standard_normal((6, 5))
    H = X.T @ X
    Q = fit_grid(W, 2).quantize(W)
    chk = check_olrc_optimality(W, Q, H, 2, lam=0.0, rng=0)
    assert chk.passed, chk
    U, s, Vt = np.linalg.svd(W - Q)
    euclid = quad(H, W - Q - (U[:, :2] * s[:2]) @ Vt[:2])
    assert euclid - chk.value > 0.05 * chk.value > chk.tol


@pytest.mark.parametrize("kw, exc, word", [
    (dict(rank=4), ValueError, "rank"), (dict(rank=-1), ValueError, "rank"),
    (dict(rank=1.5), TypeError, "rank"), (dict(rank=1, lam=-1.0), ValueError, "lam"),
])
def test_bad_arguments(kw, exc, word):
    with pytest.raises(exc, match=word):
        olrc(np.ones((3, 3)), np.zeros((3, 3)), np.eye(3), **kw)


def test_bad_shapes():
    with pytest.raises(ValueError, match="Q"):
        olrc(np.ones((3, 2)), np.zeros((3, 3)), np.eye(3), 1)
    with pytest.raises(ValueError, match="spectrum"):
        olrc(np.ones((3, 2)), np.zeros((3, 2)), np.eye(3), 1, spectrum=hessian_spectrum(np.eye(2)))


# ---------------------------------------------------------------- optimality and the reference

@settings(max_examples=scaled(250))
@given(layers(max_n=8), st.booleans())
def test_value_is_tail_energy_and_no_competitor_beats_it(layer, damped):
    W, H = layer.W, layer.H
    Q = gptq(W, H, fit_grid(W, layer.bits), damp=layer.damp).Q
    lam = layer.damp * float(np.mean(np.diag(H))) if damped else 0.0
    chk = check_olrc_optimality(W, Q, H, layer.rank, lam=lam, n_competitors=60, rng=layer.bits)
    target(-chk.slack / max(chk.value, chk.tol, np.finfo(float).tiny), label="relative slack")
    assert chk.passed, chk


@settings(max_examples=scaled(200))
@given(layers(max_n=8, kinds=("isotropic", "power", "exponential", "spiked", "near_singular")))
def test_agrees_with_explicit_square_root_reference(layer):
    W, H = layer.W, layer.H
    Q = np.zeros_like(W)
    lam = layer.damp * float(np.mean(np.diag(H)))
    G = H + lam * np.eye(H.shape[0])
    res = olrc(W, Q, H, layer.rank, lam=lam)
    M_ref, value_ref = ref.olrc(W, Q, H, layer.rank, lam)
    kappa = np.linalg.cond(G)
    scale = np.linalg.norm(G, 2) * np.linalg.norm(W) ** 2
    # sqrtm's backward error grows with kappa; the package's route with sqrt(kappa)
    tol = 64 * W.shape[0] * EPS * kappa * scale
    assert abs(res.value - value_ref) <= tol
    assert abs(quad(G, W - res.L @ res.R) - quad(G, W - M_ref)) <= tol
