"""The fast routes of the refinement loop agree with dense computations of the same quantities.

Covered: the filtered-subspace eigensolver against LAPACK (and its dense
fallback, its seeding, degenerate spectra), OLrC's Gram route against the full
SVD, the sparse products with Bid-Up's moves against dense ones, and the Gram
matrix and gradient the refinement loop carries against fresh products.
"""
import sys

import numpy as np
import pytest
import scipy.linalg

from gilora_theory import bidup, evaluate, fit_grid, gptq, hessian_spectrum, olrc, refine
from gilora_theory._krylov import top_eigenpairs_explicit
from gilora_theory import bidup
from gilora_theory.bidup import _bid_up, _moves_matrix, _round, _subtract_times
from gilora_theory.olrc import _gram_route, _olrc

from _bench import load as _load_bench  # noqa: E402

bench = _load_bench()

EPS = np.finfo(np.float64).eps


def _dense_top(G, r):
    e, V = scipy.linalg.eigh(G)
    return e[::-1][:r], V[:, ::-1][:, :r]


def _residual_gram(D, G):
    """``K = D^T G D`` and the residual Gram matrix of a quantization residual (flat spectrum)."""
    return D.T @ (G @ D)


@pytest.fixture(scope="module")
def layer512():
    layer = bench.make_layer(512, 512, bits=3)
    Q = gptq(layer.W, layer.H, layer.grid, lam=layer.lam).Q
    G = layer.H + layer.lam * np.eye(512)
    return layer, Q, G


def _check_pairs(G, r, theta, Y, *, gap_tol=True):
    n = G.shape[0]
    e, V = _dense_top(G, r + 1)
    tol = 64 * n * EPS * e[0]
    assert np.max(np.abs(theta - e[:r])) <= tol
    assert np.max(np.abs(Y.T @ Y - np.eye(r))) <= 64 * n * EPS
    assert np.max(np.linalg.norm(G @ Y - Y * theta, axis=0)) <= tol
    if gap_tol:
        gap = (e[r - 1] - e[r]) / e[0]
        assert np.max(np.linalg.norm(V[:, :r] @ (V[:, :r].T @ Y) - Y, axis=0)) <= tol / gap / e[0]


@pytest.fixture(scope="module")
def gram512(layer512):
    layer, Q, G = layer512
    return _residual_gram(layer.W - Q, G)


@pytest.mark.parametrize("max_products, route", [(400, "filtered"), (1, "dense")])
def test_filtered_iteration_and_its_dense_fallback_match_lapack(gram512, max_products, route):
    """A flat residual spectrum: certified by the filter within budget, else LAPACK's subset."""
    theta, Y, got = top_eigenpairs_explicit(gram512, 8, max_products=max_products)
    assert got == route
    _check_pairs(gram512, 8, theta, Y)


def test_seeded_with_the_answer_it_certifies_at_once(gram512):
    _, V = _dense_top(gram512, 8)
    theta, Y, route = top_eigenpairs_explicit(gram512, 8, start=V, max_products=1)
    assert route == "filtered"                 # one product: only the seed could do it
    _check_pairs(gram512, 8, theta, Y)


def test_unseeded_small_orders_go_to_lapack_at_once(gram512):
    """Order <= 2048 without a seed: LAPACK's subset directly (the faster route there on flat
    spectra); a seed or an explicit budget still runs the filter."""
    theta, Y, route = top_eigenpairs_explicit(gram512, 8)
    assert route == "dense"
    _check_pairs(gram512, 8, theta, Y)
    _, V = _dense_top(gram512, 8)
    assert top_eigenpairs_explicit(gram512, 8, start=V)[2] == "filtered"


@pytest.mark.parametrize("max_products", [None, 400])      # LAPACK at once, and the filter
def test_degenerate_spectra(max_products):
    rng = np.random.default_rng(3)
    n, r = 200, 6
    theta, Y, _ = top_eigenpairs_explicit(2.5 * np.eye(n), r, max_products=max_products)
    assert np.max(np.abs(theta - 2.5)) <= 64 * n * EPS * 2.5 and np.max(np.abs(Y.T @ Y - np.eye(r))) <= 64 * n * EPS
    A = rng.standard_normal((n, 3))
    K = A @ A.T                                                       # rank 3 < r
    theta, Y, _ = top_eigenpairs_explicit(K, r, max_products=max_products)
    _check_pairs(K, r, theta, Y, gap_tol=False)
    assert np.all(np.abs(theta[3:]) <= 64 * n * EPS * theta[0])
    K = np.diag(np.r_[np.full(r + 2, 4.0), np.linspace(1.0, 0.0, n - r - 2)])  # tie at r
    theta, Y, _ = top_eigenpairs_explicit(K, r, max_products=max_products)
    _check_pairs(K, r, theta, Y, gap_tol=False)
    assert np.max(np.linalg.norm(Y[r + 2:], axis=0)) <= 64 * n * EPS  # inside the top cluster


def test_gram_route_of_olrc_matches_the_full_svd(layer512):
    layer, Q, G = layer512
    r, D = 8, layer.W - Q
    assert _gram_route(D.shape, r, layer.lam, spec=layer.spec)
    full = olrc(layer.W, Q, layer.H, r, lam=layer.lam, spectrum=layer.spec, svd="full")
    L, R, value, a = _olrc(D, layer.spec, r, layer.lam, svd="partial", GD=G @ D)
    s = full.singular_values
    assert abs(value - full.value) <= 64 * 512 * EPS * s[0] ** 2 * r
    assert np.max(np.abs(a - s[:r])) <= 64 * 512 * EPS * s[0]
    gap = (s[r - 1] ** 2 - s[r] ** 2) / s[0] ** 2
    M = full.L @ full.R
    assert np.max(np.abs(L @ R - M)) <= 64 * 512 * EPS / gap * np.max(np.abs(M))
    assert abs(value - float(np.sum((D - L @ R) * (G @ (D - L @ R))))) <= 64 * 512 * EPS * value
    # the public partial route (B, its Gram matrix) gives the same answer
    part = olrc(layer.W, Q, layer.H, r, lam=layer.lam, spectrum=layer.spec, svd="partial")
    assert abs(part.value - full.value) <= 64 * 512 * EPS * s[0] ** 2 * r
    assert part.singular_values.shape == (r,)


def test_sparse_products_with_moves_equal_dense_products():
    rng = np.random.default_rng(1)
    N, N_out = 60, 50
    dQ = np.where(rng.random((N, N_out)) < 0.005, rng.choice([-1.0, 1.0], (N, N_out)), 0.0)
    moves = [(np.flatnonzero(row), row[np.flatnonzero(row)]) for row in dQ]
    S = _moves_matrix(moves, dQ.shape)
    assert S is not None and S.nnz == np.count_nonzero(dQ)
    A = rng.standard_normal((N, 7))
    AtdQ = np.zeros((7, N_out))
    _subtract_times(AtdQ, S, A)                        # 0 - A^T dQ
    np.testing.assert_allclose(-AtdQ, A.T @ dQ, rtol=0, atol=64 * N * EPS * 4)
    np.testing.assert_array_equal(S.toarray(), dQ)
    dense = np.where(rng.random((N, N_out)) < 0.2, 1.0, 0.0)
    assert _moves_matrix([(np.flatnonzero(r), r[r != 0]) for r in dense], dense.shape) is None


@pytest.mark.parametrize("block", [1, 3, 512])
def test_blocked_sparse_update_changes_no_bit(monkeypatch, block):
    """``_subtract_times`` (in place, column blocks) gives the bits of the one-product form
    ``C -= (dQ^T A)^T`` (and of ``C -= dQ^T A``), whatever the block width."""
    monkeypatch.setattr(bidup, "_COLUMN_BLOCK", block)
    rng = np.random.default_rng(2)
    N, N_out = 40, 30
    dQ = np.where(rng.random((N, N_out)) < 0.01, rng.standard_normal((N, N_out)), 0.0)
    S = _moves_matrix([(np.flatnonzero(r), r[r != 0]) for r in dQ], dQ.shape)
    for A, transpose in ((rng.standard_normal((N, N)), False),
                         (rng.standard_normal((N, N_out)), False),
                         (rng.standard_normal((N, N_out)), True)):
        C0 = rng.standard_normal((A.shape[1], N_out) if not transpose else (N_out, N_out))
        ref = C0 - ((S.T @ A) if transpose else (S.T @ A).T)
        C = C0.copy()
        _subtract_times(C, S, A, transpose=transpose)
        np.testing.assert_array_equal(C, ref)


@pytest.mark.parametrize("share", [0.0, 1.0])
def test_bid_up_trace_and_gradient_equal_fresh_evaluations(layer512, monkeypatch, share):
    layer, Q0, G = layer512
    monkeypatch.setattr(bidup, "_SPARSE_MOVES", share)       # 0: always dense, 1: always sparse
    T = layer.W - 0.01 * np.sign(layer.W)
    Q = Q0.copy()
    trace, Gr, dQ = _bid_up(T, Q, G, layer.grid, 3, 128)
    if share:     # the sum of the sweeps' moves: equal to rounding of the grid values
        np.testing.assert_allclose(dQ.toarray(), Q - Q0, rtol=0, atol=4 * EPS * np.abs(Q).max())
    else:
        assert dQ is None
    assert np.count_nonzero(Q - Q0) > 0
    fresh = G @ (T - Q)
    assert np.max(np.abs(Gr - fresh)) <= 1e3 * 512 * EPS * np.abs(fresh).max()
    scale = 64 * 512 * EPS * trace[0]
    assert abs(trace[-1] - float(np.sum((T - Q) * fresh))) <= scale
    assert all(b <= a + scale for a, b in zip(trace, trace[1:]))


def test_refinement_round_carries_the_gram_matrix_and_gradient(layer512):
    layer, Q0, G = layer512
    W, Q, r = layer.W, Q0.copy(), 8
    GD = G @ (W - Q)
    K = (W - Q).T @ GD
    R = None
    for _ in range(3):
        L, R, value, f, GD, K = _round(W, Q, G, layer.grid, layer.spec, r, layer.lam, GD, K, R,
                                       1, 128)
        fresh = G @ (W - Q)
        assert np.max(np.abs(GD - fresh)) <= 1e3 * 512 * EPS * np.abs(fresh).max()
        Kf = (W - Q).T @ fresh
        assert np.max(np.abs(K - Kf)) <= 1e3 * 512 * EPS * np.abs(Kf).max()
        assert value >= f[-1] - 64 * 512 * EPS * value


@pytest.mark.parametrize("share", [0.0, 1.0])
def test_refine_is_the_same_with_dense_or_sparse_updates(layer512, monkeypatch, share):
    layer, Q0, _ = layer512
    base = refine(layer.W, layer.H, layer.grid, Q0, 8, rounds=3, lam=layer.lam,
                  spectrum=layer.spec)
    monkeypatch.setattr(bidup, "_SPARSE_MOVES", share)       # 0: always dense, 1: always sparse
    other = refine(layer.W, layer.H, layer.grid, Q0, 8, rounds=3, lam=layer.lam,
                   spectrum=layer.spec)
    assert np.array_equal(base.Q, other.Q)
    np.testing.assert_allclose(other.trace, base.trace, rtol=1e3 * 512 * EPS)


def test_refine_without_the_gram_route_still_agrees(layer512):
    """lam = 0 on a singular H: the loop falls back to OLrC of B each round."""
    rng = np.random.default_rng(4)
    X = rng.standard_normal((300, 512))                 # rank 300 < 512
    H = X.T @ X
    W = rng.standard_normal((512, 512)) * 0.1
    grid = fit_grid(W, 3)
    spec = hessian_spectrum(H)
    assert not _gram_route(W.shape, 8, 0.0, spec=spec)
    assert not _gram_route(W.shape, 8, 0.0, H=H)
    Q0 = gptq(W, H, grid, lam=1e-3).Q
    res = refine(W, H, grid, Q0, 8, rounds=2, lam=0.0, spectrum=spec)
    final = olrc(W, res.Q, H, 8, lam=0.0, spectrum=spec, svd="full")
    assert abs(res.trace[-1] - final.value) <= 1e3 * 512 * EPS * max(final.value, 1.0)
    assert all(b <= a + 1e-9 * res.trace[0] for a, b in zip(res.trace, res.trace[1:]))


@pytest.mark.parametrize("m", [1, 2, 7, 20])
def test_the_filter_is_the_scaled_chebyshev_polynomial(m):
    """On a diagonal G the filter multiplies e_i by T_m((lambda_i - c) / e) / T_m(x0)."""
    from numpy.polynomial import chebyshev
    from gilora_theory._krylov import _chebyshev_filter
    lam = np.linspace(0.0, 3.0, 31)
    c, e = 0.5, 0.5                                   # damped interval [0, 1]
    x0 = (3.0 - c) / e
    out = _chebyshev_filter(np.diag(lam), np.eye(31), m, c, e, x0)
    T = chebyshev.Chebyshev.basis(m)
    want = T((lam - c) / e) / T(x0)
    np.testing.assert_allclose(np.diag(out), want, rtol=1e-12, atol=1e-15)
    assert np.count_nonzero(out - np.diag(np.diag(out))) == 0
    assert abs(np.diag(out)[-1] - 1.0) <= 1e-12 and np.max(np.abs(want[lam <= 1.0])) <= 1.0 / T(x0) * (1 + 1e-12)


def _no_spectrum(*args, **kwargs):
    raise AssertionError("the eigendecomposition of H was computed")


def test_partial_olrc_and_refine_need_no_eigendecomposition_at_default_damping(layer512,
                                                                               monkeypatch):
    layer, Q, _ = layer512
    full = olrc(layer.W, Q, layer.H, 8, lam=layer.lam, spectrum=layer.spec, svd="full")
    with_spec = refine(layer.W, layer.H, layer.grid, Q, 8, rounds=2, lam=layer.lam,
                       spectrum=layer.spec)
    monkeypatch.setattr(sys.modules["gilora_theory.olrc"], "hessian_spectrum", _no_spectrum)
    monkeypatch.setattr(sys.modules["gilora_theory.bidup"], "hessian_spectrum", _no_spectrum)
    part = olrc(layer.W, Q, layer.H, 8, lam=layer.lam, svd="partial")
    assert abs(part.value - full.value) <= 64 * 512 * EPS * full.singular_values[0] ** 2 * 8
    res = refine(layer.W, layer.H, layer.grid, Q, 8, rounds=2, lam=layer.lam)
    assert np.array_equal(res.Q, with_spec.Q)
    np.testing.assert_allclose(res.trace, with_spec.trace, rtol=1e3 * 512 * EPS)
    with pytest.raises(AssertionError, match="eigendecomposition"):   # the full route needs it
        olrc(layer.W, Q, layer.H, 8, lam=layer.lam, svd="full")


def test_compress_then_olrc_reaches_the_optimum_on_a_large_layer(layer512):
    from gilora_theory import compress
    layer, Q, _ = layer512
    res = compress(layer.W, layer.H, "gptq+olrc", 3, 8, grid=layer.grid)
    assert np.array_equal(res.Q, Q) and res.info["olrc_route"] == "psi"
    full = olrc(layer.W, Q, layer.H, 8, lam=res.lam, spectrum=layer.spec, svd="full")
    D = layer.W - res.Q - res.L @ res.R
    value = float(np.sum(D * ((layer.H + res.lam * np.eye(512)) @ D)))
    assert abs(value - full.value) <= 1e3 * 512 * EPS * full.value


# ---------------------------------------------------------------- OLrC after GPTQ from Psi and E

def _layer(N, N_out, seed, dead=False):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N + 30, N)) @ np.diag(np.geomspace(3.0, 0.05, N))
    if dead:
        X[:, 1] = 0.0
    W = rng.standard_normal((N, N_out))
    return W, X.T @ X, fit_grid(W, 3)


@pytest.mark.parametrize("N, N_out, r, seed", [(6, 4, 1, 0), (9, 12, 3, 1), (40, 25, 5, 2),
                                               (130, 90, 8, 3)])
def test_olrc_from_gptqs_E_equals_the_reference_olrc(N, N_out, r, seed, monkeypatch):
    """M* = Psi T_r(E) against Alg. 2 through eig(H) (independent route), to eps-derived tolerance."""
    from gilora_theory import compress
    monkeypatch.setattr(sys.modules["gilora_theory.methods"], "_psi_route_applies",
                        lambda shape, r: True)            # the route on small layers too
    W, H, grid = _layer(N, N_out, seed)
    c = compress(W, H, "gptq+olrc", 3, r, grid=grid)
    assert c.info["olrc_route"] == "psi" and c.info["certified_width"] <= 1e-10
    g = compress(W, H, "gptq", 3, grid=grid)                   # E_lam by the loss identity
    direct = evaluate(W, g.Q, H=H, lam=g.lam)
    assert abs(g.objective.error - direct.error) <= 64 * N * EPS * direct.damped_error
    ref = olrc(W, c.Q, H, r, lam=c.lam, svd="full")
    assert abs(c.objective.damped_error - ref.value) <= 64 * N * EPS * ref.value
    a = ref.singular_values
    gap = (a[r - 1] ** 2 - a[r] ** 2) / a[0] ** 2
    M = ref.L @ ref.R
    assert np.max(np.abs(c.L @ c.R - M)) <= 64 * N * EPS / gap * np.abs(M).max()


def test_act_order_permutes_psi_and_the_branch_follows():
    from gilora_theory.gptq import _run_keeping_factors
    from gilora_theory.olrc import _olrc_psi, _psi_certificate
    W, H, grid = _layer(50, 30, 4)
    lam = 0.01 * float(np.mean(np.diag(H)))
    run, Psi, E = _run_keeping_factors(W, H, grid, 50, lam=lam, route="cholesky", blocksize=16,
                                       act_order=True, damp_policy="raise")
    assert not np.array_equal(run.perm, np.arange(50))
    L_p, R, value, _a, slack, EV = _olrc_psi(Psi, E, 4)
    cert = _psi_certificate(W, run.Q, H, lam, Psi, E, run.perm, value, slack, EV, R)
    L = np.empty_like(L_p)
    L[run.perm] = L_p
    ref = olrc(W, run.Q, H, 4, lam=lam, svd="full")
    assert cert.lower <= ref.value * (1 + 64 * 50 * EPS) and ref.value <= cert.upper
    D = W - run.Q - L @ R
    F = float(np.sum(D * ((H + lam * np.eye(50)) @ D)))
    assert abs(F - ref.value) <= 64 * 50 * EPS * ref.value
    wrong = np.empty_like(L_p)                         # negative: forgetting the permutation
    wrong[np.arange(50)] = L_p
    Dw = W - run.Q - wrong @ R
    assert float(np.sum(Dw * ((H + lam * np.eye(50)) @ Dw))) > ref.value * 1.01


def test_a_dead_channel_falls_back_to_the_reference_olrc():
    from gilora_theory import compress
    W, H, grid = _layer(20, 10, 5, dead=True)
    c = compress(W, H, "gptq+olrc", 3, 2, grid=grid)
    assert c.info["olrc_route"] == "reference"
    ref = olrc(W, c.Q, H, 2, lam=c.lam, svd="full")
    assert abs(c.objective.damped_error - ref.value) <= 64 * 20 * EPS * ref.value


def test_negative_the_certificate_rejects_a_wrong_factor_or_wrong_E():
    """A Psi that does not invert H_lam, or an E that is not the pass's, is not certified."""
    from gilora_theory.gptq import _run_keeping_factors
    from gilora_theory.olrc import _olrc_psi, _psi_certificate
    W, H, grid = _layer(40, 25, 6)
    lam = 0.01 * float(np.mean(np.diag(H)))
    run, Psi, E = _run_keeping_factors(W, H, grid, 40, lam=lam, route="cholesky", blocksize=8,
                                       act_order=False, damp_policy="raise")

    def width(Psi, E):
        _L, R, value, _a, slack, EV = _olrc_psi(Psi, E, 3)
        return _psi_certificate(W, run.Q, H, lam, Psi, E, run.perm, value, slack, EV,
                                R).relative_width

    assert width(Psi, E) <= 1e-10
    assert width(Psi * (1 + 1e-6), E) > 1e-10
    bad_E = E.copy()
    bad_E[3] *= 1.001
    assert width(Psi, bad_E) > 1e-10


def test_objective_from_the_loss_identity_and_its_fallback():
    """E = E_lam - lam ||D||^2 against the direct product; a loose bound falls back to it."""
    from gilora_theory.objective import evaluate_validated, objective_from_damped
    W, H, grid = _layer(30, 20, 7)
    Q = grid.quantize(W, np.arange(30))
    lam = 0.5
    direct = evaluate_validated(W, Q, None, None, None, H, lam)
    ident = objective_from_damped(W, Q, None, None, H, lam, direct.damped_error, 0.0)
    assert abs(ident.error - direct.error) <= 64 * 30 * 20 * EPS * direct.damped_error
    assert ident.relative_error == pytest.approx(direct.relative_error, rel=64 * 30 * EPS)
    loose = objective_from_damped(W, Q, None, None, H, lam, direct.damped_error,
                                  1e-3 * direct.damped_error)          # cancellation feared
    assert loose == direct
    wrong = objective_from_damped(W, Q, None, None, H, lam, 2 * direct.damped_error, 0.0)
    assert wrong.error > 1.5 * direct.error          # negative: the identity trusts its input


def test_identity_is_kept_at_llm_sizes_where_a_size_times_eps_bound_would_refuse_it(monkeypatch):
    """The summation bound of ``lam ||D||^2`` is ``(N + N_out + 3) eps``, not ``N N_out eps``.

    At 2048 x 2048 with ``lam ||D||^2`` half of ``E``, ``N N_out eps`` (4.7e-10 of ``E``) is
    above the 1e-10 tolerance and threw the identity away at every LLM-sized layer; the row
    by row bound (4.5e-13) keeps it. ``E`` still agrees with the direct product.
    """
    import gilora_theory.objective as objective_module
    from gilora_theory.objective import evaluate_validated, objective_from_damped
    rng = np.random.default_rng(3)
    N = 2048
    W = rng.standard_normal((N, N))
    Q = W + 1e-2 * rng.standard_normal((N, N))
    H = np.diag(rng.uniform(0.5, 1.5, N))
    D = W - Q
    direct = evaluate_validated(W, Q, None, None, None, H, 0.0)
    lam = 0.5 * direct.error / float(np.sum(D * D))
    damped = direct.error + lam * float(np.sum(D * D))
    monkeypatch.setattr(objective_module, "evaluate_validated", lambda *a: pytest.fail(
        "the identity fell back to the direct product"))
    ident = objective_from_damped(W, Q, None, None, H, lam, damped, 0.0)
    assert ident.error == pytest.approx(direct.error, rel=1e-12)


def test_psi_route_at_rank_zero_computes_no_svd(monkeypatch):
    """GPTQ's value ``||E||_F^2`` (r = 0) needs no singular values: none are computed."""
    from gilora_theory.olrc import _olrc_psi
    E = np.random.default_rng(4).standard_normal((60, 40))
    monkeypatch.setattr(scipy.linalg, "svd", lambda *a, **k: pytest.fail("an SVD at r = 0"))
    L, R, value, a, slack, EV = _olrc_psi(np.eye(60), E, 0)
    assert L.shape == (60, 0) and R.shape == (0, 40) and a.size == 0
    assert value == pytest.approx(float(np.sum(E * E)), rel=64 * EPS)
    assert 0 <= slack <= 1e-12 * value


@pytest.mark.parametrize("r", [8, 16])          # 16 = min / 32: the partial route's new edge
def test_olrc_given_q_takes_the_certified_cholesky_route(layer512, monkeypatch, r):
    """OLrC given Q, no spectrum (issue 15, target 3): Psi = C^{-T}, E = C^T D; and its fallback."""
    olrc_module = sys.modules["gilora_theory.olrc"]
    layer, Q, G = layer512
    full = olrc(layer.W, Q, layer.H, r, lam=layer.lam, spectrum=layer.spec, svd="full")
    used = []
    real = olrc_module._olrc_cholesky
    monkeypatch.setattr(olrc_module, "_olrc_cholesky", lambda *a: used.append(1) or real(*a))
    part = olrc(layer.W, Q, layer.H, r, lam=layer.lam, svd="partial")
    assert used and part.singular_values.shape == (r,)
    assert abs(part.value - full.value) <= 64 * 512 * EPS * full.value
    D = layer.W - Q - part.L @ part.R
    assert abs(float(np.sum(D * (G @ D))) - full.value) <= 64 * 512 * EPS * full.value
    a = full.singular_values
    gap = (a[r - 1] ** 2 - a[r] ** 2) / a[0] ** 2
    M = full.L @ full.R
    assert np.max(np.abs(part.L @ part.R - M)) <= 64 * 512 * EPS / gap * np.abs(M).max()
    # negative: an uncertified answer is refused and the Gram route answers instead
    monkeypatch.setattr(olrc_module, "_psi_certificate", lambda *a, **k: olrc_module.PsiCertificate(
        0.0, 0.0, np.inf, 1.0, 1.0, 0.0))
    assert real(layer.W - Q, layer.H, r, layer.lam) is None
    other = olrc(layer.W, Q, layer.H, r, lam=layer.lam, svd="partial")
    assert abs(other.value - full.value) <= 64 * 512 * EPS * full.value
