"""The public correctness checks: they pass on correct runs and fail on broken ones."""
import dataclasses

import numpy as np
import pytest

from gilora_theory import (CheckResult, check_bidup_argmin, check_blocksize_invariance,
                           check_gilora_r0_is_gptq, check_loss_identity, check_monotone,
                           check_olrc_optimality, check_ridge_solution, check_routes_agree,
                           check_scaling, check_schur_gptq, fit_grid, gilora, gptq)
from gilora_theory.checks import _compare_passes, _Pass

EPS = np.finfo(float).eps


@pytest.fixture(scope="module")
def case():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 9)) @ np.diag(np.geomspace(5.0, 0.05, 9))
    W = rng.standard_normal((9, 5))
    return W, X, X.T @ X, fit_grid(W, 3)


def test_result_is_frozen_and_prints_its_numbers():
    r = CheckResult("x", True, 1.0, 1.0, 0.0, 1e-15, "detail")
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.passed = False
    assert str(r).startswith("PASS x: value 1") and "tol 1e-15" in str(r)


def test_every_check_passes_on_correct_runs(case):
    W, X, H, grid = case
    res = gptq(W, H, grid, act_order=True)
    gl = gilora(W, H, grid, 2)
    for chk in (check_loss_identity(W, H, res), check_loss_identity(W, H, gl),
                check_gilora_r0_is_gptq(W, H, grid, act_order=True),
                check_blocksize_invariance(W, H, grid), check_routes_agree(W, H, grid),
                check_ridge_solution(W, H, gl), check_schur_gptq(W, H, grid, gl),
                check_olrc_optimality(W, res.Q, H, 2, lam=res.lam, rng=0),
                check_bidup_argmin(W - gl.L @ gl.R, gl.Q, H, grid, lam=gl.lam),
                check_scaling(W, X, grid, 3.7, rank=2)):
        assert chk.passed, chk
        assert np.isfinite(chk.value) and np.isfinite(chk.tol) and chk.tol >= 0


def test_loss_identity_fails_with_the_wrong_damping(case):
    W, _, H, grid = case
    res = gptq(W, H, grid)
    chk = check_loss_identity(W, H, res, lam=2 * res.lam)
    assert not chk.passed and chk.slack > 1e3 * chk.tol


def test_schur_check_fails_on_a_moved_entry(case):
    W, _, H, grid = case
    gl = gilora(W, H, grid, 2)
    Q = gl.Q.copy()
    Q[4, 2] -= grid.step[0, 2]
    chk = check_schur_gptq(W, H, grid, dataclasses.replace(gl, Q=Q))
    assert not chk.passed and "NOT a tie" in chk.detail


def test_bidup_check_fails_from_an_off_grid_start(case):
    W, _, H, grid = case
    chk = check_bidup_argmin(W, W, H, grid, lam=0.1)  # f(W) = 0: any move on the grid costs
    assert not chk.passed and "->" in chk.detail


def test_monotone_on_hand_made_traces():
    assert check_monotone(np.array([3.0, 2.0, 2.0, 1.0])).passed
    bad = check_monotone(np.array([3.0, 2.0, 2.5]))
    assert not bad.passed and bad.value == 0.5 and bad.slack == -0.5
    # a rise at the rounding level of the stated scale is not an increase
    assert check_monotone(np.array([1.0, 1.0 + 4 * EPS]), scale=1.0).passed
    with pytest.raises(ValueError, match="trace"):
        check_monotone(np.ones((2, 2)))


def test_olrc_check_is_reproducible_and_validates(case):
    W, _, H, grid = case
    Q = grid.quantize(W)
    a = check_olrc_optimality(W, Q, H, 2, lam=0.0, n_competitors=20, rng=5)
    b = check_olrc_optimality(W, Q, H, 2, lam=0.0, n_competitors=20, rng=5)
    assert a == b and a.passed and a.slack > 0
    with pytest.raises(ValueError, match="n_competitors"):
        check_olrc_optimality(W, Q, H, 2, lam=0.0, n_competitors=-1)
    with pytest.raises(TypeError, match="result"):
        check_loss_identity(W, H, "not a result")
    with pytest.raises(TypeError, match="GILoRAResult"):
        check_ridge_solution(W, H, gptq(W, H, grid))


def test_tie_detection_tells_a_midpoint_from_a_real_difference():
    """One row, Psi = I: the pre-rounding value is W itself."""
    step = np.ones((1, 2))
    Psi = np.eye(1)
    W = np.array([[0.5, 0.3]])  # column 0 on the midpoint between 0 and 1
    a = _Pass(W, np.array([[0.0, 0.0]]), Psi)
    tie = _Pass(W, np.array([[1.0, 0.0]]), Psi)
    ok, n, detail = _compare_passes(a, tie, step, kappa=1.0)
    assert ok and n == 1 and "rounding tie" in detail
    real = _Pass(W, np.array([[0.0, 1.0]]), Psi)  # column 1 is 0.2 steps from its midpoint
    ok, n, detail = _compare_passes(a, real, step, kappa=1.0)
    assert not ok and "NOT a tie" in detail
    two = _Pass(W, np.array([[2.0, 0.0]]), Psi)  # two steps apart is never a tie
    assert not _compare_passes(a, two, step, kappa=1.0)[0]


def test_spectral_norm_and_condition_from_kept_eigenvalues():
    """``norm2_kept`` and ``_cond`` (eigenvalues of ``H`` kept, shifted by ``lam``) against a
    second route: the SVD of ``H + lam I`` and the eigenvalues of the damped matrix itself."""
    from gilora_theory.checks import _cond
    from gilora_theory.objective import norm2_kept
    rng = np.random.default_rng(5)
    X = rng.standard_normal((50, 30)) * np.logspace(0, -3, 30)
    for H, lam in ((X.T @ X, 0.0), (X.T @ X, 0.37), (-np.diag(np.arange(1.0, 6.0)), 0.5)):
        G = H + lam * np.eye(H.shape[0])
        tol = 64 * H.shape[0] * np.finfo(float).eps * np.abs(G).max()
        assert abs(norm2_kept(H, lam) - np.linalg.norm(G, 2)) <= tol
    H = X.T @ X
    e = np.linalg.eigvalsh(H + 0.01 * np.eye(30))
    kappa, lo, hi = _cond(H, 0.01)
    assert abs(lo - e[0]) <= 64 * 30 * np.finfo(float).eps * e[-1] and abs(hi - e[-1]) <= 1e-12 * e[-1]
    assert abs(kappa - e[-1] / e[0]) <= 1e-8 * kappa
    assert _cond(np.zeros((3, 3)))[0] == np.inf
