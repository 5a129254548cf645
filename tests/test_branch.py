"""Tests of gilora_theory.branch: L and R on their own grids, GILoRA and OLrC with a quantized branch."""
import numpy as np
import pytest
from hypothesis import given, settings

from gilora_theory import fit_grid, gilora, hessian, olrc
from gilora_theory.branch import (gilora_branch, olrc_branch, quantize_after, quantize_branch,
                                  refit_R)
from gilora_theory.methods import ridge_R
from gilora_theory.objective import layer_error, resolve_lam
from gilora_theory.testing.budget import scaled
from gilora_theory.testing.strategies import layers, make_calibration

EPS = np.finfo(np.float64).eps


def _layer(seed, N=16, N_out=12, kind="power", m=None):
    calib = make_calibration(N, kind, seed, 0.5, m=m or 2 * N)
    W = np.random.default_rng(seed).standard_normal((N, N_out))
    return W, calib.H


# --- tiny cases with exact answers ------------------------------------------------

def test_quantize_L_tiny_hand_case():
    # Column 0: min -1, max 2, 2 bits -> step 1, zero round(1 * 3 / 3) = 1, levels -1, 0, 1, 2.
    # Column 1: min 0, max 3, 1 bit -> step 3, zero 0, levels 0, 3.
    L = np.array([[-1.0, 0.0], [0.4, 1.4], [2.0, 3.0], [1.6, 1.6]])
    qb = quantize_branch(L, np.ones((2, 3)), l_bits=2)
    np.testing.assert_array_equal(qb.L[:, 0], [-1.0, 0.0, 2.0, 2.0])
    qb1 = quantize_branch(L[:, 1:], np.ones((1, 3)), l_bits=1)
    np.testing.assert_array_equal(qb1.L[:, 0], [0.0, 0.0, 3.0, 3.0])
    assert qb.L_grid.step.shape == (1, 2) and qb.R_grid is None


def test_R_axis_row_has_one_grid_per_branch_direction():
    rng = np.random.default_rng(0)
    R = rng.standard_normal((3, 40)) * np.array([[1.0], [10.0], [0.01]])
    qb = quantize_branch(np.ones((5, 3)), R, r_bits=2, r_axis="row")
    assert qb.R_grid.step.shape == (1, 3)          # one grid per row of R (laid out for R^T)
    for k in range(3):
        assert len(np.unique(qb.R[k])) <= 4         # 2 bits: at most 4 levels per row
        assert np.all(np.abs(qb.R[k] - R[k]) <= qb.R_grid.step[0, k] / 2 * (1 + 8 * EPS))
    qc = quantize_branch(np.ones((5, 3)), R, r_bits=2, r_axis="column")
    assert qc.R_grid.step.shape == (1, 40)         # one grid per output column over r = 3 rows


def test_column_axis_degenerates_at_rank_one():
    # With r = 1 each column of R is a constant, which its grid stores exactly: no error at all.
    R = np.random.default_rng(1).standard_normal((1, 7))
    qc = quantize_branch(np.ones((4, 1)), R, r_bits=1, r_axis="column")
    np.testing.assert_array_equal(qc.R, R)
    qr = quantize_branch(np.ones((4, 1)), R, r_bits=1, r_axis="row")
    assert not np.array_equal(qr.R, R)


def test_per_direction_grids_ignore_the_scale_split():
    # L R = (L D)(D^{-1} R); with D a power of two every code is the same, so the product is too.
    rng = np.random.default_rng(2)
    L, R = rng.standard_normal((20, 3)), rng.standard_normal((3, 15))
    D = np.array([4.0, 0.25, 2.0 ** 10])
    a = quantize_branch(L, R, l_bits=3, r_bits=3, r_axis="row")
    b = quantize_branch(L * D, R / D[:, None], l_bits=3, r_bits=3, r_axis="row")
    np.testing.assert_array_equal(a.L @ a.R, (b.L / D) @ (b.R * D[:, None]))
    # Negative case: per-column grids of R do depend on the split.
    c = quantize_branch(L, R, r_bits=3, r_axis="column")
    d = quantize_branch(L * D, R / D[:, None], r_bits=3, r_axis="column")
    assert not np.allclose(c.L @ c.R, d.L @ d.R)


# --- full precision reproduces the unquantized routines bit for bit -----------------

@given(layers(min_n=2, max_n=8, max_bits=4))
@settings(max_examples=scaled(25))
def test_full_precision_branch_is_bit_identical(layer):
    W, H, r = layer.W, layer.H, layer.rank
    grid = fit_grid(W, layer.bits)
    ref = gilora(W, H, grid, r, damp=layer.damp)
    got = gilora_branch(W, H, grid, r, damp=layer.damp)
    for a, b in ((got.Q, ref.Q), (got.L, ref.L), (got.R, ref.R)):
        assert np.array_equal(a, b)
    ref_o = olrc(W, ref.Q, H, r, damp=layer.damp)
    for refit in (True, False):
        got_o = olrc_branch(W, ref.Q, H, r, damp=layer.damp, refit=refit)
        assert np.array_equal(got_o.L, ref_o.L) and np.array_equal(got_o.R, ref_o.R)
    after = quantize_after(W, ref.Q, H, ref.L, ref.R, damp=layer.damp)
    assert after.L is ref.L and after.R is ref.R
    assert got.branch.L_grid is None and got.branch.R_grid is None


# --- the refit: an independent route and optimality --------------------------------

def test_refit_R_matches_a_second_factorisation_and_is_optimal():
    W, H = _layer(3)
    Q = fit_grid(W, 2).quantize(W, np.arange(W.shape[0]))
    L = quantize_branch(np.random.default_rng(3).standard_normal((16, 4)), np.zeros((4, 12)),
                        l_bits=3).L
    lam = resolve_lam(H, 0.01, None)
    R = refit_R(W, Q, H, L, damp=0.01)
    # Independent route: H_lam = C C^T, then ordinary least squares on C^T L R ~ C^T (W - Q).
    C = np.linalg.cholesky(H + lam * np.eye(16))
    R2 = np.linalg.lstsq(C.T @ L, C.T @ (W - Q), rcond=None)[0]
    scale = np.max(np.abs(R2)) * np.linalg.cond(C.T @ L)
    assert np.max(np.abs(R - R2)) <= 64 * EPS * 16 * scale
    f = layer_error(W, Q, L, R, H=H, lam=lam)
    rng = np.random.default_rng(4)
    for _ in range(20):   # perturbed competitors never do better
        P = R + 1e-3 * rng.standard_normal(R.shape)
        assert layer_error(W, Q, L, P, H=H, lam=lam) >= f * (1 - 64 * EPS)


def test_refit_of_olrc_L_returns_olrc_R():
    W, H = _layer(5)
    Q = fit_grid(W, 3).quantize(W, np.arange(16))
    res = olrc(W, Q, H, 3)
    R = refit_R(W, Q, H, res.L)
    M, M2 = res.L @ res.R, res.L @ R
    assert np.max(np.abs(M - M2)) <= 64 * EPS * 16 * np.max(np.abs(M)) * np.linalg.cond(res.L)


def test_refit_after_quantizing_L_helps_olrc():
    wins = 0
    for seed in range(6):
        W, H = _layer(seed, kind="spiked")
        Q = fit_grid(W, 2).quantize(W, np.arange(16))
        with_refit = olrc_branch(W, Q, H, 4, l_bits=2, refit=True).objective.damped_error
        without = olrc_branch(W, Q, H, 4, l_bits=2, refit=False).objective.damped_error
        assert with_refit <= without * (1 + 64 * EPS)   # guaranteed: R is the exact minimiser
        wins += with_refit < without
    assert wins == 6                                     # and it really moves


# --- GILoRA: quantizing L before the pass lets the pass absorb L's rounding ----------

def test_gilora_before_pass_R_is_the_ridge_solution_for_the_quantized_L():
    W, H = _layer(7)
    grid = fit_grid(W, 3)
    res = gilora_branch(W, H, grid, 4, l_bits=2)
    plain = gilora(W, H, grid, 4, l_bits=2)
    assert np.array_equal(res.L, plain.L) and not np.array_equal(res.L, gilora(W, H, grid, 4).L)
    R = ridge_R(W, res.Q, H, res.L, plain.lam)
    H_lam = H + plain.lam * np.eye(16)
    assert np.max(np.abs(R - res.R)) <= 64 * EPS * 16 * np.max(np.abs(R)) * np.linalg.cond(H_lam)


def test_quantizing_L_before_the_pass_beats_quantizing_it_after():
    """Measured on 12 layers at l_bits = 2 (W at 3 bits, r = 4); see the paper check C15."""
    ratios = []
    for kind in ("power", "spiked", "exponential"):
        for seed in range(4):
            W, H = _layer(seed, N=24, N_out=16, kind=kind)
            grid = fit_grid(W, 3)
            e = {o: gilora_branch(W, H, grid, 4, l_bits=2, l_order=o).objective.error
                 for o in ("before", "after")}
            ratios.append(e["before"] / e["after"])
    ratios = np.array(ratios)
    assert np.mean(ratios) < 0.9, ratios
    assert np.mean(ratios < 1) >= 0.75, ratios


def test_R_quantized_last_in_every_order():
    W, H = _layer(8)
    grid = fit_grid(W, 3)
    for order in ("before", "after", "after-refit"):
        res = gilora_branch(W, H, grid, 3, l_bits=4, r_bits=3, l_order=order)
        assert res.branch.R_grid.bits == 3 and res.order == order
        for k in range(3):
            assert len(np.unique(res.R[k])) <= 8


def test_same_inputs_same_bits():
    W, H = _layer(9)
    grid = fit_grid(W, 3)
    a = gilora_branch(W, H, grid, 3, l_bits=4, r_bits=4)
    b = gilora_branch(W.copy(), H.copy(), grid, 3, l_bits=4, r_bits=4)
    assert np.array_equal(a.Q, b.Q) and np.array_equal(a.L, b.L) and np.array_equal(a.R, b.R)


# --- bad input -----------------------------------------------------------------------

@pytest.mark.parametrize("kw, exc, match", [
    ({"l_bits": 0}, ValueError, "l_bits"),
    ({"r_bits": 17}, ValueError, "r_bits"),
    ({"l_bits": 2.5}, TypeError, "l_bits"),
    ({"r_axis": "diag"}, ValueError, "r_axis"),
])
def test_bad_options(kw, exc, match):
    with pytest.raises(exc, match=match):
        quantize_branch(np.ones((3, 2)), np.ones((2, 4)), **kw)


def test_bad_shapes_and_order():
    W, H = _layer(10)
    with pytest.raises(ValueError, match="L must be"):
        quantize_branch(np.ones((3, 2)), np.ones((3, 4)))
    with pytest.raises(ValueError, match="l_order"):
        gilora_branch(W, H, fit_grid(W, 3), 2, l_order="during")
    with pytest.raises(ValueError, match="R must be"):
        quantize_after(W, W, H, np.ones((16, 2)), np.ones((3, 12)))
    with pytest.raises(ValueError, match="L must have"):
        refit_R(W, W, H, np.ones((5, 2)))
    with pytest.raises(ValueError, match="finite"):
        quantize_branch(np.full((3, 2), np.nan), np.ones((2, 4)), l_bits=4)


def test_hessian_from_X_is_accepted():
    X = np.random.default_rng(11).standard_normal((30, 6))
    W = np.random.default_rng(12).standard_normal((6, 5))
    res = olrc_branch(W, fit_grid(W, 2).quantize(W, np.arange(6)), hessian(X), 2, l_bits=4)
    assert np.isfinite(res.objective.error)


# --- compress(..., l_bits=, r_bits=) is the same arithmetic as the branch functions ----

def test_compress_with_branch_bits_matches_the_branch_functions():
    from gilora_theory import compress, gptq
    W, H = _layer(13)
    grid = fit_grid(W, 3)
    c = compress(W, H, "gilora", 3, 4, l_bits=3, r_bits=4)
    ref = gilora_branch(W, H, grid, 4, l_bits=3, r_bits=4)
    assert np.array_equal(c.Q, ref.Q) and np.array_equal(c.L, ref.L) and np.array_equal(c.R, ref.R)
    assert c.info["branch_order"] == "before" and c.info["l_bits"] == 3
    c2 = compress(W, H, "gptq+olrc", 3, 4, l_bits=3, r_bits=4)
    Q = gptq(W, H, grid).Q
    ref2 = olrc_branch(W, Q, H, 4, l_bits=3, r_bits=4)
    assert np.array_equal(c2.L, ref2.L) and np.array_equal(c2.R, ref2.R)
    assert c2.objective == ref2.objective and c2.info["branch_order"] == "after-refit"


def test_compress_full_precision_branch_is_bit_identical_to_the_routines():
    from gilora_theory import compress, gptq
    W, H = _layer(14)
    grid = fit_grid(W, 3)
    c = compress(W, H, "gilora", 3, 4)
    ref = gilora(W, H, grid, 4)
    assert np.array_equal(c.Q, ref.Q) and np.array_equal(c.L, ref.L) and np.array_equal(c.R, ref.R)
    assert "l_bits" not in c.info
    c2 = compress(W, H, "gptq+olrc", 3, 4)
    ref2 = olrc(W, gptq(W, H, grid).Q, H, 4)
    assert np.array_equal(c2.L, ref2.L) and np.array_equal(c2.R, ref2.R)
    with pytest.raises(ValueError, match="r_bits"):
        compress(W, H, "gilora", 3, 4, r_bits=0)


def test_l_order_comparison_measures_and_bounds_the_cost_of_quantizing_L():
    from gilora_theory.experiments.equal_storage import l_order_comparison
    from gilora_theory.data.io import Layer

    layers = [Layer(*_layer(s, N=24, N_out=16, kind="spiked"), name=f"s{s}") for s in range(3)]
    t = l_order_comparison(layers, bits=3, rank=4, l_bits=(2,))
    assert t["tail_ok"].all()                      # guaranteed: V_r is the best rank-r subspace
    assert (t["tail_before"] > t["tail_fp"]).all()  # and a 2-bit L really loses some of it
    assert (t["before_over_after"] < 1).all()
    unclipped = t[t["clipped"] == 0]
    assert unclipped["chain_holds"].all()
