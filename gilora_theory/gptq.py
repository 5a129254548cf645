"""GPTQ: Alg. 1 of [1] (the algorithm of [2]).

:func:`gptq_loop` is the definition, exactly as the paper writes it;
:func:`gptq` is the same arithmetic in lazy batches (what every other function
calls), and the tests compare the two (identical ``Q``). ``Psi`` is lower
triangular with ``Psi Psi^T = H_lam^{-1}`` (:func:`psi_factor`). Identity
(docs/theory.md, "GPTQ (Alg. 1)"): ``W - Q = Psi E`` with ``E`` stacking the
``eps_t``, so ``E_lam(Q) = sum_t ||w~_t - q_t||^2 / Psi_tt^2``; ``1 / Psi_tt^2``
is the damped Schur complement of coordinate t with respect to the later ones.

References
----------
[1] S. Zhang, R. Saab, "GPTQ-intrinsic LoRA", arXiv:2606.01412 (2026).
[2] E. Frantar, S. Ashkboos, T. Hoefler, D. Alistarh, "GPTQ", arXiv:2210.17323 (2022).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import scipy.linalg

from . import _validation as _v
from ._lazy_batch import lazy_batch_sweep
from .grid import Grid, check_grid
from .objective import _lam_is_safe, eigvalsh_kept, resolve_lam

__all__ = ["GPTQResult", "gptq", "gptq_loop", "psi_factor", "dead_channel_convention", "ROUTES"]

ROUTES = ("cholesky", "eig")


def gptq_loop(W, H, grid: Grid, *, damp: float = 0.01, lam: float | None = None) -> GPTQResult:
    """Alg. 1 of [1] exactly as the paper writes it: one row at a time (the definition).

    ::

        W~ = W
        for t = 1..N:
            q_t   = quant(w~_t)
            eps_t = (w~_t - q_t) / Psi_tt
            w~_s -= Psi_st eps_t        for all s > t

    ``Psi`` is the lower-triangular factor of ``H_lam^{-1}`` (:func:`psi_factor`).
    This is the slow, plainly written reference (one rank-one update per row,
    ``N^2 N_out`` flops in BLAS-2, no dead-channel handling, identity order);
    :func:`gptq` runs the same arithmetic in lazy batches and is what every other
    function uses. Tests and claim C1 compare the two (identical ``Q``).
    """
    W, H = _check_common(W, H, grid, 1, "cholesky", "raise")
    lam = resolve_lam(H, damp, lam)
    Psi = psi_factor(H + lam * np.eye(H.shape[0]))
    Wt = W.copy()                                            # W~
    Q = np.empty_like(W)
    eps = np.empty_like(W)
    for t in range(W.shape[0]):
        Q[t] = grid.quantize(Wt[t], t)                       # q_t = quant(w~_t)
        eps[t] = (Wt[t] - Q[t]) / Psi[t, t]                  # eps_t
        Wt[t + 1:] -= np.outer(Psi[t + 1:, t], eps[t])       # w~_s -= Psi_st eps_t, s > t
    psi_diag = np.diag(Psi).copy()
    step_terms = np.sum(eps * eps, axis=1)                   # ||w~_t - q_t||^2 / Psi_tt^2
    clipped = np.abs(eps * psi_diag[:, None]) > grid.half_step(np.arange(W.shape[0])) * _TIE
    _v.check_finite_output("the GPTQ loop", "Rescale W or increase damp.", Q=Q)
    return GPTQResult(Q, lam, psi_diag, step_terms, clipped, np.arange(W.shape[0]), "cholesky")


def _pass(W_tilde: np.ndarray, Psi: np.ndarray, grid: Grid, rows: np.ndarray, n_quant: int,
          blocksize: int):
    """:func:`gptq_loop`'s loop in lazy batches, over the first ``n_quant`` rows of ``W_tilde``.

    ``W_tilde`` (``W~``, modified in place) ends holding ``E``: row ``t`` is
    overwritten by ``eps_t`` once ``q_t`` is known (``w~_t`` is not needed after
    step t), so ``E = W_tilde[:n_quant]`` costs no memory. Rows ``n_quant..``
    receive the diffused error but are never quantized (GILoRA's ``R``).
    ``rows[t]`` is the original row index of step t (static grid groups).
    The feedback ``w~_s -= Psi_st eps_t`` runs through
    :func:`gilora_theory._lazy_batch.lazy_batch_sweep` (same arithmetic, BLAS-3).
    Returns ``Q`` (processing order), the step terms and the clipped mask.
    """
    N_out = W_tilde.shape[1]
    Q = np.empty((n_quant, N_out))
    step_terms = np.empty(n_quant)
    clipped = np.empty((n_quant, N_out), dtype=bool)
    d = np.empty(N_out)                                      # w~_t - q_t

    def step(t):
        w = W_tilde[t]                                       # w~_t, every earlier update in
        q = grid.quantize(w, rows[t], out=Q[t])              # q_t = quant(w~_t)
        np.subtract(w, q, out=d)
        psi = Psi[t, t]
        step_terms[t] = float(d @ d) / (psi * psi)           # ||w~_t - q_t||^2 / Psi_tt^2
        np.greater(np.abs(d), grid.half_step(rows[t]) * _TIE, out=clipped[t])
        np.divide(d, psi, out=W_tilde[t])                    # eps_t, stored over w~_t

    lazy_batch_sweep(W_tilde, Psi, W_tilde, n_quant, blocksize, step)
    return Q, step_terms, clipped


_TIE = 1 + 8 * np.finfo(np.float64).eps
"""``|w~ - q| > (delta / 2) _TIE`` counts as clipped: 8 eps absorb the rounding of exact ties."""


class PassSummary:
    """Summaries shared by the results of an Alg. 1 pass (GPTQ and GILoRA).

    Needs ``step_terms`` and ``clipped`` attributes.
    """

    @property
    def step_sum(self) -> float:
        """``sum_t step_terms[t]``: the damped (for GILoRA, damped augmented)
        error, by the loss identity."""
        return float(np.sum(self.step_terms))

    @property
    def n_clipped(self) -> int:
        """Number of clipped entries."""
        return int(np.count_nonzero(self.clipped))


@dataclass(frozen=True)
class GPTQResult(PassSummary):
    """Output of :func:`gptq`.

    Attributes
    ----------
    Q : (N, N_out) ndarray
        Quantized weights, every entry on ``grid``.
    lam : float
        Absolute damping actually used (``H_lam = H + lam I``).
    psi_diag : (N,) ndarray
        ``Psi_tt`` in processing order (``perm``).
    step_terms : (N,) ndarray
        ``sum_j (w~_tj - q_tj)^2 / Psi_tt^2`` in processing order; their sum is
        the damped error ``E_lam(Q)`` (of the dead-channel-corrected problem).
    clipped : (N, N_out) ndarray of bool
        Entries rounded with ``|w~ - q| > delta / 2`` (original row order).
    perm : (N,) ndarray of int
        Processing order of the input rows (identity unless ``act_order``).
    route : str
        Factorisation route used for ``Psi``.
    """

    Q: np.ndarray
    lam: float
    psi_diag: np.ndarray
    step_terms: np.ndarray
    clipped: np.ndarray
    perm: np.ndarray
    route: str


def gptq(W, H, grid: Grid, *, damp: float = 0.01, lam: float | None = None,
         blocksize: int = 128, route: str = "cholesky", act_order: bool = False,
         dead_channels: bool = True, damp_policy: str = "raise") -> GPTQResult:
    """Quantize ``W`` row by row with error feedback (Alg. 1 of [1], GPTQ of [2]).

    Parameters
    ----------
    W : (N, N_out) array_like
        Weights, rows = input features.
    H : (N, N) array_like
        ``X^T X`` (symmetric PSD).
    grid : Grid
        Fixed grid (``fit_grid(W, bits)``).
    damp : float, default 0.01
        Relative damping ``alpha``: ``lam = alpha * mean(diag H)``.
    lam : float, optional
        Absolute damping; overrides ``damp`` (``lam=0`` runs undamped).
    blocksize : int, default 128
        Rows per lazy batch; results agree for every block size.
    route : {"cholesky", "eig"}, default "cholesky"
        How ``Psi`` is factorised (see :func:`psi_factor`). ``"cholesky"`` raises
        ``NumericalError`` when ``H_lam`` is numerically singular (smallest
        eigenvalue ``<= n eps max(e)``; checked only when ``lam`` is too small to
        guarantee otherwise, so the default damping costs no extra work).
        ``"eig"`` never fails on a valid ``H``: its **spectral floor** lifts
        eigenvalues of ``H_lam`` below the rounding level ``tau = n eps max(e)``
        by the uniform shift ``tau - min(e)`` (at most ``tau`` plus the PSD
        tolerance of ``H``), i.e. ``lam`` grows by a rounding-sized amount and
        ``result.lam`` reports the value used, for which every identity holds.
    act_order : bool, default False
        Process rows by decreasing ``H_ii`` (reference GPTQ ``act_order``).
    dead_channels : bool, default True
        Reference convention for ``H_ii = 0``: set ``H_ii = 1`` and zero ``W``'s row
        in the working problem (errors should still be evaluated on the original).
    damp_policy : {"raise", "increase"}, default "raise"
        On a factorisation failure raise ``NumericalError``, or multiply ``lam``
        by 10 until ``H + lam I`` factorises (the final value is ``result.lam``).

    Raises
    ------
    NumericalError
        Cholesky failure under ``damp_policy="raise"``, or a pass whose values
        overflow float64 (inputs near the float limits): never NaN or inf out.

    Returns
    -------
    GPTQResult
    """
    W, H = _check_common(W, H, grid, blocksize, route, damp_policy)
    lam = resolve_lam(H, damp, lam)
    return _gptq_validated(W, H, grid, lam=lam, blocksize=blocksize, route=route,
                           act_order=act_order, dead_channels=dead_channels,
                           damp_policy=damp_policy)[0]


def _gptq_validated(W, H, grid, *, lam: float, blocksize: int = 128, route: str = "cholesky",
                    act_order: bool = False, dead_channels: bool = True,
                    damp_policy: str = "raise", factor=None):
    """:func:`gptq`'s body for validated inputs and a resolved ``lam``: ``(GPTQResult, factor)``.

    ``factor = (Psi, lam)`` is what a previous call on the same ``H`` and options returned:
    passing it back skips the factorisation of ``H_lam`` (the same ``Psi``, the same bits), for
    callers that quantize several ``W`` against one ``H`` (CALDERA-style).
    """
    Wd, Hd = _prepare(W, H, dead_channels)
    run, Psi, _E = _run_keeping_factors(Wd, Hd, grid, W.shape[0], lam=lam, route=route,
                                        blocksize=blocksize, act_order=act_order,
                                        damp_policy=damp_policy, factor=factor)
    result = GPTQResult(run.Q, run.lam, run.psi_diag, run.step_terms, run.clipped, run.perm, route)
    return result, (Psi, run.lam)


def psi_factor(H_lam, *, route: str = "cholesky") -> np.ndarray:
    """Lower-triangular ``Psi`` with ``Psi Psi^T = H_lam^{-1}`` and positive diagonal.

    Parameters
    ----------
    H_lam : (n, n) array_like
        Symmetric positive definite (already damped) matrix.
    route : {"cholesky", "eig"}
        ``"cholesky"``: the Cholesky factor of ``H_lam^{-1}``, obtained without
        forming the inverse: with ``J`` the reversal, ``J H_lam J = C C^T`` and
        ``Psi = J C^{-T} J`` (unique by uniqueness of Cholesky factors).
        ``"eig"``: ``H_lam = V diag(e) V^T``, ``B = H_lam^{-1/2} = V diag(e^{-1/2}) V^T``,
        ``B = Q_B R_B`` (QR), ``Psi = R_B^T`` with column signs made positive
        (docs/theory.md, Alg. 1-4, the more stable route).

    Raises
    ------
    NumericalError
        If ``H_lam`` is numerically singular: its smallest eigenvalue is at or
        below the rounding level ``n eps max(e)`` (both routes; see :func:`gptq`
        for the eig route's spectral floor, which :func:`gptq` applies instead).
    """
    H_lam = _v.check_hessian(H_lam, name="H_lam")
    if route not in ROUTES:
        raise ValueError(f"route must be one of {ROUTES}; got {route!r}")
    if route == "eig":
        return _psi_eig(H_lam, floor=False)[0]
    return _psi_cholesky(H_lam[::-1, ::-1].copy())


def _rounding_level(n: int, top: float) -> float:
    """``n eps top``: eigenvalues or pivots at or below it cannot be told from zero."""
    return n * np.finfo(np.float64).eps * max(top, 0.0)


def _psi_cholesky(A: np.ndarray, *, lam_is_safe: bool = False) -> np.ndarray:
    """Cholesky route from ``A = J H_lam J`` (C-contiguous, owned by the caller: it
    becomes ``Psi``); refuses a numerically singular ``H_lam`` (same test as the eig route).

    Unless ``lam_is_safe`` (see :func:`_lam_is_safe`), the spectrum of ``H_lam``
    is checked first: ``min(e) <= n eps max(e)`` raises. Cholesky itself can
    succeed on a numerically singular matrix (rounding leaves a small positive
    pivot), so its success alone is not the test.
    """
    n = A.shape[0]
    if not lam_is_safe:
        e = eigvalsh_kept(A[::-1, ::-1])        # H_lam's spectrum (kept per bytes)
        if e[0] <= _rounding_level(n, float(e[-1])):
            raise _v.NumericalError(
                f"H_lam is numerically singular: smallest eigenvalue {e[0]:.3g} <= n eps max(e) = "
                f"{_rounding_level(n, float(e[-1])):.3g}. Increase damp, use route='eig' (spectral "
                "floor), or pass damp_policy='increase'")
    return _psi_from_reversed(A)


def _psi_from_reversed(A: np.ndarray) -> np.ndarray:
    """``Psi`` from ``A = J H_lam J`` (C-contiguous; overwritten), in ``n^3 / 3 + n^3 / 3`` flops.

    ``A`` read in Fortran order is ``A^T = A``, so LAPACK factors it in place:
    ``?potrf`` gives ``C`` (``A = C C^T``), ``?trtri`` inverts it in place and
    ``Psi = J C^{-T} J``. LAPACK leaves the strict upper triangle of the Fortran
    array untouched; it is zeroed column by column (contiguous in that order).
    ``C^{-T}`` is then ``A`` in C order and ``J C^{-T} J`` its flat reversal,
    done in place (:func:`_reverse_in_place`): ``Psi`` is returned in ``A``'s memory.
    """
    n = A.shape[0]
    C, info = scipy.linalg.lapack.dpotrf(A.T, lower=1, clean=0, overwrite_a=1)
    if info != 0:
        raise _v.NumericalError(
            f"H_lam is not positive definite (Cholesky failed: leading minor {info} of the "
            "reversed matrix). Increase damp, use route='eig', or pass damp_policy='increase'")
    _v.check_finite_output("the Cholesky factor of H_lam", "Rescale H (or X).", C=C)
    Cinv, info = scipy.linalg.lapack.dtrtri(C, lower=1, overwrite_c=1)
    if info != 0:
        raise _v.NumericalError(f"the Cholesky factor of H_lam is singular (pivot {info})")
    for j in range(1, n):
        Cinv[:j, j] = 0.0
    return _reverse_in_place(A)


def _reverse_in_place(A: np.ndarray, chunk: int = 1 << 16) -> np.ndarray:
    """``A[::-1, ::-1]`` into ``A``'s own memory (C-contiguous): mirrored chunks are swapped.

    Only a ``chunk``-sized temporary: a reversed copy would need a second
    ``n x n`` buffer, whose first touch costs more than the reversal itself.
    """
    f, tmp = A.reshape(-1), np.empty(chunk, dtype=A.dtype)
    m = f.size
    for k in range(0, m // 2, chunk):
        e = min(k + chunk, m // 2)
        t = tmp[:e - k]
        np.copyto(t, f[k:e])
        f[k:e] = f[m - e:m - k][::-1]
        f[m - e:m - k] = t[::-1]
    return A


def _psi_eig(H_lam: np.ndarray, *, floor: bool) -> tuple[np.ndarray, float]:
    """Eig+QR route; returns ``Psi`` and the spectral-floor shift applied (see :func:`gptq`).

    With ``floor``, eigenvalues below ``tau = n eps max(e)`` (rounding noise) are
    lifted by the uniform shift ``tau - min(e)``, so ``Psi Psi^T = (H_lam + shift I)^{-1}``.
    """
    n = H_lam.shape[0]
    e, V = scipy.linalg.eigh(H_lam, check_finite=False)
    tau = _rounding_level(n, float(e[-1]))
    shift = 0.0
    if e[0] <= tau:
        if not floor or tau == 0:
            raise _v.NumericalError(
                f"H_lam is not positive definite: smallest eigenvalue {e[0]:.3g} "
                f"(largest {e[-1]:.3g}). Increase damp or pass damp_policy='increase'")
        shift = tau - float(e[0])
        e = np.maximum(e + shift, tau)
    B = (V * e ** -0.5) @ V.T
    Rb = scipy.linalg.qr(B, mode="r", check_finite=False)[0]
    Psi = Rb.T
    Psi *= np.sign(np.diag(Psi))
    return Psi, shift


def _factor_with_policy(H: np.ndarray, lam: float, route: str, policy: str,
                        max_increase: int = 12) -> tuple[np.ndarray, float]:
    """Factor ``H + lam I``; under ``policy='increase'`` multiply ``lam`` by 10 until it works.

    The starting value for ``lam = 0`` is ``n * eps * max(1, max diag H)``. The
    eig route applies its spectral floor (a uniform shift of ``lam``). The
    final ``lam`` is returned so that every caller reports the value used.
    """
    n = H.shape[0]
    for _ in range(max_increase + 1):
        try:
            # Cholesky route: damp the reversed copy J H J, which is then factored in place
            # (an explicit copy: for n = 1 the reversal is contiguous and would alias H).
            H_lam = H.copy() if route == "eig" else H[::-1, ::-1].copy()
            with np.errstate(over="ignore"):
                H_lam[np.diag_indices(n)] += lam
            _v.check_finite_output("forming H_lam = H + lam I", "Rescale H (or X), or reduce damp.",
                                   H_lam=H_lam)
            if route == "eig":
                Psi, shift = _psi_eig(H_lam, floor=True)
                return Psi, lam + shift
            return _psi_cholesky(H_lam, lam_is_safe=_lam_is_safe(H, lam)), lam
        except _v.NumericalError:
            if policy != "increase":
                raise
            floor = n * np.finfo(np.float64).eps * max(1.0, float(np.max(np.diag(H))))
            lam = max(10.0 * lam, floor)
    raise _v.NumericalError(f"H + lam I is not positive definite even with lam = {lam:.3g}")


def dead_channel_convention(W: np.ndarray, H: np.ndarray, *, copy: bool = False):
    """Reference-GPTQ dead channels: where ``H_ii = 0``, set ``H_ii := 1`` and ``W_i := 0``.

    Returns ``(W, H)`` of the working problem. Copies only when a channel is
    dead, unless ``copy`` (then always: the caller may write to the results).
    Used by :func:`gptq`, GILoRA and :mod:`gilora_theory.checks`.

    Parameters
    ----------
    W : (N, N_out) ndarray
    H : (N, N) ndarray
    copy : bool, default False
    """
    dead = np.diag(H) == 0
    if not (dead.any() or copy):
        return W, H
    H, W = H.copy(), W.copy()
    H[dead, dead] = 1.0
    W[dead] = 0.0
    return W, H


def _prepare(W: np.ndarray, H: np.ndarray, dead_channels: bool):
    """:func:`dead_channel_convention` if ``dead_channels``, else ``(W, H)`` unchanged."""
    return dead_channel_convention(W, H) if dead_channels else (W, H)


class _PassOutput(NamedTuple):
    """What :func:`_run` returns (GPTQ and GILoRA read it).

    ``Q`` (original row order), ``R`` (rows ``n_quant..`` of ``W~`` after the
    pass: GILoRA's ``R``), ``lam`` (used), ``psi_diag``, ``step_terms``
    (processing order), ``clipped`` (original order), ``perm``.
    """

    Q: np.ndarray
    R: np.ndarray
    lam: float
    psi_diag: np.ndarray
    step_terms: np.ndarray
    clipped: np.ndarray
    perm: np.ndarray


def _run(W_aug: np.ndarray, H_aug: np.ndarray, grid: Grid, n_quant: int, *, lam: float,
         route: str, blocksize: int, act_order: bool, damp_policy: str) -> _PassOutput:
    """Shared driver of GPTQ (no extra rows) and GILoRA (``r`` extra rows)."""
    return _run_keeping_factors(W_aug, H_aug, grid, n_quant, lam=lam, route=route,
                                blocksize=blocksize, act_order=act_order,
                                damp_policy=damp_policy)[0]


def _run_keeping_factors(W_aug, H_aug, grid, n_quant, *, lam, route, blocksize, act_order,
                         damp_policy, factor=None) -> tuple[_PassOutput, np.ndarray, np.ndarray]:
    """:func:`_run`, also returning ``Psi`` and ``E = Psi^{-1} (W - Q)`` (both in
    processing order ``perm``, for the first ``n_quant`` rows of ``E``), with
    which OLrC after GPTQ needs no new factorisation (:mod:`gilora_theory.olrc`).
    ``factor = (Psi, lam)``, returned by an earlier call's :func:`_factor_with_policy` on the
    same ``H_aug``, ``lam`` and options, is used instead of factoring again (the pass only
    reads ``Psi``)."""
    perm = np.arange(n_quant)
    if act_order:
        perm = np.argsort(-np.diag(H_aug)[:n_quant], kind="stable")
        full = np.concatenate([perm, np.arange(n_quant, H_aug.shape[0])])
        Hp, W_tilde = H_aug[np.ix_(full, full)], W_aug[full]
    else:  # identity order: no permuted copies of H_aug
        Hp, W_tilde = H_aug, W_aug.copy()
    Psi, lam = _factor_with_policy(Hp, lam, route, damp_policy) if factor is None else factor
    del Hp
    with np.errstate(over="ignore", invalid="ignore"):
        Qp, terms, clipp = _pass(W_tilde, Psi, grid, perm, n_quant, blocksize)
    w_max = max(float(np.max(W_aug)), -float(np.min(W_aug)))
    _v.check_finite_output("the GPTQ pass", f"Rescale W (|W| up to {w_max:.3g}) "
                           f"or increase damp (lam was {lam:.3g}).", Q=Qp, step_terms=terms,
                           R=W_tilde[n_quant:])
    pdiag = np.diag(Psi)[:n_quant].copy()
    if act_order:
        inv = np.argsort(perm)
        Qp, clipp = Qp[inv], clipp[inv]
    out = _PassOutput(Qp, W_tilde[n_quant:].copy(), lam, pdiag, terms, clipp, perm)
    return out, Psi, W_tilde[:n_quant]


def _check_common(W, H, grid, blocksize, route, damp_policy):
    W = _v.as_matrix("W", W)
    H = _v.check_hessian(H, W.shape[0])
    _check_options(W, grid, blocksize, route, damp_policy)
    return W, H


def _check_options(W, grid, blocksize, route, damp_policy) -> None:
    """The pass's options, for callers that validated ``W`` and ``H`` themselves."""
    check_grid(grid, W)
    _v.check_int("blocksize", blocksize, low=1)
    if route not in ROUTES:
        raise ValueError(f"route must be one of {ROUTES}; got {route!r}")
    if damp_policy not in ("raise", "increase"):
        raise ValueError(f"damp_policy must be 'raise' or 'increase'; got {damp_policy!r}")


