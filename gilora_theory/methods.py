"""Compositions a user compares: RTN, GPTQ, GILoRA and their low-rank follow-ups.

=============== ==========================================================
``rtn``         round to nearest on the grid, no branch
``gptq``        Alg. 1 of [1] (GPTQ [2]), no branch
``gilora``      Alg. 3 of [1]: ``Q``, ``L = V_r``, ``R`` from the pass
``gptq+olrc``   GPTQ, then the optimal rank-r branch (Alg. 2)
``gptq+ls``     GPTQ, then ``L = V_r`` and the ridge/least-squares ``R``
                ``(L^T H L + lam I)^{-1} L^T H (W - Q)`` (``lam = 0``: plain LS)
``rtn+olrc``    RTN, then Alg. 2 (the calibration-aware LoRC/QERA baseline)
``gilora+olrc`` GILoRA's ``Q``, then Alg. 2
``refine``      GILoRA, then ``rounds`` refinement rounds (Alg. 4 loop)
``gptq+svd``    GPTQ, then the data-free branch: the SVD fit of ``W - Q``
                (LoRC [3]; :func:`gilora_theory.datafree.svd_fit`, ``H = I``)
``rtn+svd``     RTN, then the same (wholly calibration-free)
=============== ==========================================================

The literature's methods (:mod:`gilora_theory.literature`, each with its
authors' conventions; ``x_abs_mean`` is the per-input-channel mean ``|x|``):

=================== ======================================================
``rtn+lqer``        RTN, then LQER's branch [4] (needs ``x_abs_mean``)
``gptq+lqer``       GPTQ, then LQER's branch (needs ``x_abs_mean``)
``rtn+qera-approx`` RTN, then QERA's diagonal closed form [5] (``lam = 0``)
``rtn+qera-exact``  RTN, then QERA's exact closed form = OLrC with ``lam = 0``
``gptq+eora``       GPTQ, then OLrC (``lam = 0``) with EoRA's eigenvalue cutoff [6]
``loftq``           LoftQ's data-free alternation [7], ``iters = T`` (default 5)
``caldera``         CALDERA-style GPTQ / OLrC alternation [8], ``iters = K``
                    (default 5), best iterate; with ``l_bits`` / ``r_bits`` its
                    LPLR step puts the branch on its grids inside every iteration
``rtn+loraq``       RTN, then LoRaQ's Adam / straight-through fit [9] of the
                    branch on its ``l_bits`` / ``r_bits`` grids, ``iters`` Adam
                    steps (default 200); without branch bits it is ``rtn+svd``
=================== ======================================================

Every method evaluates its result on the undamped error and on the damped
error with ``lam = damp * mean(diag H)`` (the objective that OLrC, Bid-Up and
the refinement loop descend). GILoRA's own pass damping (``damp_from``) is
reported separately as ``pass_lam``.

References
----------
[1] S. Zhang, R. Saab, "GPTQ-intrinsic LoRA", arXiv:2606.01412 (2026).
[2] E. Frantar et al., "GPTQ", arXiv:2210.17323 (2022).
[3] Z. Yao et al., "ZeroQuant-V2: exploring post-training quantization in LLMs
    from comprehensive study to low rank compensation", arXiv:2303.08302 (2023).
[4] C. Zhang et al., "LQER", arXiv:2402.02446 (2024).
[5] C. Zhang et al., "QERA", arXiv:2410.06040 (2024).
[6] S.-Y. Liu et al., "EoRA", arXiv:2410.21271 (2024).
[7] Y. Li et al., "LoftQ", arXiv:2310.08659 (2023).
[8] R. Saha et al., "CALDERA", arXiv:2405.18886 (2024).
[9] Y. Bouquet et al., "LoRaQ", arXiv:2604.18117 (2026).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import scipy.linalg

from . import _validation as _v
from . import literature as _lit
from .bidup import refine
from .branch import QuantizedBranch, quantize_after, quantize_branch
from .datafree import alternating_fit, coordinate_fit, svd_fit
from .gilora import _top_eigenvectors, gilora
from .gptq import _check_options, _run_keeping_factors, dead_channel_convention
from .grid import Grid, clipped_mask, fit_grid
from .objective import Objective, evaluate_validated, objective_from_damped, resolve_lam
from .olrc import _olrc, _olrc_psi, _partial_applies, _psi_certificate
from .exact import ExactOptimum

__all__ = ["METHODS", "NEEDS_X_ABS_MEAN", "Compression", "compress", "ridge_R", "MethodComparison",
           "compare_methods"]

METHODS = ("rtn", "gptq", "gilora", "gptq+olrc", "gptq+ls", "rtn+olrc", "gilora+olrc", "refine",
           "gptq+svd", "rtn+svd", "rtn+lqer", "gptq+lqer", "rtn+qera-approx", "rtn+qera-exact",
           "gptq+eora", "loftq", "caldera", "rtn+loraq")
NEEDS_X_ABS_MEAN = ("rtn+lqer", "gptq+lqer")
"""Methods that need the per-input-channel mean ``|x|`` (``compress(..., x_abs_mean=)``)."""


@dataclass(frozen=True)
class Compression:
    """A reconstruction ``Q + L R`` of one layer and how good it is.

    Attributes
    ----------
    method : str
    Q : (N, N_out) ndarray
    L : (N, r) ndarray
    R : (r, N_out) ndarray
    grid : Grid
    lam : float
        Damping of ``objective.damped_error`` (``damp * mean(diag H)``).
    objective : Objective
        Error, damped error and relative error of ``Q + L R``.
    clipped : int
        Entries rounded with ``|w~ - q| > delta / 2`` during the quantizing pass
        (RTN: of ``W`` itself; methods whose last step is Bid-Up: of that pass's start).
    trace : ndarray or None
        Refinement trace (``refine`` only; the literature's alternations put
        theirs in ``info["alternation_trace"]``).
    info : dict
        Method-specific extras (e.g. ``pass_lam`` of GILoRA).
    branch : QuantizedBranch or None
        With ``l_bits`` / ``r_bits``: ``L``, ``R`` and their grids (``L_grid``,
        ``R_grid``, ``r_axis``), from which the stored codes follow; else None.
    """

    method: str
    Q: np.ndarray
    L: np.ndarray
    R: np.ndarray
    grid: Grid
    lam: float
    objective: Objective
    clipped: int
    trace: np.ndarray | None = None
    info: dict = field(default_factory=dict)
    branch: QuantizedBranch | None = None


def ridge_R(W, Q, H, L, lam: float) -> np.ndarray:
    """``R = (L^T H L + lam I)^{-1} L^T H (W - Q)``: the best ``R`` for a fixed ``L``.

    Minimises ``||X (W - Q - L R)||_F^2 + lam ||R||_F^2`` (normal equations).

    Parameters
    ----------
    W, Q : (N, N_out) array_like
    H : (N, N) array_like
    L : (N, r) array_like
    lam : float
        Absolute ridge damping, ``>= 0``.

    Raises
    ------
    NumericalError
        If ``L^T H L + lam I`` is singular (``lam = 0`` and ``X L`` rank-deficient).
    """
    W = _v.as_matrix("W", W)
    Q = _v.as_matrix("Q", Q)
    _v.check_same_shape("Q", Q, "W", W)
    H = _v.check_hessian(H, W.shape[0])
    L = _v.as_matrix("L", L, allow_empty=True)
    if L.shape[0] != W.shape[0]:
        raise ValueError(f"L must have W's {W.shape[0]} rows; got shape {L.shape}")
    return _ridge_R(W, Q, H, L, _v.check_float("lam", lam))


def _ridge_R(W, Q, H, L, lam: float) -> np.ndarray:
    """Kernel of :func:`ridge_R` (validated inputs)."""
    HL = H @ L
    K = L.T @ HL + lam * np.eye(L.shape[1])
    try:
        return scipy.linalg.solve(K, HL.T @ (W - Q), assume_a="sym")
    except np.linalg.LinAlgError as exc:
        raise _v.NumericalError(f"L^T H L + lam I is singular ({exc}); use lam > 0") from None


def compress(W, H, method: str, bits: int, rank: int = 0, *, damp: float = 0.01,
             beta: float = 1.0, unbounded: bool = False, rounds: int = 1,
             damp_from: str = "augmented", blocksize: int = 128, route: str = "cholesky",
             grid: Grid | None = None, l_bits: int | None = None,
             r_bits: int | None = None, x_abs_mean=None, iters: int | None = None,
             stop_rtol: float | None = None) -> Compression:
    """Run one of :data:`METHODS` on a layer and evaluate it.

    Parameters
    ----------
    W : (N, N_out) array_like
    H : (N, N) array_like
    method : str
        One of :data:`METHODS`.
    bits : int
        Grid bit-width in [1, 16].
    rank : int, default 0
        Branch rank ``r`` in [0, min(N, N_out)].
    damp : float, default 0.01
        Relative damping ``alpha``.
    beta : float or "search", default 1.0
        Grid clipping factor; ``"search"``: per column, the factor of
        :data:`gilora_theory.literature.BETA_CANDIDATES` with the smallest RTN
        calibration error (:func:`gilora_theory.literature.search_beta`).
    unbounded : bool, default False
        Use the unbounded grid (theory).
    rounds : int, default 1
        Refinement rounds ``K`` (``refine`` only).
    damp_from : {"augmented", "hessian"}
        GILoRA's pass damping convention.
    blocksize, route
        Passed to GPTQ / GILoRA.
    grid : Grid, optional
        A pre-fitted grid (overrides ``bits``, ``beta``, ``unbounded``).
    l_bits, r_bits : int or None, default None
        Put the branch's ``L`` / ``R`` on their own grids of this many bits
        (:mod:`gilora_theory.branch`, one grid per branch direction; None: full
        precision, results unchanged bit for bit). ``gilora`` quantizes ``L``
        before the pass and ``R`` after; ``*+svd`` stay data-free (alternating
        fit, then coordinate fit, :mod:`gilora_theory.datafree`); every other
        method quantizes ``L``, refits ``R`` (:func:`gilora_theory.branch.refit_R`,
        damping ``lam``) and quantizes ``R``. Recorded in ``info`` when the rank
        is positive.
    stop_rtol : float, optional
        ``refine`` only: stop after a round that lowers ``F`` by at most
        ``stop_rtol * F`` (:func:`gilora_theory.bidup.refine`); ``info["rounds_run"]``
        then says how many rounds ran.
    x_abs_mean : (N,) array_like, optional
        Mean ``|x_i|`` per input feature over the calibration tokens (LQER's
        statistic, ``Layer.x_abs_mean``); required by :data:`NEEDS_X_ABS_MEAN`.
    iters : int, optional
        LoftQ's ``T``, CALDERA-style's ``K`` or LoRaQ's Adam steps (default 5, 5, 200).

    Returns
    -------
    Compression
    """
    W = _v.as_matrix("W", W)
    H = _v.check_hessian(H, W.shape[0])
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}; got {method!r}")
    bits = _v.check_bits("bits", bits)
    r = _v.check_rank(rank, *W.shape)
    for name, b in (("l_bits", l_bits), ("r_bits", r_bits)):
        if b is not None:
            _v.check_bits(name, b)
    lam = resolve_lam(H, damp, None)
    extra = _literature_options(method, W, x_abs_mean, iters)
    if isinstance(beta, str) and beta != "search":
        raise ValueError(f"beta must be a number in (0, 1] or 'search'; got {beta!r}")
    if grid is None and beta == "search":
        grid = _lit.search_beta(W, H, bits).with_bounded(not unbounded)
    elif grid is None:
        grid = fit_grid(W, bits, beta=beta, bounded=not unbounded)
    with np.errstate(over="ignore", invalid="ignore"):
        made = _Made(*_METHOD_FUNCS[method](
            W, H, grid, r, lam=lam, damp=damp, rounds=rounds, damp_from=damp_from,
            blocksize=blocksize, route=route, l_bits=l_bits if method == "gilora" else None,
            branch_bits=(l_bits, r_bits), stop_rtol=stop_rtol, **extra))
    Q, L, R, info = made.Q, made.L, made.R, made.info
    branch, l_grid = None, info.pop("L_grid", None)    # GILoRA's grid of L (l_bits)
    if r > 0 and (l_bits is not None or r_bits is not None):
        branch, info = _branch_on_grids(method, W, Q, H, L, R, lam, l_bits, r_bits, info, l_grid)
        L, R = branch.L, branch.R
        made = made._replace(damped=None)                # the branch changed: evaluate directly
    _v.check_finite_output(f"method {method!r}", "Rescale W or H.", Q=Q, L=L, R=R)
    if made.damped is None:
        obj = evaluate_validated(W, Q, L, R, None, H, lam)
    else:                                               # loss identity: no product for E
        obj = objective_from_damped(W, Q, L, R, H, lam, made.damped, made.damped_bound)
    return Compression(method, Q, L, R, grid, lam, obj, made.clipped, made.trace, info, branch)


class _Made(NamedTuple):
    """What a method function of :data:`_METHOD_FUNCS` returns (a plain 6-tuple in this
    order is accepted too): the reconstruction ``Q + L R``, the clipped count, the
    refinement trace (or None) and the ``info`` extras of :class:`Compression`."""

    Q: np.ndarray
    L: np.ndarray
    R: np.ndarray
    clipped: int
    trace: np.ndarray | None
    info: dict
    damped: float | None = None
    """``E_lam`` of ``Q + L R`` when the pass knows it (loss identity), else None."""
    damped_bound: float = 0.0
    """Certified bound on ``|E_lam - damped|`` (see :func:`objective_from_damped`)."""


def _empty(W):
    return np.zeros((W.shape[0], 0)), np.zeros((0, W.shape[1]))


def _rtn(W, H, grid, r, **kw):
    Q = grid.quantize(W, np.arange(W.shape[0]))
    return _Made(Q, *_empty(W), int(np.count_nonzero(clipped_mask(grid, W, Q))), None, {})


def _gptq(W, H, grid, r, *, lam, blocksize, route, **kw):
    """:func:`gilora_theory.gptq.gptq` (same pass and ``Q``) on the validated layer; its
    ``E_lam = ||E||_F^2`` (loss identity) certified by :func:`gilora_theory.olrc._psi_certificate`."""
    made, factors = _gptq_with_factors(W, H, grid, lam, blocksize, route)
    if factors is None or not _psi_route_applies(W.shape, 0):
        return made               # a dead channel (E_lam of another problem), or a small layer
    Psi, E, perm = factors
    _L, _R, value, _a, slack, _EV = _olrc_psi(Psi, E, 0)      # r = 0: value ||E||_F^2
    cert = _psi_certificate(W, made.Q, H, lam, Psi, E, perm, value, slack)
    return made._replace(damped=value, damped_bound=cert.upper - cert.lower)


def _gptq_with_factors(W, H, grid, lam, blocksize, route):
    """The GPTQ pass and, when its problem is the layer's own (no dead channel, the same
    ``lam``), its ``(Psi, E, perm)`` (``W - Q = Psi E`` in processing order), else None."""
    _check_options(W, grid, blocksize, route, "raise")
    Wd, Hd = dead_channel_convention(W, H)
    run, Psi, E = _run_keeping_factors(Wd, Hd, grid, W.shape[0], lam=lam, route=route,
                                       blocksize=blocksize, act_order=False, damp_policy="raise")
    made = _Made(run.Q, *_empty(W), int(np.count_nonzero(run.clipped)), None,
                 {"pass_lam": run.lam})
    if Wd is not W or run.lam != lam:
        return made, None
    return made, (Psi, E, run.perm)


def _psi_route_applies(shape: tuple[int, int], r: int) -> bool:
    """Where OLrC's partial route applies (:func:`gilora_theory.olrc._partial_applies`: large
    layers, small ``r``), and at ``r = 0`` on layers as large: there the identity saves products;
    a small layer keeps the reference routes (the same bits as the routines)."""
    return _partial_applies(shape, r) if r else min(shape) >= 512


PSI_ROUTE_TOL = 1e-10
"""Largest certified relative width (:class:`gilora_theory.olrc.PsiCertificate`) for which
``gptq+olrc`` keeps the branch read off GPTQ's ``E``; above it the reference OLrC runs."""


def _gptq_olrc(W, H, grid, r, *, lam, blocksize, route, **kw):
    """GPTQ, then OLrC with no new factorisation: ``M* = Psi T_r(E)`` (Alg. 2 in the pass's
    coordinates, :func:`gilora_theory.olrc._olrc_psi`), kept when certified to
    :data:`PSI_ROUTE_TOL`; else (or with a dead channel) the reference OLrC of ``W - Q``."""
    made, factors = _gptq_with_factors(W, H, grid, lam, blocksize, route)
    if factors is not None and _psi_route_applies(W.shape, r):
        Psi, E, perm = factors
        L_p, R, value, _a, slack, EV = _olrc_psi(Psi, E, r)
        cert = _psi_certificate(W, made.Q, H, lam, Psi, E, perm, value, slack, EV, R)
        if cert.relative_width <= PSI_ROUTE_TOL:
            L = np.empty_like(L_p)
            L[perm] = L_p
            info = {**made.info, "olrc_route": "psi", "certified_width": cert.relative_width,
                    "failure_probability": cert.failure_probability}
            return made._replace(L=L, R=R, info=info, damped=value,
                                 damped_bound=cert.upper - cert.lower)
    del factors
    L, R = _olrc_fit(W, made.Q, H, r, lam)
    return made._replace(L=L, R=R, info={**made.info, "olrc_route": "reference"})


def _gilora(W, H, grid, r, *, damp, damp_from, blocksize, route, l_bits=None, **kw):
    res = gilora(W, H, grid, r, l_bits=l_bits, damp=damp, damp_from=damp_from,
                 blocksize=blocksize, route=route)
    info = {"pass_lam": res.lam, "g_r": res.g_r, "gap_resolvable": res.gap_resolvable}
    if res.L_grid is not None:
        info["L_grid"] = res.L_grid        # compress takes it out (not a report value)
    return _Made(res.Q, res.L, res.R, res.n_clipped, None, info)


def _branch_on_grids(method, W, Q, H, L, R, lam, l_bits, r_bits, info, l_grid):
    """``L`` and ``R`` on their own grids (GILoRA's ``L`` already was, before the pass).

    The data-free methods stay data-free: the alternating fit from the SVD fit,
    polished by the monotone coordinate fit (:mod:`gilora_theory.datafree`).
    """
    if "branch" in info:                 # fitted on its grids by the method itself
        branch, order = info.pop("branch"), "method"
    elif method == "gilora":
        qb = quantize_branch(L, R, r_bits=r_bits)
        branch = QuantizedBranch(qb.L, qb.R, l_grid, qb.R_grid, qb.r_axis)
        order = "before"
    elif method.endswith("+svd") or method == "loftq":
        start = alternating_fit(W, Q, L.shape[1], l_bits=l_bits, r_bits=r_bits).branch
        branch = coordinate_fit(W, Q, L.shape[1], start=start).branch
        order = "data-free"
    else:
        res = quantize_after(W, Q, H, L, R, l_bits=l_bits, r_bits=r_bits, lam=lam)
        branch, order = res.branch, res.order
    extra = {"l_bits": l_bits, "r_bits": r_bits, "r_axis": branch.r_axis, "branch_order": order}
    return branch, {**info, **extra}


def _then(first, fit):
    """``first``'s ``Q``, then the branch ``fit(W, Q, H, r, lam) -> (L, R)`` for it."""
    def run(W, H, grid, r, *, lam, **kw):
        made = _Made(*first(W, H, grid, r, lam=lam, **kw))
        L, R = fit(W, made.Q, H, r, lam)
        return made._replace(L=L, R=R, damped=None)
    return run


def _olrc_fit(W, Q, H, r, lam):
    return _olrc(W - Q, None, r, lam, svd="partial", H=H)[:2]


def _svd_fit(W, Q, H, r, lam):
    fit = svd_fit(W, Q, r)            # data-free: H is not used
    return fit.L, fit.R


def _gptq_ls(W, H, grid, r, *, lam, **kw):
    made = _gptq(W, H, grid, r, lam=lam, **kw)
    L = _top_eigenvectors(H, r)
    return made._replace(L=L, R=_ridge_R(W, made.Q, H, L, lam), damped=None)


def _refine(W, H, grid, r, *, lam, rounds, stop_rtol=None, **kw):
    made = _gilora(W, H, grid, r, **kw)
    res = refine(W, H, grid, made.Q, r, L0=made.L, R0=made.R, rounds=rounds, lam=lam,
                 stop_rtol=stop_rtol)
    info = dict(made.info, rounds_run=res.rounds_run) if stop_rtol is not None else made.info
    return made._replace(Q=res.Q, L=res.L, R=res.R, trace=res.trace, info=info, damped=None)


_METHOD_FUNCS = {
    "rtn": _rtn,
    "gptq": _gptq,
    "gilora": _gilora,
    "gptq+olrc": _gptq_olrc,
    "gptq+ls": _gptq_ls,
    "rtn+olrc": _then(_rtn, _olrc_fit),
    "gilora+olrc": _then(_gilora, _olrc_fit),
    "refine": _refine,
    "gptq+svd": _then(_gptq, _svd_fit),
    "rtn+svd": _then(_rtn, _svd_fit),
}


def _literature_options(method, W, x_abs_mean, iters) -> dict:
    """Validated ``x_abs_mean`` / ``iters`` for the literature's methods (one clear line if missing)."""
    if x_abs_mean is not None:
        x_abs_mean = _v.check_channel_statistic("x_abs_mean", x_abs_mean, W.shape[0])
    elif method in NEEDS_X_ABS_MEAN:
        raise ValueError(f"method {method!r} needs x_abs_mean, the mean |x| per input feature over "
                         "the calibration tokens, which H does not contain; give a layer file "
                         "with X or with key x_abs_mean (gilora-theory extract records it)")
    if iters is not None:
        iters = _v.check_int("iters", iters, low=0 if method == "caldera" else 1)
    return {"x_abs_mean": x_abs_mean, "iters": iters}


def _lqer(first):
    """``first``'s ``Q``, then LQER's branch from the layer's ``x_abs_mean``."""
    def run(W, H, grid, r, *, x_abs_mean, **kw):
        def fit(W, Q, H, r, lam):
            res = _lit.lqer(W, Q, x_abs_mean, r)
            return res.L, res.R
        return _then(first, fit)(W, H, grid, r, **kw)
    return run


def _qera_fit(variant):
    def fit(W, Q, H, r, lam):
        res = _lit.qera(W, Q, H, r, variant=variant)
        return res.L, res.R
    return fit


def _eora_fit(W, Q, H, r, lam):
    res = _lit.olrc_cutoff(W, Q, H, r)
    return res.L, res.R


def _loftq(W, H, grid, r, *, iters, **kw):
    res = _lit.loftq(W, grid, r, iters=5 if iters is None else iters)
    info = {"alternation_trace": res.trace.tolist(), "increases": list(res.increases)}
    return res.Q, res.L, res.R, res.n_clipped, None, info


def _caldera(W, H, grid, r, *, damp, iters, branch_bits, blocksize, route, **kw):
    res = _lit.caldera(W, H, grid, r, iters=5 if iters is None else iters, damp=damp,
                       l_bits=branch_bits[0], r_bits=branch_bits[1], blocksize=blocksize, route=route)
    info = {"alternation_trace": res.trace.tolist(), "best_iteration": res.best,
            "increases": list(res.increases)}
    if res.branch is not None:
        info["branch"] = res.branch
    return res.Q, res.L, res.R, res.n_clipped, None, info


def _loraq(W, H, grid, r, *, iters, branch_bits, **kw):
    made = _rtn(W, H, grid, r)
    Q, clipped, info = made.Q, made.clipped, made.info
    l_bits, r_bits = branch_bits
    if r == 0 or (l_bits is None and r_bits is None):
        L, R = _svd_fit(W, Q, H, r, 0.0)
        return Q, L, R, clipped, None, info
    fit = _lit.loraq_fit(W, Q, r, l_bits=l_bits, r_bits=r_bits, steps=200 if iters is None else iters)
    info = {"branch": fit.branch, "fit_start_value": fit.start_value, "fit_value": fit.value,
            "best_step": fit.best_step}
    return Q, fit.branch.L, fit.branch.R, clipped, None, info


_METHOD_FUNCS.update({
    "rtn+lqer": _lqer(_rtn),
    "gptq+lqer": _lqer(_gptq),
    "rtn+qera-approx": _then(_rtn, _qera_fit("approx")),
    "rtn+qera-exact": _then(_rtn, _qera_fit("exact")),
    "gptq+eora": _then(_gptq, _eora_fit),
    "loftq": _loftq,
    "caldera": _caldera,
    "rtn+loraq": _loraq,
})


@dataclass(frozen=True)
class MethodComparison:
    """Each algorithm's undamped error against the exact optimum.

    Attributes
    ----------
    optimum : float
    errors : dict
        Method name -> ``E`` of its reconstruction (same grid and rank).
    ratios : dict
        Method name -> ``E / optimum`` (>= 1 up to rounding; 1.0 when both are 0,
        inf when only the optimum is 0).
    """

    optimum: float
    errors: dict = field(default_factory=dict)
    ratios: dict = field(default_factory=dict)


def compare_methods(W, H, optimum: ExactOptimum, *, methods=None, damp: float = 0.01,
                    rounds: int = 1, damp_from: str = "augmented",
                    x_abs_mean=None) -> MethodComparison:
    """Run each method of :func:`compress` on the optimum's grid and rank.

    Parameters
    ----------
    W : (N, N_out) array_like
    H : (N, N) array_like
    optimum : ExactOptimum
        From :func:`gilora_theory.exact.exact_optimum` with a grid (not an explicit alphabet).
    methods : sequence of str, optional
        Default: every method of METHODS whose statistics are given (those of
        :data:`NEEDS_X_ABS_MEAN` only with ``x_abs_mean``).
    damp, rounds, damp_from, x_abs_mean
        Passed to ``compress``.

    Returns
    -------
    MethodComparison
    """
    if not isinstance(optimum, ExactOptimum):
        raise TypeError(f"optimum must be an ExactOptimum; got {type(optimum).__name__}")
    if optimum.grid is None:
        raise ValueError("compare_methods needs an optimum computed on a grid (bits= or grid=)")
    errors, ratios = {}, {}
    opt = optimum.value
    if methods is None:
        methods = [m for m in METHODS if x_abs_mean is not None or m not in NEEDS_X_ABS_MEAN]
    for m in methods:
        c = compress(W, H, m, optimum.grid.bits, optimum.rank, damp=damp, rounds=rounds,
                     damp_from=damp_from, grid=optimum.grid, x_abs_mean=x_abs_mean)
        e = c.objective.error
        errors[m] = e
        ratios[m] = e / opt if opt > 0 else (1.0 if e == 0 else math.inf)
    return MethodComparison(opt, errors, ratios)
