"""Methods compared at equal storage: error against effective bits per weight.

:func:`storage_table` runs every method over bit-widths, ranks and branch
bit-widths on a list of layers and writes one tidy row per reconstruction,
with its error and its effective bits per weight (:mod:`gilora_theory.storage`,
counted from the stored grids). :func:`storage_winners` reads the table: for
each storage budget, which reconstruction has the smallest error within it.

Methods (``method`` column; the branch of rank ``r`` is stored at full
precision or, with ``branch_bits = b``, with ``L`` and ``R`` both on ``b``-bit
per-direction grids, :mod:`gilora_theory.branch`):

============== ================================================================
``rtn``        round to nearest, no branch (``plain_bits``)
``gptq``       GPTQ (Alg. 1 of [1]), no branch (``plain_bits``)
``gptq+olrc``  GPTQ, then OLrC (Alg. 2); quantized: ``L``, refit ``R``, ``R``
``gilora``     GILoRA (Alg. 3); quantized: ``L`` before the pass, ``R`` after
``refine``     GILoRA, ``rounds`` refinement rounds; quantized as ``gptq+olrc``
``gptq+svd``   GPTQ, then a data-free branch (no ``X``): the SVD fit of
               ``W - Q``; quantized: alternating fit then coordinate polish
``rtn+svd``    the same on RTN's ``Q`` (wholly calibration-free, LoRaQ-like [2])
============== ================================================================

and the literature's methods (:data:`LITERATURE_METHODS`,
:mod:`gilora_theory.literature`), each run through
``compress(W, H, method, bits, rank, l_bits=b, r_bits=b, x_abs_mean=...)``;
LQER's rows need the layer's ``x_abs_mean`` and are left out for layers
without it. Their branches are
counted as stored: LQER's scale ``S^-1`` is folded into ``L``, so it costs nothing
beyond ``L``.

:func:`c15_compute` and :func:`c15_line` are the equal-storage study of
``paper_checks/c15_equal_storage.py`` (C15), :func:`c15_write` its tables and figures.

The ``gptq+olrc``, ``gilora`` and ``refine`` rows are the arithmetic of
``compress(W, H, method, bits, rank, l_bits=b, r_bits=b)`` (tested equal),
computed here with shared intermediate results.

References
----------
[1] S. Zhang, R. Saab, "GPTQ-intrinsic LoRA", arXiv:2606.01412 (2026).
[2] Y. Bouquet, A. Khodamoradi, S. Y. Shen, K. Denolf, M. Salzmann, "LoRaQ:
    Optimized Low Rank Approximation for 4-bit Quantization", arXiv:2604.18117 (2026).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .. import _validation as _v
from ..bidup import refine
from ..branch import QuantizedBranch, gilora_branch, quantize_after, quantize_after_validated
from ..data.io import atomic_write
from ..datafree import alternating_fit, coordinate_fit, svd_fit
from ..gilora import gilora
from ..gptq import gptq
from ..grid import clipped_mask, fit_grid
from ..methods import NEEDS_X_ABS_MEAN, compress
from ..objective import damping, evaluate_validated, hessian_spectrum
from ..olrc import olrc
from ..storage import storage, storage_of
from ..upper_bounds import bound_chain

__all__ = ["TABLE_METHODS", "LITERATURE_METHODS", "storage_table", "storage_winners",
           "storage_invariants", "l_order_comparison", "C15_BUDGETS", "C15_KINDS", "C15_SEED", "C15Study",
           "c15_compute", "c15_summary", "c15_line", "c15_write"]

LITERATURE_METHODS = ("rtn+lqer", "gptq+lqer", "rtn+qera-approx", "rtn+qera-exact", "gptq+eora",
                      "loftq", "caldera", "rtn+loraq")
TABLE_METHODS = ("rtn", "gptq", "gptq+olrc", "gilora", "refine", "gptq+svd", "rtn+svd",
                 *LITERATURE_METHODS)


def storage_table(layers, *, bits=(2, 3, 4), ranks=(8, 32), branch_bits=(None, 8, 4),
                  plain_bits=(2, 3, 4, 5, 6, 8), methods=TABLE_METHODS, damp: float = 0.01,
                  rounds: int = 1, iters: int = 5, sweeps: int = 3, param_bits: int = 16,
                  full_precision_bits: int = 16, source: str = "") -> pd.DataFrame:
    """Error against effective bits of every method on every layer (one tidy row each).

    Parameters
    ----------
    layers : iterable of gilora_theory.data.io.Layer
        Layers with ``W`` (N, N_out), ``H`` (N, N) and ``name``.
    bits : tuple of int
        Main bit-widths of the branch methods.
    ranks : tuple of int
        Branch ranks (ranks above ``min(N, N_out)`` are skipped).
    branch_bits : tuple of (int or None)
        Bit-widths of the branch factors (None: full precision).
    plain_bits : tuple of int
        Bit-widths of ``rtn`` and ``gptq`` (no branch).
    methods : tuple of str
        A subset of :data:`TABLE_METHODS` (LQER's rows only for layers with ``x_abs_mean``).
    damp : float
        Relative damping ``alpha`` (passes and ``damped_error``).
    rounds : int
        Refinement rounds of ``refine``.
    iters, sweeps : int
        Alternating iterations and coordinate sweeps of the quantized data-free fits.
    param_bits, full_precision_bits : int
        Storage of grid parameters and of full-precision branch entries.
    source : str
        Label of the ``source`` column (e.g. ``"synthetic"``, ``"real"``).

    Returns
    -------
    pandas.DataFrame
        Columns: source, layer, N, N_out, method, bits, rank, branch_bits
        (nullable; NA = full precision), branch ("fp" or "<b>-bit"),
        effective_bits, total_bits, branch_storage_bits, error, damped_error,
        relative_error, clipped, seconds.
    """
    bad = [m for m in methods if m not in TABLE_METHODS]
    if bad:
        raise ValueError(f"methods must be among {TABLE_METHODS}; got {bad}")
    for b in (*bits, *plain_bits):
        _v.check_bits("bits", b)
    for b in branch_bits:
        if b is not None:
            _v.check_bits("branch_bits", b)
    opts = dict(damp=_v.check_damp(damp), rounds=rounds, iters=iters, sweeps=sweeps,
                store=dict(param_bits=param_bits, full_precision_bits=full_precision_bits))
    rows = []
    for layer in layers:
        rows += _layer_rows(layer, bits, ranks, branch_bits, plain_bits, methods, opts)
    table = pd.DataFrame(rows)
    table.insert(0, "source", source)
    table["branch_bits"] = table["branch_bits"].astype("Int64")
    return table


def _layer_rows(layer, bits, ranks, branch_bits, plain_bits, methods, opts) -> list:
    W = _v.as_matrix("W", layer.W)
    H = _v.check_hessian(layer.H, W.shape[0])
    ctx = dict(W=W, H=H, lam=damping(H, opts["damp"]), spec=hessian_spectrum(H), opts=opts,
               name=getattr(layer, "name", "layer"),
               x_abs_mean=getattr(layer, "x_abs_mean", None))
    rows = []
    for b in sorted(set(bits) | set(plain_bits)):
        grid = fit_grid(W, b)
        t0 = time.perf_counter()
        Q_rtn = grid.quantize(W, np.arange(W.shape[0]))
        rtn = (Q_rtn, int(np.count_nonzero(clipped_mask(grid, W, Q_rtn))), time.perf_counter() - t0)
        t0 = time.perf_counter()
        g = gptq(W, H, grid, damp=opts["damp"])
        base = {"rtn": rtn, "gptq": (g.Q, g.n_clipped, time.perf_counter() - t0)}
        for m in ("rtn", "gptq"):
            if m in methods and b in plain_bits:
                rows.append(_row(ctx, m, grid, 0, None, base[m][0], None, *base[m][1:]))
        if b in bits:
            for r in ranks:
                if 0 < r <= min(W.shape):
                    rows += _branch_rows(ctx, grid, r, branch_bits, methods, base)
    return rows


def _row(ctx, method, grid, r, bb, Q, branch, clipped, seconds) -> dict:
    W, H = ctx["W"], ctx["H"]
    L, R = (None, None) if branch is None else (branch.L, branch.R)
    obj = evaluate_validated(W, Q, L, R, None, H, ctx["lam"])   # W, H validated per layer
    st = storage_of(grid, W.shape[0], branch, **ctx["opts"]["store"])
    return dict(layer=ctx["name"], N=W.shape[0], N_out=W.shape[1], method=method,
                bits=grid.bits, rank=r, branch_bits=bb, branch="fp" if bb is None else f"{bb}-bit",
                effective_bits=st.effective_bits, total_bits=st.total, branch_storage_bits=st.branch,
                error=obj.error, damped_error=obj.damped_error,
                relative_error=obj.relative_error, clipped=clipped, seconds=seconds)


def _branch_rows(ctx, grid, r, branch_bits, methods, base) -> list:
    W, H, lam, opts = ctx["W"], ctx["H"], ctx["lam"], ctx["opts"]
    rows = []
    gQ, g_clip, g_sec = base["gptq"]
    if "gptq+olrc" in methods:
        t0 = time.perf_counter()
        o = olrc(W, gQ, H, r, lam=lam, spectrum=ctx["spec"])
        for bb in branch_bits:
            res = quantize_after_validated(W, gQ, H, o.L, o.R, bb, bb, True, "row", lam, "after")
            rows.append(_row(ctx, "gptq+olrc", grid, r, bb, gQ, res.branch, g_clip,
                             g_sec + time.perf_counter() - t0))
    wanted = list(branch_bits) if "gilora" in methods else []
    if "refine" in methods and None not in wanted:
        wanted.append(None)
    runs = {}
    for bb in wanted:
        t0 = time.perf_counter()
        res = gilora_branch(W, H, grid, r, l_bits=bb, r_bits=bb, damp=opts["damp"])
        runs[bb] = (res, time.perf_counter() - t0)
    if "gilora" in methods:
        rows += [_row(ctx, "gilora", grid, r, bb, runs[bb][0].Q, runs[bb][0].branch, None,
                      runs[bb][1]) for bb in branch_bits]
    if "refine" in methods:
        rows += _refine_rows(ctx, grid, r, branch_bits, runs[None])
    for m in ("gptq+svd", "rtn+svd"):
        if m in methods:
            rows += _datafree_rows(ctx, m, grid, r, branch_bits, base[m.split("+")[0]])
    for m in LITERATURE_METHODS:
        if m in methods and (ctx["x_abs_mean"] is not None or m not in NEEDS_X_ABS_MEAN):
            rows += _literature_rows(ctx, m, grid, r, branch_bits)
    return rows


def _literature_rows(ctx, method, grid, r, branch_bits) -> list:
    """One row per branch bit-width through ``compress`` (the methods' own arithmetic)."""
    W, H, opts = ctx["W"], ctx["H"], ctx["opts"]
    rows = []
    for bb in branch_bits:
        t0 = time.perf_counter()
        c = compress(W, H, method, grid.bits, r, damp=opts["damp"], grid=grid, l_bits=bb,
                     r_bits=bb, x_abs_mean=ctx["x_abs_mean"])
        branch = c.branch or QuantizedBranch(c.L, c.R, None, None, "row")
        rows.append(_row(ctx, method, grid, r, bb, c.Q, branch, c.clipped,
                         time.perf_counter() - t0))
    return rows


def _refine_rows(ctx, grid, r, branch_bits, start) -> list:
    W, H, lam, opts = ctx["W"], ctx["H"], ctx["lam"], ctx["opts"]
    g0, sec0 = start
    t0 = time.perf_counter()
    ref = refine(W, H, grid, g0.Q, r, L0=g0.L, R0=g0.R, rounds=opts["rounds"], lam=lam,
                 spectrum=ctx["spec"])
    rows = []
    for bb in branch_bits:
        res = quantize_after_validated(W, ref.Q, H, ref.L, ref.R, bb, bb, True, "row", lam, "after")
        rows.append(_row(ctx, "refine", grid, r, bb, ref.Q, res.branch, None,
                         sec0 + time.perf_counter() - t0))
    return rows


def _datafree_rows(ctx, method, grid, r, branch_bits, base) -> list:
    W, opts = ctx["W"], ctx["opts"]
    Q, clipped, sec0 = base
    rows = []
    for bb in branch_bits:
        t0 = time.perf_counter()
        if bb is None:
            fit = svd_fit(W, Q, r)
            branch = QuantizedBranch(fit.L, fit.R, None, None, "row")
        else:
            alt = alternating_fit(W, Q, r, l_bits=bb, r_bits=bb, iters=opts["iters"])
            branch = coordinate_fit(W, Q, r, sweeps=opts["sweeps"], start=alt.branch).branch
        rows.append(_row(ctx, method, grid, r, bb, Q, branch, clipped,
                         sec0 + time.perf_counter() - t0))
    return rows


def storage_winners(table: pd.DataFrame, budgets) -> pd.DataFrame:
    """For each layer and storage budget, the reconstruction with the smallest error within it.

    Parameters
    ----------
    table : pandas.DataFrame
        Output of :func:`storage_table`.
    budgets : iterable of float
        Budgets in bits per weight.

    Returns
    -------
    pandas.DataFrame
        One row per (source, layer, budget) with at least one affordable row:
        the winner's method, bits, rank, branch, effective_bits and
        relative_error; the best other method (``runner_up``, its error and
        ``margin`` = its error / the winner's); and ``best_gptq`` (the best
        branch-less GPTQ error within the budget, NaN if none).
    """
    out = []
    for (source, layer), df in table.groupby(["source", "layer"], sort=False):
        for B in budgets:
            ok = df[df["effective_bits"] <= B]
            if ok.empty:
                continue
            best = ok.sort_values(["relative_error", "effective_bits"], kind="stable")
            win = best.iloc[0]
            other = best[best["method"] != win["method"]]
            gp = ok.loc[ok["method"] == "gptq", "relative_error"]
            out.append(dict(
                source=source, layer=layer, budget=float(B), method=win["method"],
                bits=int(win["bits"]), rank=int(win["rank"]), branch=win["branch"],
                effective_bits=float(win["effective_bits"]),
                relative_error=float(win["relative_error"]),
                runner_up=other.iloc[0]["method"] if len(other) else None,
                runner_up_error=float(other.iloc[0]["relative_error"]) if len(other) else np.nan,
                margin=(float(other.iloc[0]["relative_error"]) / float(win["relative_error"])
                        if len(other) and win["relative_error"] > 0 else np.nan),
                best_gptq=float(gp.min()) if len(gp) else np.nan))
    return pd.DataFrame(out)


def storage_invariants(table: pd.DataFrame) -> pd.DataFrame:
    """Inequalities and counts every :func:`storage_table` must satisfy (a check, not a claim).

    Per (source, layer, bits, rank), with full-precision branches and
    ``tol = 64 eps N * value``:

    - ``olrc <= gptq``: GPTQ then OLrC has damped error at most GPTQ's (OLrC is
      the optimal branch for that ``Q``, and rank 0 is one of its competitors);
    - ``refine <= gilora``: the refinement trace starts at GILoRA's damped error
      and never increases;

    and per row ``storage``: ``effective_bits`` counted from the stored arrays
    equals the formula of :func:`gilora_theory.storage.storage`.

    Returns
    -------
    pandas.DataFrame
        One row per check: check, layer, bits, rank, value, reference, tol, passed.
    """
    eps = np.finfo(np.float64).eps
    out = []
    fp = table[table["branch"] == "fp"]
    for (src, layer, b, r), d in fp[fp["rank"] > 0].groupby(["source", "layer", "bits", "rank"]):
        err = d.set_index("method")["damped_error"]
        g = fp[(fp["source"] == src) & (fp["layer"] == layer) & (fp["bits"] == b)
               & (fp["method"] == "gptq")]["damped_error"]
        pairs = [("olrc <= gptq", "gptq+olrc", float(g.iloc[0]) if len(g) else None),
                 ("refine <= gilora", "refine", err.get("gilora"))]
        for name, method, ref in pairs:
            if method in err and ref is not None:
                tol = 64 * eps * int(d["N"].iloc[0]) * abs(ref)
                out.append(dict(check=name, layer=layer, bits=b, rank=r, value=err[method],
                                reference=ref, tol=tol, passed=err[method] <= ref + tol))
    for row in table.itertuples(index=False):
        bb = None if pd.isna(row.branch_bits) else int(row.branch_bits)
        ref = storage(int(row.N), int(row.N_out), bits=int(row.bits), rank=int(row.rank),
                      l_bits=bb, r_bits=bb).effective_bits
        out.append(dict(check="storage", layer=row.layer, bits=row.bits, rank=row.rank,
                        value=row.effective_bits, reference=ref, tol=0.0,
                        passed=row.effective_bits == ref))
    return pd.DataFrame(out)


def l_order_comparison(layers, *, bits: int = 3, rank: int = 32, l_bits=(2, 4),
                       damp: float = 0.01) -> pd.DataFrame:
    """GILoRA with ``L`` quantized before the pass against quantizing it after, in error and bound.

    For each layer and ``l_bits`` (``R`` at full precision, so only ``L``'s
    rounding differs): the error with ``L`` quantized ``"before"`` the pass
    (it absorbs ``L``'s rounding), ``"after"`` (``R`` from the pass with
    ``V_r``, kept) and ``"after-refit"`` (``R`` refit to the quantized ``L``,
    :func:`gilora_theory.branch.refit_R`), and with ``L = V_r`` unquantized.
    The cost of quantizing ``L`` in the upper bound (docs/theory.md, "Upper bounds", general
    ``L``, :func:`gilora_theory.upper_bounds.bound_chain`): the closed form
    ``C (||X (I - L L^+)||_F^2 + lam (N + ||L^+||_F^2))`` for ``V_r`` and for the
    quantized ``L`` the pass used. All passes use ``dead_channels=False``.

    Returns
    -------
    pandas.DataFrame
        Columns: layer, l_bits, error_fp, error_before, error_after,
        error_after_refit, before_over_after, before_over_after_refit, bound_fp,
        bound_before, tail_fp, tail_before (``||X (I - L L^+)||_F^2``), pinv_fp,
        pinv_before (``||L^+||_F^2``), tail_ok (``tail_before >= tail_fp`` up to
        ``64 N eps tr H``: guaranteed, ``V_r`` spans the best rank-r subspace),
        chain_holds (every link of the quantized-L chain), clipped (entries
        clipped in that pass).
    """
    rows = []
    for layer in layers:
        W = _v.as_matrix("W", layer.W)
        H = _v.check_hessian(layer.H, W.shape[0])
        r = min(rank, *W.shape)
        grid = fit_grid(W, bits)
        lam = damping(H, damp)
        fp = gilora(W, H, grid, r, damp=damp, dead_channels=False)
        c_fp = bound_chain(W, H, grid, fp)
        tol = 64 * W.shape[0] * np.finfo(np.float64).eps * float(np.trace(H))
        for lb in l_bits:
            q = gilora(W, H, grid, r, l_bits=lb, damp=damp, dead_channels=False)
            c_q = bound_chain(W, H, grid, q)
            after = {refit: quantize_after(W, fp.Q, H, fp.L, fp.R, l_bits=lb, refit=refit, lam=lam)
                     .objective.error for refit in (False, True)}
            rows.append(dict(
                layer=getattr(layer, "name", "layer"), l_bits=lb, error_fp=c_fp.error,
                error_before=c_q.error, error_after=after[False], error_after_refit=after[True],
                before_over_after=c_q.error / after[False],
                before_over_after_refit=c_q.error / after[True],
                bound_fp=c_fp.closed_form, bound_before=c_q.closed_form,
                tail_fp=c_fp.projection_tail, tail_before=c_q.projection_tail,
                pinv_fp=c_fp.pinv_norm2, pinv_before=c_q.pinv_norm2,
                tail_ok=c_q.projection_tail >= c_fp.projection_tail - tol,
                chain_holds=c_q.holds, clipped=c_q.clipped))
    return pd.DataFrame(rows)


C15_BUDGETS = (2.25, 2.5, 2.75, 3.0, 3.25, 3.5, 4.0, 4.5, 5.0, 6.0)
"""Storage budgets (bits per weight) of the C15 winners table."""
C15_KINDS = ("power_law", "outliers", "low_rank_noise", "isotropic")

C15_SEED = 20260601
"""Seed of the synthetic layers of the committed C15 study (``paper_checks/c15_equal_storage.py``)."""
"""Synthetic gallery kinds of the C15 study (the first two in quick mode)."""


@dataclass(frozen=True)
class C15Study:
    """The equal-storage study (C15) and its checks.

    Attributes
    ----------
    table : pandas.DataFrame
        :func:`storage_table` rows, synthetic then real (``source`` column).
    winners : pandas.DataFrame
        :func:`storage_winners` at :data:`C15_BUDGETS`.
    invariants : pandas.DataFrame
        :func:`storage_invariants` of ``table``.
    order : pandas.DataFrame
        :func:`l_order_comparison` on the real layers (3 bits, rank 32, L at 2 and 4 bits).
    """

    table: pd.DataFrame
    winners: pd.DataFrame
    invariants: pd.DataFrame
    order: pd.DataFrame

    @property
    def ok(self) -> bool:
        """Every invariant holds and no quantized ``L``'s projection tail fell below ``V_r``'s."""
        return bool(self.invariants["passed"].all() and self.order["tail_ok"].all())


def c15_compute(*, quick: bool, seed: int, methods=TABLE_METHODS) -> C15Study:
    """Run the C15 study: synthetic gallery layers and the bundled real MiniLM layers.

    Parameters
    ----------
    quick : bool
        Two synthetic (N = 64) and two real layers, branch bits (None, 8, 4);
        else four synthetic (N = 128), every real layer, branch bits (None, 8, 6, 4).
    seed : int
        Seed of the synthetic layers.
    methods : tuple of str, default :data:`TABLE_METHODS`

    Returns
    -------
    C15Study
    """
    from ..data import layers as data

    N, N_out = (64, 48) if quick else (128, 96)
    syn = data.synthetic_layers(C15_KINDS[:2] if quick else C15_KINDS, m=2 * N, N=N, N_out=N_out,
                                rng=seed)
    names = data.bundled_names()
    real = data.bundled_layers(names[:2] if quick else names)
    bb = (None, 8, 4) if quick else (None, 8, 6, 4)
    table = pd.concat([
        storage_table(syn, ranks=(4, 16), branch_bits=bb, methods=methods, source="synthetic"),
        storage_table(real, ranks=(8, 32), branch_bits=bb, methods=methods, source="real")],
        ignore_index=True)
    order = l_order_comparison(real, bits=3, rank=32, l_bits=(2, 4))
    return C15Study(table, storage_winners(table, C15_BUDGETS), storage_invariants(table), order)


def c15_summary(winners: pd.DataFrame, source: str) -> str:
    """``method wins/cases`` over (layer, budget) pairs, and the median margin of the branch."""
    w = winners[winners["source"] == source]
    branch = w[w["rank"] > 0]
    gain = (branch["best_gptq"] / branch["relative_error"]).median() if len(branch) else float("nan")
    wins = ", ".join(f"{m} {n}/{len(w)}" for m, n in w["method"].value_counts().items())
    return f"{source}: {wins}; median GPTQ-only/winner error {gain:.2f}x where a branch wins"


def c15_line(study: C15Study) -> str:
    """The verdict line of ``paper_checks/c15_equal_storage.py`` (``REPORT`` or ``FAIL``)."""
    inv, order = study.invariants, study.order
    failed = inv[~inv["passed"]]
    o2 = order[order["l_bits"] == 2]
    numbers = (f"{c15_summary(study.winners, 'real')}; {c15_summary(study.winners, 'synthetic')}; "
               f"L before/after the pass at 2 bits: median error ratio "
               f"{o2['before_over_after'].median():.3f} (vs after+refit "
               f"{o2['before_over_after_refit'].median():.3f}); cost of a 2-bit L: error x"
               f"{(o2['error_before'] / o2['error_fp']).median():.3f}, bound x"
               f"{(o2['bound_before'] / o2['bound_fp']).median():.3f} (medians); "
               f"{len(inv) - len(failed)}/{len(inv)} invariants hold"
               + ("" if order["tail_ok"].all() else "; a quantized L's projection tail fell below V_r's"))
    if not failed.empty:
        numbers += f"; first failure: {failed.iloc[0].to_dict()}"
    return f"{'REPORT' if study.ok else 'FAIL'} C15 equal storage: {numbers}"


def c15_write(study: C15Study, out) -> None:
    """``out/tables/equal_storage.csv``, ``..._winners.csv`` and the real and synthetic figures.

    A figure is drawn for each source (``real``, ``synthetic``) the table has rows of.
    """
    from pathlib import Path

    from .plotting import plot_error_vs_effective_bits, save_figure

    out = Path(out)
    (out / "tables").mkdir(parents=True, exist_ok=True)
    table = study.table
    for frame, name in ((table, "equal_storage.csv"), (study.winners, "equal_storage_winners.csv")):
        with atomic_write(out / "tables" / name, "w") as f:
            frame.to_csv(f, index=False)
    for source, name in (("real", "error_vs_effective_bits"),
                         ("synthetic", "error_vs_effective_bits_synthetic")):
        if (table["source"] == source).any():
            save_figure(plot_error_vs_effective_bits(table[table["source"] == source]),
                        out / f"{name}.png")

