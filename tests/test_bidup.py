"""Bid-Up and the refinement loop, Alg. 4 of [1]: exact moves, brute force, monotone traces."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import reference as ref
from gilora_theory import (Grid, bid_up, check_bidup_argmin, check_monotone, fit_grid, gilora,
                           olrc, refine)
from gilora_theory.testing.budget import scaled
from gilora_theory.testing.strategies import SPECTRA, Layer, make_calibration

EPS = np.finfo(float).eps
UNIT = Grid(step=np.array([[1.0]]), zero=np.array([[0.0]]), bits=2)  # levels 0, 1, 2, 3


def f(G, T, Q):
    D = T - Q
    return float(np.sum(D * (G @ D)))


# ---------------------------------------------------------------- tiny cases, exact answers

def test_two_rows_by_hand():
    # Row 0: c = 1 + (2 * 0.4 + 0.4) / 2 = 1.6 -> 2. Row 1: G (T - Q) = -0.6 + 0.8 = 0.2,
    # c = 2 + 0.1 -> 2. f: D = [0.4, 0.4] -> 0.96; D = [-0.6, 0.4] -> 0.56.
    G = np.array([[2.0, 1.0], [1.0, 2.0]])
    res = bid_up(np.array([[1.4], [2.4]]), np.array([[1.0], [2.0]]), G, UNIT, lam=0.0)
    np.testing.assert_array_equal(res.Q, [[2.0], [2.0]])
    np.testing.assert_allclose(res.trace, [0.96, 0.56], rtol=16 * EPS)
    assert res.hessian == "H_lam" and res.lam == 0.0


def test_one_row_moves_to_the_nearest_level_of_the_target():
    res = bid_up(np.array([[1.7, -3.0]]), np.zeros((1, 2)), np.array([[3.0]]),
                 Grid(np.ones((1, 2)), np.zeros((1, 2)), 2))
    np.testing.assert_array_equal(res.Q, [[2.0, 0.0]])


def test_undamped_objective_is_reported_and_dead_rows_stay():
    H = np.diag([0.0, 2.0])
    res = bid_up(np.array([[2.6], [2.6]]), np.array([[1.0], [1.0]]), H, UNIT, use_damping=False)
    assert res.hessian == "H" and res.lam == 0.0
    np.testing.assert_array_equal(res.Q, [[1.0], [3.0]])  # row 0 does not enter f


def test_negative_off_grid_start_can_increase_f():
    """Monotonicity needs a start on the grid: from Q0 = target the first move costs."""
    rng = np.random.default_rng(0)
    A = rng.standard_normal((8, 4))
    T = rng.standard_normal((4, 3))
    res = bid_up(T, T, A.T @ A, fit_grid(T, 2))
    assert res.trace[0] == 0.0 < res.trace[1]


def test_negative_without_the_coordinate_minimiser_f_can_increase():
    """Rounding each row of the target (ignoring the coupling G_is) is not a descent move."""
    rng = np.random.default_rng(1)
    increases = 0
    for _ in range(50):
        A = rng.standard_normal((6, 4)) @ np.diag([1.0, 3.0, 0.3, 1.0])
        G = A.T @ A
        T = rng.standard_normal((4, 2))
        grid = fit_grid(T, 2)
        Q = bid_up(T, grid.quantize(T), G, grid, lam=0.0, sweeps=2).Q  # a local optimum
        for i in range(4):
            naive = Q.copy()
            naive[i] = grid.quantize(T[i])
            increases += f(G, T, naive) > f(G, T, Q) * (1 + 64 * EPS)
    assert increases > 0


@pytest.mark.parametrize("kw, exc, word", [
    (dict(sweeps=-1), ValueError, "sweeps"), (dict(blocksize=0), ValueError, "blocksize"),
    (dict(lam=-1.0), ValueError, "lam"),
])
def test_bad_arguments(kw, exc, word):
    with pytest.raises(exc, match=word):
        bid_up(np.ones((2, 1)), np.ones((2, 1)), np.eye(2), UNIT, **kw)


def test_bad_shapes():
    with pytest.raises(ValueError, match="Q0"):
        bid_up(np.ones((2, 1)), np.ones((3, 1)), np.eye(2), UNIT)
    with pytest.raises(ValueError, match="Q0"):
        refine(np.ones((2, 1)), np.eye(2), UNIT, np.ones((2, 2)), 0)
    with pytest.raises(ValueError, match="rank"):
        refine(np.ones((2, 1)), np.eye(2), UNIT, np.ones((2, 1)), 2)


# ---------------------------------------------------------------- properties over random layers

OPTIONS = [(gs, bounded, beta, start, damped) for gs in (None, 2) for bounded in (True, False)
           for beta in (1.0, 0.7) for start in ("rtn", "random", "gilora") for damped in (True, False)]


@st.composite
def starts(draw, max_n=8, max_bits=8):
    """A layer, a grid, a start on the grid and a target ``W - L R``.

    Flat on purpose (few draws, the rest from one seed through the package's
    ``make_calibration``): these properties run 2000 examples each.
    """
    N = draw(st.integers(1, max_n))
    n_out = draw(st.integers(1, 6))
    kind = draw(st.sampled_from(SPECTRA))
    bits = draw(st.integers(1, max_bits))
    rank = draw(st.integers(0, min(N, n_out)))
    gs, bounded, beta, start, damped = draw(st.sampled_from(OPTIONS))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    m = N + int(rng.integers(2 * N + 1))
    calib = make_calibration(N, kind, int(rng.integers(2**32)), rng.random(), m=m)
    W = rng.choice([1e-3, 1.0, 1e3]) * (rng.standard_t(3, (N, n_out)) if rng.random() < 0.5
                                         else rng.standard_normal((N, n_out)))
    H = calib.H
    damp = float(rng.choice([1e-3, 1e-2, 1e-1, 1.0]))
    grid = fit_grid(W, bits, groupsize=None if gs is None or gs > N else gs, bounded=bounded, beta=beta)
    rows = np.arange(N)
    if start == "rtn":
        Q0 = grid.quantize(W, rows)
    elif start == "random":
        Q0 = grid.quantize(W + rng.standard_normal(W.shape) * np.abs(W).max(), rows)
    else:
        Q0 = gilora(W, H, grid, rank, damp=damp).Q
    LR = rng.standard_normal((N, rank)) @ rng.standard_normal((rank, n_out))
    T = W - 0.1 * np.abs(W).max() * LR
    lam = damp * float(np.mean(np.diag(H))) if damped else 0.0
    return Layer(calib, W, bits, rank, damp), grid, Q0, T, lam


@settings(max_examples=scaled(2000))
@given(starts())
def test_every_bidup_update_is_the_exact_coordinate_argmin_and_f_never_increases(case):
    layer, grid, Q0, T, lam = case
    chk = check_bidup_argmin(T, Q0, layer.H, grid, lam=lam)
    assert chk.passed, chk
    res = bid_up(T, Q0, layer.H, grid, lam=lam, sweeps=3, blocksize=3)
    G = layer.H + lam * np.eye(layer.H.shape[0])
    scale = T.shape[0] * np.linalg.norm(G, 2) * (np.linalg.norm(T) + np.linalg.norm(Q0)
                                                 + np.linalg.norm(res.Q)) ** 2
    mono = check_monotone(res.trace, scale=scale)
    assert mono.passed, mono
    assert np.all(np.isfinite(res.Q))


@settings(max_examples=scaled(2000))
@given(starts(), st.integers(1, 3))
def test_refinement_trace_never_increases(case, rounds):
    layer, grid, Q0, _, _ = case
    W, H = layer.W, layer.H
    rng = np.random.default_rng(rounds)
    L0, R0 = rng.standard_normal((W.shape[0], layer.rank)), rng.standard_normal((layer.rank, W.shape[1]))
    R0 *= 0.1 * np.abs(W).max()
    res = refine(W, H, grid, Q0, layer.rank, L0=L0, R0=R0, rounds=rounds, damp=layer.damp)
    assert len(res.trace) == 2 * rounds + 2 and res.steps[0] == "start" and res.steps[-1] == "olrc"
    G = H + res.lam * np.eye(H.shape[0])
    size = np.linalg.norm(W) + max(np.linalg.norm(Q0), np.linalg.norm(res.Q)) + np.linalg.norm(L0 @ R0)
    chk = check_monotone(res.trace, scale=W.shape[0] * np.linalg.norm(G, 2) * size**2)
    assert chk.passed, chk
    final = f(G, W - res.L @ res.R, res.Q)
    assert abs(final - res.trace[-1]) <= 64 * W.shape[0] * EPS * np.linalg.norm(G, 2) * size**2


@settings(max_examples=scaled(200))
@given(starts(max_n=5, max_bits=3))
def test_sweep_agrees_with_brute_force_reference(case):
    """The reference tries every level and recomputes the whole column objective."""
    layer, grid, Q0, T, lam = case
    if not grid.bounded:
        grid = grid.with_bounded(True)
        Q0 = grid.quantize(Q0, np.arange(Q0.shape[0]))
    G = layer.H + lam * np.eye(layer.H.shape[0])
    res = bid_up(T, Q0, layer.H, grid, lam=lam)
    Q_ref = ref.bid_up_sweep(T, Q0, G, grid.step, grid.zero, grid.bits, grid.groupsize)
    # Where the two differ, both choices must be equally good (a tie of f within rounding)
    # and the rest of the sweep then starts from different rows: compare f instead.
    if not np.array_equal(res.Q, Q_ref):
        i = int(np.argmax((res.Q != Q_ref).any(axis=1)))
        Q_alt = np.vstack([res.Q[:i + 1], Q0[i + 1:]])
        Q_alt_ref = np.vstack([res.Q[:i], Q_ref[i:i + 1], Q0[i + 1:]])
        scale = np.linalg.norm(G, 2) * (np.linalg.norm(T) + np.linalg.norm(Q0)) ** 2
        assert abs(f(G, T, Q_alt) - f(G, T, Q_alt_ref)) <= 64 * T.shape[0] * EPS * scale


# ---------------------------------------------------------------- the definition and its fast form

@pytest.mark.parametrize("N, N_out, r, rounds", [(12, 9, 2, 2), (40, 30, 3, 1), (512, 512, 8, 2)])
def test_refine_is_the_papers_loop(N, N_out, r, rounds):
    """refine (carried gradients, Gram route at N = 512) against refine_loop (the definition)."""
    from gilora_theory.bidup import refine_loop
    rng = np.random.default_rng(N)
    X = rng.standard_normal((N + 20, N)) @ np.diag(np.linspace(0.3, 2.0, N))
    H, W = X.T @ X, rng.standard_normal((N, N_out))
    grid = fit_grid(W, 3)
    g = gilora(W, H, grid, r)
    loop = refine_loop(W, H, grid, g.Q, r, L0=g.L, R0=g.R, rounds=rounds)
    fast = refine(W, H, grid, g.Q, r, L0=g.L, R0=g.R, rounds=rounds)
    assert np.array_equal(fast.Q, loop.Q) and fast.steps == loop.steps
    np.testing.assert_allclose(fast.trace, loop.trace, rtol=1e3 * N * EPS)
    a = olrc(W, loop.Q, H, r, svd="full").singular_values
    gap = (a[r - 1] ** 2 - a[r] ** 2) / a[0] ** 2              # branch sensitivity (Wedin)
    M = loop.L @ loop.R
    assert np.max(np.abs(fast.L @ fast.R - M)) <= 64 * N * EPS / gap * np.abs(M).max()
    assert np.all(np.diff(loop.trace) <= 64 * N * EPS * loop.trace[0])
    if rounds > 1:               # negative: one round fewer is a different run
        short = refine_loop(W, H, grid, g.Q, r, L0=g.L, R0=g.R, rounds=rounds - 1)
        assert len(short.trace) != len(fast.trace)


def test_the_lazy_batch_sweep_is_the_row_by_row_sweep():
    from gilora_theory.bidup import _bid_up_sweep_loop, _sweep
    rng = np.random.default_rng(5)
    X = rng.standard_normal((80, 50))
    G = X.T @ X + 0.1 * np.eye(50)
    W = rng.standard_normal((50, 20))
    grid = fit_grid(W, 2)
    T, Q0 = W - 0.05, grid.quantize(W, np.arange(50))
    want = _bid_up_sweep_loop(T, Q0, G, grid)
    for blocksize in (1, 8, 128):
        Q = Q0.copy()
        _sweep(T, Q, G, G @ (T - Q), grid, blocksize)
        np.testing.assert_array_equal(Q, want)
    assert not np.array_equal(want, Q0)                        # the sweep moved something
