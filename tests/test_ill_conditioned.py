"""Ill-conditioned calibration: condition numbers 1e10 to 1e16, singular H, dead channels,
augmented Hessians at small damping.

Policy under test (documented in :func:`gilora_theory.gptq.gptq`):

* ``route="cholesky"`` raises ``NumericalError`` when ``H_lam`` is numerically
  singular (smallest eigenvalue ``<= n eps max(e)``), unless
  ``damp_policy="increase"``, which multiplies ``lam`` by 10 from
  ``n eps max(1, max diag H)`` until it factorises; ``result.lam`` is the final value.
* ``route="eig"`` never fails on a valid ``H``: its spectral floor raises ``lam``
  by ``tau - min(e)`` (``tau = n eps max(e)``) when needed; ``result.lam`` reports it.
* Nothing returns NaN or inf.

The loss identity ``step_sum = E_lam(Q)`` (with the reported ``lam``) is checked
with a tolerance derived from the conditioning: the eig route forms
``H_lam^{-1/2}`` explicitly, whose rounding error relative to ``Psi_tt`` is about
``eps sqrt(cond(H_lam))`` per entry, accumulated over ``n`` rows.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import gilora_theory as gt

EPS = np.finfo(np.float64).eps
N, N_OUT, BITS, RANK = 16, 6, 3, 3


def _finite(result) -> bool:
    """Every float array or scalar in a result dataclass (recursively) is finite."""
    if dataclasses.is_dataclass(result):
        return all(_finite(getattr(result, f.name)) for f in dataclasses.fields(result))
    if isinstance(result, (float, np.ndarray)) and np.asarray(result).dtype.kind == "f":
        return bool(np.all(np.isfinite(result)))
    return True


def _spectral_H(kappa: float, rng) -> np.ndarray:
    """``V diag(e) V^T`` with ``e`` geometric from 1 to ``1 / kappa`` (exactly known spectrum)."""
    V, _ = np.linalg.qr(rng.standard_normal((N, N)))
    H = (V * np.geomspace(1.0, 1.0 / kappa, N)) @ V.T
    return 0.5 * (H + H.T)


def _cond(H: np.ndarray, lam: float) -> float:
    e = np.linalg.eigvalsh(H) + lam
    return float(e[-1] / max(e[0], H.shape[0] * EPS * e[-1]))


def _on_grid(grid, Q) -> bool:
    return bool(np.array_equal(grid.quantize(Q, np.arange(Q.shape[0])), Q))


def _floor_bound(H: np.ndarray) -> float:
    """Largest spectral-floor shift: ``tau + |min(e)|`` with ``min(e) >= -64 n eps max|H|``."""
    e = np.linalg.eigvalsh(H)
    n = H.shape[0]
    return 2 * n * EPS * e[-1] + 64 * n * EPS * float(np.max(np.abs(H)))


@pytest.mark.parametrize("kappa", [1e10, 1e12, 1e14, 1e15, 1e16])
def test_condition_number_sweep(kappa):
    """Undamped GPTQ on cond(H) = kappa: eig always succeeds; Cholesky exactly when H is not
    numerically singular, and then both routes give the same Q."""
    rng = np.random.default_rng(int(np.log10(kappa)))
    H = _spectral_H(kappa, rng)
    W = rng.standard_normal((N, N_OUT))
    grid = gt.fit_grid(W, BITS)
    e = np.linalg.eigvalsh(H)
    singular = e[0] <= N * EPS * e[-1]
    assert singular == (kappa >= 1e15)  # the sweep covers both sides of the threshold

    eig = gt.gptq(W, H, grid, lam=0.0, route="eig")
    assert _finite(eig) and _on_grid(grid, eig.Q)
    assert (eig.lam > 0) == singular and eig.lam <= _floor_bound(H)
    E_lam = gt.layer_error(W, eig.Q, H=H, lam=eig.lam)
    tol = N * EPS * np.sqrt(_cond(H, eig.lam))
    assert abs(eig.step_sum - E_lam) <= tol * E_lam, (eig.step_sum, E_lam, tol)

    if singular:
        with pytest.raises(gt.NumericalError, match="numerically singular"):
            gt.gptq(W, H, grid, lam=0.0)
    else:
        chol = gt.gptq(W, H, grid, lam=0.0)
        assert chol.lam == 0.0 and _finite(chol)
        np.testing.assert_array_equal(chol.Q, eig.Q)
        E = gt.layer_error(W, chol.Q, H=H)
        assert abs(chol.step_sum - E) <= tol * E


def test_increase_policy_reports_final_lam():
    """Singular H (m < N): damp_policy='increase' ends at lam = floor * 10^k, the first that works."""
    rng = np.random.default_rng(11)
    X = rng.standard_normal((N // 2, N))
    H = gt.hessian(X)
    W = rng.standard_normal((N, N_OUT))
    grid = gt.fit_grid(W, BITS)
    res = gt.gptq(W, H, grid, lam=0.0, damp_policy="increase")
    assert _finite(res) and res.lam > 0
    floor = N * EPS * max(1.0, float(np.max(np.diag(H))))
    k = np.log10(res.lam / floor)
    assert abs(k - round(k)) < 1e-9 and round(k) >= 0
    again = gt.gptq(W, H, grid, lam=res.lam)  # the reported lam reproduces the run exactly
    np.testing.assert_array_equal(again.Q, res.Q)
    if round(k) >= 1:
        with pytest.raises(gt.NumericalError):
            gt.gptq(W, H, grid, lam=res.lam / 10)
    eig = gt.gptq(W, H, grid, lam=0.0, route="eig")
    assert _finite(eig) and 0 < eig.lam <= _floor_bound(H)


def test_dead_channels():
    """Zero columns of X (H_ii = 0): the reference convention works undamped; without it the
    Cholesky route refuses and the eig route floors; every method stays finite."""
    rng = np.random.default_rng(5)
    X = rng.standard_normal((4 * N, N))
    dead = [2, 9]
    X[:, dead] = 0.0
    H = gt.hessian(X)
    W = rng.standard_normal((N, N_OUT))
    grid = gt.fit_grid(W, BITS)
    res = gt.gptq(W, H, grid, lam=0.0)
    assert _finite(res) and res.lam == 0.0
    np.testing.assert_array_equal(res.Q[dead], grid.quantize(np.zeros((2, N_OUT)), dead))
    with pytest.raises(gt.NumericalError, match="numerically singular"):
        gt.gptq(W, H, grid, lam=0.0, dead_channels=False)
    eig = gt.gptq(W, H, grid, lam=0.0, dead_channels=False, route="eig")
    assert _finite(eig) and 0 < eig.lam <= _floor_bound(H)
    for method in gt.METHODS:
        c = gt.compress(W, H, method, BITS, RANK, x_abs_mean=np.sqrt(np.abs(np.diag(H))))
        assert _finite(c), method
    assert _finite(gt.gilora(W, H, grid, RANK, lam=0.0, route="eig"))
    assert _finite(gt.bid_up(W, res.Q, H, grid, use_damping=False, sweeps=2))
    assert _finite(gt.refine(W, H, grid, res.Q, RANK, lam=0.0, rounds=2))


@pytest.mark.parametrize("damp", [1e-4, 1e-8, 1e-12, 1e-16, 0.0])
def test_augmented_hessian_small_damping(damp):
    """GILoRA's H_aug is singular undamped: the eig route succeeds at every damping, Cholesky
    refuses once lam is below the rounding level; R is the ridge solution for the reported lam."""
    rng = np.random.default_rng(17)
    X = rng.standard_normal((4 * N, N)) * np.geomspace(1.0, 1e-3, N)
    H = gt.hessian(X)
    W = rng.standard_normal((N, N_OUT))
    grid = gt.fit_grid(W, BITS)
    L = gt.top_eigenvectors(H, RANK)
    H_aug = gt.augmented_hessian(H, L)
    requested = damp * float(np.mean(np.diag(H_aug)))
    results = {}
    for route in ("cholesky", "eig"):
        try:
            results[route] = gt.gilora(W, H, grid, RANK, damp=damp, route=route)
        except gt.NumericalError as exc:
            assert route == "cholesky" and "numerically singular" in str(exc)
    eig = results["eig"]
    assert _finite(eig) and eig.lam >= requested
    assert eig.lam - requested <= _floor_bound(H_aug)
    e = np.linalg.eigvalsh(H_aug) + requested
    cholesky_must_fail = e[0] <= (N + RANK) * EPS * e[-1]
    assert ("cholesky" not in results) == cholesky_must_fail
    assert cholesky_must_fail == (damp <= 1e-16)
    tol = (N + RANK) * EPS * np.sqrt(_cond(H_aug, eig.lam))
    for res in results.values():
        R = gt.ridge_R(W, res.Q, H, res.L, res.lam)
        assert np.linalg.norm(res.R - R) <= tol * np.linalg.norm(R)
    if "cholesky" in results:
        np.testing.assert_array_equal(results["cholesky"].Q, eig.Q)


def test_ill_conditioned_methods_never_nan():
    """Every method, at cond(H) = 1e16 with the default damping and with the eig route at tiny
    damping: finite outputs and objective."""
    rng = np.random.default_rng(23)
    H = _spectral_H(1e16, rng)
    W = rng.standard_normal((N, N_OUT))
    xm = np.sqrt(np.abs(np.diag(H)))              # a per-channel statistic for LQER
    for method in gt.METHODS:
        assert _finite(gt.compress(W, H, method, BITS, RANK, x_abs_mean=xm)), method
        assert _finite(gt.compress(W, H, method, BITS, RANK, damp=1e-15, route="eig",
                                   x_abs_mean=xm)), method
