"""The layer objective (docs/theory.md, "Notation"): exact cases, the reference, spectra."""
import numpy as np
import pytest
from hypothesis import given, settings

import reference as ref
from gilora_theory import damping, evaluate, hessian, hessian_spectrum, layer_error
from gilora_theory.objective import resolve_lam
from gilora_theory.testing.budget import scaled
from gilora_theory.testing.strategies import calibration, layers

EPS = np.finfo(float).eps


# ---------------------------------------------------------------- tiny cases, exact answers

def test_hand_computed_error():
    X = np.array([[1.0, 0.0], [1.0, 2.0]])
    W = np.array([[1.0], [1.0]])
    Q = np.array([[0.0], [1.0]])
    # D = [1, 0]^T, X D = [1, 1]: E = 2; ||X W||^2 = 1 + 9 = 10; lam ||D||^2 = lam
    H = hessian(X)
    np.testing.assert_array_equal(H, [[2.0, 2.0], [2.0, 4.0]])
    assert layer_error(W, Q, X=X) == 2.0 == layer_error(W, Q, H=H)
    obj = evaluate(W, Q, H=H, lam=0.5)
    assert (obj.error, obj.damped_error, obj.relative_error, obj.lam) == (2.0, 2.5, 0.2, 0.5)
    assert damping(H, 0.01) == 0.01 * 3.0
    assert resolve_lam(H, 0.01, None) == 0.01 * 3.0 and resolve_lam(H, 0.01, 0.7) == 0.7


def test_low_rank_branch_enters_the_residual():
    X = np.eye(2)
    W = np.array([[1.0, 2.0], [3.0, 4.0]])
    L = np.array([[1.0], [0.0]])
    R = np.array([[1.0, 2.0]])
    assert layer_error(W, np.zeros((2, 2)), L, R, X=X) == 25.0  # only row [3, 4] remains
    assert layer_error(W, np.zeros((2, 2)), np.zeros((2, 0)), np.zeros((0, 2)), X=X) == 30.0


def test_relative_error_has_no_nan():
    H = np.diag([1.0, 0.0])
    W = np.array([[0.0], [1.0]])  # X W = 0
    assert evaluate(W, W, H=H).relative_error == 0.0
    assert evaluate(W, np.array([[1.0], [1.0]]), H=H).relative_error == np.inf
    zero = np.zeros((2, 1))
    assert evaluate(zero, zero, H=H).relative_error == 0.0


@pytest.mark.parametrize("kw, exc, word", [
    (dict(), ValueError, "exactly one"),
    (dict(X=np.eye(2), H=np.eye(2)), ValueError, "exactly one"),
    (dict(X=np.eye(3)), ValueError, "X"),
    (dict(H=np.array([[1.0, 2.0], [0.0, 1.0]])), ValueError, "symmetric"),
    (dict(H=np.diag([1.0, -1.0])), ValueError, "positive semi-definite"),
    (dict(H=np.eye(2), lam=-1.0), ValueError, "lam"),
    (dict(H=np.eye(2), L=np.ones((2, 1))), ValueError, "together"),
])
def test_bad_objective_arguments(kw, exc, word):
    with pytest.raises(exc, match=word):
        layer_error(np.ones((2, 1)), np.zeros((2, 1)), **kw)


def test_damping_refuses_negative_alpha():
    with pytest.raises(ValueError, match="alpha"):
        damping(np.eye(2), -0.1)


# ---------------------------------------------------------------- reference and spectra

@settings(max_examples=scaled(300))
@given(layers(max_n=10))
def test_error_from_X_H_and_reference_agree(layer):
    X, W = layer.calib.X, layer.W
    Q = np.round(W * 3) / 3
    rng = np.random.default_rng(layer.bits)
    L = rng.standard_normal((W.shape[0], layer.rank))
    R = rng.standard_normal((layer.rank, W.shape[1])) * np.abs(W).max()
    D = W - Q - L @ R
    want = ref.error_X(W, Q, X, L, R)
    size = np.linalg.norm(np.abs(W) + np.abs(Q) + np.abs(L @ R))
    tol = 64 * W.shape[0] * EPS * np.linalg.norm(X, 2) ** 2 * size**2
    H = hessian(X)
    assert abs(layer_error(W, Q, L, R, X=X) - want) <= tol
    assert abs(layer_error(W, Q, L, R, H=H) - want) <= tol
    obj = evaluate(W, Q, L, R, H=H, lam=0.25)
    assert abs(obj.damped_error - (want + 0.25 * np.sum(D * D))) <= tol + 64 * EPS * 0.25 * np.sum(D * D)
    ref_rel = want / ref.error_X(W, np.zeros_like(W), X)
    assert abs(obj.relative_error - ref_rel) <= 4 * tol / ref.error_X(W, np.zeros_like(W), X)


@settings(max_examples=scaled(300))
@given(calibration(max_n=12))
def test_spectrum_matches_known_singular_values(calib):
    spec = hessian_spectrum(calib.H)
    s2 = calib.s**2
    N = s2.shape[0]
    tol = 64 * N * EPS * s2[0]
    np.testing.assert_allclose(spec.eigvals[::-1], s2, rtol=0, atol=tol)
    for r in range(N + 1):
        assert abs(spec.tail_energy(r) - np.sum(s2[r:])) <= tol * N
        V = spec.top(r)
        assert V.shape == (N, r)
        np.testing.assert_allclose(V.T @ V, np.eye(r), atol=64 * N * EPS)


@settings(max_examples=scaled(200))
@given(layers(max_n=8))
def test_scaling_X_by_c_scales_error_by_c_squared(layer):
    X, W = layer.calib.X, layer.W
    Q = np.round(W * 2) / 2
    c = 3.7
    E = layer_error(W, Q, X=X)
    Ec = layer_error(W, Q, X=c * X)
    size = np.linalg.norm(np.abs(W) + np.abs(Q))
    tol = 64 * W.shape[0] * EPS * c**2 * np.linalg.norm(X, 2) ** 2 * size**2
    assert abs(Ec - c**2 * E) <= tol
    ref_c = c**2 * layer_error(W, np.zeros_like(W), X=X)
    if ref_c > 0:  # rel = E / ||XW||^2: both parts scale by c^2, each within tol
        rel, rel_c = evaluate(W, Q, X=X).relative_error, evaluate(W, Q, X=c * X).relative_error
        assert abs(rel_c - rel) <= 2 * tol * (1 + rel) / ref_c


@pytest.mark.parametrize("N, N_out", [(600, 700), (700, 600), (1030, 520), (300, 900)])
def test_signal_routes_agree(N, N_out):
    """``||X W||^2`` of a large layer from the lower block triangle of ``W W^T`` against the
    product ``H W`` and against ``||X W||^2`` itself (rounding only); a small layer keeps the
    product's bits exactly (every committed table was computed that way)."""
    from gilora_theory.objective import _signal, _trace_quad
    rng = np.random.default_rng(N + N_out)
    X = rng.standard_normal((N + 40, N)) * np.logspace(0, -2, N)
    H, W = X.T @ X, rng.standard_normal((N, N_out))
    direct = float(np.sum((X @ W) ** 2))
    got, product = _signal(H, W), _trace_quad(H, W)
    tol = 4 * (N + N_out) * np.finfo(float).eps
    assert abs(got - product) <= tol * product and abs(got - direct) <= tol * direct
    if min(N, N_out) < 512:
        assert got == product


def test_signal_route_fails_without_the_off_diagonal_blocks(monkeypatch):
    """The doubling of the off-diagonal blocks is what makes the blocked sum the whole
    trace: a version that counts them once is caught by the comparison above."""
    from gilora_theory import objective
    rng = np.random.default_rng(0)
    X = rng.standard_normal((700, 600))
    H, W = X.T @ X, rng.standard_normal((600, 600))

    def once(H, W):
        total = 0.0
        for i in range(0, W.shape[0], 512):
            e = min(i + 512, W.shape[0])
            G = W[i:e] @ W[:e].T
            total += float(np.einsum("ij,ij->", H[i:e, :e], G))
        return total
    assert abs(once(H, W) - objective._trace_quad(H, W)) > 1e-6 * objective._trace_quad(H, W)
    assert abs(objective._signal(H, W) - objective._trace_quad(H, W)) <= 1e-12 * objective._trace_quad(H, W)
