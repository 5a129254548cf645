"""Correctness checks a user can run on their own data (like PyLops' ``dottest``).

Each check recomputes one statement of [1] (docs/theory.md) by an
independent route and returns a :class:`CheckResult` that reports the measured
quantity, what it was compared with, the slack and the tolerance, so a failure
comes with its numbers. Tests and the paper checks call these same functions.

========================== ===============================================================
check_loss_identity        damped error of Q (GPTQ) or of ``[Q; -R]`` (GILoRA) == sum of
                           per-step terms
check_gilora_r0_is_gptq    GILoRA with ``r = 0`` gives the row-by-row GPTQ loop's Q
check_blocksize_invariance the lazy-batch block size does not change Q
check_routes_agree         the Cholesky and eig+QR factorisations give the same Q
check_ridge_solution       GILoRA's R solves the ridge normal equations (backward error)
check_schur_gptq           GILoRA's Q is GPTQ run on the Schur complement S
check_olrc_optimality      OLrC's value is the tail singular energy and no competitor beats it
check_bidup_argmin         every Bid-Up update is the exact coordinate argmin (brute force)
check_monotone             a trace never increases beyond rounding
check_refine_trace         a refinement's trace entry is F of the state it returns
check_scaling              ``X -> cX`` scales errors by ``c^2`` and leaves Q unchanged
========================== ===============================================================

Tolerances
----------
Every tolerance has the form ``tol = 64 * n * eps * kappa * scale`` with
``eps = np.finfo(float).eps``, ``n`` the dimension of the problem (the number
of terms in the longest accumulated sum), ``kappa`` a condition number when the
compared quantities pass through a factorisation or a solve with the damped
Hessian (1 otherwise; which one is stated in each check) and ``scale`` the
magnitude of the largest intermediate quantity (stated in each check). The
factor 64 covers the constants of the standard rounding-error bounds.

Rounding ties
-------------
Two routes that are equal in exact arithmetic (two factorisations, two block
sizes, ``X`` and ``cX``) can round one entry to different neighbours when its
pre-rounding value lies on a midpoint between two levels (a measure-zero
event). Q comparisons therefore find the first processing step where the two
Q differ, recompute both pre-rounding values there (by forward substitution
with each route's own ``Psi``), and count the difference as a *tie* only if
the two Q differ by one grid step and both pre-rounding values lie within the
rounding tolerance of the midpoint between them. Entries after a tie are not
compared (the error feedback legitimately diverges); the detail says so.

References
----------
[1] S. Zhang, R. Saab, "GPTQ-intrinsic LoRA", arXiv:2606.01412 (2026).
[2] E. Frantar et al., "GPTQ", arXiv:2210.17323 (2022).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import scipy.linalg

from . import _validation as _v
from .bidup import bid_up
from .gilora import GILoRAResult, augmented_hessian, gilora, schur_complement
from .gptq import GPTQResult, dead_channel_convention, gptq, gptq_loop, psi_factor
from .grid import Grid, check_grid
from .objective import eigvalsh_kept, evaluate, hessian, norm2_kept, resolve_lam
from .olrc import olrc

__all__ = [
    "CheckResult", "check_loss_identity", "check_gilora_r0_is_gptq",
    "check_blocksize_invariance", "check_routes_agree", "check_ridge_solution",
    "check_schur_gptq", "check_olrc_optimality", "check_bidup_argmin", "check_monotone",
    "check_refine_trace", "check_scaling",
]

_EPS = np.finfo(np.float64).eps
_C = 64.0


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one correctness check.

    Attributes
    ----------
    name : str
        Which check (the function name without ``check_``).
    passed : bool
        True when the statement holds within ``tol``.
    value : float
        The measured quantity (e.g. the directly computed damped error).
    reference : float
        What ``value`` is compared with (e.g. the sum of the per-step terms, or
        the best competitor's objective).
    slack : float
        For an inequality ``value <= reference``: ``reference - value`` (passes
        when ``slack >= -tol``). For an identity: ``|value - reference|`` or a
        stated distance (passes when ``slack <= tol``).
    tol : float
        ``64 * n * eps * kappa * scale`` (see the module docstring).
    detail : str
        One line with the numbers behind the verdict.
    numbers : dict
        Further named measurements reported beside the verdict (e.g. the forward
        error ``rel_dR`` of :func:`check_ridge_solution`); empty for most checks.
    """

    name: str
    passed: bool
    value: float
    reference: float
    slack: float
    tol: float
    detail: str
    numbers: dict = field(default_factory=dict)

    def __str__(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        return (f"{verdict} {self.name}: value {self.value:.6g}, reference {self.reference:.6g}, "
                f"slack {self.slack:.3g}, tol {self.tol:.3g}; {self.detail}")


def _identity(name: str, value: float, reference: float, tol: float, detail: str,
              extra_ok: bool = True, compared: bool = True) -> CheckResult:
    """``|value - reference| <= tol`` (only ``extra_ok`` counts when ``compared`` is False)."""
    slack = abs(value - reference)
    passed = (slack <= tol or not compared) and extra_ok
    return CheckResult(name, bool(passed), float(value), float(reference),
                       float(slack), float(tol), detail)


def _inequality(name: str, value: float, reference: float, tol: float, detail: str,
                extra_ok: bool = True) -> CheckResult:
    slack = reference - value
    return CheckResult(name, bool(slack >= -tol and extra_ok), float(value), float(reference),
                       float(slack), float(tol), detail)


def _cond(A: np.ndarray, shift: float = 0.0) -> tuple[float, float, float]:
    """``(kappa, lambda_min, lambda_max)`` of ``A + shift I``, ``A`` symmetric PSD (``kappa = inf``
    if singular), from the eigenvalues of ``A`` kept by :func:`eigvalsh_kept`: the checks of
    one layer ask for them many times, on ``H`` and on its damped forms."""
    e = eigvalsh_kept(A)
    lo, hi = float(max(e[0] + shift, 0.0)), float(max(e[-1] + shift, 0.0))
    return (hi / lo if lo > 0 else np.inf), lo, hi


def _prepared(W: np.ndarray, H: np.ndarray, dead_channels: bool):
    """The reference dead-channel convention of :func:`gptq`: ``H_ii = 0 -> 1``, ``W_i -> 0``."""
    return dead_channel_convention(W, H, copy=True) if dead_channels else (W.copy(), H.copy())


def _augmented(H: np.ndarray, L: np.ndarray, dead_channels: bool) -> np.ndarray:
    """GILoRA's augmented Hessian with the dead-channel convention in its N x N block only."""
    G = augmented_hessian(H, L)
    G[:H.shape[0], :H.shape[0]] = _prepared(np.zeros((H.shape[0], 1)), H, dead_channels)[1]
    return G


def _damped(H: np.ndarray, lam: float) -> np.ndarray:
    return H + lam * np.eye(H.shape[0])


def _quad(G: np.ndarray, D: np.ndarray) -> float:
    return float(np.einsum("ij,ij->", D, G @ D))


def _check_result(result, W):
    if not isinstance(result, (GPTQResult, GILoRAResult)):
        raise TypeError(f"result must be a GPTQResult or GILoRAResult; got {type(result).__name__}")
    if result.Q.shape != W.shape:
        raise ValueError(f"result.Q has shape {result.Q.shape}; W has shape {W.shape}")


# ---------------------------------------------------------------------------------------
# Comparing two quantizing passes (with honest tie detection)
# ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Pass:
    """One quantizing pass in processing order: ``Wp`` (n x N_out), ``Qp``, its ``Psi``."""

    Wp: np.ndarray
    Qp: np.ndarray
    Psi: np.ndarray


def _before_rounding(p: _Pass, t: int) -> tuple[np.ndarray, np.ndarray]:
    """``w~_t`` from the identity ``W - Q = Psi E`` on rows ``< t``, and its magnitude.

    Returns ``w~_t = W_t - Psi[t, :t] E[:t]`` and ``|W_t| + |Psi[t, :t]| |E[:t]|``.
    """
    if t == 0:
        return p.Wp[0].copy(), np.abs(p.Wp[0])
    E = scipy.linalg.solve_triangular(p.Psi[:t, :t], p.Wp[:t] - p.Qp[:t], lower=True,
                                      check_finite=False)
    row = p.Psi[t, :t]
    return p.Wp[t] - row @ E, np.abs(p.Wp[t]) + np.abs(row) @ np.abs(E)


def _compare_passes(a: _Pass, b: _Pass, step: np.ndarray, kappa: float) -> tuple[bool, int, str]:
    """``(ok, n_differ, detail)``: identical Q, or the first difference is a rounding tie.

    ``step`` (n x N_out) is the grid step of each entry in processing order.
    Tie tolerance per entry: ``64 n eps kappa (|W_t| + |Psi[t,:t]| |E|)``.
    """
    differ = a.Qp != b.Qp
    n_differ = int(np.count_nonzero(differ))
    if n_differ == 0:
        return True, 0, "Q identical"
    t = int(np.argmax(differ.any(axis=1)))
    cols = np.flatnonzero(differ[t])
    wa, mag = _before_rounding(a, t)
    wb, _ = _before_rounding(b, t)
    mid = 0.5 * (a.Qp[t, cols] + b.Qp[t, cols])
    tol = _C * a.Wp.shape[0] * _EPS * kappa * mag[cols]
    one_step = np.abs(np.abs(a.Qp[t, cols] - b.Qp[t, cols]) - step[t, cols]) <= 4 * _EPS * step[t, cols]
    dist = np.maximum(np.abs(wa[cols] - mid), np.abs(wb[cols] - mid))
    tie = bool(np.all(one_step) and np.all(dist <= tol))
    worst = float(np.max(dist / step[t, cols]))
    what = "rounding tie" if tie else "NOT a tie"
    return tie, n_differ, (f"Q differs in {n_differ} entries; first at processing step {t}, "
                           f"columns {cols.tolist()[:5]}: {what} (pre-rounding values "
                           f"{worst:.3g} steps from the midpoint, tie tolerance "
                           f"{float(np.max(tol / step[t, cols])):.3g} steps); later rows not compared")


def _steps(grid: Grid, perm: np.ndarray, N_out: int) -> np.ndarray:
    """Grid step of every entry (n x N_out), rows in processing order ``perm``."""
    if grid.groupsize is None:
        return np.broadcast_to(2.0 * grid.half_step(0), (perm.shape[0], N_out))
    return 2.0 * grid.half_step(perm)


def _magnitude(p: _Pass) -> float:
    """``M = sum_t || |W_t| + |Psi[t,:t]| |E[:t]| ||^2 / Psi_tt^2``: the size of what each step rounds.

    The pre-rounding value ``w~_t`` is computed with an error of about
    ``n eps (|W_t| + |Psi[t,:t]| |E|)``, so a sum of per-step terms
    ``||w~_t - q_t||^2 / Psi_tt^2`` carries an error of at most about
    ``2 n eps sqrt(step_sum * M)`` (Cauchy-Schwarz).
    """
    E = scipy.linalg.solve_triangular(p.Psi, p.Wp - p.Qp, lower=True, check_finite=False)
    mag = np.abs(p.Wp) + np.abs(np.tril(p.Psi, -1)) @ np.abs(E)
    return float(np.sum(np.sum(mag * mag, axis=1) / np.diag(p.Psi) ** 2))


def _step_sum_tol(n: int, step_sum: float, M: float) -> float:
    """``64 n eps (step_sum + 2 sqrt(step_sum M))`` (see :func:`_magnitude`)."""
    return _C * n * _EPS * (step_sum + 2.0 * np.sqrt(step_sum * M))


def _result_pass(W, H, result, dead_channels: bool, route: str = "cholesky") -> _Pass:
    """The quantized rows of a GPTQ or GILoRA run, with ``Psi`` of its (augmented) problem."""
    Wd, Hd = _prepared(W, H, dead_channels)
    G = _augmented(H, result.L, dead_channels) if isinstance(result, GILoRAResult) else Hd
    p, N = result.perm, W.shape[0]
    full = np.concatenate([p, np.arange(N, G.shape[0])])
    Psi = psi_factor(_damped(G[np.ix_(full, full)], result.lam), route=route)[:N, :N]
    return _Pass(Wd[p], result.Q[p], Psi)


# ---------------------------------------------------------------------------------------
# The checks
# ---------------------------------------------------------------------------------------

def check_loss_identity(W, H, result, *, lam: float | None = None,
                        dead_channels: bool = True) -> CheckResult:
    """Damped error == sum of the per-step terms (loss identity, docs/theory.md, Alg. 1-4).

    GPTQ: ``E_lam(Q) = tr(D^T H_lam D)``, ``D = W - Q``. GILoRA: the damped
    augmented error ``||X (W - Q - L R)||^2 + lam ||W - Q||^2 + lam ||R||^2``.
    Both are computed directly from ``H`` and compared with ``result.step_sum``.

    Parameters
    ----------
    W : (N, N_out) array_like
    H : (N, N) array_like
    result : GPTQResult or GILoRAResult
        The run to check (on this ``W`` and ``H``).
    lam : float, optional
        Absolute damping; default ``result.lam`` (the value the run used).
    dead_channels : bool, default True
        Apply the same dead-channel convention as the run (``H_ii = 0``).

    Returns
    -------
    CheckResult
        ``value`` the direct damped error, ``reference`` the step sum. Tolerance
        with ``n = N + r``, ``kappa = 1`` and ``scale = ||H_lam||_2 ||D||_F^2 +
        step_sum + 2 sqrt(step_sum M)``, where ``M = sum_t || |W_t| +
        |Psi[t,:t]| |E| ||^2 / Psi_tt^2`` measures what each step rounds (the
        pre-rounding values carry errors relative to ``|W|``, not to ``|w~ - q|``).
    """
    W = _v.as_matrix("W", W)
    H = _v.check_hessian(H, W.shape[0])
    _check_result(result, W)
    lam = result.lam if lam is None else _v.check_float("lam", lam)
    Wd, Hd = _prepared(W, H, dead_channels)
    if isinstance(result, GILoRAResult):
        G = _damped(_augmented(H, result.L, dead_channels), lam)
        D = np.vstack([Wd - result.Q, -result.R])
    else:
        G, D = _damped(Hd, lam), Wd - result.Q
    value = _quad(G, D)
    hi = _cond(G)[2]
    M = _magnitude(_result_pass(W, H, result, dead_channels))
    tol = (_C * G.shape[0] * _EPS * hi * float(np.sum(D * D))
           + _step_sum_tol(G.shape[0], result.step_sum, M))
    return _identity("loss_identity", value, result.step_sum, tol,
                     f"direct damped error {value:.6g} vs sum of {len(result.step_terms)} "
                     f"per-step terms {result.step_sum:.6g} (lam {lam:.3g})")


def check_gilora_r0_is_gptq(W, H, grid: Grid, *, gilora_fn=None, columns=None, **kw) -> CheckResult:
    """GILoRA with ``r = 0`` equals GPTQ (claim C1; docs/theory.md, "Claims").

    GILoRA (``gilora_fn``, default :func:`gilora_theory.gilora`) runs with rank 0
    and the keyword options ``kw`` (``damp``, ``lam``, ``blocksize``, ``route``,
    ``act_order``, ``dead_channels``, ``damp_from``). The reference is an
    independent route: :func:`gilora_theory.gptq.gptq_loop`, the paper's
    row-by-row Alg. 1 (no lazy batches, no shared kernel), on the same
    dead-channel convention, processing order (``argsort(-diag H)`` with
    act-order, computed here) and damping ``lam = damp mean(diag H)``. A bug in
    the blocked kernel that GPTQ and GILoRA share therefore shows up here.
    ``columns`` (optional indices) restricts the loop and the comparison to those
    output columns: columns are quantized independently (per-column grid, shared
    ``Psi``), so a subset is compared exactly and the loop's cost falls with it.

    Returns
    -------
    CheckResult
        ``value`` GILoRA's step sum, ``reference`` the loop's (compared when the Q
        agree); ``tol`` with ``n = N``, ``kappa = 1``, ``scale = step_sum +
        2 sqrt(step_sum M)`` (as :func:`check_blocksize_invariance`). Q must agree
        (or differ first at a detected rounding tie, tie tolerance with
        ``kappa = cond(H_lam)``), ``R`` must be empty, the order and ``lam`` equal.
    """
    W = _v.as_matrix("W", W)
    H = _v.check_hessian(H, W.shape[0])
    check_grid(grid, W)
    res = (gilora if gilora_fn is None else gilora_fn)(W, H, grid, 0, **kw)
    dead = kw.get("dead_channels", True)
    Wd, Hd = _prepared(W, H, dead)
    lam = resolve_lam(H, kw.get("damp", 0.01), kw.get("lam"))
    N = W.shape[0]
    p = np.argsort(-np.diag(Hd), kind="stable") if kw.get("act_order") else np.arange(N)
    cols = np.arange(W.shape[1]) if columns is None else np.asarray(columns, dtype=int)
    rows_grid = _per_row_grid(Grid(grid.step[:, cols], grid.zero[:, cols], grid.bits, grid.beta,
                                   grid.bounded, grid.groupsize), p)
    Wc = Wd[:, cols]
    ref = gptq_loop(Wc[p], Hd[np.ix_(p, p)], rows_grid, lam=lam)
    Psi = psi_factor(_damped(Hd[np.ix_(p, p)], lam))
    a, b = _Pass(Wc[p], res.Q[p][:, cols], Psi), _Pass(Wc[p], ref.Q, Psi)
    res_sum = float(np.sum(res.step_terms)) if columns is None else _Pass_step_sum(a)
    ok, n_differ, detail = _compare_passes(a, b, 2.0 * rows_grid.half_step(np.arange(N)),
                                           _cond(Hd, lam)[0])
    same = (np.array_equal(res.perm, p) and res.R.shape[0] == 0 and res.lam == lam)
    tol = _step_sum_tol(N, ref.step_sum, _magnitude(b))
    return _identity("gilora_r0_is_gptq", res_sum, ref.step_sum, tol,
                     f"vs the row-by-row loop: {detail}; lam {res.lam!r} vs {lam!r}; "
                     f"order {'equal' if np.array_equal(res.perm, p) else 'DIFFERENT'}",
                     extra_ok=ok and same, compared=n_differ == 0)


def _Pass_step_sum(p: _Pass) -> float:
    """``sum_t ||w~_t - q_t||^2 / Psi_tt^2 = ||Psi^{-1} (W - Q)||_F^2`` of a pass's columns."""
    E = scipy.linalg.solve_triangular(p.Psi, p.Wp - p.Qp, lower=True, check_finite=False)
    return float(np.sum(E * E))


def check_blocksize_invariance(W, H, grid: Grid, *, blocksizes=(1, 7, 128), rank: int = 0,
                               **kw) -> CheckResult:
    """The lazy-batch block size does not change Q, nor GILoRA's R (claim C2).

    GPTQ (``rank = 0``) or GILoRA with ``rank`` (``L = V_r``) is run once per block
    size (other options ``kw`` shared); each Q is compared with the first, allowing
    only a detected rounding tie, and for GILoRA each ``R`` with the first's.

    Returns
    -------
    CheckResult
        ``value`` the largest step-sum difference among runs whose Q agree,
        ``reference`` 0; ``tol`` with ``n = N + r``, ``kappa = 1``,
        ``scale = step_sum + 2 sqrt(step_sum M)`` (``M`` as in
        :func:`check_loss_identity`). Tie tolerance uses ``kappa = cond(H_lam)``
        (augmented for GILoRA); ``R`` must agree within
        ``64 (N + r) eps kappa ||R||_F``.
    """
    W = _v.as_matrix("W", W)
    H = _v.check_hessian(H, W.shape[0])
    rank = _v.check_int("rank", rank, low=0, high=min(W.shape))
    if rank:
        runs = [gilora(W, H, grid, rank, blocksize=b, **kw) for b in blocksizes]
    else:
        runs = [gptq(W, H, grid, blocksize=b, **kw) for b in blocksizes]
    route = kw.get("route", "cholesky")
    dead = kw.get("dead_channels", True)
    base = _result_pass(W, H, runs[0], dead, route)
    G = _augmented(H, runs[0].L, dead) if rank else _prepared(W, H, dead)[1]
    kappa = _cond(G, runs[0].lam)[0]
    steps = _steps(grid, runs[0].perm, W.shape[1])
    ok, worst, notes = True, 0.0, []
    R_tol = _C * G.shape[0] * _EPS * kappa * (float(np.linalg.norm(runs[0].R)) if rank else 0.0)
    for b, res in zip(blocksizes[1:], runs[1:]):
        same, n_differ, detail = _compare_passes(base, _Pass(base.Wp, res.Q[res.perm], base.Psi),
                                                 steps, kappa)
        ok &= same
        if n_differ == 0:
            worst = max(worst, abs(res.step_sum - runs[0].step_sum))
            if rank:
                dR = float(np.linalg.norm(res.R - runs[0].R))
                ok &= dR <= R_tol
                detail += f"; ||dR||_F {dR:.3g} (tol {R_tol:.3g})"
        notes.append(f"blocksize {b} vs {blocksizes[0]}: {detail}")
    tol = _step_sum_tol(G.shape[0], runs[0].step_sum, _magnitude(base))
    return _identity("blocksize_invariance", worst, 0.0, tol, "; ".join(notes), extra_ok=ok)


def check_routes_agree(W, H, grid: Grid, **kw) -> CheckResult:
    """The Cholesky and eig+QR routes for ``Psi`` give the same GPTQ result (claim C3).

    Returns
    -------
    CheckResult
        ``value`` the largest ``|Psi_tt|`` difference of the two routes relative to
        ``max Psi_tt``, ``reference`` 0; ``tol`` with ``n = N``,
        ``kappa = cond(H_lam)``, ``scale = 1``. Q must agree (or differ first at
        a detected tie).
    """
    W = _v.as_matrix("W", W)
    H = _v.check_hessian(H, W.shape[0])
    kw = {k: v for k, v in kw.items() if k != "route"}
    chol = gptq(W, H, grid, route="cholesky", **kw)
    eig = gptq(W, H, grid, route="eig", **kw)
    dead = kw.get("dead_channels", True)
    kappa = _cond(_prepared(W, H, dead)[1], chol.lam)[0]
    a = _result_pass(W, H, chol, dead, "cholesky")
    b = _result_pass(W, H, eig, dead, "eig")
    ok, _, detail = _compare_passes(a, b, _steps(grid, chol.perm, W.shape[1]), kappa)
    diff = float(np.max(np.abs(chol.psi_diag - eig.psi_diag)) / np.max(chol.psi_diag))
    tol = _C * W.shape[0] * _EPS * kappa
    return _identity("routes_agree", diff, 0.0, tol,
                     f"relative Psi_tt difference {diff:.3g}; {detail}", extra_ok=ok)


def check_ridge_solution(W, H, result: GILoRAResult, *, dead_channels: bool = True) -> CheckResult:
    """GILoRA's ``R`` solves the ridge normal equations ``K R = B`` (claim C5).

    ``K = L^T H L + lam I`` and ``B = L^T H (W - Q)`` with GILoRA's ``L``, ``Q`` and
    ``lam``, formed here directly from ``H``. Judged by the normwise backward error of
    the returned ``R`` (Rigal-Gaches; Higham [3], Thm. 7.1, with the error of forming
    ``B`` in the denominator)::

        eta = ||K R - B||_F / (||K||_2 ||R||_F + ||L||_2 ||H||_2 (||W - Q||_F + ||W||_F))

    which a backward-stable computation keeps below ``n eps`` (``n = N + r``)
    whatever the conditioning: an ``R`` that is off by a relative ``d`` has
    ``eta ~ d ||K R|| / (||K|| ||R|| + ...)``. The pass never forms ``W - Q``: it
    works on ``W~``, whose rounding is relative to ``||W||``, so the data term
    carries ``||W||`` beside ``||W - Q||`` (at many bits ``||W - Q|| << ||W||``
    and a denominator with ``||W - Q||`` alone would charge the pass for
    rounding it cannot avoid). The forward error ``||R - R_ridge||_F / ||R_ridge||_F`` against
    ``numpy.linalg.solve(K, B)`` is reported in ``detail``.

    Returns
    -------
    CheckResult
        ``value`` ``eta``, ``reference`` 0; ``tol = 64 (N + r) eps`` (``kappa = 1``,
        ``scale = 1``: the backward error is already relative); ``numbers["rel_dR"]``
        the forward error.

    References
    ----------
    [3] N. J. Higham, "Accuracy and Stability of Numerical Algorithms", 2nd ed.,
        SIAM (2002).
    """
    W = _v.as_matrix("W", W)
    H = _v.check_hessian(H, W.shape[0])
    if not isinstance(result, GILoRAResult):
        raise TypeError(f"result must be a GILoRAResult; got {type(result).__name__}")
    L, lam, R = result.L, result.lam, result.R
    Wd = _prepared(W, H, dead_channels)[0]
    D = Wd - result.Q
    K = L.T @ H @ L + lam * np.eye(L.shape[1])
    B = L.T @ (H @ D)
    nL = float(np.linalg.norm(L, 2)) if L.size else 0.0
    denom = (float(np.linalg.norm(K, 2)) if K.size else 0.0) * float(np.linalg.norm(R)) + (
        nL * norm2_kept(H) * (float(np.linalg.norm(D)) + float(np.linalg.norm(Wd))))
    eta = float(np.linalg.norm(K @ R - B)) / denom if denom > 0 else 0.0
    R_ridge = np.linalg.solve(K, B)
    nR = float(np.linalg.norm(R_ridge))
    rel = float(np.linalg.norm(R - R_ridge)) / nR if nR > 0 else float(np.linalg.norm(R))
    tol = _C * (W.shape[0] + L.shape[1]) * _EPS
    chk = _identity("ridge_solution", eta, 0.0, tol,
                    f"backward error {eta:.3g} of K R = B; ||R - R_ridge||_F / ||R_ridge||_F = "
                    f"{rel:.3g} (rank {L.shape[1]}, lam {lam:.3g}, cond(K) "
                    f"{np.linalg.cond(K) if K.size else 1.0:.3g})")
    return replace(chk, numbers={"rel_dR": rel})


def check_schur_gptq(W, H, grid: Grid, result: GILoRAResult, *,
                     dead_channels: bool = True) -> CheckResult:
    """GILoRA's ``Q`` equals GPTQ run on the Schur complement ``S`` (docs/theory.md, Alg. 1-4).

    ``S = H_lam - H L (L^T H L + lam I)^{-1} L^T H`` with GILoRA's ``L`` and
    ``lam``; GPTQ runs undamped on ``S`` in GILoRA's processing order.

    Returns
    -------
    CheckResult
        ``value`` the GPTQ-on-S step sum, ``reference`` ``result.step_sum``
        (compared only when Q agree); ``tol`` with ``n = N + r``,
        ``kappa = cond(H_aug + lam I)`` (the two factorised matrices differ by
        rounding amplified by it), ``scale = step_sum + 2 sqrt(step_sum M)``. Q must agree
        or differ first at a detected tie.
    """
    W = _v.as_matrix("W", W)
    H = _v.check_hessian(H, W.shape[0])
    check_grid(grid, W)
    if not isinstance(result, GILoRAResult):
        raise TypeError(f"result must be a GILoRAResult; got {type(result).__name__}")
    Wd, Hd = _prepared(W, H, dead_channels)
    p, lam = result.perm, result.lam
    S = schur_complement(H, result.L, lam) + (Hd - H)  # dead channels: H_ii := 1 in S too
    S = S[np.ix_(p, p)]
    rows_grid = _per_row_grid(grid, p)
    on_s = gptq(Wd[p], S, rows_grid, lam=0.0, dead_channels=False)
    G = _damped(_augmented(H, result.L, dead_channels), lam)
    full = np.concatenate([p, np.arange(W.shape[0], G.shape[0])])
    kappa = _cond(G)[0]
    a = _Pass(Wd[p], result.Q[p], psi_factor(G[np.ix_(full, full)])[:W.shape[0], :W.shape[0]])
    b = _Pass(Wd[p], on_s.Q, psi_factor(S))
    ok, n_differ, detail = _compare_passes(a, b, 2.0 * rows_grid.half_step(np.arange(W.shape[0])),
                                           kappa)
    tol = kappa * _step_sum_tol(G.shape[0], result.step_sum, _magnitude(a))
    return _identity("schur_gptq", on_s.step_sum, result.step_sum, tol, detail, extra_ok=ok,
                     compared=n_differ == 0)


def _per_row_grid(grid: Grid, perm: np.ndarray) -> Grid:
    """The grid whose row t is ``grid``'s row ``perm[t]`` (groups of one row)."""
    rows = perm if grid.groupsize is not None else np.zeros_like(perm)
    gs = grid.groupsize if grid.groupsize is not None else 1
    step, zero = grid.step[rows // gs], grid.zero[rows // gs]
    return Grid(step, zero, grid.bits, grid.beta, grid.bounded, 1)


def check_olrc_optimality(W, Q, H, rank: int, *, lam: float, n_competitors: int = 200,
                          rng=None) -> CheckResult:
    """OLrC is optimal: its value is the tail singular energy and no rank-r competitor beats it.

    Independent route for the value: ``sum_{i>r} sigma_i(C^T (W - Q))^2`` with
    ``C C^T = H_lam`` (numpy Cholesky; for ``lam = 0``, numpy ``eigh`` with
    negative rounding clipped). Competitors ``M`` (each evaluated directly as
    ``tr((D - M)^T H_lam (D - M))``): OLrC's own ``L R``; the Euclidean
    truncated SVD of ``D``; random ``L`` with their best ``R``; and OLrC's
    factors with random perturbations of relative sizes 1e-1 to 1e-6.

    Parameters
    ----------
    W, Q : (N, N_out) array_like
    H : (N, N) array_like
    rank : int
    lam : float
        Absolute damping (0 allowed).
    n_competitors : int, default 200
    rng : Generator, int or None

    Returns
    -------
    CheckResult
        ``value`` OLrC's value, ``reference`` the best competitor's objective,
        ``slack = reference - value``; also requires ``|value - tail energy|``
        and ``|value - F(L R)|`` within ``tol``: ``n = N``,
        ``kappa = sqrt(cond of H_lam on its range)``,
        ``scale = ||H_lam||_2 (||D||_F + max ||M||_F)^2``.
    """
    W = _v.as_matrix("W", W)
    Q = _v.as_matrix("Q", Q)
    H = _v.check_hessian(H, W.shape[0])
    lam = _v.check_float("lam", lam)
    n_competitors = _v.check_int("n_competitors", n_competitors, low=0)
    rng = np.random.default_rng(rng)
    res = olrc(W, Q, H, rank, lam=lam)
    D, G, r = W - Q, _damped(H, lam), res.L.shape[1]
    tail = _tail_energy(D, G, r)
    comps = [res.L @ res.R, _euclidean_truncation(D, r)] + _competitors(D, G, res, r, n_competitors, rng)
    values = np.array([_quad(G, D - M) for M in comps])
    e = scipy.linalg.eigvalsh(G, check_finite=False)
    kept = e[e > G.shape[0] * _EPS * max(e[-1], 0.0)]
    kappa = np.sqrt(kept[-1] / kept[0]) if kept.size else 1.0
    big = max(float(np.linalg.norm(M)) for M in comps)
    tol = _C * W.shape[0] * _EPS * kappa * max(e[-1], 0.0) * (float(np.linalg.norm(D)) + big) ** 2
    best = float(np.min(values[1:])) if len(values) > 1 else np.inf
    ok = abs(res.value - tail) <= tol and abs(res.value - values[0]) <= tol
    return _inequality("olrc_optimality", res.value, best, tol,
                       f"OLrC value {res.value:.6g}, independent tail energy {tail:.6g}, "
                       f"F(L R) {values[0]:.6g}, best of {len(values) - 1} competitors {best:.6g} "
                       f"(Euclidean truncation {values[1]:.6g}); rank {r}, lam {lam:.3g}",
                       extra_ok=ok)


def _tail_energy(D: np.ndarray, G: np.ndarray, r: int) -> float:
    """``sum_{i>r} sigma_i(G^{1/2} D)^2`` through any square root (Cholesky when PD)."""
    try:
        C = np.linalg.cholesky(G)
    except np.linalg.LinAlgError:
        e, V = np.linalg.eigh(G)
        C = V * np.sqrt(np.clip(e, 0.0, None))
    s = np.linalg.svd(C.T @ D, compute_uv=False)
    return float(np.sum(s[r:] ** 2))


def _euclidean_truncation(D: np.ndarray, r: int) -> np.ndarray:
    """The best rank-r approximation of ``D`` in the plain Frobenius norm (ignores H)."""
    U, s, Vt = np.linalg.svd(D, full_matrices=False)
    return (U[:, :r] * s[:r]) @ Vt[:r]


def _competitors(D, G, res, r, n, rng) -> list[np.ndarray]:
    """Random rank-r matrices: random ``L`` with best ``R``, and perturbed OLrC factors."""
    out = []
    if r == 0:
        return out
    N, N_out = D.shape
    for k in range(n):
        if k % 2 == 0:
            L = rng.standard_normal((N, r))
            K = L.T @ G @ L
            R = np.linalg.lstsq(K, L.T @ G @ D, rcond=None)[0]
            out.append(L @ R)
        else:
            size = 10.0 ** -rng.integers(1, 7)
            L = res.L + size * np.linalg.norm(res.L) * rng.standard_normal(res.L.shape) / np.sqrt(res.L.size)
            R = res.R + size * rng.standard_normal(res.R.shape) / np.sqrt(res.R.size)
            out.append(L @ R)
    return out


def check_bidup_argmin(target, Q0, H, grid: Grid, *, lam: float, rows=None) -> CheckResult:
    """Every Bid-Up update is the exact coordinate argmin (brute force over the alphabet).

    Runs one sweep of :func:`bid_up` with ``G = H + lam I``. The sweep visits
    rows in order, so at row i rows ``< i`` hold their new values and rows
    ``> i`` their old ones; for each checked row and column the 1-D objective
    ``phi(x) = G_ii (x - q)^2 - 2 (x - q) g``, ``g = [G (W~ - Q)]_ij``, is
    evaluated at every level of the column's alphabet (for an unbounded grid:
    the three levels either side of the chosen one, enough for a convex
    function on a lattice) and the chosen level must attain the minimum.
    Also requires ``f`` not to increase over the sweep.

    Parameters
    ----------
    target : (N, N_out) array_like
        ``W~ = W - L R``.
    Q0 : (N, N_out) array_like
    H : (N, N) array_like
    grid : Grid
    lam : float
        Absolute damping (0: ``G = H``).
    rows : iterable of int, optional
        Rows to verify (default all).

    Returns
    -------
    CheckResult
        ``value`` the largest excess ``phi(chosen) - min phi``, ``reference`` 0,
        ``slack = -excess``; per-coordinate ``tol = 64 eps (n (|x*-q| + |x_min-q|)
        (|G| (|W~| + |Q|))_ij + |phi(x*)| + |phi_min|)``, the largest reported.
    """
    T = _v.as_matrix("target", target)
    Q0 = _v.as_matrix("Q0", Q0)
    H = _v.check_hessian(H, T.shape[0])
    lam = _v.check_float("lam", lam)
    check_grid(grid, T)
    res = bid_up(T, Q0, H, grid, lam=lam, sweeps=1)
    G = _damped(H, lam)
    N = T.shape[0]
    rows = range(N) if rows is None else [_v.check_int("rows[i]", i, low=0, high=N - 1) for i in rows]
    worst_excess, worst_tol, bad = -np.inf, 0.0, []
    for i in rows:
        Q = np.vstack([res.Q[:i], Q0[i:]])
        excess, tol = _row_excess(T, Q, G, grid, i, res.Q[i])
        k = int(np.argmax(excess - tol))
        if excess[k] > tol[k]:
            bad.append((i, k))
        if excess[k] - tol[k] > worst_excess - worst_tol:
            worst_excess, worst_tol = float(excess[k]), float(tol[k])
    f0, f1 = res.trace
    mono_tol = _C * N * _EPS * norm2_kept(H, lam) * (np.linalg.norm(T) + np.linalg.norm(Q0)) ** 2
    ok = not bad and f1 <= f0 + mono_tol
    return _inequality("bidup_argmin", worst_excess, 0.0, worst_tol,
                       f"{len(bad)} non-minimal updates {bad[:3]}; f {f0:.6g} -> {f1:.6g} "
                       f"({'H_lam' if lam > 0 else 'H'}, lam {lam:.3g})", extra_ok=ok)


def _row_excess(T, Q, G, grid: Grid, i: int, chosen: np.ndarray):
    """Per column: ``phi(chosen) - min over the alphabet of phi`` and its tolerance."""
    g_ii = G[i, i]
    q = Q[i]
    g = G[i] @ (T - Q)
    g_mag = np.abs(G[i]) @ (np.abs(T) + np.abs(Q))
    step, zero = grid.step[0 if grid.groupsize is None else i // grid.groupsize], \
        grid.zero[0 if grid.groupsize is None else i // grid.groupsize]
    if grid.bounded:
        codes = np.arange(grid.maxq + 1, dtype=float)[:, None]
    else:
        c0 = np.round(chosen / step) + zero
        codes = c0[None, :] + np.arange(-3, 4, dtype=float)[:, None]
    levels = step * (codes - zero)
    phi = g_ii * (levels - q) ** 2 - 2.0 * (levels - q) * g
    phi_star = g_ii * (chosen - q) ** 2 - 2.0 * (chosen - q) * g
    k = np.argmin(phi, axis=0)
    x_min = levels[k, np.arange(levels.shape[1])]
    phi_min = phi[k, np.arange(levels.shape[1])]
    n = T.shape[0]
    tol = _C * _EPS * (n * (np.abs(chosen - q) + np.abs(x_min - q)) * g_mag
                       + np.abs(phi_star) + np.abs(phi_min))
    return phi_star - phi_min, tol


def check_monotone(trace, *, scale: float | None = None) -> CheckResult:
    """A trace never increases beyond a rounding tolerance (Bid-Up, refinement).

    Parameters
    ----------
    trace : (K,) array_like
        Objective values in order.
    scale : float, optional
        Magnitude of the computations that produced the trace, e.g.
        ``N ||H_lam||_2 ||W||_F^2`` for a quadratic form in ``N`` dimensions.
        Default ``K max|trace|``.

    Returns
    -------
    CheckResult
        ``value`` the largest increase ``max_k (trace[k+1] - trace[k])``,
        ``reference`` 0, ``slack = -value``, ``tol = 64 eps scale``.
    """
    trace = _v.as_matrix("trace", trace, ndim=1)
    if scale is None:
        scale = trace.shape[0] * float(np.max(np.abs(trace)))
    else:
        scale = _v.check_float("scale", scale)
    rises = np.diff(trace)
    value = float(np.max(rises)) if rises.size else 0.0
    k = int(np.argmax(rises)) if rises.size else 0
    return _inequality("monotone", value, 0.0, _C * _EPS * scale,
                       f"{trace.shape[0]} values, {trace[0]:.6g} -> {trace[-1]:.6g}; "
                       f"largest change {value:.3g} at step {k}")


def check_refine_trace(W, H, result, *, index: int = -1) -> CheckResult:
    """The trace of a refinement reports the objective of the state it returns (claim C9).

    ``F = tr(D^T H_lam D)``, ``D = W - Q - L R``, is recomputed from the returned
    ``result.Q``, ``result.L``, ``result.R`` (:func:`gilora_theory.evaluate` with
    ``lam = result.lam``) and compared with ``result.trace[index]`` (default the
    last entry: the state after the final OLrC).

    Parameters
    ----------
    W : (N, N_out) array_like
    H : (N, N) array_like
    result : RefineResult
        Any object with ``Q``, ``L``, ``R``, ``trace`` and ``lam``.
    index : int, default -1
        The trace entry that describes the returned state.

    Returns
    -------
    CheckResult
        ``value`` the recomputed ``F``, ``reference`` the trace entry; ``tol`` with
        ``n = N``, ``kappa = 1``, ``scale = ||H_lam||_2 (||W||_F + ||Q||_F +
        ||L||_2 ||R||_F)^2`` (the size of the products behind either value).
    """
    W = _v.as_matrix("W", W)
    H = _v.check_hessian(H, W.shape[0])
    obj = evaluate(W, result.Q, result.L, result.R, H=H, lam=result.lam)
    ref = float(np.asarray(result.trace)[index])
    nL = float(np.linalg.norm(result.L, 2)) if np.size(result.L) else 0.0
    size = float(np.linalg.norm(W)) + float(np.linalg.norm(result.Q)) + nL * float(
        np.linalg.norm(result.R))
    tol = _C * W.shape[0] * _EPS * norm2_kept(H, result.lam) * size ** 2
    return _identity("refine_trace", obj.damped_error, ref, tol,
                     f"F of the returned (Q, L, R) {obj.damped_error:.10g} vs trace[{index}] "
                     f"{ref:.10g}")


def check_scaling(W, X, grid: Grid, c: float, *, rank: int = 0, damp: float = 0.01,
                  act_order: bool = False) -> CheckResult:
    """``X -> c X`` scales every error by ``c^2`` and leaves Q (and R) unchanged.

    Runs GPTQ (``rank = 0``) or GILoRA (``rank > 0``) with relative damping
    ``damp`` on ``H = X^T X`` and on ``(cX)^T (cX)``, and evaluates both
    results against their own ``X``. GILoRA's second run reuses the first
    run's ``L = V_r`` (``V_r`` is not unique when the r-th eigenvalue gap is
    zero, and the statement is about the algorithm for a given ``L``).

    Returns
    -------
    CheckResult
        ``value`` the error with ``cX``, ``reference`` ``c^2`` times the error with
        ``X``; ``tol`` with ``n = N``, ``kappa = 1``,
        ``scale = c^2 ||X||_2^2 (||W||_F + ||L R||_F)^2``. Q must agree (or
        differ first at a detected tie; then errors are not compared).
    """
    W = _v.as_matrix("W", W)
    X = _v.as_matrix("X", X)
    c = _v.check_float("c", c, low=0.0, low_open=True)
    check_grid(grid, W)
    runs, L = [], None
    for Xs in (X, c * X):
        H = hessian(Xs)
        res = gptq(W, H, grid, damp=damp, act_order=act_order) if rank == 0 else \
            gilora(W, H, grid, rank, L=L, damp=damp, act_order=act_order)
        L = res.L if rank else None
        L, R = (res.L, res.R) if rank else (None, None)
        runs.append((H, res, evaluate(W, res.Q, L, R, X=Xs)))
    (H1, r1, o1), (H2, r2, o2) = runs
    if np.array_equal(r1.Q, r2.Q):
        ok, n_differ, detail = True, 0, "Q identical"
    elif not np.array_equal(r1.perm, r2.perm):
        ok, detail = _perm_tie(H1, r2.perm, X.shape[0])
        n_differ = -1
    else:
        ok, n_differ, detail = _compare_passes(
            *_scaled_passes(W, H1, H2, r1, r2, rank), _steps(grid, r1.perm, W.shape[1]),
            _cond(_prepared(W, H1, True)[1], r1.lam)[0])
    LR = float(np.linalg.norm(r1.L @ r1.R)) if rank else 0.0
    tol = _C * W.shape[0] * _EPS * c**2 * float(np.linalg.norm(X, 2)) ** 2 * (np.linalg.norm(W) + LR) ** 2
    compared = n_differ == 0
    ratio = f"{o2.error / o1.error:.6g}" if o1.error > 0 else "n/a"
    return _identity("scaling", o2.error, c**2 * o1.error, tol,
                     f"c = {c:.6g}: error {o1.error:.6g} -> {o2.error:.6g} (ratio {ratio}); {detail}",
                     extra_ok=ok, compared=compared)


def _perm_tie(H: np.ndarray, perm: np.ndarray, m: int) -> tuple[bool, str]:
    """Is the act-order ``perm`` of the scaled run a valid order for ``H`` (a sort tie)?

    ``diag H`` taken in ``perm`` must be non-increasing within ``64 m eps max diag H``
    (``m`` accumulated samples), ignoring dead channels (``H_ii = 0``): the
    convention ``H_ii := 1`` does not scale with ``c^2``, so their place in the
    order moves, but they are decoupled from the other rows.
    """
    d = np.diag(H)[perm]
    d = d[d != 0]
    rise = float(np.max(np.diff(d), initial=0.0))
    tol = _C * m * _EPS * float(np.max(np.abs(d), initial=0.0))
    what = "a tie of diag H" if rise <= tol else "NOT a tie"
    return rise <= tol, (f"act-order permutations differ: {what} (largest rise {rise:.3g}, "
                         f"tolerance {tol:.3g}); Q and errors not compared")


def _scaled_passes(W, H1, H2, r1, r2, rank):
    """The two passes of :func:`check_scaling` (GPTQ, or GILoRA's quantized rows)."""
    out = []
    for H, res in ((H1, r1), (H2, r2)):
        Wd, Hd = _prepared(W, H, True)
        G = _augmented(H, res.L, True) if rank else Hd
        p = res.perm
        full = np.concatenate([p, np.arange(W.shape[0], G.shape[0])])
        Psi = psi_factor(_damped(G[np.ix_(full, full)], res.lam))[:W.shape[0], :W.shape[0]]
        out.append(_Pass(Wd[p], res.Q[p], Psi))
    return out
