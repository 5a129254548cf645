"""GILoRA, Alg. 3 of [1]: r = 0, the ridge R, the Schur complement, the reference."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import reference as ref
from gilora_theory import (augmented_hessian, check_gilora_r0_is_gptq, check_loss_identity,
                           check_ridge_solution, check_scaling, check_schur_gptq, evaluate,
                           fit_grid, gilora, schur_complement, top_eigenvectors)
from gilora_theory.testing.budget import scaled
from gilora_theory.testing.strategies import layers

EPS = np.finfo(float).eps


# ---------------------------------------------------------------- tiny cases, exact answers

def test_augmented_hessian_is_the_gram_of_X_and_XL():
    rng = np.random.default_rng(0)
    X, L = rng.standard_normal((7, 4)), rng.standard_normal((4, 2))
    Xa = np.hstack([X, X @ L])
    H_aug = augmented_hessian(X.T @ X, L)
    np.testing.assert_allclose(H_aug, Xa.T @ Xa, atol=64 * 4 * EPS * np.linalg.norm(Xa) ** 2)
    np.testing.assert_array_equal(H_aug, H_aug.T)


def test_schur_complement_of_two_by_two_by_hand():
    # H = diag(4, 1), L = e_1, lam = 1: S = H + I - [4, 0]^T (4 + 1)^{-1} [4, 0] = diag(5 - 16/5, 2)
    S = schur_complement(np.diag([4.0, 1.0]), np.array([[1.0], [0.0]]), 1.0)
    np.testing.assert_allclose(S, np.diag([5.0 - 16.0 / 5.0, 2.0]), rtol=8 * EPS)


def test_full_branch_absorbs_everything_it_can():
    """L = I (r = N): R takes up the error; E is only the damping's share."""
    rng = np.random.default_rng(1)
    X = rng.standard_normal((12, 3))
    W = rng.standard_normal((3, 3))
    res = gilora(W, X.T @ X, fit_grid(W, 1), 3, L=np.eye(3), lam=1e-8)
    E = evaluate(W, res.Q, res.L, res.R, X=X).error
    assert E <= 1e-6 * evaluate(W, res.Q, X=X).error


def test_top_eigenvectors_are_sign_fixed_and_orthonormal():
    H = np.diag([1.0, 9.0, 4.0])
    V = top_eigenvectors(H, 2)
    np.testing.assert_allclose(np.abs(V), [[0, 0], [1, 0], [0, 1]], atol=8 * EPS)
    assert np.all(V[np.argmax(np.abs(V), axis=0), [0, 1]] > 0)
    assert top_eigenvectors(H, 0).shape == (3, 0)


def test_quantized_L_and_damping_convention_are_reported():
    rng = np.random.default_rng(2)
    X, W = rng.standard_normal((20, 5)), rng.standard_normal((5, 4))
    H = X.T @ X
    g = fit_grid(W, 3)
    res = gilora(W, H, g, 2, l_bits=4)
    assert res.L_grid is not None and res.L_grid.bits == 4
    np.testing.assert_array_equal(res.L, res.L_grid.quantize(res.L))
    assert check_loss_identity(W, H, res).passed
    a = gilora(W, H, g, 2, damp=0.1, damp_from="augmented")
    h = gilora(W, H, g, 2, damp=0.1, damp_from="hessian")
    L = a.L
    assert h.lam == pytest.approx(0.1 * np.mean(np.diag(H)), rel=4 * EPS)
    assert a.lam == pytest.approx(0.1 * np.mean(np.concatenate([np.diag(H), np.diag(L.T @ H @ L)])),
                                  rel=8 * EPS)
    assert (a.damp_from, h.damp_from) == ("augmented", "hessian")


@pytest.mark.parametrize("kw, exc, word", [
    (dict(rank=5), ValueError, "rank"), (dict(rank=1, damp_from="X"), ValueError, "damp_from"),
    (dict(rank=1, L=np.ones((2, 1))), ValueError, "L"), (dict(rank=1, l_bits=0), ValueError, "bits"),
])
def test_bad_arguments(kw, exc, word):
    W = np.arange(12.0).reshape(4, 3)
    with pytest.raises(exc, match=word):
        gilora(W, np.eye(4), fit_grid(W, 2), **kw)


# ---------------------------------------------------------------- properties over random layers

@st.composite
def cases(draw, max_n=9):
    layer = draw(layers(max_n=max_n, max_bits=10))
    N = layer.W.shape[0]
    gs = draw(st.sampled_from([None, 3]))
    grid = fit_grid(layer.W, layer.bits, groupsize=None if gs is None or gs > N else gs,
                    bounded=draw(st.booleans()))
    X = layer.calib.X.copy()
    if draw(st.booleans()) and N > 1:
        X[:, draw(st.integers(0, N - 1))] = 0.0
    opts = dict(damp=layer.damp, act_order=draw(st.booleans()),
                damp_from=draw(st.sampled_from(["augmented", "hessian"])))
    return layer, grid, X, opts


@settings(max_examples=scaled(200))
@given(cases())
def test_rank_zero_is_gptq(case):
    layer, grid, X, opts = case
    opts.pop("damp_from")
    chk = check_gilora_r0_is_gptq(layer.W, X.T @ X, grid, **opts)
    assert chk.passed, chk


@settings(max_examples=scaled(300))
@given(cases())
def test_loss_identity_ridge_and_schur(case):
    """Damped augmented error == step sum; R == ridge solution; Q == GPTQ on S."""
    layer, grid, X, opts = case
    H = X.T @ X
    res = gilora(layer.W, H, grid, layer.rank, **opts)
    assert np.all(np.isfinite(res.Q)) and np.all(np.isfinite(res.R))
    for chk in (check_loss_identity(layer.W, H, res), check_ridge_solution(layer.W, H, res),
                check_schur_gptq(layer.W, H, grid, res)):
        assert chk.passed, chk


@settings(max_examples=scaled(200))
@given(cases(), st.sampled_from([3.7, 0.25]))
def test_scaling_X_leaves_Q_and_scales_errors(case, c):
    layer, grid, X, opts = case
    chk = check_scaling(layer.W, X, grid, c, rank=layer.rank, damp=layer.damp,
                        act_order=opts["act_order"])
    assert chk.passed, chk


@settings(max_examples=scaled(250))
@given(cases(max_n=7))
def test_agrees_with_reference(case):
    layer, grid, X, opts = case
    W, H = layer.W, X.T @ X
    res = gilora(W, H, grid, layer.rank, **opts)
    Q_ref, pre, terms, R_ref = ref.gilora(W, H, res.L, grid.step, grid.zero, grid.bits, res.lam,
                                          groupsize=grid.groupsize, bounded=grid.bounded,
                                          act_order=opts["act_order"])
    G = augmented_hessian(np.where(np.eye(len(H)) * (np.diag(H) == 0), 1.0, H), res.L)
    G = G + res.lam * np.eye(G.shape[0])
    kappa = np.linalg.cond(G)
    mag = np.abs(W).max() + np.abs(pre).max()
    steps = 2 * grid.half_step(np.arange(W.shape[0])) * np.ones_like(W)
    if ref.first_difference_is_tie(res.Q, Q_ref, pre, steps, res.perm,
                                   64 * G.shape[0] * EPS * kappa * mag) is not None:
        return  # error feedback legitimately diverges after a rounding tie
    tol_R = 64 * G.shape[0] * EPS * kappa * (np.abs(R_ref).max(initial=0.0) + mag * np.sqrt(kappa))
    np.testing.assert_allclose(res.R, R_ref, rtol=0, atol=tol_R)
    E = evaluate(W, res.Q, res.L, res.R, H=H).error
    E_ref = ref.error_X(W, Q_ref, X, res.L, R_ref)
    scale = np.linalg.norm(X, 2) ** 2 * (np.linalg.norm(W) + np.linalg.norm(res.Q)
                                         + np.linalg.norm(res.L, 2) * np.linalg.norm(R_ref)) ** 2
    assert abs(E - E_ref) <= 64 * G.shape[0] * EPS * kappa * scale


def test_dead_channel_stays_decoupled_from_a_user_branch():
    """With L_i != 0 on a dead channel, R is still the ridge solution for the real H."""
    rng = np.random.default_rng(5)
    X, W, L = rng.standard_normal((30, 6)), rng.standard_normal((6, 4)), rng.standard_normal((6, 2))
    X[:, 0] = 0.0
    H = X.T @ X
    grid = fit_grid(W, 3)
    res = gilora(W, H, grid, 2, L=L)
    R_ridge = np.linalg.solve(L.T @ H @ L + res.lam * np.eye(2), L.T @ H @ (W - res.Q))
    kappa = np.linalg.cond(augmented_hessian(H, L) + res.lam * np.eye(8))
    np.testing.assert_allclose(res.R, R_ridge, atol=64 * 8 * EPS * kappa * np.abs(W).max())
    Q_ref, _, _, R_ref = ref.gilora(W, H, L, grid.step, grid.zero, grid.bits, res.lam)
    np.testing.assert_array_equal(res.Q, Q_ref)
    for chk in (check_ridge_solution(W, H, res), check_schur_gptq(W, H, grid, res),
                check_loss_identity(W, H, res)):
        assert chk.passed, chk


@settings(max_examples=scaled(100))
@given(cases(max_n=7), st.integers(0, 2**32 - 1))
def test_user_branch_with_dead_channels(case, seed):
    layer, grid, X, opts = case
    H = X.T @ X
    N = layer.W.shape[0]
    L = np.random.default_rng(seed).standard_normal((N, min(2, N)))
    res = gilora(layer.W, H, grid, 0, L=L, **opts)
    for chk in (check_loss_identity(layer.W, H, res), check_ridge_solution(layer.W, H, res),
                check_schur_gptq(layer.W, H, grid, res)):
        assert chk.passed, chk


def test_negative_R_off_the_ridge_solution_is_detected():
    rng = np.random.default_rng(3)
    X, W = rng.standard_normal((20, 5)), rng.standard_normal((5, 4))
    H = X.T @ X
    res = gilora(W, H, fit_grid(W, 3), 2)
    bad = type(res)(**{**res.__dict__, "R": res.R * (1 + 1e-6)})
    assert not check_ridge_solution(W, H, bad).passed
    # R minimises the damped augmented error, so the loss identity sees a change of R only
    # at second order: 1e-6 moves it by ~1e-12 relative (within rounding), 1e-3 by ~1e-6.
    worse = type(res)(**{**res.__dict__, "R": res.R * (1 + 1e-3)})
    assert not check_loss_identity(W, H, worse).passed
    grid = fit_grid(W, 3)
    Q = res.Q.copy()
    Q[2, 1] += grid.step[0, 1]  # one grid step away from what the pass chose
    chk = check_schur_gptq(W, H, grid, type(res)(**{**res.__dict__, "Q": Q}))
    assert not chk.passed and "NOT a tie" in chk.detail, chk


# ------------------------------------------- several lazy batches (issue 13): N > 256

@pytest.fixture(scope="module")
def tall_layer():
    """N = 300 rows (three batches of 128, 43 of 7, 300 of 1), a decaying spectrum."""
    rng = np.random.default_rng(13)
    N, N_out = 300, 6
    X = rng.standard_normal((400, N)) * np.linspace(1.0, 0.05, N)
    return rng.standard_normal((N, N_out)), X.T @ X


@pytest.mark.parametrize("blocksize", [1, 7, 128])
def test_gilora_over_several_batches_matches_the_row_loop_on_S(tall_layer, blocksize):
    """Q is the row-by-row GPTQ loop on the Schur complement; R is the ridge solution.

    ``gptq_loop`` shares no code with the blocked pass, so a kernel that drops R's
    update in every batch but the first (or mis-updates later batches) fails here.
    """
    from gilora_theory.gptq import gptq_loop
    W, H = tall_layer
    grid = fit_grid(W, 3)
    res = gilora(W, H, grid, 4, blocksize=blocksize)
    S = schur_complement(H, res.L, res.lam)
    loop = gptq_loop(W, S, grid, lam=0.0)
    np.testing.assert_array_equal(res.Q, loop.Q)
    assert check_ridge_solution(W, H, res).passed
    chk = check_loss_identity(W, H, res)
    assert chk.passed, chk


def test_gilora_R_agrees_across_block_sizes(tall_layer):
    W, H = tall_layer
    grid = fit_grid(W, 3)
    runs = [gilora(W, H, grid, 4, blocksize=b) for b in (1, 7, 128, 300)]
    scale = np.linalg.norm(runs[-1].R)
    for res in runs[:-1]:
        np.testing.assert_array_equal(res.Q, runs[-1].Q)
        assert np.linalg.norm(res.R - runs[-1].R) <= 64 * 300 * EPS * np.linalg.cond(H + res.lam * np.eye(300)) * scale


def test_a_kernel_that_drops_R_after_the_first_batch_is_caught(tall_layer, monkeypatch):
    """The negative case: break R's update in every batch but the first; the test above sees it."""
    import importlib
    gptq_module = importlib.import_module("gilora_theory.gptq")
    original = gptq_module._pass
    calls = []

    def broken(Wt, Psi, grid, perm, n_quant, blocksize):
        cut = min(blocksize, n_quant)
        Psi = Psi.copy()
        Psi[n_quant:, cut:n_quant] = 0.0     # rows N+1..N+r never see steps after batch 1
        calls.append(cut)
        return original(Wt, Psi, grid, perm, n_quant, blocksize)
    monkeypatch.setattr(gptq_module, "_pass", broken)
    W, H = tall_layer
    res = gilora(W, H, fit_grid(W, 3), 4, blocksize=128)
    assert calls and not check_ridge_solution(W, H, res).passed


def test_eigen_subspace_reports_the_gap_and_certifies():
    from gilora_theory import eigen_subspace, relative_gap
    H = np.diag([9.0, 4.0, 4.0, 1.0])
    sub = eigen_subspace(H, 1)
    assert sub.g_r == pytest.approx(5.0 / 9.0, rel=4 * EPS) and sub.resolvable
    assert sub.sin_theta_bound <= 64 * 4 * EPS
    tie = eigen_subspace(H, 2)                      # s_2^2 = s_3^2: span(V_2) is not unique
    assert tie.g_r == 0.0 and not tie.resolvable and tie.sin_theta_bound == np.inf
    assert relative_gap([9.0, 4.0, 4.0, 1.0], 4, 4) == (1.0, True)
    assert relative_gap([9.0], 0, 4) == (None, None)
    res = gilora(np.ones((4, 2)), H, fit_grid(np.ones((4, 2)), 2), 2)
    assert res.g_r == 0.0 and res.gap_resolvable is False


def test_krylov_and_dense_routes_give_the_same_Q_when_the_gap_is_resolvable(monkeypatch):
    """N = 1024, r = 8 takes the Krylov route; forcing the dense route must give the same Q."""
    gl = __import__("importlib").import_module("gilora_theory.gilora")
    rng = np.random.default_rng(2)
    N = 1024
    X = rng.standard_normal((1100, N)) * np.arange(1, N + 1) ** -0.6
    H, W = X.T @ X, rng.standard_normal((N, 16))
    grid = fit_grid(W, 3)
    sub = gl.eigen_subspace(H, 8)
    assert sub.route == "krylov" and sub.resolvable
    krylov = gilora(W, H, grid, 8)
    monkeypatch.setattr(gl, "_krylov_subspace", lambda H, r: None)
    gl._memo.clear()                          # the Krylov answer was kept for this H
    assert gl.eigen_subspace(H, 8).route == "dense"
    dense = gilora(W, H, grid, 8)
    np.testing.assert_array_equal(krylov.Q, dense.Q)
    assert np.linalg.norm(krylov.R - dense.R) <= 1e3 * N * EPS * np.linalg.norm(dense.R)
