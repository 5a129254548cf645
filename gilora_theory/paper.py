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

from dataclasses import dataclass, field

import numpy as np

from .bidup import bid_up, refine
from .gilora import gilora, schur_complement
from .gptq import gptq, psi_factor
from .grid import fit_grid
from .methods import ridge_R
from .objective import evaluate, hessian_spectrum, resolve_lam
from .olrc import olrc

__all__ = ["ClaimResult", "PaperData", "VERDICTS", "CLAIMS", "iter_claims",
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
    """

    claim: str
    title: str
    verdict: str
    summary: str
    metrics: dict = field(default_factory=dict)
    table: object = None

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
    """

    layers: tuple
    real: tuple = ()
    quick: bool = True
    seed: int = 0
    sources: tuple = ()

    def select(self, *, real: bool | None = None) -> tuple:
        """The real layers (``real=True``), the synthetic ones (False) or all (None)."""
        if real is None:
            return self.layers
        return tuple(lay for lay in self.layers if (lay.name in self.real) == real)


def _frame(rows):
    import pandas as pd
    return pd.DataFrame(rows)


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def _rel(a: float, b: float) -> float:
    """``|a - b| / max(|a|, |b|)`` (0 when both are 0)."""
    scale = max(abs(a), abs(b))
    return abs(a - b) / scale if scale > 0 else 0.0


def _cond(H: np.ndarray, lam: float) -> float:
    """Condition number of ``H + lam I`` from its eigenvalues."""
    e = np.linalg.eigvalsh(H)
    return float((e[-1] + lam) / max(e[0] + lam, _EPS * (e[-1] + lam)))


def _settings(data: PaperData):
    """Bits and ranks swept by the algorithmic claims (C1-C5, C7-C9)."""
    bits = (3,) if data.quick else (2, 3, 4)
    return bits, (4,) if data.quick else (1, 8)


def _rank(r: int, W: np.ndarray) -> int:
    return min(r, *W.shape)


def c01_gilora_r0_is_gptq(data: PaperData, *, gilora_fn=gilora, gptq_fn=gptq) -> ClaimResult:
    """C1: GILoRA with ``r = 0`` is GPTQ exactly (Alg. 3 of [1] reduces to Alg. 1).

    Per layer and bit-width: the number of entries where the two ``Q`` differ
    (must be 0) and the relative difference of their per-step sums (must be
    at most ``64 eps N``). ``gilora_fn``/``gptq_fn``: the implementations judged.
    """
    rows = []
    for lay in data.layers:
        for b in _settings(data)[0]:
            grid = fit_grid(lay.W, b)
            g0, g = gilora_fn(lay.W, lay.H, grid, 0), gptq_fn(lay.W, lay.H, grid)
            N = lay.W.shape[0]
            rows.append({"layer": lay.name, "bits": b, "mismatch": int(np.count_nonzero(g0.Q != g.Q)),
                         "rel_step_sum": _rel(g0.step_sum, g.step_sum), "tol": 64 * _EPS * N})
    df = _frame(rows)
    ok = bool((df.mismatch == 0).all() and (df.rel_step_sum <= df.tol).all())
    summary = (f"{int(df.mismatch.sum())} differing Q entries, max rel. step-sum gap "
               f"{df.rel_step_sum.max():.2g} (tol {df.tol.min():.2g}) over {len(df)} runs")
    metrics = {"runs": len(df), "mismatched_entries": int(df.mismatch.sum()),
               "max_rel_step_sum": float(df.rel_step_sum.max())}
    return ClaimResult("C1", "GILoRA(r=0) == GPTQ", _verdict(ok), summary, metrics, df)


def c02_blocksize_invariance(data: PaperData, *, gptq_fn=gptq, gilora_fn=gilora,
                             blocksizes=(1, 7, 128)) -> ClaimResult:
    """C2: the lazy-batch block size does not change the result (Alg. 1 of [1]).

    GPTQ and GILoRA (rank 4) with each block size in ``blocksizes`` against
    block size ``N`` (one block): differing ``Q`` entries (must be 0) and the
    relative gap of the per-step sums (at most ``64 eps N``).
    """
    rows = []
    for lay in data.layers:
        grid, N = fit_grid(lay.W, 3), lay.W.shape[0]
        r = _rank(4, lay.W)
        ref = {"gptq": gptq_fn(lay.W, lay.H, grid, blocksize=N),
               "gilora": gilora_fn(lay.W, lay.H, grid, r, blocksize=N)}
        for B in blocksizes:
            runs = {"gptq": gptq_fn(lay.W, lay.H, grid, blocksize=B),
                    "gilora": gilora_fn(lay.W, lay.H, grid, r, blocksize=B)}
            for algo, res in runs.items():
                rows.append({"layer": lay.name, "algorithm": algo, "blocksize": B,
                             "mismatch": int(np.count_nonzero(res.Q != ref[algo].Q)),
                             "rel_step_sum": _rel(res.step_sum, ref[algo].step_sum),
                             "tol": 64 * _EPS * N})
    df = _frame(rows)
    ok = bool((df.mismatch == 0).all() and (df.rel_step_sum <= df.tol).all())
    summary = (f"{int(df.mismatch.sum())} differing Q entries over block sizes "
               f"{', '.join(map(str, blocksizes))} vs one block, max rel. step-sum gap "
               f"{df.rel_step_sum.max():.2g} over {len(df)} runs")
    metrics = {"runs": len(df), "mismatched_entries": int(df.mismatch.sum()),
               "max_rel_step_sum": float(df.rel_step_sum.max())}
    return ClaimResult("C2", "block size invariance", _verdict(ok), summary, metrics, df)


def c03_routes_agree(data: PaperData, *, psi_fn=psi_factor, gptq_fn=gptq) -> ClaimResult:
    """C3: the Cholesky route and the eig+QR route give the same ``Psi`` and ``Q``.

    ``max |Psi_chol - Psi_eig| / max |Psi_chol|`` must be at most
    ``64 eps N cond(H_lam)`` (the forward error of either factorisation), and
    the two GPTQ runs must give identical ``Q`` (differing entries reported).
    """
    rows = []
    for lay in data.layers:
        N = lay.W.shape[0]
        lam = resolve_lam(lay.H, 0.01, None)
        H_lam = lay.H + lam * np.eye(N)
        Pc, Pe = psi_fn(H_lam, route="cholesky"), psi_fn(H_lam, route="eig")
        grid = fit_grid(lay.W, 3)
        Qc = gptq_fn(lay.W, lay.H, grid, route="cholesky").Q
        Qe = gptq_fn(lay.W, lay.H, grid, route="eig").Q
        rows.append({"layer": lay.name, "psi_gap": float(np.max(np.abs(Pc - Pe)) / np.max(np.abs(Pc))),
                     "tol": 64 * _EPS * N * _cond(lay.H, lam),
                     "mismatch": int(np.count_nonzero(Qc != Qe))})
    df = _frame(rows)
    ok = bool((df.psi_gap <= df.tol).all() and (df.mismatch == 0).all())
    worst = df.loc[(df.psi_gap / df.tol).idxmax()]
    summary = (f"max rel. Psi gap {df.psi_gap.max():.2g} (worst ratio to tol "
               f"{worst.psi_gap / worst.tol:.2g}), {int(df.mismatch.sum())} differing Q entries "
               f"over {len(df)} layers")
    metrics = {"layers": len(df), "max_psi_gap": float(df.psi_gap.max()),
               "max_gap_over_tol": float((df.psi_gap / df.tol).max()),
               "mismatched_entries": int(df.mismatch.sum())}
    return ClaimResult("C3", "Cholesky route == eig+QR route", _verdict(ok), summary, metrics, df)


def c04_loss_identity(data: PaperData, *, gptq_fn=gptq, gilora_fn=gilora) -> ClaimResult:
    """C4: the damped loss equals the sum of the per-step terms (GPTQ and GILoRA).

    GPTQ: ``E_lam(Q) = sum_t ||w~_t - q_t||^2 / Psi_tt^2``; GILoRA:
    ``E + lam ||W - Q||^2 + lam ||R||^2`` equals its step sum. Relative gap at
    most ``64 eps N sqrt(cond(H_lam))`` (the error feedback multiplies rounding
    errors by at most ``||Psi|| ||Psi^-1||``).
    """
    rows = []
    for lay in data.layers:
        N = lay.W.shape[0]
        for b in _settings(data)[0]:
            grid = fit_grid(lay.W, b)
            g = gptq_fn(lay.W, lay.H, grid)
            lhs = evaluate(lay.W, g.Q, H=lay.H, lam=g.lam).damped_error
            rows.append(_identity_row(lay.name, "gptq", b, lhs, g.step_sum, N, _cond(lay.H, g.lam)))
            for r in _settings(data)[1]:
                a = gilora_fn(lay.W, lay.H, grid, _rank(r, lay.W))
                obj = evaluate(lay.W, a.Q, a.L, a.R, H=lay.H)
                lhs = obj.error + a.lam * (np.sum((lay.W - a.Q) ** 2) + np.sum(a.R ** 2))
                rows.append(_identity_row(lay.name, f"gilora r={a.L.shape[1]}", b, float(lhs),
                                          a.step_sum, N + a.L.shape[1], _cond(lay.H, a.lam)))
    df = _frame(rows)
    ok = bool((df.rel_gap <= df.tol).all())
    summary = (f"max rel. gap {df.rel_gap.max():.2g}, worst ratio to tol "
               f"{(df.rel_gap / df.tol).max():.2g} over {len(df)} runs")
    metrics = {"runs": len(df), "max_rel_gap": float(df.rel_gap.max()),
               "max_gap_over_tol": float((df.rel_gap / df.tol).max())}
    return ClaimResult("C4", "damped loss == sum of per-step terms", _verdict(ok), summary, metrics, df)


def _identity_row(name, algo, b, lhs, rhs, n, cond) -> dict:
    return {"layer": name, "algorithm": algo, "bits": b, "loss": lhs, "step_sum": rhs,
            "rel_gap": _rel(lhs, rhs), "tol": 64 * _EPS * n * np.sqrt(cond)}


def c05_ridge_and_schur(data: PaperData, *, gilora_fn=gilora, gptq_fn=gptq) -> ClaimResult:
    """C5: GILoRA's ``R`` is the ridge solution and its ``Q`` is GPTQ on the Schur complement.

    ``R = (L^T H L + lam I)^{-1} L^T H (W - Q)`` to a relative Frobenius gap of
    ``64 eps (N + r) cond(L^T H L + lam I)``, and GPTQ run on
    ``S = H_lam - H L (L^T H L + lam I)^{-1} L^T H`` (undamped, ``lam = 0``)
    gives the same ``Q`` (differing entries reported).
    """
    rows = []
    for lay in data.layers:
        for r in _settings(data)[1]:
            grid, r = fit_grid(lay.W, 3), _rank(r, lay.W)
            a = gilora_fn(lay.W, lay.H, grid, r)
            R_ref = ridge_R(lay.W, a.Q, lay.H, a.L, a.lam)
            K = a.L.T @ lay.H @ a.L
            S = schur_complement(lay.H, a.L, a.lam)
            Qs = gptq_fn(lay.W, S, grid, lam=0.0).Q
            gap = np.linalg.norm(a.R - R_ref) / max(np.linalg.norm(R_ref), np.finfo(float).tiny)
            rows.append({"layer": lay.name, "rank": r, "R_gap": float(gap),
                         "tol": 64 * _EPS * (lay.W.shape[0] + r) * _cond(K, a.lam),
                         "Q_mismatch": int(np.count_nonzero(Qs != a.Q))})
    df = _frame(rows)
    ok = bool((df.R_gap <= df.tol).all() and (df.Q_mismatch == 0).all())
    summary = (f"max rel. R gap {df.R_gap.max():.2g} (worst ratio to tol {(df.R_gap / df.tol).max():.2g}), "
               f"{int(df.Q_mismatch.sum())} Q entries differ from GPTQ on S over {len(df)} runs")
    metrics = {"runs": len(df), "max_R_gap": float(df.R_gap.max()),
               "max_gap_over_tol": float((df.R_gap / df.tol).max()),
               "Q_mismatched_entries": int(df.Q_mismatch.sum())}
    return ClaimResult("C5", "R is ridge, Q is GPTQ on S", _verdict(ok), summary, metrics, df)


def c07_olrc_optimal(data: PaperData, *, olrc_fn=olrc, competitors: int = 20) -> ClaimResult:
    """C7: OLrC is the optimal rank-r compensation for a fixed ``Q`` (Alg. 2 of [1]).

    For ``Q`` from GPTQ: OLrC's reported value must equal the damped error of
    ``Q + L R`` and the tail energy ``sum_{i>r} a_i^2`` of an independent route
    (singular values of ``C^T (W - Q)`` with ``H_lam = C C^T`` Cholesky), within
    ``64 eps N cond(H_lam)`` relative; and no competitor (OLrC's factors
    perturbed, and random rank-r factors fitted by ridge ``R``) may beat it by
    more than that tolerance. Reports the smallest competitor margin.
    """
    rng = np.random.default_rng(data.seed)
    rows = []
    for lay in data.layers:
        W, H, N = lay.W, lay.H, lay.W.shape[0]
        Q = gptq(W, H, fit_grid(W, 3)).Q
        lam = resolve_lam(H, 0.01, None)
        C = np.linalg.cholesky(H + lam * np.eye(N))
        a = np.linalg.svd(C.T @ (W - Q), compute_uv=False)
        for r in _settings(data)[1]:
            r = _rank(r, W)
            res = olrc_fn(W, Q, H, r)
            direct = evaluate(W, Q, res.L, res.R, H=H, lam=lam).damped_error
            best = min(_competitor(W, Q, H, lam, res, rng) for _ in range(competitors))
            rows.append({"layer": lay.name, "rank": r, "value": res.value,
                         "rel_gap_direct": _rel(res.value, direct),
                         "rel_gap_tail": _rel(res.value, float(np.sum(a[r:] ** 2))),
                         "competitor_margin": (best - res.value) / max(res.value, np.finfo(float).tiny),
                         "tol": 64 * _EPS * N * _cond(H, lam)})
    df = _frame(rows)
    ok = bool((df.rel_gap_direct <= df.tol).all() and (df.rel_gap_tail <= df.tol).all()
              and (df.competitor_margin >= -df.tol).all())
    summary = (f"value vs direct/tail gaps <= {max(df.rel_gap_direct.max(), df.rel_gap_tail.max()):.2g}; "
               f"best of {competitors} competitors per case worse by >= {df.competitor_margin.min():.2g} "
               f"(relative) over {len(df)} cases")
    metrics = {"cases": len(df), "competitors_per_case": competitors,
               "max_rel_gap": float(max(df.rel_gap_direct.max(), df.rel_gap_tail.max())),
               "min_competitor_margin": float(df.competitor_margin.min())}
    return ClaimResult("C7", "OLrC is optimal", _verdict(ok), summary, metrics, df)


def _competitor(W, Q, H, lam, res, rng) -> float:
    """Damped error of a rank-r competitor: perturbed OLrC factors or random L with ridge R."""
    L = res.L
    if rng.random() < 0.5 and L.shape[1] > 0:
        L = L + 1e-3 * np.linalg.norm(L) / np.sqrt(L.size) * rng.standard_normal(L.shape)
    else:
        L = rng.standard_normal(L.shape)
    R = ridge_R(W, Q, H + lam * np.eye(H.shape[0]), L, 0.0) if L.shape[1] else res.R
    return evaluate(W, Q, L, R, H=H, lam=lam).damped_error


def c08_bidup_argmin(data: PaperData, *, bid_up_fn=bid_up) -> ClaimResult:
    """C8: each Bid-Up update is the exact coordinate argmin, and ``f`` never increases.

    From GPTQ's ``Q`` with target ``W - L R`` (OLrC branch), one sweep is
    replayed by brute force: for every row ``i`` in order and every column, the
    new entry must be the alphabet level minimising ``f`` with the other
    entries fixed (all ``2^b`` levels evaluated). The replayed ``Q`` must equal
    the implementation's; its trace over 3 sweeps must be non-increasing within
    ``64 eps N f_0``.
    """
    rows = []
    for lay in data.layers:
        W, H = lay.W, lay.H
        grid = fit_grid(W, 3)
        Q0 = gptq(W, H, grid).Q
        br = olrc(W, Q0, H, _rank(4, W))
        T = W - br.L @ br.R
        res1 = bid_up_fn(T, Q0, H, grid, sweeps=1)
        res3 = bid_up_fn(T, Q0, H, grid, sweeps=3)
        Qb = _brute_force_sweep(T, Q0, H + res1.lam * np.eye(H.shape[0]), grid)
        rise = float(np.max(np.diff(res3.trace), initial=0.0))
        rows.append({"layer": lay.name, "mismatch": int(np.count_nonzero(Qb != res1.Q)),
                     "f0": float(res3.trace[0]), "f_end": float(res3.trace[-1]),
                     "max_rise": rise, "tol": 64 * _EPS * H.shape[0] * float(res3.trace[0])})
    df = _frame(rows)
    ok = bool((df.mismatch == 0).all() and (df.max_rise <= df.tol).all())
    summary = (f"{int(df.mismatch.sum())} entries differ from the brute-force coordinate argmin; "
               f"largest trace rise {df.max_rise.max():.2g} (tol {df.tol.min():.2g}); "
               f"f reduced by {100 * (1 - (df.f_end / df.f0).mean()):.2g}% on average over {len(df)} layers")
    metrics = {"layers": len(df), "mismatched_entries": int(df.mismatch.sum()),
               "max_rise": float(df.max_rise.max()),
               "mean_relative_decrease": float(1 - (df.f_end / df.f0).mean())}
    return ClaimResult("C8", "Bid-Up is exact coordinate descent", _verdict(ok), summary, metrics, df)


def _brute_force_sweep(T, Q0, G, grid) -> np.ndarray:
    """One Gauss-Seidel sweep choosing each entry by evaluating ``f`` at every level.

    With the other entries fixed, ``f(q) - f(Q_ij) = G_ii (q - Q_ij)^2 - 2 (q - Q_ij) g_ij``
    where ``g = G (T - Q)``; each row's entries are independent (one per column).
    """
    Q = Q0.copy()
    levels = np.stack([grid.levels(j) for j in range(Q.shape[1])])  # (N_out, 2^b)
    for i in range(Q.shape[0]):
        if G[i, i] <= 0:
            continue
        g = G[i] @ (T - Q)
        d = levels - Q[i][:, None]
        df = G[i, i] * d ** 2 - 2 * d * g[:, None]
        Q[i] = levels[np.arange(Q.shape[1]), np.argmin(df, axis=1)]
    return Q


def c09_refinement_monotone(data: PaperData, *, refine_fn=refine, rounds: int | None = None) -> ClaimResult:
    """C9: the refinement trace (OLrC and Bid-Up alternated) never increases.

    From GILoRA's output, ``rounds`` rounds (3 quick, 6 full); every step of
    the trace may rise by at most ``64 eps N F_0`` (rounding of two different
    evaluations of the same objective). Reports the total decrease.
    """
    rounds = rounds if rounds is not None else (3 if data.quick else 6)
    rows = []
    for lay in data.layers:
        for r in _settings(data)[1]:
            grid, r = fit_grid(lay.W, 3), _rank(r, lay.W)
            a = gilora(lay.W, lay.H, grid, r)
            res = refine_fn(lay.W, lay.H, grid, a.Q, r, L0=a.L, R0=a.R, rounds=rounds)
            tr = np.asarray(res.trace, dtype=float)
            rows.append({"layer": lay.name, "rank": r, "F_start": tr[0], "F_end": tr[-1],
                         "max_rise": float(np.max(np.diff(tr), initial=0.0)),
                         "tol": 64 * _EPS * lay.W.shape[0] * float(tr[0])})
    df = _frame(rows)
    ok = bool((df.max_rise <= df.tol).all())
    summary = (f"largest rise {df.max_rise.max():.2g} (worst ratio to tol "
               f"{(df.max_rise / df.tol).max():.2g}); F fell by {100 * (1 - (df.F_end / df.F_start)).mean():.3g}% "
               f"on average over {len(df)} runs of {rounds} rounds")
    metrics = {"runs": len(df), "rounds": rounds, "max_rise": float(df.max_rise.max()),
               "mean_relative_decrease": float((1 - df.F_end / df.F_start).mean())}
    return ClaimResult("C9", "refinement trace never increases", _verdict(ok), summary, metrics, df)


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


def iter_claims(data: PaperData, ids=None):
    """Yield the :class:`ClaimResult` of each claim in ``ids`` (default: all, in order)."""
    ids = list(CLAIMS) if ids is None else list(ids)
    unknown = [i for i in ids if i not in CLAIMS]
    if unknown:
        raise ValueError(f"unknown claim id(s) {unknown}; expected some of {list(CLAIMS)}")
    for cid in ids:
        yield CLAIMS[cid](data)
