"""The literature's low-rank compensation methods, each with its authors' conventions.

Every method approximates ``W`` (N x N_out, rows = input features) by
``Q + L R``. The branch fits below take a ``Q`` (from any quantizer) and fit
the residual ``D = W - Q``; the alternations choose ``Q`` and the branch
together. Conventions are keyword parameters with the authors' values as
defaults.

====================  ==========================================================
:func:`lqer`          LQER [2]: ``S = diag(s)``, ``s_i`` = mean ``|x_i|`` over the
                      calibration tokens (clamped below at ``1e-4``, then divided
                      by ``sqrt(min s max s)``); ``SVD_r(S D) = U_r Sigma_r V_r^T``,
                      ``L = S^-1 U_r Sigma_r``, ``R = V_r^T`` (``Sigma_r`` folded
                      into ``L``; the scale ``S^-1`` too, so nothing extra is stored).
:func:`qera`          QERA [3]: ``"approx"``: the same with ``S = diag(sqrt(H_ii / m))``;
                      ``"exact"``: ``S = (H / m)^{1/2}``, which is OLrC with
                      ``lam = 0`` (Alg. 2 of [1]): it *is* :func:`gilora_theory.olrc`'s
                      kernel, one implementation.
:func:`olrc_cutoff`   EoRA's handling of a singular ``H`` [4] (as GPTQModel's
                      implementation): OLrC with ``lam = 0`` on the eigenvalues of
                      ``H`` above ``cutoff * lambda_max`` only (a truncated
                      pseudo-inverse square root; ``cutoff = N eps(float32)``).
:func:`loftq`         LoftQ [5], data-free: ``Q_t = quant(W - L_{t-1} R_{t-1})``,
                      ``L_t R_t = T_r(W - Q_t)``, ``t = 1..T``, ``L_0 R_0 = 0``.
:func:`caldera`       CALDERA-style [6] with this package's GPTQ as the quantizer:
                      ``Q_k = GPTQ(W - L_{k-1} R_{k-1}; H)``, ``(L_k, R_k)`` the
                      calibration-aware rank-r fit of ``W - Q_k`` (OLrC under
                      ``H_lam``, optionally on their own grids), best iterate kept.
:func:`loraq_fit`     LoRaQ [7]: the branch fitted to ``D`` by Adam through
                      straight-through estimators of its own quantizers, from the
                      SVD start, best iterate kept.
:func:`search_beta`   per-column clipping factor search (BRAID's ``search_beta``
                      convention): per column, the ``beta`` of a stated candidate
                      set with the smallest RTN calibration error.
====================  ==========================================================

Objectives and damping. LQER, QERA and LoftQ are undamped (``lam = 0``),
as their authors define them; EoRA is undamped with its eigenvalue cutoff;
CALDERA-style uses the package's damped ``H_lam`` (``lam = damp * mean diag H``)
for both GPTQ and the branch fit, so that zero outer iterations is exactly
``gptq+olrc``; LoRaQ is data-free (Frobenius norm).

The factor ``1 / m`` of QERA's ``S`` (``m`` calibration tokens) cancels in
``L R = S^-1 T_r(S D)``; likewise LQER's normalisation by
``sqrt(min s max s)``: both are applied as the authors write them, and neither
changes ``L R``. Zero entries of a diagonal ``S`` (a dead input channel for
QERA-approx) use the pseudo-inverse: the corresponding rows of ``L`` are 0.

References
----------
[1] S. Zhang, R. Saab, "GPTQ-intrinsic LoRA", arXiv:2606.01412 (2026).
[2] C. Zhang et al., "LQER: low-rank quantization error reconstruction for
    LLMs", arXiv:2402.02446 (2024).
[3] C. Zhang et al., "QERA: an analytical framework for quantization error
    reconstruction", arXiv:2410.06040 (2024).
[4] S.-Y. Liu et al., "EoRA: training-free compensation for compressed LLM
    with eigenspace low-rank approximation", arXiv:2410.21271 (2024).
[5] Y. Li et al., "LoftQ: LoRA-fine-tuning-aware quantization for large
    language models", arXiv:2310.08659 (2023).
[6] R. Saha et al., "Compressing large language models using low rank and low
    precision decomposition" (CALDERA), arXiv:2405.18886 (2024).
[7] Y. Bouquet et al., "LoRaQ: optimized low rank approximation for 4-bit
    quantization", arXiv:2604.18117 (2026).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg

from . import _validation as _v
from .branch import QuantizedBranch, _branch, _check_options, quantize_after
from .datafree import _svd
from .gptq import _check_options as _check_pass_options, _gptq_validated
from .grid import Grid, check_grid, clipped_mask, fit_grid
from .objective import HessianSpectrum, _trace_quad, hessian_spectrum, resolve_lam
from .olrc import _olrc, _signs

__all__ = ["LQER_CLAMP", "QERA_VARIANTS", "EORA_CUTOFF", "BETA_CANDIDATES", "LowRankFit",
           "lqer_scale", "lqer", "qera", "olrc_cutoff", "Alternation", "loftq", "caldera",
           "LoRaQFit", "loraq_fit", "search_beta"]

LQER_CLAMP = 1e-4
"""LQER's lower clamp of the mean absolute activation ``s_i`` [2]."""
QERA_VARIANTS = ("approx", "exact")
EORA_CUTOFF = float(np.finfo(np.float32).eps)
"""EoRA's relative eigenvalue cutoff per input feature: ``N * EORA_CUTOFF * lambda_max`` [4]."""
BETA_CANDIDATES = tuple(np.round(np.arange(1.0, 0.49, -0.05), 2))
"""Default candidate clipping factors of :func:`search_beta`: 1.00, 0.95, ..., 0.50."""


@dataclass(frozen=True)
class LowRankFit:
    """A rank-r branch for a fixed ``Q``.

    Attributes
    ----------
    L : (N, r) ndarray
        ``S^+ U_r Sigma_r`` (the scale and the singular values folded in).
    R : (r, N_out) ndarray
        ``V_r^T`` (orthonormal rows, each row's largest-magnitude entry positive).
    value : float
        The objective the method minimises: ``||S (D - L R)||_F^2`` for a
        diagonal ``S`` (LQER, QERA-approx), ``tr((D - L R)^T H+ (D - L R))`` on the
        kept eigenvalues ``H+`` (QERA-exact, EoRA).
    scale : (N,) ndarray or None
        The diagonal of ``S`` (LQER, QERA-approx), else None.
    dropped : int
        Eigenvalues of ``H`` treated as zero (EoRA's cutoff; 0 for diagonal ``S``).
    """

    L: np.ndarray
    R: np.ndarray
    value: float
    scale: np.ndarray | None = None
    dropped: int = 0


def _check_pair(W, Q, rank):
    W = _v.as_matrix("W", W)
    Q = _v.as_matrix("Q", Q)
    if Q.shape != W.shape:
        raise ValueError(f"Q must have W's shape {W.shape}; got {Q.shape}")
    return W, Q, _v.check_rank(rank, *W.shape)


def lqer_scale(x_abs_mean, *, clamp: float = LQER_CLAMP) -> np.ndarray:
    """LQER's scale [2]: ``s = max(x_abs_mean, clamp)``, then ``s / sqrt(min(s) max(s))``.

    Parameters
    ----------
    x_abs_mean : (N,) array_like
        Mean over calibration tokens of ``|x_i|`` per input feature.
    clamp : float, default 1e-4
        Lower clamp, as the authors.

    Returns
    -------
    s : (N,) ndarray
    """
    x = _v.as_matrix("x_abs_mean", x_abs_mean, ndim=1)
    clamp = _v.check_float("clamp", clamp, low=0.0, low_open=True)
    s = np.maximum(x, clamp)
    return s / np.sqrt(s.min() * s.max())


def _scaled_svd(D: np.ndarray, s: np.ndarray, r: int):
    """``SVD_r(diag(s) D)``: ``L = diag(s)^+ U_r Sigma_r``, ``R = V_r^T``, ``sum_{i>r} sigma_i^2``."""
    U, sig, Vt = scipy.linalg.svd(s[:, None] * D, full_matrices=False, check_finite=False,
                                  lapack_driver="gesdd")
    sign = _signs(Vt[:r])
    inv = np.where(s > 0, 1.0 / np.where(s > 0, s, 1.0), 0.0)
    L = inv[:, None] * (U[:, :r] * (sig[:r] * sign))
    return L, Vt[:r] * sign[:, None], float(np.sum(sig[r:] ** 2))


def lqer(W, Q, x_abs_mean, rank: int, *, clamp: float = LQER_CLAMP) -> LowRankFit:
    """LQER's branch for ``W - Q`` ([2]; module docstring).

    Parameters
    ----------
    W, Q : (N, N_out) array_like
    x_abs_mean : (N,) array_like
        Mean ``|x_i|`` over the calibration tokens (``Layer.x_abs_mean``); ``H``
        does not contain this L1 statistic.
    rank : int
        ``r`` in [0, min(N, N_out)].
    clamp : float, default 1e-4

    Returns
    -------
    LowRankFit
        With ``scale = s`` (:func:`lqer_scale`); ``value = ||S (W - Q - L R)||_F^2``.
    """
    W, Q, r = _check_pair(W, Q, rank)
    x = _v.check_channel_statistic("x_abs_mean", x_abs_mean, W.shape[0])
    s = lqer_scale(x, clamp=clamp)
    return LowRankFit(*_scaled_svd(W - Q, s, r), scale=s)


def qera(W, Q, H, rank: int, *, variant: str = "exact", n_samples: int | None = None) -> LowRankFit:
    """QERA's closed-form branch for ``W - Q`` [3] (module docstring).

    Parameters
    ----------
    W, Q : (N, N_out) array_like
    H : (N, N) array_like
        ``X^T X``.
    rank : int
    variant : {"exact", "approx"}, default "exact"
        ``"exact"``: ``S = (H / m)^{1/2}`` (QERA's exact solution [3]; OLrC with ``lam = 0``,
        pseudo-inverse on the range of ``H``). ``"approx"``: ``S = diag(sqrt(H_ii / m))``
        (the diagonal approximation of [3]).
    n_samples : int, optional
        ``m``; it cancels in ``L R`` (default 1).

    Returns
    -------
    LowRankFit
    """
    W, Q, r = _check_pair(W, Q, rank)
    H = _v.check_hessian(H, W.shape[0])
    if variant not in QERA_VARIANTS:
        raise ValueError(f"variant must be one of {QERA_VARIANTS}; got {variant!r}")
    m = 1 if n_samples is None else _v.check_int("n_samples", n_samples, low=1)
    if variant == "approx":
        s = np.sqrt(np.clip(np.diag(H), 0.0, None) / m)
        return LowRankFit(*_scaled_svd(W - Q, s, r), scale=s)
    L, R, value, _ = _olrc(W - Q, None, r, 0.0, H=H)
    return LowRankFit(L, R, value)


def olrc_cutoff(W, Q, H, rank: int, *, cutoff: float | None = None) -> LowRankFit:
    """OLrC (``lam = 0``) with a relative eigenvalue cutoff: EoRA's convention [4].

    ``H = V diag(e) V^T``; eigenvalues ``e_i <= cutoff * max(e)`` are set to 0
    (dropped from the pseudo-inverse square root), the rest go through OLrC's
    formula (Alg. 2 of [1], :mod:`gilora_theory.olrc`'s kernel).

    Parameters
    ----------
    W, Q : (N, N_out) array_like
    H : (N, N) array_like
    rank : int
    cutoff : float, optional
        Relative cutoff ``>= 0``. Default ``N * eps(float32)`` (EoRA as in
        GPTQModel). ``0`` gives exact OLrC with ``lam = 0`` (whose own tolerance
        ``N * eps(float64) * max(e)`` still applies).

    Returns
    -------
    LowRankFit
        ``value`` is the objective on the kept eigenvalues; ``dropped`` counts the rest.
    """
    W, Q, r = _check_pair(W, Q, rank)
    H = _v.check_hessian(H, W.shape[0])
    cut = W.shape[0] * EORA_CUTOFF if cutoff is None else _v.check_float("cutoff", cutoff)
    spec = hessian_spectrum(H)
    e = spec.eigvals
    keep = e > cut * max(float(e.max()), 0.0)
    L, R, value, _ = _olrc(W - Q, HessianSpectrum(np.where(keep, e, 0.0), spec.eigvecs), r, 0.0)
    return LowRankFit(L, R, value, dropped=int(np.count_nonzero(~keep)))


@dataclass(frozen=True)
class Alternation:
    """Result of an alternation between ``Q`` and the branch (LoftQ, CALDERA-style).

    Attributes
    ----------
    Q : (N, N_out) ndarray
    L : (N, r) ndarray
    R : (r, N_out) ndarray
    trace : (T + 1,) or (T,) ndarray
        The objective after each iteration (LoftQ: ``||W - Q_t - L_t R_t||_F^2``,
        ``t = 1..T``; CALDERA-style: ``tr(D_k^T H_lam D_k)``, ``k = 0..K``).
    best : int
        Index into ``trace`` of the returned iterate (LoftQ: the last, as the
        authors; CALDERA-style: the smallest).
    increases : tuple of int
        Iterations whose value exceeds the previous one (the alternation is not monotone).
    n_clipped : int
        Clipped entries of the returned iterate's quantizing pass.
    branch : QuantizedBranch or None
        The branch on its own grids (CALDERA-style with ``l_bits`` / ``r_bits``).
    """

    Q: np.ndarray
    L: np.ndarray
    R: np.ndarray
    trace: np.ndarray
    best: int
    increases: tuple
    n_clipped: int = 0
    branch: QuantizedBranch | None = None


def _increases(trace) -> tuple:
    return tuple(int(k) for k in np.flatnonzero(np.diff(trace) > 0) + 1)


def loftq(W, grid: Grid, rank: int, *, iters: int = 5) -> Alternation:
    """LoftQ's alternation (Alg. 1 of [5]) on the fixed grid, data-free.

    ``L_0 R_0 = 0``; for ``t = 1..T``: ``Q_t = quant(W - L_{t-1} R_{t-1})``,
    ``L_t R_t = T_r(W - Q_t)`` (``L = U_r Sigma_r``, ``R = V_r^T``). Returns the
    last iterate, as the authors; ``T = 1`` is ``rtn+svd``.

    Parameters
    ----------
    W : (N, N_out) array_like
    grid : Grid
        Fitted once from ``W`` (:func:`gilora_theory.fit_grid`).
    rank : int
    iters : int, default 5
        ``T`` alternations (the authors' default).

    Returns
    -------
    Alternation
    """
    W = _v.as_matrix("W", W)
    check_grid(grid, W)
    r = _v.check_rank(rank, *W.shape)
    T = _v.check_int("iters", iters, low=1)
    rows = np.arange(W.shape[0])
    LR, trace = np.zeros_like(W), []
    for _ in range(T):
        target = W - LR
        Q = grid.quantize(target, rows)
        L, R, value, _ = _svd(W - Q, r)
        LR = L @ R
        trace.append(value)
    clipped = int(np.count_nonzero(clipped_mask(grid, target, Q)))
    return Alternation(Q, L, R, np.array(trace), T - 1, _increases(trace), clipped)


def caldera(W, H, grid: Grid, rank: int, *, iters: int = 5, damp: float = 0.01,
            l_bits: int | None = None, r_bits: int | None = None, r_axis: str = "row",
            blocksize: int = 128, route: str = "cholesky") -> Alternation:
    """CALDERA-style alternation [6] with GPTQ (Alg. 1 of [1]) as the quantizer.

    ``L_{-1} R_{-1} = 0``; for ``k = 0..K``: ``Q_k = GPTQ(W - L_{k-1} R_{k-1}; H)``
    on the fixed grid, then ``(L_k, R_k)`` = OLrC of ``W - Q_k`` under ``H_lam``
    (Alg. 2 of [1]); with ``l_bits`` / ``r_bits``, CALDERA's LPLR step puts them
    on their own grids (:func:`gilora_theory.branch.quantize_after`: quantize
    ``L``, least-squares refit of ``R`` under ``H_lam``, quantize ``R``). Each
    iterate is judged by ``tr(D_k^T H_lam D_k)``; the best is returned (the
    alternation is not monotone: ``increases`` names the iterations that rose).
    ``K = 0`` is ``gptq+olrc``.

    Parameters
    ----------
    W : (N, N_out) array_like
    H : (N, N) array_like
    grid : Grid
    rank : int
    iters : int, default 5
        Outer iterations ``K`` after the first (CALDERA's experiments run more;
        the trace shows whether more help).
    damp : float, default 0.01
        Relative damping of GPTQ and of the branch fit.
    l_bits, r_bits : int or None, default None
    r_axis : {"row", "column"}, default "row"
    blocksize, route
        Passed to GPTQ.

    Returns
    -------
    Alternation
    """
    W = _v.as_matrix("W", W)
    H = _v.check_hessian(H, W.shape[0])
    check_grid(grid, W)
    r = _v.check_rank(rank, *W.shape)
    K = _v.check_int("iters", iters, low=0)
    _check_options(l_bits, r_bits, r_axis)
    _check_pass_options(W, grid, blocksize, route, "raise")
    lam = resolve_lam(H, _v.check_damp(damp), None)
    LR, trace, best, factor = np.zeros_like(W), [], None, None
    for _ in range(K + 1):   # H_lam is factored once: every iteration's pass reuses its Psi
        res, factor = _gptq_validated(W - LR, H, grid, lam=lam, blocksize=blocksize,
                                      route=route, factor=factor)
        L, R = _olrc(W - res.Q, None, r, lam, svd="partial", H=H)[:2]
        branch = None
        if r > 0 and (l_bits is not None or r_bits is not None):
            branch = quantize_after(W, res.Q, H, L, R, l_bits=l_bits, r_bits=r_bits, lam=lam,
                                    r_axis=r_axis).branch
            L, R = branch.L, branch.R
        LR = L @ R
        D = W - res.Q - LR
        trace.append(_trace_quad(H, D) + lam * float(np.sum(D * D)))
        if best is None or trace[-1] < trace[best[0]]:
            best = (len(trace) - 1, res.Q, L, R, res.n_clipped, branch)
    k, Q, L, R, clipped, branch = best
    return Alternation(Q, L, R, np.array(trace), k, _increases(trace), clipped, branch)


@dataclass(frozen=True)
class LoRaQFit:
    """A branch fitted to ``D = W - Q`` by Adam with straight-through quantizers.

    Attributes
    ----------
    branch : QuantizedBranch
        The best iterate's quantized factors and their grids.
    value : float
        ``||D - quant(L) quant(R)||_F^2`` of ``branch``.
    start_value : float
        The same for the quantized SVD start (``value <= start_value``).
    trace : (steps + 1,) ndarray
        The objective at the start and after every step.
    best_step : int
        Index into ``trace`` of ``branch`` (0: the start was never beaten).
    """

    branch: QuantizedBranch
    value: float
    start_value: float
    trace: np.ndarray
    best_step: int


def loraq_fit(W, Q, rank: int, *, l_bits: int | None = 4, r_bits: int | None = 8,
              steps: int = 200, lr: float = 1e-4, r_axis: str = "row", jitter: float = 0.0,
              rng=None) -> LoRaQFit:
    """LoRaQ's data-free branch fit [7]: Adam through straight-through quantizers.

    Minimises ``f(L, R) = ||D - quant(L) quant(R)||_F^2``, ``D = W - Q``. Start:
    the SVD fit split evenly, ``L = U_r Sigma_r^{1/2}``, ``R = Sigma_r^{1/2} V_r^T``.
    Each step refits the factors' grids to the current ``L``, ``R`` (one grid
    per branch direction, :mod:`gilora_theory.branch`), evaluates ``f`` at the
    quantized factors and moves the full-precision factors by Adam
    (``beta_1 = 0.9``, ``beta_2 = 0.999``) along the straight-through gradients
    ``-2 E quant(R)^T`` and ``-2 quant(L)^T E`` (``E = D - quant(L) quant(R)``).
    The best quantized iterate (the start included) is returned, so the fit
    never ends above its start. Without quantizers (both bits None) the SVD is
    already optimal and the start is returned.

    Parameters
    ----------
    W, Q : (N, N_out) array_like
    rank : int
    l_bits, r_bits : int or None, default 4 and 8
        Bit-widths of the branch's grids (LoRaQ evaluates 4/6/8).
    steps : int, default 200
        Adam steps.
    lr : float, default 1e-4
        Step size relative to each factor's root-mean-square entry at the start
        (this package's choice: on a 128 x 96 gallery layer, rank 16, 4-bit
        branch, 1e-4 improved on the start most among 1e-2 .. 1e-4; larger steps
        jump across grid cells and never beat the start).
    r_axis : {"row", "column"}, default "row"
    jitter : float, default 0.0
        Relative Gaussian perturbation of the start, drawn from ``rng`` (0: the
        fit is deterministic and ``rng`` is not used).
    rng : Generator, int or None

    Returns
    -------
    LoRaQFit
    """
    W, Q, r = _check_pair(W, Q, rank)
    _check_options(l_bits, r_bits, r_axis)
    steps = _v.check_int("steps", steps, low=0)
    lr = _v.check_float("lr", lr, low=0.0, low_open=True)
    jitter = _v.check_float("jitter", jitter)
    D = W - Q
    U, sig, Vt = scipy.linalg.svd(D, full_matrices=False, check_finite=False, lapack_driver="gesdd")
    root = np.sqrt(sig[:r])
    L, R = U[:, :r] * root, root[:, None] * Vt[:r]
    if jitter > 0:
        gen = np.random.default_rng(rng)
        L = L * (1 + jitter * gen.standard_normal(L.shape))
        R = R * (1 + jitter * gen.standard_normal(R.shape))
    if r == 0 or (l_bits is None and r_bits is None):
        steps = 0
    return _adam_ste(D, L, R, l_bits, r_bits, r_axis, steps, lr)


def _adam_ste(D, L, R, l_bits, r_bits, r_axis, steps, lr) -> LoRaQFit:
    """Kernel of :func:`loraq_fit` (validated inputs)."""
    b1, b2 = 0.9, 0.999
    scale = [lr * np.sqrt(np.mean(A ** 2)) if A.size else 0.0 for A in (L, R)]
    moments = [[np.zeros_like(L), np.zeros_like(L)], [np.zeros_like(R), np.zeros_like(R)]]
    trace, best, eps = [], None, None
    for t in range(steps + 1):
        qb = _branch(L, R, l_bits, r_bits, r_axis)
        E = D - qb.L @ qb.R
        trace.append(float(np.einsum("ij,ij->", E, E)))
        if best is None or trace[-1] < trace[best[0]]:
            best = (t, qb)
        if t == steps:
            break
        grads = (-2.0 * E @ qb.R.T, -2.0 * qb.L.T @ E)
        if eps is None:      # Adam's epsilon, relative to the first gradient's size
            eps = [1e-8 * (np.sqrt(np.mean(g ** 2)) if g.size else 1.0) + np.finfo(float).tiny
                   for g in grads]
        for A, g, (m, v), s, e in zip((L, R), grads, moments, scale, eps):
            m *= b1
            m += (1 - b1) * g
            v *= b2
            v += (1 - b2) * g * g
            A -= s * (m / (1 - b1 ** (t + 1))) / (np.sqrt(v / (1 - b2 ** (t + 1))) + e)
    k, qb = best
    return LoRaQFit(qb, trace[k], trace[0], np.array(trace), k)


def search_beta(W, H, bits: int, *, candidates=BETA_CANDIDATES) -> Grid:
    """Per-column clipping factor: the candidate minimising the column's RTN calibration error.

    For each candidate ``beta`` the grid of ``docs/theory.md`` ("The grid") is
    fitted with that ``beta`` and column ``j`` is rounded to it; column ``j``
    keeps the ``beta`` with the smallest ``d_j^T H d_j``, ``d_j = w_j - quant_j(w_j)``
    (ties: the earlier candidate). Zero points come from the unscaled range, as
    for every grid of the package.

    Parameters
    ----------
    W : (N, N_out) array_like
    H : (N, N) array_like
        ``X^T X`` (``np.eye(N)`` for a data-free search).
    bits : int
    candidates : sequence of float, default 1.00, 0.95, ..., 0.50
        Clipping factors in (0, 1].

    Returns
    -------
    Grid
        One grid per column; its ``beta`` is the ``(N_out,)`` array of chosen factors.
    """
    W = _v.as_matrix("W", W)
    H = _v.check_hessian(H, W.shape[0])
    bits = _v.check_bits("bits", bits)
    cands = [_v.check_beta(b) for b in candidates]
    if not cands:
        raise ValueError("candidates must hold at least one clipping factor; got none")
    grids = [fit_grid(W, bits, beta=b) for b in cands]
    errors = []
    for g in grids:
        Dq = W - g.quantize(W)
        errors.append(np.einsum("ij,ij->j", Dq, H @ Dq))
    pick = np.argmin(np.array(errors), axis=0)
    cols = np.arange(W.shape[1])
    step = np.stack([g.step[0] for g in grids])[pick, cols]
    zero = np.stack([g.zero[0] for g in grids])[pick, cols]
    return Grid(step[None], zero[None], bits, np.asarray(cands)[pick], True, None)
