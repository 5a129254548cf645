"""Method compositions: each equals its parts, the reference errors, and the orderings."""
import numpy as np
import pytest
from hypothesis import given, settings

import reference as ref
from gilora_theory import (METHODS, check_monotone, compress, evaluate, fit_grid, gilora, gptq,
                           olrc, ridge_R, top_eigenvectors)
from gilora_theory.testing.budget import scaled
from gilora_theory.testing.strategies import layers

EPS = np.finfo(float).eps


@pytest.fixture(scope="module")
def layer():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 8)) @ np.diag(np.linspace(3.0, 0.2, 8))
    W = rng.standard_normal((8, 5))
    return W, X, X.T @ X


def on_grid(grid, Q):
    return np.array_equal(grid.quantize(Q, np.arange(Q.shape[0])), Q)


@pytest.mark.parametrize("method", METHODS)
def test_every_method_runs_and_reports_its_objective(layer, method):
    W, X, H = layer
    c = compress(W, H, method, 3, 2, damp=0.02, rounds=2, x_abs_mean=np.abs(X).mean(axis=0))
    assert c.method == method and on_grid(c.grid, c.Q)
    r = 0 if method in ("rtn", "gptq") else 2
    assert c.L.shape == (8, r) and c.R.shape == (r, 5)
    lam = 0.02 * np.mean(np.diag(H))
    assert c.lam == pytest.approx(lam, rel=4 * EPS)
    obj = evaluate(W, c.Q, c.L, c.R, H=H, lam=c.lam)
    assert (c.objective.error, c.objective.damped_error) == (obj.error, obj.damped_error)
    E_ref = ref.error_X(W, c.Q, X, c.L, c.R)
    scale = np.linalg.norm(X, 2) ** 2 * (np.linalg.norm(W) + np.linalg.norm(c.Q)
                                         + np.linalg.norm(c.L @ c.R)) ** 2
    assert abs(c.objective.error - E_ref) <= 64 * 8 * EPS * scale
    den = ref.error_X(W, 0 * W, X)
    assert abs(c.objective.relative_error - E_ref / den) <= 128 * 8 * EPS * scale / den
    assert (c.trace is not None) == (method == "refine")


def test_methods_equal_their_parts(layer):
    W, _, H = layer
    g = fit_grid(W, 3)
    lam = 0.01 * np.mean(np.diag(H))
    np.testing.assert_array_equal(compress(W, H, "rtn", 3).Q, g.quantize(W))
    q = gptq(W, H, g).Q
    np.testing.assert_array_equal(compress(W, H, "gptq", 3).Q, q)
    gl = gilora(W, H, g, 2)
    c = compress(W, H, "gilora", 3, 2)
    np.testing.assert_array_equal(c.Q, gl.Q)
    np.testing.assert_array_equal(c.R, gl.R)
    assert c.info["pass_lam"] == gl.lam
    o = olrc(W, q, H, 2, lam=lam)
    c = compress(W, H, "gptq+olrc", 3, 2)
    np.testing.assert_array_equal(c.Q, q)
    np.testing.assert_allclose(c.L @ c.R, o.L @ o.R, atol=64 * 8 * EPS * np.linalg.norm(W))
    c = compress(W, H, "gptq+ls", 3, 2)
    np.testing.assert_allclose(c.L, top_eigenvectors(H, 2), atol=0)
    np.testing.assert_allclose(c.R, ridge_R(W, q, H, c.L, lam), atol=64 * 8 * EPS * np.linalg.norm(W))
    c = compress(W, H, "gilora+olrc", 3, 2)
    np.testing.assert_array_equal(c.Q, gl.Q)


def test_refine_trace_and_final_value(layer):
    W, _, H = layer
    c = compress(W, H, "refine", 2, 2, rounds=3)
    assert len(c.trace) == 8
    scale = 8 * np.linalg.norm(H + c.lam * np.eye(8), 2) * (np.linalg.norm(W) + np.linalg.norm(c.Q)) ** 2
    assert check_monotone(c.trace, scale=scale).passed
    assert abs(c.trace[-1] - c.objective.damped_error) <= 64 * EPS * scale


@pytest.mark.parametrize("kw, exc, word", [
    (dict(method="awq", bits=3), ValueError, "method"), (dict(method="gptq", bits=0), ValueError, "bits"),
    (dict(method="gilora", bits=3, rank=9), ValueError, "rank"),
    (dict(method="gptq", bits=3, damp=-0.1), ValueError, "damp"),
])
def test_bad_arguments(layer, kw, exc, word):
    W, _, H = layer
    with pytest.raises(exc, match=word):
        compress(W, H, **kw)


@settings(max_examples=scaled(150))
@given(layers(max_n=8))
def test_orderings_that_must_hold(layer):
    """OLrC is optimal for its Q, and refinement only descends, all on the same damped F."""
    W, H = layer.W, layer.H
    r, damp = layer.rank, layer.damp
    out = {m: compress(W, H, m, layer.bits, r, damp=damp, rounds=1)
           for m in ("rtn", "rtn+olrc", "gptq", "gptq+olrc", "gptq+ls", "gilora", "gilora+olrc",
                     "refine")}
    F = {m: c.objective.damped_error for m, c in out.items()}
    G = H + out["gptq"].lam * np.eye(H.shape[0])
    size = np.linalg.norm(W) + max(np.linalg.norm(c.Q) + np.linalg.norm(c.L @ c.R) for c in out.values())
    tol = 64 * W.shape[0] * EPS * np.linalg.norm(G, 2) * size**2
    for worse, better in (("rtn", "rtn+olrc"), ("gptq", "gptq+olrc"), ("gptq+ls", "gptq+olrc"),
                          ("gilora", "gilora+olrc"), ("gilora+olrc", "refine")):
        assert F[better] <= F[worse] + tol, (worse, better, F[worse], F[better])
    assert all(np.isfinite(v) for v in F.values())


# ---------------------------------------------------------------- data-free branches (LoRC)

@pytest.mark.parametrize("method, first", [("rtn+svd", "rtn"), ("gptq+svd", "gptq")])
def test_data_free_branch_is_the_truncated_svd_of_the_residual(layer, method, first):
    W, X, H = layer
    c = compress(W, H, method, 3, 2)
    assert np.array_equal(c.Q, compress(W, H, first, 3, 0).Q)
    s = np.linalg.svd(W - c.Q, compute_uv=False)               # an independent route
    value = float(np.sum((W - c.Q - c.L @ c.R) ** 2))
    assert value == pytest.approx(float(np.sum(s[2:] ** 2)), rel=64 * 8 * EPS, abs=64 * EPS)
    # calibration-aware OLrC on the same Q is at least as good in the damped H metric
    aware = compress(W, H, f"{first}+olrc", 3, 2)
    assert aware.objective.damped_error <= c.objective.damped_error * (1 + 64 * 8 * EPS)


def test_data_free_branch_on_grids_stays_data_free(layer):
    W, X, H = layer
    c = compress(W, H, "gptq+svd", 3, 2, l_bits=3, r_bits=3)
    assert c.info["branch_order"] == "data-free"
    full = compress(W, H, "gptq+svd", 3, 2)
    assert np.array_equal(c.Q, full.Q) and not np.array_equal(c.L, full.L)
    assert all(len(np.unique(c.L[:, k])) <= 8 for k in range(2))   # 3-bit grid per column
    # it never looks at H: another calibration matrix gives the same branch
    other = compress(W, H + np.diag(np.linspace(1.0, 9.0, 8)), "gptq+svd", 3, 2, l_bits=3,
                     r_bits=3, grid=c.grid)
    if np.array_equal(other.Q, c.Q):
        assert np.array_equal(other.L, c.L) and np.array_equal(other.R, c.R)
    rtn = compress(W, H, "rtn+svd", 3, 2, l_bits=3, r_bits=3)
    rtn_other = compress(W, 2.0 * H + np.eye(8), "rtn+svd", 3, 2, l_bits=3, r_bits=3)
    assert np.array_equal(rtn.L, rtn_other.L) and np.array_equal(rtn.R, rtn_other.R)
