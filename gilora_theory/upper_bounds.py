"""Upper bounds of [1]: the chain of docs/theory.md, "Upper bounds", link by link.

For one GPTQ or GILoRA run (Alg. 1 / Alg. 3 of [1]) with a fixed ``L`` (``V_r``,
a quantized ``V_r`` or any ``N x r`` matrix; GPTQ is ``r = 0``) and absolute damping
``lam`` of the pass, every link is a separate number::

    E  <=  E_lam_aug  =  step_sum  <=  schur_sum  <=  trace_S  <=  closed_form

    E            = ||X (W - Q - L R)||_F^2
    E_lam_aug    = E + lam ||W - Q||_F^2 + lam ||R||_F^2
    step_sum     = sum_t sum_j (w~_tj - q_tj)^2 / Psi_tt^2          (actual rounding errors)
    schur_sum    = sum_t C_t / Psi_tt^2                              (needs no clipping)
    trace_S      = sum_t C_t S_tt,  S = H_lam - H L (L^T H L + lam I)^{-1} L^T H
    closed_form  = sum_t C_t ( ||X (I - L L^+) e_t||^2 + lam (1 + ||L^+ e_t||^2) )

with ``C_t = (1/4) sum_j delta_{g(t) j}^2`` (``delta`` of the grid group ``g(t)``
holding row t). Per-column grids give ``C_t = C = (1/4) sum_j delta_j^2`` and::

    closed_form = C ( ||X (I - L L^+)||_F^2 + lam (N + ||L^+||_F^2) )        (any L)
                = C ( ||X - X_r||_F^2 + (N + r) lam )      (L = V_r: Cor. 3.9 of [1])
                = C ( ||X||_F^2 + N lam ) = trace_S        (r = 0: the GPTQ bound)

Static groups (``Grid.groupsize``) are supported through the row weights ``C_t``
(every link is proved row by row); the Cor. 3.9 form then uses ``C = max_t C_t``.

Derivation (checkable line by line)
-----------------------------------
Write the damped augmented design ``Z = [[X, X L], [sqrt(lam) I_N, 0], [0, sqrt(lam) I_r]]``
((m + N + r) x (N + r)); ``Z^T Z = H_aug + lam I`` is the matrix Alg. 3 factors.

1. ``E <= E_lam_aug``: the two added terms are non-negative.
2. ``E_lam_aug = step_sum``: with ``D_aug = [W - Q; -R]``, ``Z D_aug`` stacks
   ``X (W - Q - L R)``, ``sqrt(lam) (W - Q)`` and ``-sqrt(lam) R``, so
   ``E_lam_aug = tr(D_aug^T (H_aug + lam I) D_aug)``; the pass gives ``D_aug = Psi Eps``
   with ``Psi^T (H_aug + lam I) Psi = I``, hence ``E_lam_aug = ||Eps||_F^2``, the sum of
   the per-step terms (docs/theory.md, Alg. 1-4).
3. ``step_sum <= schur_sum``: without clipping ``|w~_tj - q_tj| <= delta_j / 2`` termwise.
4. ``schur_sum <= trace_S``: ``H_aug + lam I = Psi^{-T} Psi^{-1}`` with ``Psi^{-T}`` upper
   triangular, so ``1 / Psi_tt^2`` is the Schur complement of coordinate t with respect
   to the later coordinates ``t+1..N+r``, i.e. the squared distance from column t of
   ``Z`` to the span of the later columns. ``S_tt`` is the squared distance from the
   same column to the span of the last ``r`` columns only, a subset: ``1/Psi_tt^2 <= S_tt``.
   (Any processing order: the inequality is row by row.)
5. ``trace_S <= closed_form``: ``S_tt = min_a ||z_t - Z_L a||^2`` over the last r
   columns ``Z_L = [X L; 0; sqrt(lam) I_r]``; the choice ``a = L^+ e_t`` gives
   ``||X e_t - X L L^+ e_t||^2 + lam ||e_t||^2 + lam ||L^+ e_t||^2``. (Any ``r x N``
   matrix in place of ``L^+`` gives a valid bound; ``L^+`` makes it the projection
   residual. For ``L = V_r``: ``L^+ = V_r^T``, ``||V_r^T e_t||^2`` sums to r and
   ``X (I - V_r V_r^T) = X - X_r``.)

Every link holds in exact arithmetic whenever the run did not clip. The
``tolerance`` of each link (see :class:`ChainLink`) is derived from machine
epsilon and the problem's scale:

- identity (2): ``64 (N + r) eps [tr(|D_aug|^T |M| |D_aug|) + sqrt((N + r) kappa(M)) step_sum
  + sqrt(lambda_max(M) step_sum) ||W||_F]``, ``M = H_aug + lam I``: forward error of the
  quadratic form, plus the rounding of the working rows ``w~`` (relative to
  ``|Psi| |Eps|`` and to ``|W|``) in ``D_aug = Psi Eps``, which enters as
  ``2 tr(Eps^T Psi^{-1} dD)`` with ``||Psi^{-1}||_2 = sqrt(lambda_max(M))``;
- (3): ``eps (2 N_out + 20 + 4 k_max) schur_sum`` (``k_max``: largest ``|q| / delta``;
  the run's clipping test allows ``8 eps`` of the half step);
- (4), (5): ``64 (N + r) eps sum_t C_t sigma_t`` with
  ``sigma_t = (sqrt(M_tt) + sum_k a_kt sqrt(M_kk))^2`` over the extra coordinates k and
  ``a = max(|ridge coefficients|, |L^+|)`` (backward error of the Cholesky factor and
  of the two quadratic forms; every term is bounded by ``sigma_t``).

Which ``lam`` enters Cor. 3.9 of [1] is **[likely]**: the chain is proved with the
pass damping (for GILoRA ``alpha * mean(diag H_aug)`` by default, which is at least
``alpha * mean(diag H)``). ``lam_cor39`` evaluates the Cor. 3.9 form at another
value so that the other reading can be tested; it is a bound only at the pass lam.

Bit/rank factorised form (:func:`factorised_bound`), per-column grids:
``g(b) = beta^2 sum_j rho_j^2 / (4 (2^b - 1)^2)`` (equal to C unless a column is
constant) and ``h(r) = ||X - X_r||_F^2 + (N + r) lam``; with ``lam`` fixed, ``h`` is
convex with increments ``lam - s_{r}^2`` and minimal at ``r* = #{s_i^2 > lam}``.

References
----------
[1] S. Zhang, R. Saab, "GPTQ-intrinsic LoRA", arXiv:2606.01412 (2026).
[2] E. Frantar et al., "GPTQ", arXiv:2210.17323 (2022).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg

from . import _memo
from . import _validation as _v
from .gilora import DAMP_FROM, GILoRAResult, _augmented_hessian, gilora
from .gptq import GPTQResult, gptq
from .grid import Grid, check_grid, fit_grid
from .lower_bounds import lower_bound
from .objective import eigvalsh_kept, resolve_lam

__all__ = ["ChainLink", "BoundChain", "bound_chain", "LayerBounds", "layer_bounds",
           "FactorisedBound", "factorised_bound", "ClippingSweep", "clipping_sweep",
           "row_constants"]

_EPS = np.finfo(np.float64).eps


@dataclass(frozen=True)
class ChainLink:
    """One link ``lower <= upper`` (or ``==`` for the loss identity) of the chain.

    Attributes
    ----------
    name : str
    lower, upper : float
        The two sides.
    slack : float
        ``upper - lower`` (negative: the link fails by that much).
    tolerance : float
        Rounding allowance derived from machine epsilon (module docstring).
    equality : bool
        True for the identity ``E_lam_aug = step_sum`` (judged on ``|slack|``).
    """

    name: str
    lower: float
    upper: float
    slack: float
    tolerance: float
    equality: bool = False

    @property
    def holds(self) -> bool:
        """``|slack| <= tolerance`` for the identity, ``slack >= -tolerance`` otherwise."""
        return abs(self.slack) <= self.tolerance if self.equality else self.slack >= -self.tolerance


@dataclass(frozen=True)
class BoundChain:
    """Every number of the upper-bound chain for one run (module docstring).

    Attributes
    ----------
    method : str
        ``"gptq"`` or ``"gilora"``.
    rank : int
        ``r = L.shape[1]`` (0 for GPTQ).
    lam : float
        Absolute damping of the pass.
    C : float
        ``(1/4) sum_j delta_j^2``; with static groups ``max_t C_t``.
    C_rows : (N,) ndarray
        ``C_t = (1/4) sum_j delta_{g(t) j}^2`` per input row.
    error : float
        ``E = tr(D^T H D)``, ``D = W - Q - L R``.
    damped_error : float
        ``E_lam_aug = E + lam ||W - Q||_F^2 + lam ||R||_F^2``.
    step_sum : float
        ``sum_t sum_j (w~_tj - q_tj)^2 / Psi_tt^2`` (from the run).
    schur_sum : float
        ``sum_t C_t / Psi_tt^2``.
    trace_S : float
        ``sum_t C_t S_tt`` (``C tr(S)``; for GPTQ ``S = H_lam``).
    closed_form : float
        ``sum_t C_t (||X (I - L L^+) e_t||^2 + lam (1 + ||L^+ e_t||^2))``.
    cor39 : float
        ``C (||X - X_r||_F^2 + (N + r) lam_cor39)`` from the eigenvalues of H: Cor. 3.9
        of [1]; a proved bound when ``L = V_r`` and ``lam_cor39 = lam``, otherwise
        only the formula's value.
    lam_cor39 : float
        The damping used in ``cor39``.
    projection_tail : float
        ``||X (I - L L^+)||_F^2`` (``||X - X_r||_F^2`` for ``L = V_r``).
    pinv_norm2 : float
        ``||L^+||_F^2`` (``r`` for orthonormal L).
    clipped : int
        Entries rounded with ``|w~ - q| > delta / 2`` during the pass.
    tol_identity, tol_step, tol_schur : float
        Tolerances of links 2, 3 and 4-5 (module docstring).
    """

    method: str
    rank: int
    lam: float
    C: float
    C_rows: np.ndarray
    error: float
    damped_error: float
    step_sum: float
    schur_sum: float
    trace_S: float
    closed_form: float
    cor39: float
    lam_cor39: float
    projection_tail: float
    pinv_norm2: float
    clipped: int
    tol_identity: float
    tol_step: float
    tol_schur: float

    @property
    def links(self) -> tuple[ChainLink, ...]:
        """The five links in chain order."""
        def link(name, lo, up, tol, eq=False):
            return ChainLink(name, lo, up, up - lo, tol, eq)
        return (
            link("error <= damped_error", self.error, self.damped_error, 0.0),
            link("damped_error == step_sum", self.damped_error, self.step_sum,
                 self.tol_identity, True),
            link("step_sum <= schur_sum", self.step_sum, self.schur_sum, self.tol_step),
            link("schur_sum <= trace_S", self.schur_sum, self.trace_S, self.tol_schur),
            link("trace_S <= closed_form", self.trace_S, self.closed_form, self.tol_schur),
        )

    @property
    def holds(self) -> bool:
        """Every link holds within its tolerance."""
        return all(l.holds for l in self.links)

    @property
    def failed_links(self) -> tuple[str, ...]:
        """Names of the links that fail."""
        return tuple(l.name for l in self.links if not l.holds)

    @property
    def bound_ratio(self) -> float:
        """``E / closed_form`` (> 1: the end-to-end bound fails); inf if the bound is 0 < E."""
        if self.closed_form > 0:
            return self.error / self.closed_form
        return 0.0 if self.error == 0 else float("inf")


def row_constants(grid: Grid, N: int) -> np.ndarray:
    """``C_t = (1/4) sum_j delta_{g(t) j}^2`` for the input rows ``t = 0..N-1``.

    Parameters
    ----------
    grid : Grid
    N : int
        Number of input rows.
    """
    step = grid.step[0] if grid.groupsize is None else grid.step[np.arange(N) // grid.groupsize]
    return 0.25 * np.broadcast_to(np.sum(np.atleast_2d(step) ** 2, axis=-1), (N,)).copy()


def _check_run(W, H, grid, run):
    W = _v.as_matrix("W", W)
    H = _v.check_hessian(H, W.shape[0])
    check_grid(grid, W)
    if not isinstance(run, (GPTQResult, GILoRAResult)):
        raise TypeError(f"run must be a GPTQResult or GILoRAResult; got {type(run).__name__}")
    if run.Q.shape != W.shape:
        raise ValueError(f"run.Q has shape {run.Q.shape} but W has {W.shape}: the run is of another layer")
    return W, H


def bound_chain(W, H, grid: Grid, run, *, lam_cor39: float | None = None) -> BoundChain:
    """Evaluate the upper-bound chain of docs/theory.md, "Upper bounds" for one run.

    Parameters
    ----------
    W : (N, N_out) array_like
        The weights the run quantized.
    H : (N, N) array_like
        ``X^T X`` used by the run.
    grid : Grid
        The run's grid (bounded or unbounded; static groups allowed).
    run : GPTQResult or GILoRAResult
        Output of :func:`~gilora_theory.gptq.gptq` or :func:`~gilora_theory.gilora.gilora`
        run on ``W, H`` with ``dead_channels=False`` (or an ``H`` without zero
        diagonal; otherwise the identity link reports the convention's mismatch).
    lam_cor39 : float, optional
        Damping plugged into the Cor. 3.9 form (default: the pass lam, the proved one).

    Returns
    -------
    BoundChain
    """
    W, H = _check_run(W, H, grid, run)
    lam_c = run.lam if lam_cor39 is None else _v.check_float("lam_cor39", lam_cor39)
    return _run_chain(W, H, grid, run, lam_c)


def _run_chain(W, H, grid, run, lam_c) -> BoundChain:
    """:func:`bound_chain` for validated inputs (``run`` of this ``W``, ``H`` and ``grid``)."""
    gil = isinstance(run, GILoRAResult)
    N = W.shape[0]
    L = run.L if gil else np.zeros((N, 0))
    R = run.R if gil else np.zeros((0, W.shape[1]))
    return _chain("gilora" if gil else "gptq", W, H, grid, run, L, R, lam_c)


def _chain(method, W, H, grid, run, L, R, lam_c) -> BoundChain:
    N, r, lam = W.shape[0], L.shape[1], run.lam
    C_rows = row_constants(grid, N)
    WQ = W - run.Q
    D = WQ - L @ R
    E = float(np.einsum("ij,ij->", D, H @ D))
    damped = E + lam * (float(np.sum(WQ * WQ)) + float(np.sum(R * R)))
    schur_sum = float(np.sum(C_rows[run.perm] / run.psi_diag ** 2))
    S_diag, t_diag, pinv_diag, sigma = _schur_and_closed(H, L, lam)
    e = np.clip(eigvalsh_kept(H)[::-1], 0.0, None)
    C = float(np.max(C_rows))
    M = _augmented_hessian(H, L)           # H validated by the caller
    M[np.diag_indices_from(M)] += lam
    D_aug = np.vstack([WQ, -R])
    n = N + r
    return BoundChain(
        method, r, lam, C, C_rows, E, damped, run.step_sum, schur_sum,
        float(np.sum(C_rows * S_diag)), float(np.sum(C_rows * (t_diag + lam * (1 + pinv_diag)))),
        C * (float(np.sum(e[r:])) + (N + r) * lam_c), lam_c,
        float(np.sum(t_diag)), float(np.sum(pinv_diag)), run.n_clipped,
        _identity_tol(M, D_aug, run.step_sum, float(np.linalg.norm(W))),
        _step_tol(grid, run.Q, schur_sum),
        64 * n * _EPS * float(np.sum(C_rows * sigma)))


def _schur_and_closed(H: np.ndarray, L: np.ndarray, lam: float):
    """Per-row ``S_tt``, ``||X (I - L L^+) e_t||^2``, ``||L^+ e_t||^2`` and scales ``sigma_t``.

    Everything from ``H``: ``[(I - L M)^T H (I - L M)]_tt = H_tt - 2 (H L M)_tt
    + (M^T L^T H L M)_tt`` with ``M = L^+`` (O(N^2 r), no N x N product).
    """
    N, r = L.shape
    dH = np.diag(H)
    if r == 0:
        return dH + lam, dH.copy(), np.zeros(N), dH + lam
    HL = H @ L
    LHL = L.T @ HL
    LHL = 0.5 * (LHL + LHL.T)
    K = LHL + lam * np.eye(r)
    try:
        alpha = scipy.linalg.solve(K, HL.T, assume_a="pos", check_finite=False)
    except np.linalg.LinAlgError as exc:
        raise _v.NumericalError(
            f"L^T H L + lam I is singular (lam = {lam:.3g}): {exc}. Use damping > 0") from None
    S_diag = dH + lam - np.einsum("ik,ki->i", HL, alpha)
    Mp = scipy.linalg.pinv(L, check_finite=False)
    t_diag = dH - 2 * np.einsum("ik,ki->i", HL, Mp) + np.einsum("ki,kl,li->i", Mp, LHL, Mp)
    pinv_diag = np.sum(Mp * Mp, axis=0)
    a = np.maximum(np.abs(alpha), np.abs(Mp))
    root = np.sqrt(np.clip(np.diag(K), 0.0, None))
    sigma = (np.sqrt(dH + lam) + root @ a) ** 2
    return S_diag, t_diag, pinv_diag, sigma


def _identity_tol(M: np.ndarray, D_aug: np.ndarray, step_sum: float, W_norm: float) -> float:
    """Allowance for ``tr(D_aug^T M D_aug) == step_sum`` (module docstring)."""
    n = M.shape[0]
    absD = np.abs(D_aug)
    quad = float(np.einsum("ij,ij->", absD, np.abs(M) @ absD))
    ev = eigvalsh_kept(M)          # kept per bytes of M: the chains at several bit-widths share it
    if ev[0] <= 0:
        return float("inf")
    feedback = np.sqrt(n * ev[-1] / ev[0]) * step_sum + np.sqrt(ev[-1] * step_sum) * W_norm
    return 64 * n * _EPS * (quad + feedback)


def _step_tol(grid: Grid, Q: np.ndarray, schur_sum: float) -> float:
    """Allowance for ``step_sum <= schur_sum`` without clipping (module docstring)."""
    rows = np.arange(Q.shape[0])
    step = 2 * grid.half_step(rows)
    k_max = float(np.max(np.abs(Q) / step)) + 1.0
    return _EPS * (2 * Q.shape[1] + 20 + 4 * k_max) * schur_sum


@dataclass(frozen=True)
class LayerBounds:
    """GPTQ and GILoRA chains of one layer, plus the minimax lower bound.

    Attributes
    ----------
    lam : float
        ``damp * mean(diag H)`` (GPTQ's pass damping).
    gptq : BoundChain
    gilora : BoundChain
        With ``L = V_r`` (or the given L); its ``lam`` follows ``damp_from``.
    lower_bound : float
        ``||W||_F^2 * lower_bound(s_min(X), b, r, N, N_out, rho)`` of
        :mod:`gilora_theory.lower_bounds` (W rescaled into the class K's
        normalisation ``||W||_F ~ 1``): a minimax statement about layers of
        this shape and scale, not a bound for this W.
    s_min : float
        ``sqrt(lambda_min(H))``.
    grid : Grid
    """

    lam: float
    gptq: BoundChain
    gilora: BoundChain
    lower_bound: float
    s_min: float
    grid: Grid


def layer_bounds(W, H, bits: int, rank: int, *, damp: float = 0.01, beta: float = 1.0,
                 unbounded: bool = False, damp_from: str = "augmented", L=None,
                 rho: float = 1.0) -> LayerBounds:
    """Run GPTQ and GILoRA on one layer and evaluate both chains and the lower bound.

    Parameters
    ----------
    W : (N, N_out) array_like
    H : (N, N) array_like
    bits : int
        Grid bit-width.
    rank : int
        ``r`` of the GILoRA branch (``L = V_r`` unless ``L`` is given).
    damp : float, default 0.01
        Relative damping ``alpha``.
    beta : float, default 1.0
        Grid clipping factor.
    unbounded : bool, default False
        Unbounded grid (no clipping can happen; the chain then always holds).
    damp_from : {"augmented", "hessian"}, default "augmented"
        GILoRA's damping convention (open in [1]).
    L : (N, r) array_like, optional
        A general left factor (e.g. quantized or random).
    rho : float, default 1.0
        ``||L R||_F`` budget relative to ``||W||_F`` for the lower bound.

    Returns
    -------
    LayerBounds
    """
    W = _v.as_matrix("W", W)
    H = _v.check_hessian(H, W.shape[0])
    grid = fit_grid(W, bits, beta=beta, bounded=not unbounded)
    lam = resolve_lam(H, damp, None)
    g = gptq(W, H, grid, lam=lam, dead_channels=False)
    gl = gilora(W, H, grid, rank, L=L, damp=damp, damp_from=damp_from, dead_channels=False)
    N, N_out = W.shape
    r = gl.L.shape[1]
    s_min = float(np.sqrt(max(_memo.memo("smallest", H, _smallest_eigenvalue), 0.0)))
    scale = float(np.sum(W * W))
    rho = _v.check_float("rho", rho, low=0.0, low_open=True)
    lb = scale * lower_bound(s_min, grid.bits, r, N, N_out, rho) if scale > 0 else 0.0
    # H, W and the grid are validated above and the runs are this layer's: the chains skip
    # bound_chain's checks (the same bits; H is read as validated, exactly symmetric)
    return LayerBounds(lam, _run_chain(W, H, grid, g, g.lam), _run_chain(W, H, grid, gl, gl.lam),
                       lb, s_min, grid)


def _smallest_eigenvalue(H: np.ndarray) -> float:
    """``lambda_min(H)`` by ``?syevr`` (kept per bytes of ``H``: one per layer, not per bit-width)."""
    return float(scipy.linalg.eigvalsh(H, subset_by_index=[0, 0])[0])


@dataclass(frozen=True)
class FactorisedBound:
    """The bit/rank factorised form ``g(b) h(r)`` of Cor. 3.9 of [1].

    Attributes
    ----------
    g : float
        ``beta^2 sum_j rho_j^2 / (4 (2^b - 1)^2)``, ``rho_j`` the range of column j.
    h : (r_max + 1,) ndarray
        ``h(r) = ||X - X_r||_F^2 + (N + r) lam(r)`` for ``r = 0..r_max``.
    lam : (r_max + 1,) ndarray
        ``lam(r)``: constant ``alpha mean(diag H)`` (``damp_from="hessian"``) or
        ``alpha mean(diag H_aug)`` with ``L = V_r`` (``"augmented"``: then
        ``(N + r) lam(r) = alpha (tr H + sum_{i<=r} s_i^2)`` and
        ``h(r) = (1 + alpha) tr H - (1 - alpha) sum_{i<=r} s_i^2``).
    increments : (r_max,) ndarray
        ``h(r) - h(r - 1)`` from the eigenvalues: ``lam - s_r^2`` or ``-(1 - alpha) s_r^2``.
    r_star : int
        Smallest minimiser of h: the number of negative increments
        (``#{s_i^2 > lam}`` for ``"hessian"``).
    convex : bool
        Second differences of the computed ``h`` are ``>= -64 N eps (tr H + N max lam)``.
        Always true for ``"hessian"``; for ``"augmented"`` only when ``alpha <= 1``
        (for ``alpha > 1``, ``h = (1 + alpha) tr H + (alpha - 1) sum_{i<=r} s_i^2`` is
        concave and increasing, ``r* = 0``).
    damp_from : str
    """

    g: float
    h: np.ndarray
    lam: np.ndarray
    increments: np.ndarray
    r_star: int
    convex: bool
    damp_from: str

    @property
    def bound(self) -> np.ndarray:
        """``g(b) h(r)`` for ``r = 0..r_max``."""
        return self.g * self.h


def factorised_bound(W, H, bits: int, *, beta: float = 1.0, damp: float = 0.01,
                     damp_from: str = "hessian", r_max: int | None = None) -> FactorisedBound:
    """``g(b)``, ``h(r)``, the convexity of h and its minimiser ``r*`` (docs/theory.md, "Upper bounds").

    Tail energies come from ``eig(H)`` (``X`` is not needed). Per-column grids only.

    Parameters
    ----------
    W : (N, N_out) array_like
    H : (N, N) array_like
    bits : int
    beta : float, default 1.0
    damp : float, default 0.01
        Relative damping ``alpha``.
    damp_from : {"hessian", "augmented"}, default "hessian"
        How ``lam`` depends on r (see :class:`FactorisedBound`).
    r_max : int, optional
        Largest rank (default N).

    Returns
    -------
    FactorisedBound
    """
    W = _v.as_matrix("W", W)
    H = _v.check_hessian(H, W.shape[0])
    b = _v.check_bits("bits", bits)
    beta = _v.check_beta(beta)
    alpha = _v.check_damp(damp)
    if damp_from not in DAMP_FROM:
        raise ValueError(f"damp_from must be one of {DAMP_FROM}; got {damp_from!r}")
    N = W.shape[0]
    r_max = N if r_max is None else _v.check_int("r_max", r_max, low=0, high=N)
    rho = W.max(axis=0) - W.min(axis=0)
    with np.errstate(over="ignore"):
        g = beta ** 2 * float(np.sum(rho ** 2)) / (4 * (2 ** b - 1) ** 2)
    _v.check_finite_output("the factorised bound", "Rescale W (g(b) scales with W^2).", g=g)
    s2 = np.clip(eigvalsh_kept(H)[::-1], 0.0, None)
    top = np.concatenate([[0.0], np.cumsum(s2)])[: r_max + 1]
    trH = float(np.sum(s2))
    tail = np.clip(trH - top, 0.0, None)
    ranks = np.arange(r_max + 1)
    if damp_from == "hessian":
        lam = np.full(r_max + 1, alpha * float(np.mean(np.diag(H))))
        inc = lam[0] - s2[:r_max]
    else:
        lam = alpha * (float(np.trace(H)) + top) / (N + ranks)
        inc = -(1 - alpha) * s2[:r_max]
    h = tail + (N + ranks) * lam
    tol = 64 * N * _EPS * (trH + N * float(np.max(lam)))
    convex = bool(np.all(np.diff(h, 2) >= -tol)) if r_max >= 2 else True
    return FactorisedBound(g, h, lam, inc, int(np.count_nonzero(inc < 0)), convex, damp_from)


@dataclass(frozen=True)
class ClippingSweep:
    """How often and by how much the chain fails once clipping is allowed.

    Attributes
    ----------
    runs : int
        Chains evaluated (one GPTQ and one GILoRA chain per case).
    clipped_runs : int
        Chains whose pass clipped at least one entry.
    link_failures : int
        Chains with ``step_sum > schur_sum`` beyond tolerance (all clipped).
    bound_failures : int
        Chains with ``E > closed_form`` beyond tolerance.
    unclipped_failures : int
        Chains that fail a link without clipping (a contradiction of the theory; 0 expected).
    worst_ratio : float
        Largest ``E / closed_form`` seen.
    ratios : (runs,) ndarray
        ``E / closed_form`` of every chain.
    worst : dict
        The worst case: ``W``, ``H``, ``bits``, ``beta``, ``damp``, ``rank``, ``method``,
        ``ratio``, ``clipped`` (enough to rerun it).
    """

    runs: int
    clipped_runs: int
    link_failures: int
    bound_failures: int
    unclipped_failures: int
    worst_ratio: float
    ratios: np.ndarray
    worst: dict


def _sweep_layer(rng: np.random.Generator, max_n: int, max_out: int):
    """A random layer: heavy-tailed W and a spiked, power-law or Gaussian calibration."""
    N = int(rng.integers(2, max_n + 1))
    N_out = int(rng.integers(1, max_out + 1))
    kind = rng.integers(3)
    m = N + int(rng.integers(0, 2 * N + 1))
    X = rng.standard_normal((m, N))
    if kind == 1:
        X[:, : max(1, N // 4)] *= 10.0
    elif kind == 2:
        X = X * (np.arange(1, N + 1) ** -1.5)
    X = X @ scipy.linalg.qr(rng.standard_normal((N, N)))[0]
    W = rng.standard_t(3, size=(N, N_out))
    return W, X.T @ X


def clipping_sweep(cases: int, *, bits: int = 2, beta: float = 0.8, damp: float = 0.01,
                   max_n: int = 8, max_out: int = 6, rng=None) -> ClippingSweep:
    """Search random layers for failures of the chain on a bounded (clipping) grid.

    Each case draws ``N`` in [2, max_n], ``N_out`` in [1, max_out], a rank in
    [0, N - 1], a heavy-tailed (Student t, 3 dof) ``W`` and a calibration with a
    Gaussian, spiked or power-law spectrum, then evaluates the GPTQ and GILoRA
    (``L = V_r``) chains on the bounded ``bits``-bit grid with clipping factor ``beta``.

    Parameters
    ----------
    cases : int
    bits : int, default 2
    beta : float, default 0.8
    damp : float, default 0.01
    max_n, max_out : int
    rng : Generator, int or None

    Returns
    -------
    ClippingSweep
    """
    cases = _v.check_int("cases", cases, low=1)
    rng = np.random.default_rng(rng)
    ratios, clipped, link_f, bound_f, bad = [], 0, 0, 0, 0
    worst = {"ratio": -np.inf}
    for _ in range(cases):
        W, H = _sweep_layer(rng, _v.check_int("max_n", max_n, low=2),
                            _v.check_int("max_out", max_out, low=1))
        r = int(rng.integers(0, W.shape[0]))
        lb = layer_bounds(W, H, bits, min(r, W.shape[1]), damp=damp, beta=beta)
        for ch in (lb.gptq, lb.gilora):
            ratio = ch.bound_ratio
            ratios.append(ratio)
            clipped += ch.clipped > 0
            link_f += not ch.links[2].holds
            bound_f += ratio > 1 + ch.tol_schur / max(ch.closed_form, np.finfo(float).tiny)
            bad += ch.clipped == 0 and not ch.holds
            if ratio > worst["ratio"]:
                worst = {"W": W, "H": H, "bits": bits, "beta": beta, "damp": damp,
                         "rank": ch.rank, "method": ch.method, "ratio": ratio,
                         "clipped": ch.clipped}
    ratios = np.asarray(ratios)
    return ClippingSweep(len(ratios), int(clipped), int(link_f), int(bound_f), int(bad),
                         float(np.max(ratios)), ratios, worst)
