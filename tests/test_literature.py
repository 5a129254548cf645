"""The literature's methods: each against a plainly written route, and the issue's reductions."""
import numpy as np
import pytest

from gilora_theory import compress, fit_grid, gptq, olrc
from gilora_theory import literature as lit

EPS = np.finfo(float).eps


def make_layer(seed, m=60, N=10, N_out=7, decay=(3.0, 0.1)):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((m, N)) @ np.diag(np.linspace(*decay, N))
    X[:, 0] += 2.0                      # a channel with a large mean |x| (LQER's outlier)
    W = rng.standard_normal((N, N_out))
    return W, X, X.T @ X


@pytest.fixture(params=[0, 1, 2])
def layer(request):
    return make_layer(request.param)


@pytest.fixture
def tiny():
    return make_layer(7, m=6, N=3, N_out=2)


def tol(*arrays):
    """Rounding of an SVD-based product of these arrays' scale (entrywise)."""
    n = max(a.shape[0] for a in arrays)
    return 64 * n * EPS * max(np.linalg.norm(a) for a in arrays) ** 2


# --- plainly written routes (dense SVD / eigh, no shared code) ---------------------------

def truncate(A, r):
    U, s, Vt = np.linalg.svd(A, full_matrices=False)
    return U[:, :r] @ np.diag(s[:r]) @ Vt[:r]


def plain_diagonal(D, s, r):
    """``S^+ T_r(S D)`` for ``S = diag(s)``."""
    Sinv = np.diag([1.0 / v if v > 0 else 0.0 for v in s])
    return Sinv @ truncate(np.diag(s) @ D, r)


def plain_root(D, H, r, cutoff):
    """``H+^{-1/2} T_r(H+^{1/2} D)`` with eigenvalues ``<= cutoff * max`` dropped."""
    e, V = np.linalg.eigh(H)
    keep = e > cutoff * e.max()
    root = V[:, keep] @ np.diag(np.sqrt(e[keep])) @ V[:, keep].T
    inv_root = V[:, keep] @ np.diag(1.0 / np.sqrt(e[keep])) @ V[:, keep].T
    return inv_root @ truncate(root @ D, r)


# --- LQER ------------------------------------------------------------------------------

def test_lqer_scale_is_the_authors_formula():
    x = np.array([0.0, 1e-6, 0.5, 2.0])
    s = np.array([1e-4, 1e-4, 0.5, 2.0]) / np.sqrt(1e-4 * 2.0)
    np.testing.assert_allclose(lit.lqer_scale(x), s, rtol=4 * EPS)


@pytest.mark.parametrize("r", [0, 1, 3])
def test_lqer_matches_plain_route(layer, r):
    W, X, H = layer
    Q = fit_grid(W, 2).quantize(W)
    xm = np.abs(X).mean(axis=0)
    fit = lit.lqer(W, Q, xm, r)
    s = np.maximum(xm, 1e-4)
    s = s / np.sqrt(s.min() * s.max())
    np.testing.assert_allclose(fit.scale, s, rtol=8 * EPS)
    np.testing.assert_allclose(fit.L @ fit.R, plain_diagonal(W - Q, s, r), atol=tol(W - Q, np.diag(s)))
    E = np.diag(s) @ (W - Q - fit.L @ fit.R)
    assert fit.value == pytest.approx(np.sum(E ** 2), rel=1e-10, abs=tol(W - Q, np.diag(s)))


def test_lqer_with_unit_scale_is_lorc(layer):
    """Reduction: s = 1 (a constant mean |x|) gives the SVD fit, i.e. gptq+svd."""
    W, X, H = layer
    svd = compress(W, H, "gptq+svd", 3, 2)
    c = compress(W, H, "gptq+lqer", 3, 2, x_abs_mean=np.full(W.shape[0], 0.3))
    np.testing.assert_array_equal(c.Q, svd.Q)
    np.testing.assert_allclose(c.L @ c.R, svd.L @ svd.R, atol=tol(W - c.Q))
    # a non-constant statistic really changes the branch (the reduction is not vacuous)
    other = compress(W, H, "gptq+lqer", 3, 2, x_abs_mean=np.abs(X).mean(axis=0))
    assert np.max(np.abs(other.L @ other.R - svd.L @ svd.R)) > 1e3 * tol(W - c.Q)


def test_lqer_refuses_without_the_statistic(layer):
    W, X, H = layer
    for method in ("rtn+lqer", "gptq+lqer"):
        with pytest.raises(ValueError, match="needs x_abs_mean"):
            compress(W, H, method, 3, 2)
    with pytest.raises(ValueError, match=r"x_abs_mean must have shape \(10,\)"):
        compress(W, H, "rtn+lqer", 3, 2, x_abs_mean=np.ones(9))
    with pytest.raises(ValueError, match="x_abs_mean must be >= 0"):
        lit.lqer(W, W, -np.ones(10), 1)


# --- QERA ------------------------------------------------------------------------------

@pytest.mark.parametrize("r", [1, 3])
def test_qera_approx_matches_plain_route_and_m_cancels(layer, r):
    W, X, H = layer
    Q = fit_grid(W, 2).quantize(W)
    m = X.shape[0]
    fit = lit.qera(W, Q, H, r, variant="approx", n_samples=m)
    s = np.sqrt(np.diag(H) / m)
    np.testing.assert_allclose(fit.L @ fit.R, plain_diagonal(W - Q, s, r), atol=tol(W - Q, np.diag(s)))
    one = lit.qera(W, Q, H, r, variant="approx")
    np.testing.assert_allclose(one.L @ one.R, fit.L @ fit.R, atol=tol(W - Q, np.diag(s)))


@pytest.mark.parametrize("r", [1, 3])
def test_qera_exact_is_olrc_without_damping_and_the_plain_route(layer, r):
    W, X, H = layer
    Q = fit_grid(W, 2).quantize(W)
    fit = lit.qera(W, Q, H, r)
    ref = olrc(W, Q, H, r, lam=0.0)
    np.testing.assert_array_equal(fit.L, ref.L)          # one implementation
    np.testing.assert_allclose(fit.L @ fit.R, plain_root(W - Q, H, r, 0.0),
                               atol=tol(W - Q) * np.linalg.cond(H))


def test_qera_approx_equals_exact_for_diagonal_H(layer):
    W, X, H = layer
    Hd = np.diag(np.diag(H))
    Q = fit_grid(W, 3).quantize(W)
    a, e = lit.qera(W, Q, Hd, 3, variant="approx"), lit.qera(W, Q, Hd, 3, variant="exact")
    np.testing.assert_allclose(a.L @ a.R, e.L @ e.R, atol=tol(W - Q) * np.linalg.cond(Hd))
    # ... and not for the full H (the reduction is specific to a diagonal H)
    a, e = lit.qera(W, Q, H, 3, variant="approx"), lit.qera(W, Q, H, 3, variant="exact")
    assert np.max(np.abs(a.L @ a.R - e.L @ e.R)) > 1e3 * tol(W - Q) * np.linalg.cond(H)


def test_qera_approx_dead_channel_uses_the_pseudo_inverse(layer):
    W, X, H = layer
    X = X.copy()
    X[:, 4] = 0.0
    H = X.T @ X
    fit = lit.qera(W, fit_grid(W, 2).quantize(W), H, 2, variant="approx")
    assert np.all(np.isfinite(fit.L)) and np.all(fit.L[4] == 0)


# --- EoRA's cutoff ---------------------------------------------------------------------

def test_olrc_cutoff_zero_is_exact_olrc_on_full_rank_H(layer):
    W, X, H = layer
    Q = fit_grid(W, 2).quantize(W)
    fit = lit.olrc_cutoff(W, Q, H, 2, cutoff=0.0)
    ref = olrc(W, Q, H, 2, lam=0.0)
    assert fit.dropped == 0
    np.testing.assert_array_equal(fit.L @ fit.R, ref.L @ ref.R)


def test_olrc_cutoff_drops_eigenvalues_as_eora_and_matches_plain_route():
    rng = np.random.default_rng(3)
    N = 12
    V = np.linalg.qr(rng.standard_normal((N, N)))[0]
    e = np.logspace(0, -9, N)                              # N eps32 ~ 1.4e-6: the last 6 fall under
    H = (V * e) @ V.T
    H = 0.5 * (H + H.T)
    W = rng.standard_normal((N, 6))
    Q = fit_grid(W, 2).quantize(W)
    fit = lit.olrc_cutoff(W, Q, H, 2)
    cut = N * np.finfo(np.float32).eps
    assert fit.dropped == int(np.sum(np.linalg.eigvalsh(H) <= cut * np.linalg.eigvalsh(H).max()))
    assert 4 <= fit.dropped <= 8
    plain = plain_root(W - Q, H, 2, cut)
    np.testing.assert_allclose(fit.L @ fit.R, plain, atol=tol(W - Q) * 1e6)   # kept cond <= 1e6 / eps32
    exact = lit.olrc_cutoff(W, Q, H, 2, cutoff=0.0)
    assert exact.dropped == 0 and not np.allclose(exact.L @ exact.R, fit.L @ fit.R)


# --- LoftQ -----------------------------------------------------------------------------

def test_loftq_one_iteration_is_rtn_svd(layer):
    W, X, H = layer
    res = compress(W, H, "loftq", 3, 2, iters=1)
    ref = compress(W, H, "rtn+svd", 3, 2)
    np.testing.assert_array_equal(res.Q, ref.Q)
    np.testing.assert_allclose(res.L @ res.R, ref.L @ ref.R, atol=tol(W))


def test_loftq_matches_plain_loop(layer):
    W, X, H = layer
    g = fit_grid(W, 2)
    res = lit.loftq(W, g, 2, iters=4)
    LR, trace = np.zeros_like(W), []
    for _ in range(4):
        Q = g.quantize(W - LR)
        LR = truncate(W - Q, 2)
        trace.append(np.sum((W - Q - LR) ** 2))
    np.testing.assert_array_equal(res.Q, Q)
    np.testing.assert_allclose(res.L @ res.R, LR, atol=tol(W))
    np.testing.assert_allclose(res.trace, trace, rtol=1e-12)
    assert res.best == 3 and res.increases == tuple(k for k in range(1, 4) if trace[k] > trace[k - 1])


# --- CALDERA-style ---------------------------------------------------------------------

def test_caldera_zero_iterations_is_gptq_olrc(layer):
    W, X, H = layer
    res = compress(W, H, "caldera", 3, 2, iters=0)
    ref = compress(W, H, "gptq+olrc", 3, 2)
    for a in ("Q", "L", "R"):
        np.testing.assert_array_equal(getattr(res, a), getattr(ref, a))


def caldera_plain(W, H, g, r, K, damp=0.01):
    lam = damp * np.mean(np.diag(H))
    LR, out = np.zeros_like(W), []
    for _ in range(K + 1):
        Q = gptq(W - LR, H, g, damp=damp).Q
        LR = plain_root(W - Q, H + lam * np.eye(len(H)), r, 0.0)
        D = W - Q - LR
        out.append((np.trace(D.T @ (H + lam * np.eye(len(H))) @ D), Q, LR))
    return out


def test_caldera_matches_plain_loop_and_keeps_the_best_iterate():
    found_increase = False
    for seed, r in ((5, 1), (7, 2), (0, 2)):
        W, X, H = make_layer(seed, m=30, N=16, N_out=12, decay=(3.0, 0.02))
        g = fit_grid(W, 2)
        res = lit.caldera(W, H, g, r, iters=4)
        plain = caldera_plain(W, H, g, r, 4)
        values = np.array([v for v, _, _ in plain])
        np.testing.assert_allclose(res.trace, values, rtol=1e-9)
        k = int(np.argmin(values))
        assert res.best == k
        np.testing.assert_array_equal(res.Q, plain[k][1])
        np.testing.assert_allclose(res.L @ res.R, plain[k][2], atol=tol(W) * np.linalg.cond(H))
        assert res.increases == tuple(i for i in range(1, 5) if values[i] > values[i - 1])
        found_increase |= bool(res.increases)
    # the alternation is not monotone on these layers: keeping the best iterate matters
    assert found_increase


@pytest.mark.parametrize("route, dead", [("cholesky", False), ("cholesky", True), ("eig", False)])
def test_caldera_factors_H_lam_once_with_the_bits_of_gptq(route, dead, monkeypatch):
    """CALDERA-style reuses the first pass's ``Psi`` for every later ``W - L R``: each pass is
    bit for bit the public ``gptq``'s (dead channel and eig route included), and the factor is
    really reused (one factorisation per call; a factor of another ``H`` changes ``Q``)."""
    import sys
    from gilora_theory.gptq import _gptq_validated
    gmod = sys.modules["gilora_theory.gptq"]
    W, X, H = make_layer(3, m=30, N=16, N_out=12, decay=(3.0, 0.02))
    if dead:
        H[:, 2] = H[2, :] = 0.0
    g = fit_grid(W, 3)
    lam = 0.01 * float(np.mean(np.diag(H)))
    first, factor = _gptq_validated(W, H, g, lam=lam, blocksize=4, route=route)
    W2 = W - 0.3 * np.outer(np.arange(16.0) / 16, np.ones(12))
    again, _ = _gptq_validated(W2, H, g, lam=lam, blocksize=4, route=route, factor=factor)
    for mine, W_ in ((first, W), (again, W2)):
        ref = gptq(W_, H, g, lam=lam, blocksize=4, route=route)
        for f in ("Q", "psi_diag", "step_terms", "clipped", "perm"):
            np.testing.assert_array_equal(getattr(mine, f), getattr(ref, f))
        assert mine.lam == ref.lam
    calls = []
    real = gmod._factor_with_policy
    monkeypatch.setattr(gmod, "_factor_with_policy", lambda *a: calls.append(1) or real(*a))
    lit.caldera(W, H, g, 2, iters=3, route=route)
    assert len(calls) == 1
    other = _gptq_validated(W, H + np.eye(16), g, lam=lam, blocksize=4, route=route)[1]
    assert not np.array_equal(
        _gptq_validated(W2, H, g, lam=lam, blocksize=4, route=route, factor=other)[0].Q, again.Q)


def test_caldera_lplr_branch_is_on_its_grids(layer):
    W, X, H = layer
    c = compress(W, H, "caldera", 3, 2, l_bits=3, r_bits=4, iters=2)
    assert c.branch is not None and c.branch.l_bits == 3 and c.branch.r_bits == 4
    Lg = c.branch.L_grid
    np.testing.assert_array_equal(Lg.quantize(c.L), c.L)


# --- LoRaQ -----------------------------------------------------------------------------

def loraq_plain(D, r, l_bits, r_bits, steps, lr):
    """Adam with straight-through estimators, written plainly (one entry update at a time)."""
    from gilora_theory.branch import quantize_branch
    U, s, Vt = np.linalg.svd(D, full_matrices=False)
    L, R = U[:, :r] * np.sqrt(s[:r]), np.sqrt(s[:r])[:, None] * Vt[:r]
    lrs = [lr * np.sqrt(np.mean(L ** 2)), lr * np.sqrt(np.mean(R ** 2))]
    m = [np.zeros_like(L), np.zeros_like(R)]
    v = [np.zeros_like(L), np.zeros_like(R)]
    trace, eps = [], None
    for t in range(steps + 1):
        qb = quantize_branch(L, R, l_bits=l_bits, r_bits=r_bits)
        E = D - qb.L @ qb.R
        trace.append(np.sum(E ** 2))
        if t == steps:
            break
        grads = [-2 * E @ qb.R.T, -2 * qb.L.T @ E]
        if eps is None:
            eps = [1e-8 * np.sqrt(np.mean(gr ** 2)) for gr in grads]
        for k, A in enumerate((L, R)):
            for idx in np.ndindex(A.shape):
                gr = grads[k][idx]
                m[k][idx] = 0.9 * m[k][idx] + 0.1 * gr
                v[k][idx] = 0.999 * v[k][idx] + 0.001 * gr * gr
                mh, vh = m[k][idx] / (1 - 0.9 ** (t + 1)), v[k][idx] / (1 - 0.999 ** (t + 1))
                A[idx] -= lrs[k] * mh / (np.sqrt(vh) + eps[k])
    return np.array(trace)


def test_loraq_matches_plain_adam_ste(layer):
    W, X, H = layer
    Q = fit_grid(W, 3).quantize(W)
    fit = lit.loraq_fit(W, Q, 2, l_bits=3, r_bits=4, steps=12, lr=0.05)
    plain = loraq_plain(W - Q, 2, 3, 4, 12, 0.05)
    np.testing.assert_allclose(fit.trace, plain, rtol=1e-9)
    assert fit.best_step == int(np.argmin(plain)) and fit.value == pytest.approx(plain.min(), rel=1e-9)


def test_loraq_never_ends_above_its_start_though_its_iterates_can():
    """The kept best iterate is never above the start; the last iterate can be (negative case)."""
    rose = False
    for seed in range(4):
        W, X, H = make_layer(seed)
        Q = fit_grid(W, 3).quantize(W)
        for lr in (0.01, 0.3):
            fit = lit.loraq_fit(W, Q, 2, l_bits=2, r_bits=3, steps=40, lr=lr)
            assert fit.value <= fit.start_value == fit.trace[0]
            assert fit.value == fit.trace.min() and fit.trace[fit.best_step] == fit.value
            np.testing.assert_allclose(np.sum((W - Q - fit.branch.L @ fit.branch.R) ** 2), fit.value,
                                       rtol=1e-12)
            rose |= bool(fit.trace[-1] > fit.trace[0])
    assert rose


def test_loraq_is_seeded_and_without_quantizers_is_the_svd(layer):
    W, X, H = layer
    Q = fit_grid(W, 3).quantize(W)
    a = lit.loraq_fit(W, Q, 2, jitter=0.1, rng=5, steps=5)
    b = lit.loraq_fit(W, Q, 2, jitter=0.1, rng=5, steps=5)
    c = lit.loraq_fit(W, Q, 2, jitter=0.1, rng=6, steps=5)
    np.testing.assert_array_equal(a.trace, b.trace)
    assert not np.array_equal(a.trace, c.trace)
    full = lit.loraq_fit(W, Q, 2, l_bits=None, r_bits=None)
    np.testing.assert_allclose(full.value, np.sum((W - Q - truncate(W - Q, 2)) ** 2), rtol=1e-10)
    res = compress(W, H, "rtn+loraq", 3, 2, l_bits=4, r_bits=6, iters=20)
    assert res.branch.l_bits == 4 and res.branch.r_bits == 6
    assert res.info["fit_start_value"] >= np.sum((W - res.Q - res.L @ res.R) ** 2) * (1 - 1e-12)


# --- per-column beta search ------------------------------------------------------------

def test_search_beta_matches_brute_force(layer):
    W, X, H = layer
    cands = (1.0, 0.9, 0.8, 0.7, 0.6)
    g = lit.search_beta(W, H, 3, candidates=cands)
    for j in range(W.shape[1]):
        errs = []
        for b in cands:
            q = fit_grid(W, 3, beta=b).quantize(W)[:, j]
            d = W[:, j] - q
            errs.append(d @ H @ d)
        assert g.beta[j] == cands[int(np.argmin(errs))]
        np.testing.assert_array_equal(g.step[0, j], fit_grid(W, 3, beta=g.beta[j]).step[0, j])
    per_col = lambda grid: np.einsum("ij,ij->j", W - grid.quantize(W), H @ (W - grid.quantize(W)))
    assert np.all(per_col(g) <= per_col(fit_grid(W, 3)))
    # a single fixed beta is not per-column optimal here (the search does something)
    assert len(set(g.beta.tolist())) > 1


def test_beta_search_is_a_grid_option_of_every_method(layer):
    W, X, H = layer
    c = compress(W, H, "gptq+olrc", 3, 2, beta="search")
    np.testing.assert_array_equal(c.grid.step, lit.search_beta(W, H, 3).step)
    assert c.grid.beta.shape == (W.shape[1],)
    with pytest.raises(ValueError, match="beta"):
        lit.search_beta(W, H, 3, candidates=(1.0, 1.5))
    with pytest.raises(ValueError, match="'search'; got 'serach'"):
        compress(W, H, "gptq", 3, beta="serach")


# --- tiny layers: every new method through compress ------------------------------------

@pytest.mark.parametrize("method", ["rtn+lqer", "gptq+lqer", "rtn+qera-approx", "rtn+qera-exact",
                                    "gptq+eora", "loftq", "caldera", "rtn+loraq"])
def test_new_methods_on_a_tiny_layer(tiny, method):
    W, X, H = tiny
    c = compress(W, H, method, 2, 1, x_abs_mean=np.abs(X).mean(axis=0))
    assert np.all(np.isfinite(c.L @ c.R)) and c.L.shape == (3, 1)
    assert np.array_equal(c.grid.quantize(c.Q, np.arange(3)), c.Q)


# --- layer files and the command line --------------------------------------------------

def test_layer_files_carry_validated_channel_statistics(tmp_path):
    from gilora_theory.data.io import load_layer, save_layer
    W, X, H = make_layer(0)
    save_layer(tmp_path / "x.npz", W, X=X)
    lx = load_layer(tmp_path / "x.npz")
    np.testing.assert_array_equal(lx.x_abs_mean, np.abs(X).mean(axis=0))
    np.testing.assert_array_equal(lx.x_abs_max, np.abs(X).max(axis=0))
    save_layer(tmp_path / "h.npz", W, H=H, x_abs_mean=lx.x_abs_mean, x_abs_max=lx.x_abs_max)
    lh = load_layer(tmp_path / "h.npz")
    np.testing.assert_array_equal(lh.x_abs_mean, lx.x_abs_mean)
    assert load_layer(_save_raw(tmp_path / "bare.npz", W=W, H=H)).x_abs_mean is None
    for bad, words in (({"x_abs_mean": np.ones(3)}, r"x_abs_mean must have shape \(10,\)"),
                       ({"x_abs_mean": -np.ones(10)}, "x_abs_mean must be >= 0"),
                       ({"x_abs_mean": 2 * np.ones(10), "x_abs_max": np.ones(10)},
                        "must not exceed x_abs_max"),
                       ({"x_abs_max": np.full(10, np.nan)}, "x_abs_max must be finite")):
        path = _save_raw(tmp_path / "bad.npz", W=W, H=H, **bad)
        with pytest.raises(ValueError, match=words):
            load_layer(path)


def _save_raw(path, **arrays):
    np.savez(path, **arrays)
    return path


def test_cli_runs_lqer_on_X_files_and_refuses_H_files_in_one_line(tmp_path, capsys):
    import json

    from gilora_theory.cli import main
    from gilora_theory.data.io import save_layer
    W, X, H = make_layer(1)
    save_layer(tmp_path / "x.npz", W, X=X)
    save_layer(tmp_path / "h.npz", W, H=H)
    out = tmp_path / "out.npz"
    assert main(["run", str(tmp_path / "x.npz"), "--method", "rtn+lqer", "--bits", "3", "--rank", "2",
                 "--out", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    c = compress(W, H, "rtn+lqer", 3, 2, x_abs_mean=np.abs(X).mean(axis=0))
    assert report["error"] == c.objective.error
    out.unlink()
    assert main(["run", str(tmp_path / "h.npz"), "--method", "rtn+lqer", "--bits", "3", "--rank", "2",
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs x_abs_mean" in err and not out.exists()
    assert main(["run", str(tmp_path / "h.npz"), "--method", "loftq", "--bits", "3", "--rank", "2",
                 "--iters", "1", "--beta", "search", "--out", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    ref = compress(W, H, "loftq", 3, 2, iters=1, beta="search")
    assert report["error"] == ref.objective.error
    with np.load(out) as z:
        np.testing.assert_array_equal(z["beta"], ref.grid.beta)
