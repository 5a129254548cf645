"""The hypothesis strategies: stated spectra are the true ones, every kind is reachable."""
import numpy as np
import pytest
from hypothesis import find, given, settings

from gilora_theory.testing.budget import scaled
from gilora_theory.testing.strategies import (SPECTRA, bits, calibration, layers, make_calibration,
                                              weights)

EPS = np.finfo(float).eps


def assert_spectrum(calib):
    X, s = calib.X, calib.s
    N = X.shape[1]
    assert s.shape == (N,) and np.all(np.diff(s) <= 0) and np.all(s >= 0)
    sv = np.zeros(N)
    got = np.linalg.svd(X, compute_uv=False)
    sv[:got.shape[0]] = got
    np.testing.assert_allclose(sv, s, rtol=0, atol=64 * max(X.shape) * EPS * s[0])


@pytest.mark.parametrize("kind", SPECTRA)
@pytest.mark.parametrize("N", [1, 2, 7])
def test_make_calibration_states_the_true_singular_values(kind, N):
    calib = make_calibration(N, kind, seed=3, param=0.6, m=N + 4)
    assert calib.kind == kind
    assert_spectrum(calib)
    np.testing.assert_array_equal(calib.H, calib.X.T @ calib.X)
    again = make_calibration(N, kind, seed=3, param=0.6, m=N + 4)
    np.testing.assert_array_equal(calib.X, again.X)


@pytest.mark.parametrize("N", [2, 5, 12])
@pytest.mark.parametrize("param", [0.0, 0.5, 1.0])
def test_rank_deficient_has_fewer_samples_than_features(N, param):
    calib = make_calibration(N, "rank_deficient", seed=1, param=param)
    m = calib.X.shape[0]
    assert m < N and np.count_nonzero(calib.s) == m
    assert np.linalg.matrix_rank(calib.H) == m


def test_near_singular_condition_number_is_in_its_stated_range():
    for param in (0.0, 0.5, 1.0):
        s = make_calibration(8, "near_singular", seed=0, param=param).s
        assert 1e6 <= (s[0] / s[-1]) ** 2 <= 1e10 * (1 + 64 * EPS)


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="kind"):
        make_calibration(3, "flat", seed=0)


@settings(max_examples=scaled(200))
@given(calibration(max_n=10))
def test_drawn_calibrations_state_the_true_singular_values(calib):
    assert_spectrum(calib)


@settings(max_examples=scaled(200))
@given(layers(max_n=8))
def test_layers_are_well_formed(layer):
    N = layer.calib.X.shape[1]
    assert layer.W.shape[0] == N and np.all(np.isfinite(layer.W))
    assert 0 <= layer.rank <= min(N, layer.W.shape[1])
    assert 1 <= layer.bits <= 8 and layer.damp > 0
    np.testing.assert_array_equal(layer.H, layer.calib.X.T @ layer.calib.X)


@pytest.mark.parametrize("kind", SPECTRA)
def test_every_kind_is_reachable(kind):
    found = find(calibration(), lambda c: c.kind == kind, settings=settings(database=None))
    assert found.kind == kind


@pytest.mark.parametrize("scale", [1e-3, 1.0, 1e3])
def test_weight_scales_are_reachable(scale):
    """The windows [scale / 10, 10 scale] are disjoint, so each finds its own scale."""
    W = find(weights(3), lambda w: scale / 10 <= np.abs(w).max() <= 10 * scale,
             settings=settings(database=None))
    assert W.shape[0] == 3


def test_bit_widths_span_their_range():
    assert find(bits(), lambda b: b == 8, settings=settings(database=None)) == 8
    assert find(bits(), lambda b: b == 1, settings=settings(database=None)) == 1
