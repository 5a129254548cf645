"""GPTQ, Alg. 1 of [1]: exact small cases, invariants (checks.py), the reference."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import reference as ref
from gilora_theory import (Grid, NumericalError, check_blocksize_invariance, check_loss_identity,
                           check_routes_agree, check_scaling, evaluate, fit_grid, gptq,
                           psi_factor)
from gilora_theory.testing.budget import scaled
from gilora_theory.testing.strategies import layers

EPS = np.finfo(float).eps
UNIT = Grid(step=np.array([[1.0]]), zero=np.array([[0.0]]), bits=2)  # levels 0, 1, 2, 3


# ---------------------------------------------------------------- tiny cases, exact answers

def test_two_rows_by_hand():
    # H^{-1} = [[2, -1], [-1, 2]] / 3: Psi_11^2 = 2/3, Psi_21 = -1/sqrt(6), Psi_22^2 = 1/2.
    # q_1 = 1 (r_1 = 0.4), w~_2 = 2.4 + r_1 / 2 = 2.6 -> q_2 = 3 (RTN would give 2).
    H = np.array([[2.0, 1.0], [1.0, 2.0]])
    W = np.array([[1.4], [2.4]])
    res = gptq(W, H, UNIT, lam=0.0)
    np.testing.assert_array_equal(res.Q, [[1.0], [3.0]])
    np.testing.assert_allclose(res.psi_diag, [np.sqrt(2 / 3), np.sqrt(0.5)], rtol=4 * EPS)
    np.testing.assert_allclose(res.step_terms, [0.16 * 1.5, 0.16 * 2.0], rtol=64 * EPS)
    D = W - res.Q  # [0.4, -0.6]: D^T H D = 0.56, below RTN's 0.96
    assert (D.T @ H @ D).item() == pytest.approx(0.56, rel=64 * EPS)
    assert res.lam == 0.0 and res.n_clipped == 0 and res.route == "cholesky"


def test_one_row_is_rtn_with_its_term():
    W = np.array([[0.3, -1.2, 2.6]])
    g = fit_grid(np.array([[0.0, -2.0, 0.0], [3.0, 1.0, 3.0]]), 2)
    res = gptq(W, np.array([[2.0]]), g, lam=0.5)
    np.testing.assert_array_equal(res.Q, g.quantize(W))
    assert res.step_terms[0] == pytest.approx(np.sum((W - res.Q) ** 2) * 2.5, rel=8 * EPS)


def test_diagonal_hessian_gives_rtn():
    rng = np.random.default_rng(0)
    W = rng.standard_normal((6, 4))
    g = fit_grid(W, 3)
    res = gptq(W, np.diag(rng.random(6) + 0.1), g)
    np.testing.assert_array_equal(res.Q, g.quantize(W))


def test_act_order_processes_rows_by_decreasing_diagonal():
    H = np.diag([1.0, 5.0, 3.0]) + 0.1
    W = np.array([[0.2], [1.7], [2.9]])
    res = gptq(W, H, UNIT, act_order=True)
    np.testing.assert_array_equal(res.perm, [1, 2, 0])
    step, zero = np.ones((1, 1)), np.zeros((1, 1))
    Q_ref, *_ = ref.gptq(W, H, step, zero, 2, res.lam, act_order=True)
    np.testing.assert_array_equal(res.Q, Q_ref)


def test_dead_channel_gives_finite_output_and_quantized_zero():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((10, 4))
    X[:, 2] = 0.0
    W = rng.standard_normal((4, 3))
    g = fit_grid(W, 3)
    res = gptq(W, X.T @ X, g)
    assert np.all(np.isfinite(res.Q)) and np.all(np.isfinite(res.step_terms))
    np.testing.assert_array_equal(res.Q[2], g.quantize(np.zeros(3)))
    assert check_loss_identity(W, X.T @ X, res).passed


def test_negative_dead_channel_without_convention_or_damping_is_refused():
    X = np.random.default_rng(2).standard_normal((10, 3))
    X[:, 0] = 0.0
    W = np.ones((3, 2))
    with pytest.raises(NumericalError, match="singular|positive definite"):
        gptq(W, X.T @ X, fit_grid(W, 2), lam=0.0, dead_channels=False)


def test_psi_factor_both_routes_invert_H():
    rng = np.random.default_rng(3)
    A = rng.standard_normal((7, 5))
    H = A.T @ A + 0.1 * np.eye(5)
    kappa = np.linalg.cond(H)
    for route in ("cholesky", "eig"):
        P = psi_factor(H, route=route)
        np.testing.assert_array_equal(P, np.tril(P))
        assert np.all(np.diag(P) > 0)
        np.testing.assert_allclose(P @ P.T @ H, np.eye(5), atol=64 * 5 * EPS * kappa)


@pytest.mark.parametrize("kw, exc, word", [
    (dict(route="qr"), ValueError, "route"), (dict(blocksize=0), ValueError, "blocksize"),
    (dict(damp=-1.0), ValueError, "damp"), (dict(damp_policy="retry"), ValueError, "damp_policy"),
    (dict(lam=float("nan")), ValueError, "lam"),
])
def test_bad_options(kw, exc, word):
    with pytest.raises(exc, match=word):
        gptq(np.ones((2, 1)), np.eye(2), UNIT, **kw)


def test_bad_grid_and_shapes():
    with pytest.raises(TypeError, match="grid"):
        gptq(np.ones((2, 1)), np.eye(2), "grid")
    with pytest.raises(ValueError, match="columns"):
        gptq(np.ones((2, 2)), np.eye(2), UNIT)
    with pytest.raises(ValueError, match="H"):
        gptq(np.ones((2, 1)), np.eye(3), UNIT)


# ---------------------------------------------------------------- properties over random layers

@st.composite
def cases(draw, max_n=10):
    layer = draw(layers(max_n=max_n, max_bits=10))
    N = layer.W.shape[0]
    gs = draw(st.sampled_from([None, 2, 3]))
    gs = None if gs is not None and gs > N else gs
    bounded = draw(st.booleans())
    grid = fit_grid(layer.W, layer.bits, beta=draw(st.sampled_from([1.0, 0.8])), bounded=bounded,
                    groupsize=gs)
    X = layer.calib.X.copy()
    if draw(st.booleans()) and N > 1:  # a dead input channel
        X[:, draw(st.integers(0, N - 1))] = 0.0
    return layer, grid, X, draw(st.booleans())


@settings(max_examples=scaled(300))
@given(cases())
def test_loss_identity(case):
    layer, grid, X, act = case
    H = X.T @ X
    res = gptq(layer.W, H, grid, damp=layer.damp, act_order=act)
    chk = check_loss_identity(layer.W, H, res)
    assert chk.passed, chk


@settings(max_examples=scaled(200))
@given(cases())
def test_blocksizes_1_7_128_give_the_same_Q(case):
    layer, grid, X, act = case
    chk = check_blocksize_invariance(layer.W, X.T @ X, grid, blocksizes=(1, 7, 128),
                                     damp=layer.damp, act_order=act)
    assert chk.passed, chk


@settings(max_examples=scaled(200))
@given(cases())
def test_cholesky_and_eig_routes_agree(case):
    layer, grid, X, act = case
    chk = check_routes_agree(layer.W, X.T @ X, grid, damp=layer.damp, act_order=act)
    assert chk.passed, chk


@settings(max_examples=scaled(200))
@given(cases(), st.sampled_from([3.7, 0.3, 2.0]))
def test_scaling_X_leaves_Q_and_scales_errors(case, c):
    layer, grid, X, act = case
    chk = check_scaling(layer.W, X, grid, c, damp=layer.damp, act_order=act)
    assert chk.passed, chk


@settings(max_examples=scaled(300))
@given(cases(max_n=8))
def test_agrees_with_reference(case):
    """Q, per-step terms, errors and relative errors against the unblocked reference."""
    layer, grid, X, act = case
    W, H = layer.W, X.T @ X
    res = gptq(W, H, grid, damp=layer.damp, act_order=act)
    assert np.all(np.isfinite(res.Q)) and np.all(np.isfinite(res.step_terms))
    Q_ref, pre, terms, _ = ref.gptq(W, H, grid.step, grid.zero, grid.bits, res.lam,
                                    groupsize=grid.groupsize, bounded=grid.bounded, act_order=act)
    np.testing.assert_array_equal(res.perm, np.argsort(-np.where(np.diag(H) == 0, 1.0, np.diag(H)),
                                                       kind="stable") if act else np.arange(W.shape[0]))
    G = H + res.lam * np.eye(W.shape[0])
    kappa = np.linalg.cond(G)
    steps = 2 * grid.half_step(np.arange(W.shape[0])) * np.ones_like(W)
    mag = np.abs(W).max() + np.abs(pre).max()
    tie = ref.first_difference_is_tie(res.Q, Q_ref, pre, steps, res.perm,
                                      64 * W.shape[0] * EPS * kappa * mag)
    if tie is not None:
        return  # error feedback legitimately diverges after a rounding tie
    # per-step terms ||r_t||^2 / Psi_tt^2: r_t carries errors ~ N eps kappa |W| (the two Psi
    # differ by ~eps kappa), and 1 / Psi_tt <= sqrt(G_tt)
    total = np.sum(terms)
    atol = 64 * W.shape[0] * EPS * kappa * (total + mag * np.sqrt(total * np.max(np.diag(G))))
    np.testing.assert_allclose(res.step_terms, terms, rtol=0, atol=atol)
    obj = evaluate(W, res.Q, H=H)
    E_ref = ref.error_X(W, Q_ref, X)
    scale = np.linalg.norm(X, 2) ** 2 * np.linalg.norm(np.abs(W) + np.abs(res.Q)) ** 2
    assert abs(obj.error - E_ref) <= 64 * W.shape[0] * EPS * scale
    ref_rel_den = ref.error_X(W, np.zeros_like(W), X)
    if ref_rel_den > 0:
        rel_tol = 128 * W.shape[0] * EPS * scale / ref_rel_den * (1 + obj.relative_error)
        assert abs(obj.relative_error - E_ref / ref_rel_den) <= rel_tol


# ---------------------------------------------------------------- the definition and its fast form

@pytest.mark.parametrize("N, N_out, bits, seed", [(1, 3, 2, 0), (23, 7, 3, 1), (150, 40, 4, 2)])
def test_the_blocked_pass_is_the_row_by_row_definition_bit_for_bit(N, N_out, bits, seed):
    from gilora_theory.gptq import gptq_loop
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((2 * N + 5, N)) @ np.diag(np.linspace(0.2, 2.0, N))
    H, W = X.T @ X, rng.standard_normal((N, N_out))
    grid = fit_grid(W, bits)
    loop = gptq_loop(W, H, grid)
    for blocksize in (1, 7, 128):
        fast = gptq(W, H, grid, blocksize=blocksize)
        assert fast.Q.tobytes() == loop.Q.tobytes()          # identical bits, zeros' sign too
        np.testing.assert_allclose(fast.step_terms, loop.step_terms, rtol=64 * N * EPS,
                                   atol=64 * N * EPS * loop.step_terms.max())
        np.testing.assert_array_equal(fast.clipped, loop.clipped)


def test_the_pass_leaves_E_in_W_tildes_memory_and_W_minus_Q_is_Psi_E():
    """``W - Q = Psi E`` (the identity of Alg. 1) for the E the pass returns, with act-order."""
    from gilora_theory.gptq import _run_keeping_factors
    rng = np.random.default_rng(3)
    N, N_out = 60, 11
    X = rng.standard_normal((90, N))
    H, W = X.T @ X, rng.standard_normal((N, N_out))
    grid = fit_grid(W, 3)
    for act in (False, True):
        run, Psi, E = _run_keeping_factors(W, H, grid, N, lam=0.1, route="cholesky",
                                           blocksize=16, act_order=act, damp_policy="raise")
        D = (W - run.Q)[run.perm]
        scale = np.abs(Psi).sum(axis=1).max() * np.abs(E).max() + np.abs(W).max()
        assert np.max(np.abs(D - Psi @ E)) <= 64 * N * EPS * scale
        np.testing.assert_allclose(np.sum(E * E, axis=1), run.step_terms, rtol=64 * EPS)
        assert np.max(np.abs(D - Psi @ (E[::-1]))) > 1e-3          # negative: the order matters
