"""The synthetic gallery: stated spectra and tail energies against SVD and eig(H)."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gilora_theory.data import calibration as cal
from gilora_theory.lower_bounds import in_class_k, sample_class_k
from gilora_theory.testing.budget import scaled

EPS = np.finfo(np.float64).eps


def _sizes(kind, N, extra):
    return (max(1, N - 1 - extra % N), N) if kind == "rank_deficient" else (N + extra, N)


def _svd_tails(X, N):
    s = np.linalg.svd(X, compute_uv=False)
    s = np.pad(s, (0, N - s.size))
    return np.append(np.cumsum((s ** 2)[::-1])[::-1], 0.0)


def _tail_tolerance(c):
    """Weyl: each computed singular value is within ``delta`` of the built one, where
    ``delta`` bounds the rounding of ``U diag(s) V^T`` and of the SVD; then
    ``|sum_{i>r} (s_i + e_i)^2 - s_i^2| <= sum_{i>r} (2 s_i delta + delta^2)``."""
    m, N = c.X.shape
    delta = 8 * max(m, N) * EPS * c.s[0]
    per = 2 * c.s * delta + delta ** 2
    return np.append(np.cumsum(per[::-1])[::-1], 0.0) + EPS * c.tail[0]


@settings(max_examples=scaled(40))
@given(kind=st.sampled_from(cal.KINDS), N=st.integers(2, 24), extra=st.integers(0, 40),
       seed=st.integers(0, 2**32 - 1))
def test_stated_tails_match_svd(kind, N, extra, seed):
    m, N = _sizes(kind, N, extra)
    c = cal.calibration(kind, m, N, rng=seed)
    assert c.X.shape == (m, N) and c.s.shape == (N,) and c.tail.shape == (N + 1,)
    assert np.all(np.diff(c.s) <= 0) and c.tail[-1] == 0.0
    assert np.all(np.abs(_svd_tails(c.X, N) - c.tail) <= _tail_tolerance(c))
    for r in (0, N // 2, N):
        assert c.tail_energy(r) == c.tail[r]


@pytest.mark.parametrize("kind", cal.KINDS)
def test_tails_match_eigenvalues_of_H_and_a_wrong_claim_fails(kind):
    m, N = _sizes(kind, 20, 30)
    c = cal.calibration(kind, m, N, rng=7)
    lam = np.sort(np.linalg.eigvalsh(c.H))  # ascending: the tail after r is the N - r smallest
    tol = 8 * N * max(m, N) * EPS * c.s[0] ** 2
    for r in range(N + 1):
        assert abs(max(lam[:N - r].sum(), 0.0) - c.tail[r]) <= tol
    wrong = np.append(c.tail[1:], 0.0)  # claiming one more direction than there is
    if c.s[0] > 0:
        assert np.abs(_svd_tails(c.X, N) - wrong).max() > _tail_tolerance(c).max()


def test_same_seed_same_bits_and_different_seed_differs():
    for kind in cal.KINDS:
        m, N = _sizes(kind, 12, 5)
        a, b = cal.calibration(kind, m, N, rng=3), cal.calibration(kind, m, N, rng=3)
        assert a.X.tobytes() == b.X.tobytes()
        assert not np.array_equal(a.X, cal.calibration(kind, m, N, rng=4).X)
    for kind in ("gaussian", "heavy_tailed"):
        assert cal.weights(kind, 9, 4, rng=1).tobytes() == cal.weights(kind, 9, 4, rng=1).tobytes()


def test_isotropic_H_is_scaled_identity():
    c = cal.isotropic(50, 10, scale=2.0, rng=0)
    expected = 50 * 4.0 * np.eye(10)
    assert np.abs(c.H - expected).max() <= 64 * 50 * EPS * 4.0 * 50


def test_conditioned_has_the_requested_condition_number():
    c = cal.conditioned(60, 20, cond=1e4, rng=0)
    s = np.linalg.svd(c.X, compute_uv=False)
    assert abs(s[0] / s[-1] - 1e4) <= 1e4 * 64 * 60 * EPS * 1e4  # relative error of s_N ~ eps kappa


def test_low_rank_noise_without_noise_has_exact_rank():
    c = cal.low_rank_noise(40, 15, rank=4, noise=0.0, rng=0)
    assert np.linalg.matrix_rank(c.X) == 4 and c.tail[4] == 0.0
    assert np.linalg.matrix_rank(cal.low_rank_noise(40, 15, rank=4, noise=0.1, rng=0).X) == 15


def test_rank_deficient_H_is_singular_with_rank_m():
    c = cal.rank_deficient(7, 16, rng=0)
    assert np.linalg.matrix_rank(c.H) == 7 and np.all(c.s[7:] == 0) and np.all(c.tail[7:] == 0)


def test_outlier_channels_dominate_diag_H_and_isotropic_has_none():
    c = cal.outliers(300, 40, n_outliers=3, magnitude=20.0, rng=5)
    d = np.diag(c.H)
    assert set(np.argsort(d)[-3:]) == set(c.params["channels"])
    assert d[c.params["channels"]].min() > 50 * np.median(d)
    d_iso = np.diag(cal.isotropic(300, 40, rng=5).H)
    assert d_iso.max() < 2 * np.median(d_iso)


def test_heavy_rows_concentrate_energy_in_few_rows_unlike_isotropic():
    def top_share(X):  # energy share of the 2% heaviest rows
        e = np.sort(np.sum(X ** 2, axis=1))[::-1]
        return e[: len(e) // 50].sum() / e.sum()
    heavy = top_share(cal.heavy_rows(1000, 20, df=1.5, rng=2).X)
    iso = top_share(cal.isotropic(1000, 20, rng=2).X)
    assert heavy > 0.2 and iso < 0.06


def test_from_spectrum_keeps_the_given_values():
    s = np.array([3.0, 0.0, 1.0, 2.0])
    c = cal.from_spectrum(s, 6, rng=0)
    assert np.array_equal(c.s, [3.0, 2.0, 1.0, 0.0])
    assert np.array_equal(c.tail, [14.0, 5.0, 1.0, 0.0, 0.0])


def test_weights_shapes_and_scales():
    G = cal.gaussian_weights(400, 300, rng=0)
    T = cal.heavy_tailed_weights(400, 300, df=3.0, rng=0)
    assert G.shape == T.shape == (400, 300)
    n = G.size  # sample variance of 1.2e5 draws is within a few 1/sqrt(n) of 1/N
    assert abs(G.var() * 400 - 1) < 5 * np.sqrt(2 / n)
    kurt = lambda A: np.mean(A ** 4) / np.mean(A ** 2) ** 2
    assert abs(kurt(G) - 3) < 0.1 and kurt(T) > 5


def test_class_k_weights_delegate_to_lower_bounds():
    W = cal.class_k_weights(6, 5, rng=11)
    assert np.array_equal(W, sample_class_k(6, 5, rng=np.random.default_rng(11)))
    assert in_class_k(W) and not in_class_k(cal.gaussian_weights(6, 5, rng=11))
    assert np.array_equal(cal.weights("class_k", 6, 5, rng=11), W)


@pytest.mark.parametrize("call, exc, words", [
    (lambda: cal.isotropic(5, 10), ValueError, "rank_deficient"),
    (lambda: cal.rank_deficient(10, 5), ValueError, "m < N"),
    (lambda: cal.calibration("nope", 5, 5), ValueError, "isotropic"),
    (lambda: cal.weights("nope", 5, 5), ValueError, "gaussian"),
    (lambda: cal.power_law(5, 5, exponent=-1.0), ValueError, "exponent"),
    (lambda: cal.conditioned(5, 5, cond=0.5), ValueError, "cond"),
    (lambda: cal.isotropic(5.0, 5), TypeError, "m must be an integer"),
    (lambda: cal.from_spectrum([1.0, -1.0], 3), ValueError, "non-negative"),
    (lambda: cal.from_spectrum([1.0, 1.0, 1.0], 2), ValueError, "at most m"),
    (lambda: cal.isotropic(5, 5).tail_energy(6), ValueError, "r must be in"),
])
def test_bad_input_is_refused_with_a_clear_message(call, exc, words):
    with pytest.raises(exc, match=words):
        call()
