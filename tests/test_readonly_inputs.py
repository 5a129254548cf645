"""The package never writes into the arrays it is given, and never hands them back.

``check_hessian`` returns an exactly symmetric float64 ``H`` as given (no
copy), so every function downstream of it sees the caller's memory. Each public
function that takes ``H`` is called here with read-only ``H`` and ``W`` (a NumPy
write then raises) and the bytes of both are compared afterwards (a LAPACK
routine called with ``overwrite_a`` writes through the read-only flag, so the
flag alone is not enough). No array in a result may share memory with ``H``:
a caller who edits a result must not edit their Hessian.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

import gilora_theory as gt
from gilora_theory import checks, exact, methods, upper_bounds
from gilora_theory.data import layers as data
from gilora_theory.experiments import sweep as experiments
from gilora_theory.branch import gilora_branch, olrc_branch, quantize_after, refit_R
from gilora_theory.experiments.equal_storage import l_order_comparison, storage_table
from gilora_theory.data.io import Layer, save_layer

N, N_OUT, M, BITS, RANK = 8, 5, 20, 3, 2


def _problem(dead: bool = False):
    """Read-only ``W`` and an exactly symmetric read-only ``H = X^T X`` (one dead channel)."""
    rng = np.random.default_rng(11)
    X, W = rng.standard_normal((M, N)), rng.standard_normal((N, N_OUT))
    if dead:
        X[:, 3] = 0.0
    H = X.T @ X
    H = 0.5 * H + 0.5 * H.T
    assert np.array_equal(H, H.T)          # the no-copy path of check_hessian is taken
    for A in (W, H):
        A.setflags(write=False)
    grid = gt.fit_grid(W, BITS)
    return W, H, grid, grid.quantize(W, np.arange(N))


def _arrays(obj, depth=0):
    """Every ndarray reachable from a result (dataclass fields, containers, DataFrames)."""
    if depth > 4:
        return
    if isinstance(obj, np.ndarray):
        yield obj
    elif isinstance(obj, pd.DataFrame):
        yield obj.to_numpy()
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for f in dataclasses.fields(obj):
            yield from _arrays(getattr(obj, f.name), depth + 1)
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _arrays(v, depth + 1)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _arrays(v, depth + 1)


def _calls(W, H, grid, Q0, tmp_path):
    """``name -> thunk``: every public entry point that receives ``H``."""
    L = np.eye(N)[:, :RANK]
    lam = gt.damping(H)
    calls = {
        "gptq": lambda: gt.gptq(W, H, grid),
        "gptq(act_order, eig)": lambda: gt.gptq(W, H, grid, act_order=True, route="eig"),
        "gptq(lam=0, increase)": lambda: gt.gptq(W, H, grid, lam=0.0, damp_policy="increase"),
        "psi_factor": lambda: gt.psi_factor(H + np.eye(N)),
        "psi_factor(eig)": lambda: gt.psi_factor(H + np.eye(N), route="eig"),
        "psi_factor(H)": lambda: gt.psi_factor(H),
        "psi_factor(H, eig)": lambda: gt.psi_factor(H, route="eig"),
        "olrc": lambda: gt.olrc(W, Q0, H, RANK),
        "gilora": lambda: gt.gilora(W, H, grid, RANK),
        "gilora(L, act_order)": lambda: gt.gilora(W, H, grid, RANK, L=L, act_order=True),
        "bid_up": lambda: gt.bid_up(W, Q0, H, grid),
        "bid_up(H)": lambda: gt.bid_up(W, Q0, H, grid, use_damping=False),
        "refine": lambda: gt.refine(W, H, grid, Q0, RANK, rounds=2),
        "layer_error": lambda: gt.layer_error(W, Q0, H=H, lam=lam),
        "evaluate": lambda: gt.evaluate(W, Q0, H=H),
        "damping": lambda: gt.damping(H),
        "hessian_spectrum": lambda: gt.hessian_spectrum(H),
        "top_eigenvectors": lambda: gt.top_eigenvectors(H, RANK),
        "augmented_hessian": lambda: gt.augmented_hessian(H, L),
        "schur_complement": lambda: gt.schur_complement(H, L, lam),
        "ridge_R": lambda: gt.ridge_R(W, Q0, H, L, lam),
        "bound_chain(gptq)": lambda: upper_bounds.bound_chain(W, H, grid, gt.gptq(W, H, grid)),
        "bound_chain(gilora)": lambda: upper_bounds.bound_chain(
            W, H, grid, gt.gilora(W, H, grid, RANK)),
        "layer_bounds": lambda: upper_bounds.layer_bounds(W, H, BITS, RANK),
        "factorised_bound": lambda: upper_bounds.factorised_bound(W, H, BITS),
        "refit_R": lambda: refit_R(W, Q0, H, L),
        "quantize_after": lambda: quantize_after(W, Q0, H, L, np.ones((RANK, N_OUT)), l_bits=4),
        "olrc_branch": lambda: olrc_branch(W, Q0, H, RANK, l_bits=4, r_bits=4),
        "gilora_branch": lambda: gilora_branch(W, H, grid, RANK, l_bits=4),
        "storage_table": lambda: storage_table([Layer(W, H, name="t")], bits=(3,), ranks=(2,),
                                               branch_bits=(None, 4), plain_bits=(3,)),
        "l_order_comparison": lambda: l_order_comparison([Layer(W, H, name="t")], bits=3,
                                                         rank=RANK, l_bits=(2,)),
        "square_root_factor": lambda: exact.square_root_factor(H),
        "unnormalise_hessian(sum)": lambda: data.unnormalise_hessian(H, "sum"),
        "unnormalise_hessian(2/sequences)": lambda: data.unnormalise_hessian(
            H, "2/sequences", n_sequences=4),
        "data_hash": lambda: experiments.data_hash(W, H),
        "save_layer": lambda: save_layer(tmp_path / "layer.npz", W, H=H),
        "check_loss_identity": lambda: checks.check_loss_identity(W, H, gt.gptq(W, H, grid)),
        "check_gilora_r0_is_gptq": lambda: checks.check_gilora_r0_is_gptq(W, H, grid),
        "check_blocksize_invariance": lambda: checks.check_blocksize_invariance(W, H, grid),
        "check_routes_agree": lambda: checks.check_routes_agree(W, H, grid),
        "check_ridge_solution": lambda: checks.check_ridge_solution(
            W, H, gt.gilora(W, H, grid, RANK)),
        "check_schur_gptq": lambda: checks.check_schur_gptq(W, H, grid,
                                                            gt.gilora(W, H, grid, RANK)),
        "check_olrc_optimality": lambda: checks.check_olrc_optimality(
            W, Q0, H, RANK, lam=lam, n_competitors=5, rng=0),
        "check_bidup_argmin": lambda: checks.check_bidup_argmin(W, Q0, H, grid, lam=lam),
    }
    xm = np.sqrt(np.diag(H))                 # read-only too: derived from the read-only H
    xm.setflags(write=False)
    calls.update({f"compress({m})": (lambda m=m: gt.compress(W, H, m, BITS, RANK, x_abs_mean=xm))
                  for m in gt.METHODS})
    return calls


_NAMES = sorted(_calls(*_problem(), None))
# Undamped factorisations of the singular H of the dead-channel problem: they must raise
# (and still leave H untouched on the way out).
_SINGULAR = {"psi_factor(H)", "psi_factor(H, eig)"}


@pytest.mark.parametrize("dead", [False, True], ids=["full", "dead-channel"])
@pytest.mark.parametrize("name", _NAMES)
def test_public_functions_leave_H_and_W_untouched_and_unshared(name, dead, tmp_path):
    W, H, grid, Q0 = _problem(dead)
    W0, H0 = W.copy(), H.copy()
    call, result = _calls(W, H, grid, Q0, tmp_path)[name], None
    if dead and name in _SINGULAR:
        with pytest.raises(gt.NumericalError):
            call()
    else:
        result = call()
    assert H.tobytes() == H0.tobytes() and W.tobytes() == W0.tobytes()
    shared = [A.shape for A in _arrays(result) if np.shares_memory(A, H)]
    assert not shared, f"{name} returns arrays sharing memory with H: {shared}"


def test_exact_optimum_leaves_H_untouched():
    rng = np.random.default_rng(3)
    X, W = rng.standard_normal((6, 3)), rng.standard_normal((3, 2))
    H = X.T @ X
    H = 0.5 * H + 0.5 * H.T
    for A in (W, H):
        A.setflags(write=False)
    H0 = H.copy()
    opt = exact.exact_optimum(W, H, 2)
    comparison = methods.compare_methods(W, H, opt, methods=("gptq", "rtn"))
    assert H.tobytes() == H0.tobytes()
    assert not any(np.shares_memory(A, H) for A in [*_arrays(opt), *_arrays(comparison)])


@pytest.mark.parametrize("route", ["cholesky", "eig"])
def test_one_by_one_H_is_not_damped_in_place(route):
    """For n = 1 the reversal ``H[::-1, ::-1]`` is contiguous: it must still be copied."""
    W, H = np.array([[0.3, -0.2]]), np.array([[2.0]])
    grid = gt.fit_grid(W, 4)
    res = gt.gptq(W, H, grid, route=route)
    Psi = gt.psi_factor(H, route=route)
    assert H[0, 0] == 2.0
    assert res.psi_diag[0] ** 2 * (2.0 + res.lam) == pytest.approx(1.0, rel=8 * np.finfo(float).eps)
    assert Psi[0, 0] ** 2 * 2.0 == pytest.approx(1.0, rel=8 * np.finfo(float).eps)


def test_negative_control_a_write_into_read_only_H_is_caught():
    """The harness really detects a write: NumPy refuses it, LAPACK's overwrite is seen in the bytes."""
    import scipy.linalg.lapack

    _, H, _, _ = _problem()
    with pytest.raises(ValueError, match="read-only"):
        H[0, 0] += 1.0
    H0 = H.copy()
    scipy.linalg.lapack.dpotrf(H.T, lower=1, overwrite_a=1)   # H.T: a read-only Fortran view
    assert not H.flags.writeable and H.tobytes() != H0.tobytes()


def _spd(n: int, seed: int) -> np.ndarray:
    X = np.random.default_rng(seed).standard_normal((n + 5, n))
    H = X.T @ X
    return 0.5 * H + 0.5 * H.T


@pytest.mark.parametrize("where", [(0, 1), (3, 599), (598, 261), (300, 290), (599, 512)])
def test_tiled_asymmetry_is_max_abs_H_minus_HT_in_every_tile(where):
    """n = 600 spans full and partial 256-tiles; the defect sits above or below the diagonal."""
    from gilora_theory import _validation as _v

    H = _spd(600, 1)
    assert _v._asymmetry(H) == 0.0
    H[where] += 1e-3 * abs(H[where]) + 1e-3
    assert _v._asymmetry(H) == np.max(np.abs(H - H.T)) > 0
    with pytest.raises(ValueError, match="H must be symmetric"):
        _v.check_hessian(H)


def test_asymmetry_that_overflows_is_rejected_as_inf():
    from gilora_theory import _validation as _v

    H = np.zeros((300, 300))
    H[2, 290], H[290, 2] = 1e308, -1e308
    with np.errstate(over="raise"):
        assert _v._asymmetry(H) == np.inf
        with pytest.raises(ValueError, match="is inf"):
            _v.check_hessian(H)


def test_check_hessian_copies_only_when_it_must():
    """Exactly symmetric contiguous H: no copy. Rounding asymmetry: ``0.5 H + 0.5 H^T``
    bit for bit. A strided view: a contiguous copy (BLAS-ready), equal to the view."""
    from gilora_theory import _validation as _v

    H = _spd(300, 2)
    assert _v.check_hessian(H) is H
    assert _v.check_hessian(np.asfortranarray(H)).flags.f_contiguous
    A = H.copy()
    A[7, 280] = np.nextafter(A[7, 280], np.inf)
    S = _v.check_hessian(A)
    assert not np.shares_memory(S, A) and S.tobytes() == (0.5 * A + 0.5 * A.T).tobytes()
    big = np.zeros((600, 600))
    big[::2, ::2] = H
    V = _v.check_hessian(big[::2, ::2])
    assert V.flags.c_contiguous and not np.shares_memory(V, big) and np.array_equal(V, H)
