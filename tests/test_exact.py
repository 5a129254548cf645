"""Tests of gilora_theory.exact: sphere decoding against plain enumeration, rank >= 1
enumeration against a loop over OLrC, optimality against every algorithm and against
one-entry perturbations, the refusal above ``limit``, and the 16-input timing."""
import itertools
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gilora_theory import METHODS, fit_grid, olrc
from gilora_theory.exact import exact_optimum, square_root_factor
from gilora_theory.methods import compare_methods
from gilora_theory.testing.budget import scaled
from gilora_theory.testing.strategies import calibration, make_calibration, weights

EPS = np.finfo(np.float64).eps


def _tol(H, W, n):
    """Rounding allowance for comparing two evaluations of an error of scale tr(W^T H W)."""
    return 64 * n * EPS * (np.trace(H) * np.sum(W ** 2) + np.finfo(float).tiny)


# ------------------------------------------------------------- tiny, by hand

def test_one_input_is_nearest_level():
    W = np.array([[0.3, -1.0, 2.0]])
    H = np.array([[2.5]])
    ex = exact_optimum(W, H, alphabet=np.array([-1.0, 0.0, 1.0]))
    np.testing.assert_array_equal(ex.Q, [[0.0, -1.0, 1.0]])
    assert ex.value == pytest.approx(2.5 * (0.09 + 0 + 1.0), rel=8 * EPS)
    assert ex.candidates == 9 and ex.method == "sphere"


def test_diagonal_H_is_rounding():
    rng = np.random.default_rng(0)
    W = rng.standard_normal((5, 3))
    grid = fit_grid(W, 2)
    ex = exact_optimum(W, np.diag([1.0, 2.0, 3.0, 4.0, 5.0]), grid=grid)
    np.testing.assert_array_equal(ex.Q, grid.quantize(W, np.arange(5)))


def test_square_root_factor_singular():
    X = np.random.default_rng(1).standard_normal((2, 5))
    H = X.T @ X
    R = square_root_factor(H)
    assert np.allclose(np.tril(R, -1), 0)
    np.testing.assert_allclose(R.T @ R, H, atol=64 * 5 * EPS * np.max(np.abs(H)))


# ------------------------------------------ sphere decoder == plain enumeration

@settings(max_examples=scaled(150))
@given(calibration(min_n=1, max_n=6), st.integers(1, 3), st.data())
def test_sphere_equals_enumeration(calib, bits, data):
    """Every spectrum kind, including exactly singular H."""
    H = calib.H
    N = H.shape[0]
    W = data.draw(weights(N, max_out=3))
    grid = fit_grid(W, bits)
    a = exact_optimum(W, H, grid=grid, method="sphere")
    b = exact_optimum(W, H, grid=grid, method="enumerate")
    assert abs(a.value - b.value) <= _tol(H, W, N)
    assert a.candidates == b.candidates == W.shape[1] * 2 ** (bits * N)
    assert a.examined <= a.candidates and b.examined == b.candidates
    Qg = grid.quantize(a.Q, np.arange(N))
    np.testing.assert_array_equal(Qg, a.Q)                      # on the alphabet
    E = float(np.einsum("ij,ij->", W - a.Q, H @ (W - a.Q)))
    assert abs(E - a.value) <= _tol(H, W, N)


def test_rank_one_enumeration_equals_loop_over_olrc():
    """Independent route: every Q by itertools, each with olrc(lam=0)."""
    rng = np.random.default_rng(2)
    N, Nn = 3, 2
    X = rng.standard_normal((5, N))
    H = X.T @ X
    W = rng.standard_normal((N, Nn))
    grid = fit_grid(W, 1)
    lv = [[grid.levels(j)[k] for k in range(2)] for j in range(Nn)]
    best = np.inf
    for combo in itertools.product(range(2), repeat=N * Nn):
        Q = np.array([[lv[j][combo[i * Nn + j]] for j in range(Nn)] for i in range(N)])
        best = min(best, olrc(W, Q, H, 1, lam=0.0).value)
    ex = exact_optimum(W, H, grid=grid, rank=1)
    assert ex.value == pytest.approx(best, abs=_tol(H, W, N))
    assert ex.candidates == 2 ** 6 and ex.L.shape == (N, 1) and ex.R.shape == (1, Nn)
    D = W - ex.Q - ex.L @ ex.R
    assert np.einsum("ij,ij->", D, H @ D) == pytest.approx(ex.value, abs=_tol(H, W, N))


def test_rank_zero_enumerate_matrix_route_agrees():
    """r = 0 through the whole-matrix enumerator (internal) equals the column search."""
    from gilora_theory.exact import _enumerate_matrix, _alphabet, _root
    rng = np.random.default_rng(3)
    X = rng.standard_normal((6, 4))
    H, W = X.T @ X, rng.standard_normal((4, 2))
    grid = fit_grid(W, 1)
    Q, v = _enumerate_matrix(_root(H), W, _alphabet(grid, None, 4, 2), 0, 64)
    assert v == pytest.approx(exact_optimum(W, H, grid=grid).value, abs=_tol(H, W, 4))


def _svd_every_candidate(Rm, W, lv, r):
    """The unscreened search: the SVD of every candidate's ``Rm (W - Q)``."""
    from gilora_theory.exact import _digits
    N, N_out, K = lv.shape
    n = N * N_out
    ids = np.arange(K ** n, dtype=np.int64)
    Qs = lv.reshape(n, K)[np.arange(n), _digits(ids, K, n)].reshape(-1, N, N_out)
    val = np.sum(np.linalg.svd(Rm @ (W - Qs), compute_uv=False)[:, r:] ** 2, axis=1)
    k = int(np.argmin(val))
    return Qs[k], float(val[k])


# tall (Gram W^T W side), wide (W W^T side), the 2 x 2 closed form and eigvalsh, singular H
SCREEN_CASES = [(4, 2, 1, 2, False), (4, 3, 1, 1, False), (4, 3, 2, 1, False),
                (2, 5, 1, 1, False), (3, 3, 1, 1, True), (3, 2, 0, 2, False)]


@pytest.mark.parametrize("N,Nn,r,bits,singular", SCREEN_CASES)
def test_screened_enumeration_is_the_svd_search(N, Nn, r, bits, singular):
    """The Gram screen in front of the SVD changes nothing: the same Q, the same bits."""
    from gilora_theory.exact import _alphabet, _enumerate_matrix, _root
    rng = np.random.default_rng(100 * N + 10 * Nn + r)
    X = rng.standard_normal((N - 1 if singular else 2 * N, N))
    H, W = X.T @ X, rng.standard_normal((N, Nn))
    lv, Rm = _alphabet(fit_grid(W, bits), None, N, Nn), _root(H)
    Q, v = _enumerate_matrix(Rm, W, lv, r, 97)             # batches of 97: many batches
    Q_ref, v_ref = _svd_every_candidate(Rm, W, lv, r)
    np.testing.assert_array_equal(Q, Q_ref)
    assert v == v_ref


def test_screened_enumeration_check_sees_a_broken_screen(monkeypatch):
    """The test above can fail: a screen with the largest eigenvalue instead of the
    tail (and no margin) leads the search to a worse Q."""
    import gilora_theory.exact as exact_mod
    monkeypatch.setattr(exact_mod, "_tail_gram",
                        lambda M, r: np.linalg.svd(M, compute_uv=False)[:, 0] ** 2)
    monkeypatch.setattr(exact_mod, "_screen_margin", lambda M: 0.0)
    with pytest.raises(AssertionError):
        test_screened_enumeration_is_the_svd_search(*SCREEN_CASES[0])


# --------------------------------------------------- optimality against competitors

@pytest.mark.parametrize("rank,N,Nn,bits", [(0, 6, 3, 2), (0, 8, 4, 3), (1, 3, 3, 1), (1, 4, 2, 1),
                                            (2, 3, 3, 1)])
def test_optimum_never_above_any_algorithm(rank, N, Nn, bits):
    rng = np.random.default_rng(10 * N + rank)
    ratios = []
    for kind in ("isotropic", "spiked", "near_singular", "power"):
        calib = make_calibration(N, kind, seed=int(rng.integers(1 << 30)), param=0.5)
        W = rng.standard_t(3, size=(N, Nn))
        ex = exact_optimum(W, calib.H, bits, rank)
        cmp = compare_methods(W, calib.H, ex, x_abs_mean=np.abs(calib.X).mean(axis=0))
        assert set(cmp.ratios) == set(METHODS)
        for m, e in cmp.errors.items():
            assert ex.value <= e + _tol(calib.H, W, N), m
        ratios.extend(cmp.ratios.values())
    assert max(ratios) > 1 + 1e-3          # negative case: the algorithms are not optimal


@settings(max_examples=scaled(60))
@given(calibration(min_n=2, max_n=7), st.integers(1, 3), st.data())
def test_no_single_entry_change_improves(calib, bits, data):
    """Perturbed competitors: moving any one entry of the optimal Q to another level never helps."""
    H = calib.H
    N = H.shape[0]
    W = data.draw(weights(N, max_out=2))
    grid = fit_grid(W, bits)
    ex = exact_optimum(W, H, grid=grid)
    tol = _tol(H, W, N)
    for i in range(N):
        for j in range(W.shape[1]):
            for level in grid.levels(j):
                Q = ex.Q.copy()
                Q[i, j] = level
                D = W - Q
                assert np.einsum("ij,ij->", D, H @ D) >= ex.value - tol


# -------------------------------------------------------------- limits and speed

def test_refusal_names_limit_and_count():
    rng = np.random.default_rng(4)
    W, X = rng.standard_normal((4, 4)), rng.standard_normal((8, 4))
    with pytest.raises(ValueError, match="limit=1000"):
        exact_optimum(W, X.T @ X, 1, 1, limit=1000)
    with pytest.raises(ValueError) as info:
        exact_optimum(W, X.T @ X, 2, 1)
    assert "limit=1048576" in str(info.value) and "4.29e+09" in str(info.value)
    assert exact_optimum(W, X.T @ X, 1, 1, limit=2 ** 16).candidates == 2 ** 16
    with pytest.raises(ValueError, match="limit"):
        exact_optimum(W, X.T @ X, 2, 0, limit=3)                   # sphere: node limit


def test_sixteen_inputs_three_bits_well_under_a_second():
    rng = np.random.default_rng(5)
    X = rng.standard_normal((48, 16))
    H, w = X.T @ X, rng.standard_normal((16, 1))
    t0 = time.process_time()
    ex = exact_optimum(w, H, 3)
    elapsed = time.process_time() - t0
    assert elapsed < 0.5, elapsed
    assert ex.candidates == 8 ** 16 and ex.nodes < 10 ** 4
    assert ex.value <= compare_methods(w, H, ex, methods=("gptq",)).errors["gptq"] + _tol(H, w, 16)


def test_bad_inputs():
    W, H = np.ones((2, 2)), np.eye(2)
    W[0, 0] = 0.0
    with pytest.raises(ValueError, match="unbounded"):
        exact_optimum(W, H, grid=fit_grid(W, 2, bounded=False))
    with pytest.raises(ValueError, match="exactly one of"):
        exact_optimum(W, H, 2, grid=fit_grid(W, 2))
    with pytest.raises(ValueError, match="sphere"):
        exact_optimum(W, H, 1, 1, method="sphere")
    with pytest.raises(ValueError, match="method"):
        exact_optimum(W, H, 1, method="brute")
    with pytest.raises(ValueError, match="rank"):
        exact_optimum(W, H, 1, 3)
    with pytest.raises(ValueError, match="grid"):
        compare_methods(W, H, exact_optimum(W, H, alphabet=np.array([0.0, 1.0])))
    with pytest.raises(TypeError, match="ExactOptimum"):
        compare_methods(W, H, 1.0)


def test_cli_exact(tmp_path, capsys):
    import json
    from gilora_theory.cli import main
    from gilora_theory.data.io import save_layer
    rng = np.random.default_rng(9)
    X, W = rng.standard_normal((10, 4)), rng.standard_normal((4, 2))
    save_layer(tmp_path / "layer.npz", W=W, X=X)
    assert main(["exact", str(tmp_path / "layer.npz"), "--bits", "1", "--rank", "1"]) == 0
    out = json.loads(capsys.readouterr().out)
    ex = exact_optimum(W, X.T @ X, 1, 1)
    assert out["optimum"] == ex.value and out["candidates"] == 2 ** 8
    assert set(out["ratios"]) == set(METHODS)
    assert all(v >= 1 - 64 * 4 * EPS for v in out["ratios"].values())
    assert main(["exact", str(tmp_path / "layer.npz"), "--bits", "3", "--rank", "1"]) == 2
    err = capsys.readouterr().err
    assert "limit=" in err and err.count("\n") == 1


def test_static_groups_and_explicit_alphabet():
    """Per-row alphabets (static groups) and one shared explicit alphabet: sphere == enumeration."""
    rng = np.random.default_rng(12)
    X = rng.standard_normal((9, 6))
    H, W = X.T @ X, rng.standard_normal((6, 2))
    grid = fit_grid(W, 2, groupsize=2)
    a = exact_optimum(W, H, grid=grid)
    b = exact_optimum(W, H, grid=grid, method="enumerate")
    assert abs(a.value - b.value) <= _tol(H, W, 6)
    for i in range(6):
        for j in range(2):
            assert np.min(np.abs(grid.levels(j, i) - a.Q[i, j])) == 0.0
    alphabet = np.array([-1.0, -0.25, 0.5, 2.0])
    c = exact_optimum(W, H, alphabet=alphabet)
    d = exact_optimum(W, H, alphabet=alphabet[::-1], method="enumerate")
    assert abs(c.value - d.value) <= _tol(H, W, 6) and np.all(np.isin(c.Q, alphabet))
