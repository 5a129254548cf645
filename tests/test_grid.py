"""The grid of docs/theory.md, "The grid": hand-computed cases, the reference, invariants."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import reference as ref
from gilora_theory import clipped_mask, fit_grid
from gilora_theory.testing.budget import scaled
from gilora_theory.testing.strategies import weights

EPS = np.finfo(float).eps


# ---------------------------------------------------------------- tiny cases, exact answers

def test_hand_computed_grid():
    # column 0: [0, 1, 3] -> rho 3, 2 bits: delta 1, z 0, levels 0..3
    # column 1: [-1, 0.5, 2] -> rho 3: delta 1, z = round(1 * 3 / 3) = 1, levels -1..2
    W = np.array([[0.0, -1.0], [1.0, 0.5], [3.0, 2.0]])
    g = fit_grid(W, 2)
    np.testing.assert_array_equal(g.step, [[1.0, 1.0]])
    np.testing.assert_array_equal(g.zero, [[0.0, 1.0]])
    np.testing.assert_array_equal(g.levels(0), [0, 1, 2, 3])
    np.testing.assert_array_equal(g.levels(1), [-1, 0, 1, 2])
    x = np.array([[1.4, 0.4], [2.6, -7.0], [-5.0, 9.0]])
    np.testing.assert_array_equal(g.quantize(x), [[1, 0], [3, -1], [0, 2]])
    np.testing.assert_array_equal(g.codes(x), [[1, 1], [3, 0], [0, 3]])


def test_beta_scales_step_but_not_zero_point():
    # [-1, 2], 2 bits, beta 0.5: delta = 0.5 * 3 / 3 = 0.5; z from the unscaled range = 1
    g = fit_grid(np.array([[-1.0], [2.0]]), 2, beta=0.5)
    assert g.step[0, 0] == 0.5 and g.zero[0, 0] == 1.0
    np.testing.assert_array_equal(g.levels(0), [-0.5, 0.0, 0.5, 1.0])
    np.testing.assert_array_equal(g.quantize(np.array([[2.0], [-1.0]])), [[1.0], [-0.5]])


def test_constant_and_zero_columns_give_levels_not_nan():
    W = np.array([[2.0, -3.0, 0.0], [2.0, -3.0, 0.0]])
    g = fit_grid(W, 2)
    np.testing.assert_array_equal(g.step, [[2.0, 3.0, 1.0]])
    np.testing.assert_array_equal(g.zero, [[-1.0, 1.0, 0.0]])
    np.testing.assert_array_equal(g.quantize(W), W)
    np.testing.assert_array_equal(g.levels(0), [2, 4, 6, 8])
    np.testing.assert_array_equal(g.levels(1), [-3, 0, 3, 6])
    assert np.all(np.isfinite(g.quantize(np.full((2, 3), 1e3))))


def test_unbounded_grid_keeps_step_and_origin_without_clipping():
    g = fit_grid(np.array([[0.0], [1.0], [3.0]]), 2, bounded=False)
    np.testing.assert_array_equal(g.quantize(np.array([[10.2], [-5.4]])), [[10.0], [-5.0]])
    assert g.with_bounded(True).quantize(np.array([[10.2]]))[0, 0] == 3.0
    with pytest.raises(ValueError, match="unbounded"):
        g.levels(0)


def test_static_groups_hand_computed():
    # rows 0-1: [0, 1], 1 bit: delta 1, z 0 -> levels {0, 1}
    # rows 2-3: [10, 14]: delta 4, z = round(-2.5) = -2 -> levels {8, 12}
    W = np.array([[0.0], [1.0], [10.0], [14.0]])
    g = fit_grid(W, 1, groupsize=2)
    np.testing.assert_array_equal(g.step[:, 0], [1.0, 4.0])
    np.testing.assert_array_equal(g.zero[:, 0], [0.0, -2.0])
    np.testing.assert_array_equal(g.quantize(W, np.arange(4)), [[0], [1], [8], [12]])
    np.testing.assert_array_equal(g.levels(0, row=3), [8, 12])


def test_clipped_mask_reports_where_rounding_exceeded_half_a_step():
    g = fit_grid(np.array([[0.0], [1.0], [3.0]]), 2)
    target = np.array([[1.4], [3.6], [-0.5]])
    Q = g.quantize(target)
    np.testing.assert_array_equal(clipped_mask(g, target, Q)[:, 0], [False, True, False])


@pytest.mark.parametrize("bad, exc, word", [
    (dict(bits=0), ValueError, "bits"), (dict(bits=17), ValueError, "bits"),
    (dict(bits=2.0), TypeError, "bits"), (dict(bits=2, beta=0.0), ValueError, "beta"),
    (dict(bits=2, beta=1.5), ValueError, "beta"), (dict(bits=2, groupsize=0), ValueError, "groupsize"),
])
def test_bad_arguments_are_named(bad, exc, word):
    with pytest.raises(exc, match=word):
        fit_grid(np.ones((3, 2)), **bad)


@pytest.mark.parametrize("W, exc", [
    (np.array([[1.0, np.nan]]), ValueError), (np.ones((2, 2), dtype=int), TypeError),
    (np.ones(3), ValueError),
])
def test_bad_weights_refused(W, exc):
    with pytest.raises(exc, match="W"):
        fit_grid(W, 2)


# ---------------------------------------------------------------- the reference and invariants

@st.composite
def grid_cases(draw):
    N = draw(st.integers(1, 9))
    W = draw(weights(N, max_out=5))
    bits = draw(st.integers(1, 16))
    beta = draw(st.sampled_from([1.0, 0.9, 0.5]))
    gs = draw(st.sampled_from([None, 1, 2, 3]))
    gs = None if gs is not None and gs > N else gs
    return W, bits, beta, gs


@settings(max_examples=scaled(300))
@given(grid_cases(), st.integers(0, 2**32 - 1))
def test_grid_and_quantize_match_reference(case, seed):
    W, bits, beta, gs = case
    g = fit_grid(W, bits, beta=beta, groupsize=gs)
    step, zero = ref.fit_grid(W, bits, beta, gs)
    np.testing.assert_array_equal(g.step, step)
    np.testing.assert_array_equal(g.zero, zero)
    x = W + np.random.default_rng(seed).standard_normal(W.shape) * np.abs(W).max()
    rows = np.arange(W.shape[0])
    np.testing.assert_array_equal(g.quantize(x, rows), ref.rtn(x, step, zero, bits, gs))
    assert np.all(np.isfinite(g.quantize(x, rows)))


@settings(max_examples=scaled(300))
@given(grid_cases())
def test_quantize_is_nearest_level_and_idempotent(case):
    W, bits, beta, gs = case
    bits = min(bits, 8)
    g = fit_grid(W, bits, beta=beta, groupsize=gs)
    rows = np.arange(W.shape[0])
    Q = g.quantize(W, rows)
    np.testing.assert_array_equal(g.quantize(Q, rows), Q)
    for i in range(W.shape[0]):
        for j in range(W.shape[1]):
            lv = g.levels(j, row=i)
            assert lv.shape == (2**bits,) and np.all(np.diff(lv) > 0)
            dist = np.abs(lv - W[i, j])
            assert Q[i, j] in lv
            assert abs(Q[i, j] - W[i, j]) <= dist.min() * (1 + 8 * EPS) + 8 * EPS * abs(W[i, j])


@settings(max_examples=scaled(300))
@given(grid_cases())
def test_full_range_grid_never_clips_rtn(case):
    """beta = 1: every entry of W is within half a step of its level (no clipping)."""
    W, bits, _, gs = case
    g = fit_grid(W, bits, beta=1.0, groupsize=gs)
    rows = np.arange(W.shape[0])
    assert not clipped_mask(g, W, g.quantize(W, rows)).any()


def test_negative_beta_below_one_does_clip():
    W = np.linspace(-1.0, 1.0, 9)[:, None]
    g = fit_grid(W, 2, beta=0.5)
    assert clipped_mask(g, W, g.quantize(W)).any()


def test_check_grid_refuses_a_grid_fitted_to_another_shape():
    """A grid's columns and static groups must fit the W it is used with."""
    from gilora_theory.grid import check_grid

    rng = np.random.default_rng(0)
    W = rng.standard_normal((8, 3))
    check_grid(fit_grid(W, 3, groupsize=4), W)  # fits: no error
    with pytest.raises(ValueError, match="static groups"):
        check_grid(fit_grid(W, 3, groupsize=4), rng.standard_normal((12, 3)))
    with pytest.raises(ValueError, match="columns"):
        check_grid(fit_grid(W, 3), rng.standard_normal((8, 4)))
    with pytest.raises(TypeError, match="grid must be a Grid"):
        check_grid("3 bits", W)


def test_quantize_in_place_is_quantize():
    """The GPTQ pass and the Bid-Up sweep quantize rows in place through ``out``."""
    rng = np.random.default_rng(7)
    W = rng.standard_normal((12, 5))
    for grid in (fit_grid(W, 3), fit_grid(W, 2, groupsize=4), fit_grid(W, 3, bounded=False)):
        x = 1.3 * rng.standard_normal(5)
        want = grid.quantize(x, 9)
        buf = x.copy()
        assert grid.quantize(buf, 9, out=buf) is buf
        assert buf.tobytes() == want.tobytes()
        np.testing.assert_array_equal(grid.codes(x, 9, out=np.empty(5)), grid.codes(x, 9))
        other = grid.quantize(x, 1) if grid.groupsize else grid.quantize(x + 0.5 * grid.step[0])
        assert not np.array_equal(other, want)                  # negative: inputs matter
