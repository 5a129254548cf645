"""Tests of gilora_theory.upper_bounds: the chain of docs/theory.md, "Upper bounds", link by link.

Tiers: tiny cases with answers by hand; independent routes for every link
(X-based formulas, the explicit Schur complement, the package's
``schur_complement``); the property test over thousands of generated layers on
the unbounded grid; negative cases (clipping breaks the chain; the Cor. 3.9 eig
form is not a bound for a random L) with a saved counterexample.
"""
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
from hypothesis import given, settings, target
from hypothesis import strategies as st

from gilora_theory import fit_grid, gilora, gptq, schur_complement, top_eigenvectors
from gilora_theory.testing.budget import scaled
from gilora_theory.testing.strategies import calibration, layers, weights
from gilora_theory.upper_bounds import (bound_chain, clipping_sweep, factorised_bound,
                                        layer_bounds, row_constants)

EPS = np.finfo(np.float64).eps
DATA = Path(__file__).parent / "data"


def _tol(N, scale):
    return 64 * N * EPS * scale


# ---------------------------------------------------------------- tiny, by hand

def test_one_by_one_gptq_chain_by_hand():
    """N = N_out = 1: Psi = (h + lam)^{-1/2}; every link has a closed form."""
    h, w, lam = 4.0, 0.37, 0.5
    grid = fit_grid(np.array([[w]]), 2, bounded=False)
    run = gptq(np.array([[w]]), np.array([[h]]), grid, lam=lam)
    ch = bound_chain(np.array([[w]]), np.array([[h]]), grid, run)
    delta = grid.step[0, 0]
    q = run.Q[0, 0]
    assert ch.error == pytest.approx(h * (w - q) ** 2, rel=4 * EPS)
    assert ch.damped_error == pytest.approx((h + lam) * (w - q) ** 2, rel=4 * EPS)
    assert ch.step_sum == pytest.approx((h + lam) * (w - q) ** 2, rel=4 * EPS)
    assert ch.C == pytest.approx(delta ** 2 / 4, rel=4 * EPS)
    assert ch.schur_sum == pytest.approx(delta ** 2 / 4 * (h + lam), rel=8 * EPS)
    assert ch.trace_S == ch.closed_form == pytest.approx(delta ** 2 / 4 * (h + lam), rel=8 * EPS)
    assert ch.holds and ch.clipped == 0


def test_row_constants_static_groups_by_hand():
    W = np.array([[0.0, 1.0], [1.0, 3.0], [10.0, 0.0], [12.0, 4.0]])
    grid = fit_grid(W, 1, groupsize=2)
    # group 0 rows 0-1: ranges (1, 2); group 1 rows 2-3: ranges (2, 4); 1 bit: delta = range
    np.testing.assert_allclose(row_constants(grid, 4), [1.25, 1.25, 5.0, 5.0], rtol=4 * EPS)
    np.testing.assert_allclose(row_constants(fit_grid(W, 1), 4), [0.25 * (144 + 16)] * 4)


# ------------------------------------------------------- independent routes

def _schur_later(M, t):
    """Schur complement of coordinate t with respect to t+1..n-1 (explicit formula)."""
    if t == M.shape[0] - 1:
        return M[t, t]
    b = M[t, t + 1:]
    return M[t, t] - b @ np.linalg.solve(M[t + 1:, t + 1:], b)


@pytest.mark.parametrize("seed", range(4))
def test_links_by_independent_routes(seed):
    rng = np.random.default_rng(seed)
    N, N_out, r = 7, 4, 3
    X = rng.standard_normal((12, N)) * rng.uniform(0.1, 3, N)
    H = X.T @ X
    W = rng.standard_normal((N, N_out))
    grid = fit_grid(W, 3, bounded=False)
    for L in (top_eigenvectors(H, r), rng.standard_normal((N, r))):
        run = gilora(W, H, grid, r, L=L, damp=0.05, dead_channels=False)
        ch = bound_chain(W, H, grid, run)
        lam, C = run.lam, 0.25 * np.sum(grid.step ** 2)
        Z = np.vstack([np.hstack([X, X @ L]), np.sqrt(lam) * np.eye(N + r)])
        M = Z.T @ Z
        scale = C * np.trace(M)
        schur = sum(C * _schur_later(M, t) for t in range(N))
        assert ch.schur_sum == pytest.approx(schur, abs=_tol(N + r, scale))
        assert ch.trace_S == pytest.approx(C * np.trace(schur_complement(H, L, lam)),
                                           abs=_tol(N + r, scale))
        Lp = np.linalg.pinv(L)
        closed = C * (np.sum((X - X @ L @ Lp) ** 2) + lam * (N + np.sum(Lp ** 2)))
        assert ch.closed_form == pytest.approx(closed, abs=_tol(N + r, scale))
        D = W - run.Q - L @ run.R
        assert ch.error == pytest.approx(np.sum((X @ D) ** 2), abs=_tol(N, scale))
        assert ch.holds, ch.failed_links


def test_cor39_form_equals_general_form_for_V_r_from_known_spectrum():
    """L = V_r: ||X (I - L L^+)||^2 = sum_{i>r} s_i^2 with the strategy's exact s."""
    from gilora_theory.testing.strategies import make_calibration
    calib = make_calibration(9, "power", seed=3, param=0.4)
    H = calib.H
    W = np.random.default_rng(0).standard_normal((9, 5))
    grid = fit_grid(W, 4, bounded=False)
    for r in range(0, 6):
        ch = bound_chain(W, H, grid, gilora(W, H, grid, r, dead_channels=False))
        exact = ch.C * (np.sum(calib.s[r:] ** 2) + (9 + r) * ch.lam)
        tol = _tol(9 + r, ch.C * (np.trace(H) + 20 * ch.lam))
        assert ch.projection_tail == pytest.approx(np.sum(calib.s[r:] ** 2), abs=tol / ch.C)
        assert ch.closed_form == pytest.approx(exact, abs=tol)
        assert ch.cor39 == pytest.approx(exact, abs=tol)
        assert ch.pinv_norm2 == pytest.approx(r, abs=64 * 9 * EPS * max(r, 1))


def test_gptq_chain_is_gilora_rank_zero_and_closed_form_is_trace():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((10, 6))
    H, W = X.T @ X, rng.standard_normal((6, 3))
    grid = fit_grid(W, 3, bounded=False)
    a = bound_chain(W, H, grid, gptq(W, H, grid, dead_channels=False))
    b = bound_chain(W, H, grid, gilora(W, H, grid, 0, dead_channels=False))
    assert a.method == "gptq" and b.method == "gilora"
    for f in ("error", "damped_error", "step_sum", "schur_sum", "trace_S", "closed_form"):
        assert getattr(a, f) == getattr(b, f), f
    assert a.trace_S == a.closed_form
    assert a.closed_form == pytest.approx(a.C * (np.sum(X ** 2) + 6 * a.lam), rel=64 * 6 * EPS)


# --------------------------------------------------- the property (main chain)

def _general_L(draw, H, r, N):
    kind = draw(st.sampled_from(["quantized", "random", "scaled"]))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    V = top_eigenvectors(H, r)
    if kind == "quantized" and r > 0:
        return fit_grid(V, draw(st.integers(2, 6))).quantize(V, np.arange(N))
    if kind == "scaled":
        return V * draw(st.sampled_from([1e-2, 10.0]))
    return rng.standard_normal((N, r))


@st.composite
def chain_cases(draw):
    layer = draw(layers(min_n=1, max_n=8, max_out=6, damps=(1e-3, 1e-2, 1e-1, 1.0)))
    N = layer.W.shape[0]
    r = draw(st.integers(0, N - 1))
    return layer, r, _general_L(draw, layer.H, r, N), draw(st.sampled_from(["augmented", "hessian"]))


def _assert_chain(ch):
    assert ch.clipped == 0
    assert ch.holds, [(l.name, l.slack, l.tolerance) for l in ch.links if not l.holds]
    # Guard against vacuous tolerances. Links 3-5: O((N + r) eps) relative, below half the
    # digits. The identity's allowance is relative to |W| too (the rounding of the working
    # rows), O(n eps 2^b sqrt(kappa)) of E when E is far below lambda_max ||W||^2: a quarter.
    scale = max(abs(ch.damped_error), abs(ch.step_sum), ch.closed_form)
    assert ch.links[1].tolerance <= EPS ** 0.25 * scale
    for l in ch.links[2:]:
        assert l.tolerance <= np.sqrt(EPS) * max(abs(l.upper), abs(l.lower), ch.closed_form)


@settings(max_examples=scaled(2000))
@given(chain_cases())
def test_chain_holds_without_clipping(case):
    """Every link, for GPTQ, GILoRA with L = V_r and with a general L (unbounded grid)."""
    layer, r, L, damp_from = case
    W, H = layer.W, layer.H
    grid = fit_grid(W, layer.bits, bounded=False)
    ch_g = bound_chain(W, H, grid, gptq(W, H, grid, damp=layer.damp, dead_channels=False))
    _assert_chain(ch_g)
    assert ch_g.closed_form == ch_g.trace_S
    V = top_eigenvectors(H, r)
    ch_v = bound_chain(W, H, grid, gilora(W, H, grid, r, L=V, damp=layer.damp,
                                           damp_from=damp_from, dead_channels=False))
    _assert_chain(ch_v)
    assert abs(ch_v.closed_form - ch_v.cor39) <= ch_v.tol_schur + _tol(W.shape[0], ch_v.cor39)
    ch_l = bound_chain(W, H, grid, gilora(W, H, grid, r, L=L, damp=layer.damp,
                                           damp_from=damp_from, dead_channels=False))
    _assert_chain(ch_l)


@settings(max_examples=scaled(200))
@given(layers(min_n=2, max_n=8, max_out=5), st.integers(1, 4))
def test_chain_holds_with_static_groups(layer, groupsize):
    W, H = layer.W, layer.H
    gs = min(groupsize, W.shape[0])
    grid = fit_grid(W, layer.bits, bounded=False, groupsize=gs)
    r = min(layer.rank, W.shape[0] - 1)
    for run in (gptq(W, H, grid, damp=layer.damp, dead_channels=False, act_order=True),
                gilora(W, H, grid, r, damp=layer.damp, dead_channels=False)):
        ch = bound_chain(W, H, grid, run)
        _assert_chain(ch)
        assert ch.C == np.max(row_constants(grid, W.shape[0]))
        assert ch.cor39 >= ch.closed_form - ch.tol_schur    # C_max >= every C_t


# ---------------------------------------------------------- negative cases

def test_cor39_eig_form_is_not_a_bound_for_a_random_L():
    """The general-L closed form is needed: with a random L, E exceeds C (tail_r + (N+r) lam)."""
    rng = np.random.default_rng(5)
    found = 0
    for _ in range(40):                      # one spike: a random L misses it
        N = 4
        rot = np.linalg.qr(rng.standard_normal((N, N)))[0]
        X = rng.standard_normal((8, N)) @ np.diag([25, 0.5, 0.5, 0.5]) @ rot
        H, W = X.T @ X, rng.standard_normal((N, 4))
        grid = fit_grid(W, 3, bounded=False)
        ch = bound_chain(W, H, grid, gilora(W, H, grid, 1, L=rng.standard_normal((N, 1)),
                                             dead_channels=False))
        assert ch.holds and ch.error <= ch.closed_form
        found += ch.error > ch.cor39 + ch.tol_schur
        v = bound_chain(W, H, grid, gilora(W, H, grid, 1, dead_channels=False))
        assert v.error <= v.cor39 + v.tol_schur
    assert found >= 2


def test_saved_clipping_counterexample_is_real():
    """tests/data/clipping_counterexample.npz: the bound fails, clipping occurred, and the
    same layer on the unbounded grid satisfies every link."""
    with np.load(DATA / "clipping_counterexample.npz", allow_pickle=False) as z:
        W, H = z["W"], z["H"]
        bits, beta, damp, rank = int(z["bits"]), float(z["beta"]), float(z["damp"]), int(z["rank"])
        method, ratio = str(z["method"]), float(z["ratio"])
    lb = layer_bounds(W, H, bits, rank, damp=damp, beta=beta)
    ch = getattr(lb, method)
    assert ch.clipped > 0
    assert ch.error > ch.closed_form + ch.tol_schur
    assert "step_sum <= schur_sum" in ch.failed_links
    assert ch.links[1].holds                              # the loss identity still holds
    assert ch.bound_ratio == pytest.approx(ratio, rel=64 * EPS * W.size)
    ub = layer_bounds(W, H, bits, rank, damp=damp, beta=beta, unbounded=True)
    assert getattr(ub, method).holds and getattr(ub, method).clipped == 0


def test_clipping_sweep_finds_failures_only_with_clipping():
    sw = clipping_sweep(60, bits=2, beta=0.7, rng=11)
    assert sw.runs == 120
    assert sw.unclipped_failures == 0
    assert sw.bound_failures > 0 and sw.worst_ratio > 1
    assert sw.link_failures <= sw.clipped_runs
    assert sw.worst["clipped"] > 0


@settings(max_examples=scaled(150))
@given(layers(min_n=2, max_n=8, max_out=5, min_bits=2, max_bits=2), st.floats(0.5, 0.95))
def test_search_for_violations_under_clipping(layer, beta):
    """Hypothesis steers towards large E / closed_form on a clipping grid; any failure has clipped."""
    W, H = layer.W, layer.H
    lb = layer_bounds(W, H, 2, min(layer.rank, W.shape[0] - 1), damp=layer.damp, beta=beta)
    for ch in (lb.gptq, lb.gilora):
        target(min(ch.bound_ratio, 1e6), label=f"E/closed_form {ch.method}")
        assert ch.clipped > 0 or ch.holds


@settings(max_examples=scaled(300))
@given(layers(min_n=1, max_n=8, max_out=6, damps=(1e-3, 1e-2, 0.3, 1.0, 3.0)), st.data())
def test_cor39_with_the_hessian_lam_reading(layer, data):
    """Which lam enters Cor. 3.9 is [likely]: the chain proves it with the pass damping
    ``alpha mean(diag H_aug)``. This hunts (hypothesis ``target``) for a failure of the other
    reading, ``C (tail_r + (N + r) alpha mean(diag H))`` with the same augmented pass; it is
    not proved, so a failure here would be a finding about the paper's statement."""
    W, H = layer.W, layer.H
    r = data.draw(st.integers(0, W.shape[0] - 1))
    grid = fit_grid(W, layer.bits, bounded=False)
    run = gilora(W, H, grid, r, L=top_eigenvectors(H, r), damp=layer.damp, dead_channels=False)
    lam_H = layer.damp * float(np.mean(np.diag(H)))
    ch = bound_chain(W, H, grid, run, lam_cor39=lam_H)
    assert ch.lam_cor39 == lam_H <= ch.lam * (1 + 64 * EPS)
    if ch.cor39 > 0:
        target(ch.error / ch.cor39, label="E / Cor39(lam_H)")
    assert ch.error <= ch.cor39 + ch.tol_schur + _tol(W.shape[0] + r, ch.cor39)


# ------------------------------------------------------- factorised form g(b) h(r)

@settings(max_examples=scaled(2000))
@given(calibration(min_n=1, max_n=8), st.integers(1, 8), st.sampled_from([1e-3, 1e-2, 0.3, 2.0]),
       st.sampled_from(["hessian", "augmented"]), st.data())
def test_h_convex_and_minimised_at_r_star(calib, bits, damp, damp_from, data):
    """h from eig(H) matches h from the strategy's exact spectrum; r* minimises it."""
    H, s2 = calib.H, calib.s ** 2
    N = H.shape[0]
    W = data.draw(weights(N))
    fb = factorised_bound(W, H, bits, damp=damp, damp_from=damp_from)
    if damp_from == "augmented" and damp > 1:    # h = (1+a) tr H + (a-1) top_r: concave
        bend = (damp - 1) * (s2[:-1] - s2[1:])    # minus the second differences of h
        tol_fb = 64 * N * EPS * (np.sum(s2) + N * np.max(fb.lam))
        if np.all(bend <= tol_fb / 2):
            assert fb.convex
        elif np.any(bend > 2 * tol_fb):
            assert not fb.convex
        assert fb.r_star == 0
    else:
        assert fb.convex
    tol = _tol(N, np.sum(s2) * (1 + damp) * N)
    ranks = np.arange(N + 1)
    tail = np.sum(s2) - np.concatenate([[0.0], np.cumsum(s2)])
    if damp_from == "hessian":
        h_exact = tail + (N + ranks) * damp * np.mean(np.diag(H))
        r_exact = np.count_nonzero(s2 > damp * np.mean(np.diag(H)))
    else:
        h_exact = (1 + damp) * np.sum(s2) - (1 - damp) * (np.sum(s2) - tail)
        r_exact = np.count_nonzero(s2 > 0) if damp < 1 else 0
    np.testing.assert_allclose(fb.h, h_exact, rtol=0, atol=tol)
    assert fb.h[fb.r_star] <= np.min(fb.h) + tol
    assert abs(h_exact[fb.r_star] - h_exact[r_exact]) <= 2 * tol   # same minimum (ties allowed)


@pytest.mark.parametrize("damp_from", ["hessian", "augmented"])
def test_factorised_bound_matches_chain_closed_form(damp_from):
    rng = np.random.default_rng(2)
    X = rng.standard_normal((15, 7)) @ np.diag([9, 4, 2, 1, 0.5, 0.3, 0.1])
    H, W = X.T @ X, rng.standard_normal((7, 5))
    fb = factorised_bound(W, H, 3, damp=0.02, damp_from=damp_from)
    grid = fit_grid(W, 3, bounded=False)
    assert fb.g == pytest.approx(0.25 * np.sum(grid.step ** 2), rel=16 * EPS)   # no constant column
    for r in range(6):
        ch = bound_chain(W, H, grid, gilora(W, H, grid, r, damp=0.02, damp_from=damp_from,
                                             dead_channels=False))
        assert fb.lam[r] == pytest.approx(ch.lam, rel=64 * EPS)
        assert fb.bound[r] == pytest.approx(ch.closed_form, abs=ch.tol_schur + _tol(7 + r, ch.closed_form))


def test_h_negative_case_not_convex_with_unsorted_increments():
    """The convexity check can fail: h built from a wrong (unsorted) spectrum is caught."""
    fb = factorised_bound(np.eye(3), np.diag([1.0, 5.0, 0.5]), 2, damp=0.0)
    assert fb.convex and fb.r_star == 3
    h_bad = np.array([6.5, 1.5, 0.5, 0.0])[[0, 2, 1, 3]]
    assert np.any(np.diff(h_bad, 2) < 0)


# ------------------------------------------------------------- input checks

def test_bad_inputs_name_the_argument():
    W = np.ones((3, 2))
    W[0, 0] = 2.0
    H = np.eye(3)
    grid = fit_grid(W, 2)
    run = gptq(W, H, grid)
    with pytest.raises(TypeError, match="run must be"):
        bound_chain(W, H, grid, object())
    with pytest.raises(TypeError, match="grid must be"):
        bound_chain(W, H, "grid", run)
    with pytest.raises(ValueError, match="run.Q"):
        bound_chain(np.ones((4, 2)), np.eye(4), fit_grid(np.ones((4, 2)), 2), run)
    with pytest.raises(ValueError, match="damp_from"):
        factorised_bound(W, H, 2, damp_from="both")
    with pytest.raises(ValueError, match="r_max"):
        factorised_bound(W, H, 2, r_max=4)
    with pytest.raises(ValueError, match="cases"):
        clipping_sweep(0)
    assert all(np.isfinite(getattr(bound_chain(W, H, grid, run), f)) for f in
               ("error", "closed_form", "tol_identity"))


def test_layer_bounds_deterministic_and_scaled():
    rng = np.random.default_rng(4)
    X = rng.standard_normal((30, 8))
    H, W = X.T @ X, rng.standard_normal((8, 8)) * 0.1
    a = layer_bounds(W, H, 3, 1)
    b = layer_bounds(W, H, 3, 1)
    assert a.gilora.closed_form == b.gilora.closed_form and a.lower_bound == b.lower_bound
    c = layer_bounds(3 * W, 4 * H, 3, 1)                 # W -> 3W, X -> 2X: errors x 36
    assert c.gilora.error == pytest.approx(36 * a.gilora.error, rel=1e-10)
    assert c.lower_bound == pytest.approx(36 * a.lower_bound, rel=1e-10)
    assert a.lower_bound > 0
    assert a.lower_bound <= a.gptq.error
    assert scipy.linalg.eigvalsh(H)[0] == pytest.approx(a.s_min ** 2)


# ------------------------------------------------------------------- CLI

def test_cli_bounds_prints_every_link(tmp_path, capsys):
    import json
    from gilora_theory.cli import main
    from gilora_theory.data.io import save_layer
    rng = np.random.default_rng(8)
    X, W = rng.standard_normal((20, 6)), rng.standard_normal((6, 4))
    save_layer(tmp_path / "layer.npz", W=W, X=X)
    assert main(["bounds", str(tmp_path / "layer.npz"), "--bits", "3", "--rank", "2",
                 "--unbounded-grid"]) == 0
    out = json.loads(capsys.readouterr().out)
    lb = layer_bounds(W, X.T @ X, 3, 2, unbounded=True)
    assert out["lambda"] == lb.lam and out["lower_bound"] == lb.lower_bound
    for name, ch in (("gptq", lb.gptq), ("gilora", lb.gilora)):
        for key, attr in (("error", "error"), ("damped_error", "damped_error"),
                          ("step_sum", "step_sum"), ("schur_sum", "schur_sum"),
                          ("closed_form", "closed_form"), ("clipped", "clipped"),
                          ("trace_S", "trace_S")):
            assert out[name][key] == getattr(ch, attr), (name, key)
        assert out[name]["holds"] is True
    assert main(["bounds", str(tmp_path / "layer.npz"), "--bits", "3", "--beta", "0"]) == 2
    assert "beta" in capsys.readouterr().err
