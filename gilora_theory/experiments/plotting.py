"""Figures from sweep tables (plotting only reads tables; it computes nothing new).

Every ``plot_*`` function takes a table written by :mod:`gilora_theory.experiments.sweep`
(``runs.csv`` or ``traces.csv``, as a pandas DataFrame) and returns a
:class:`matplotlib.figure.Figure` built without pyplot (no global state, any
backend; files are rendered by Agg). :func:`make_figures` rebuilds every figure
of ``figures/`` from a folder of sweep folders; :data:`FIGURES` says which
sweep feeds which figure.

Errors are shown relative to the layer's output energy, ``E / ||X W||_F^2``
(dimensionless), on log axes: across bit-widths and spectra they span decades.

Columns read (as :func:`gilora_theory.experiments.sweep.run_one` names them)
----------------------------------------------------------------------------
=================== ==========================================================================
all run figures     ``layer, seed, method, bits, rank, error, signal``
bound overlays      ``bound_closed_form`` (GILoRA rows)
chain slack         ``opt_beta, opt_unbounded, clipped, bound_holds, bound_ratio`` and the
                    links of :data:`CHAIN` (``bound_error`` ... ``bound_closed_form``)
scaling             ``N, lower_bound, bound_closed_form``
rank benefit        ``h_r`` (GILoRA rows at rank 0 and above)
exact optima        ``exact_ratio``, ``exact_optimum, lower_bound``
traces              ``run_key, layer, bits, rank, step, value`` (``traces.csv``)
=================== ==========================================================================

References
----------
[1] S. Zhang, R. Saab, "GPTQ-intrinsic LoRA", arXiv:2606.01412 (2026).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

from ..data.io import atomic_write

__all__ = ["FIGURES", "METHOD_STYLE", "plot_error_vs_rank", "plot_error_vs_bits",
           "plot_bound_chain", "plot_refinement_traces", "plot_bound_scaling",
           "plot_rank_benefit", "plot_method_comparison", "save_figure", "make_figures",
           "plot_grid", "plot_step_terms", "plot_spectrum", "plot_trace", "plot_residuals",
           "plot_method_errors", "plot_exact_ratios", "plot_lower_vs_exact", "CHAIN",
           "plot_error_vs_effective_bits", "plot_allocation"]

METHOD_STYLE = {
    "rtn": dict(color="0.6", marker="x", label="RTN"),
    "gptq": dict(color="0.2", marker="s", label="GPTQ"),
    "gilora": dict(color="tab:blue", marker="o", label="GILoRA"),
    "gptq+olrc": dict(color="tab:orange", marker="^", label="GPTQ → OLrC"),
    "gptq+ls": dict(color="tab:brown", marker="v", label="GPTQ → LS R (L = V_r)"),
    "rtn+olrc": dict(color="tab:pink", marker="<", label="RTN → OLrC"),
    "gilora+olrc": dict(color="tab:green", marker="D", label="GILoRA → OLrC"),
    "refine": dict(color="tab:red", marker="P", label="GILoRA + refinement"),
    "gptq+svd": dict(color="tab:purple", marker="h", label="GPTQ → data-free SVD"),
    "rtn+svd": dict(color="tab:olive", marker="*", label="RTN → data-free SVD"),
    "rtn+lqer": dict(color="tab:cyan", marker="1", label="RTN → LQER"),
    "gptq+lqer": dict(color="tab:cyan", marker="2", label="GPTQ → LQER"),
    "rtn+qera-approx": dict(color="teal", marker="3", label="RTN → QERA-approx"),
    "rtn+qera-exact": dict(color="teal", marker="4", label="RTN → QERA-exact"),
    "gptq+eora": dict(color="goldenrod", marker="d", label="GPTQ → EoRA"),
    "loftq": dict(color="navy", marker="p", label="LoftQ"),
    "caldera": dict(color="darkred", marker="X", label="CALDERA-style"),
    "rtn+loraq": dict(color="darkgreen", marker="H", label="RTN → LoRaQ fit"),
}
"""Colour, marker and legend label of each method (the same in every figure)."""

_BRANCHLESS = ("rtn", "gptq")
_BOUND_STYLE = dict(color="k", linestyle="--", linewidth=1.2)


def _panels(n: int, *, ncols: int = 3, size=(3.7, 2.9)) -> tuple[Figure, list]:
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    fig = Figure(figsize=(size[0] * ncols, size[1] * nrows + 0.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, list(axes[:n])


def _relative(df: pd.DataFrame, column: str) -> pd.Series:
    """``column / ||X W||_F^2`` (the run's ``signal``)."""
    return df[column] / df["signal"]


def _band(ax, x, groups, **style) -> None:
    """Median line over seeds with a min-max band."""
    med, lo, hi = groups.median(), groups.min(), groups.max()
    ax.plot(x, med.to_numpy(), markersize=4, **style)
    if (hi > lo).any():
        ax.fill_between(x, lo.to_numpy(), hi.to_numpy(), color=style.get("color"), alpha=0.15,
                        linewidth=0)


def _legend(fig: Figure, axes: list) -> None:
    handles, labels = {}, []
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in handles:
                handles[lab] = h
                labels.append(lab)
    fig.legend([handles[k] for k in labels], labels, loc="outside lower center",
               ncols=min(len(labels), 4), fontsize=8, frameon=False)


def _pick(values, prefer):
    """``prefer`` if present, else the middle of the sorted ``values``."""
    values = sorted(set(values))
    return prefer if prefer in values else values[len(values) // 2]


def plot_error_vs_rank(runs: pd.DataFrame, *, bits: int | None = None,
                       title: str = "") -> Figure:
    """Relative error against rank r, one panel per layer, one line per method.

    Branch-less methods (GPTQ, RTN) are horizontal lines; the Cor. 3.9 closed
    form ``C (||X - X_r||_F^2 + (N + r) lam)`` relative to ``||X W||_F^2`` is the
    dashed black line (when the table has it). Median over seeds, band min-max.

    Parameters
    ----------
    runs : DataFrame
        A ``runs.csv`` table.
    bits : int, optional
        Bit-width shown (default 3 if present, else the middle one).
    """
    bits = _pick(runs["bits"], 3 if bits is None else bits)
    df = runs[runs["bits"] == bits]
    layers = list(dict.fromkeys(df["layer"]))
    fig, axes = _panels(len(layers))
    for ax, layer in zip(axes, layers):
        d = df[df["layer"] == layer]
        ranks = np.sort(d["rank"].unique())
        for method, dm in d.groupby("method", sort=False):
            g = _relative(dm, "error").groupby(dm["rank"])
            if method in _BRANCHLESS:
                ax.axhline(g.median().iloc[0], linestyle=":", linewidth=1.2,
                           color=METHOD_STYLE[method]["color"], label=METHOD_STYLE[method]["label"])
            else:
                _band(ax, g.median().index, g, **METHOD_STYLE[method])
        if "bound_closed_form" in d:
            db = d[d["method"] == "gilora"].dropna(subset=["bound_closed_form"])
            g = _relative(db, "bound_closed_form").groupby(db["rank"])
            ax.plot(g.median().index, g.median().to_numpy(), label="bound (Cor. 3.9)",
                    **_BOUND_STYLE)
        ax.set_xscale("symlog", base=2, linthresh=1)
        ax.set_xticks(ranks, [str(r) for r in ranks], fontsize=7)
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_yscale("log")
        _plain_log(ax)
        ax.set_title(layer, fontsize=9)
        ax.set_xlabel("rank r")
        ax.set_ylabel("relative error E / ‖XW‖²")
        ax.grid(True, which="major", alpha=0.3)
    fig.suptitle(title or f"Error against rank at b = {bits} bits", fontsize=11)
    _legend(fig, axes)
    return fig


def plot_error_vs_bits(runs: pd.DataFrame, *, rank: int | None = None,
                       title: str = "") -> Figure:
    """Relative error against bit-width b, one panel per layer, one line per method.

    Methods with a branch are shown at rank ``rank`` (default: 8 if present,
    else the middle rank with ``r > 0``); branch-less methods at rank 0. The
    dashed line is the closed-form bound at that rank (GILoRA's chain).
    """
    branch = runs.loc[runs["rank"] > 0, "rank"]
    rank = _pick(branch if len(branch) else runs["rank"], 8 if rank is None else rank)
    keep = (runs["rank"] == rank) | runs["method"].isin(_BRANCHLESS)
    df = runs[keep]
    layers = list(dict.fromkeys(df["layer"]))
    fig, axes = _panels(len(layers))
    for ax, layer in zip(axes, layers):
        d = df[df["layer"] == layer]
        for method, dm in d.groupby("method", sort=False):
            g = _relative(dm, "error").groupby(dm["bits"])
            _band(ax, g.median().index, g, **METHOD_STYLE[method])
        if "bound_closed_form" in d:
            db = d[(d["method"] == "gilora") & (d["rank"] == rank)]
            db = db.dropna(subset=["bound_closed_form"])
            g = _relative(db, "bound_closed_form").groupby(db["bits"])
            ax.plot(g.median().index, g.median().to_numpy(), label=f"bound (Cor. 3.9), r = {rank}",
                    **_BOUND_STYLE)
        ax.set_yscale("log")
        ax.set_xticks(np.sort(d["bits"].unique()))
        ax.set_title(layer, fontsize=9)
        ax.set_xlabel("bits b")
        ax.set_ylabel("relative error E / ‖XW‖²")
        ax.grid(True, which="major", alpha=0.3)
    fig.suptitle(title or f"Error against bit-width (low-rank methods at r = {rank})", fontsize=11)
    _legend(fig, axes)
    return fig


CHAIN = (
    ("bound_error", "bound_damped_aug", "E ≤ E_λ,aug"),
    ("bound_damped_aug", "bound_step_sum", "E_λ,aug = Σ steps"),
    ("bound_step_sum", "bound_schur_sum", "Σ steps ≤ C Σ Ψ⁻²"),
    ("bound_schur_sum", "bound_trace_S", "C Σ Ψ⁻² ≤ C tr S"),
    ("bound_trace_S", "bound_closed_form", "C tr S ≤ closed form"),
    ("bound_error", "bound_closed_form", "E ≤ closed form\n(whole chain)"),
)
"""Links of the upper-bound chain (docs/theory.md, "Upper bounds"): (smaller, larger, label)."""


def plot_bound_chain(runs: pd.DataFrame, *, title: str = "") -> Figure:
    """Slack of every link of the upper-bound chain: ratio smaller side / larger side.

    One column of points per link (GPTQ and GILoRA runs), one panel per grid
    setting (clipping factor ``beta``, bounded or not). A ratio above 1 is a
    violated link; each panel's title counts the runs whose chain fails beyond
    its rounding tolerance (``bound_holds`` false). Runs that clipped
    (``clipped > 0``) are red: the chain is only claimed without clipping.
    Log scale: the slack spans decades.
    """
    df = runs[runs["method"].isin(("gptq", "gilora"))].dropna(subset=["bound_closed_form"])
    settings = df[["opt_beta", "opt_unbounded"]].drop_duplicates()
    settings = settings.sort_values("opt_beta", ascending=False)
    fig, axes = _panels(len(settings), ncols=1, size=(9.0, 3.6))
    for ax, (_i, st) in zip(axes, settings.iterrows()):
        d = df[(df["opt_beta"] == st["opt_beta"]) & (df["opt_unbounded"] == st["opt_unbounded"])]
        _chain_panel(ax, d)
        grid = "unbounded grid" if st["opt_unbounded"] else f"bounded grid, β = {st['opt_beta']:g}"
        ax.set_title(f"{grid}: {_chain_counts(d)}", fontsize=9)
    fig.suptitle(title or "Slack of each link of the upper-bound chain (GPTQ and GILoRA passes)\n"
                 "of the sweeps drawn here; claim C6 counts its own, larger sweep", fontsize=10)
    _legend(fig, axes)
    return fig


def _chain_counts(d: pd.DataFrame) -> str:
    """``n chains: without clipping k fail of m; clipped j fail of c; worst E / bound``."""
    clipped = d["clipped"].to_numpy() > 0
    fails = ~d["bound_holds"].astype(bool).to_numpy()
    return (f"{len(d)} chains; without clipping {int((fails & ~clipped).sum())} of "
            f"{int((~clipped).sum())} fail a link, clipped {int((fails & clipped).sum())} of "
            f"{int(clipped.sum())} fail; worst E / bound = {d['bound_ratio'].max():.3g}")


def _chain_panel(ax, d: pd.DataFrame) -> None:
    jitter = np.random.default_rng(0).uniform(-0.2, 0.2, len(d))
    clipped = d["clipped"].to_numpy() > 0
    for i, (lo, hi, _label) in enumerate(CHAIN):
        ratio = (d[lo] / d[hi]).to_numpy()
        x = i + jitter
        ax.scatter(x[~clipped], ratio[~clipped], s=7, alpha=0.5, color="tab:blue",
                   label="no clipping")
        ax.scatter(x[clipped], ratio[clipped], s=7, alpha=0.5, color="tab:red", label="clipped")
    ax.axhline(1.0, color="k", linewidth=1)
    ax.set_xticks(range(len(CHAIN)), [c[2] for c in CHAIN], fontsize=9)
    ax.set_yscale("log")
    ax.set_ylabel("smaller / larger side\n(≤ 1: link holds)", fontsize=9)
    ax.grid(True, axis="y", alpha=0.3)


def plot_refinement_traces(traces: pd.DataFrame, *, bits: int | None = None,
                           title: str = "") -> Figure:
    """Refinement traces ``F(Q, L R) / F(start)`` against step, one panel per layer.

    ``F`` is the damped objective descended by the loop (OLrC and Bid-Up
    half-steps, docs/theory.md, Alg. 1-4), starting from GILoRA; every line must be
    non-increasing. Thin lines: runs (seeds), coloured by rank; thick: median.

    Parameters
    ----------
    traces : DataFrame
        A ``traces.csv`` table.
    bits : int, optional
        Bit-width shown (default 3 if present, else the middle one).
    """
    bits = _pick(traces["bits"], 3 if bits is None else bits)
    df = traces[traces["bits"] == bits].copy()
    df["ratio"] = df["value"] / df.groupby("run_key")["value"].transform("first")
    ranks = sorted(df["rank"].unique())
    cmap = _colormap("viridis", len(ranks))
    layers = list(dict.fromkeys(df["layer"]))
    fig, axes = _panels(len(layers))
    steps = np.sort(df["step"].unique())
    for ax, layer in zip(axes, layers):
        for k, r in enumerate(ranks):
            d = df[(df["layer"] == layer) & (df["rank"] == r)]
            for _key, run in d.groupby("run_key"):
                ax.plot(run["step"], run["ratio"], color=cmap[k], alpha=0.25, linewidth=0.7)
            med = d.groupby("step")["ratio"].median()
            ax.plot(med.index, med.to_numpy(), color=cmap[k], linewidth=1.8, label=f"r = {r}")
        ax.set_xticks(steps, [_step_label(s) for s in steps], fontsize=7, rotation=40, ha="right")
        ax.set_title(layer, fontsize=9)
        ax.set_ylabel("F / F(GILoRA start)")
        ax.grid(True, alpha=0.3)
    fig.suptitle(title or f"Refinement loop at b = {bits} bits: damped objective F after each "
                 f"half-step", fontsize=11)
    _legend(fig, axes)
    return fig


def _step_label(step: int) -> str:
    if step == 0:
        return "start"
    return f"{'OLrC' if step % 2 else 'Bid-Up'} {(step + 1) // 2}"


def _colormap(name: str, n: int) -> list:
    from matplotlib import colormaps
    return [colormaps[name](x) for x in np.linspace(0.0, 0.85, max(n, 1))]


def plot_bound_scaling(runs: pd.DataFrame, *, title: str = "") -> Figure:
    """Upper against lower bound as N and b grow (claim C12; well-conditioned X).

    One row of panels per rank r. Left: GILoRA's chain closed form (dashed), its
    measured error (dots) and the minimax lower bound (dotted) against N, one
    colour per bit-width (log-log). Right: upper / lower against N (the
    dominant-scaling claim: it stays bounded). The lower bound is a statement
    about the worst W of the class K, not about the W measured.
    """
    df = runs[(runs["method"] == "gilora")].dropna(subset=["lower_bound", "bound_closed_form"])
    bits, ranks = sorted(df["bits"].unique()), sorted(df["rank"].unique())
    cmap = _colormap("plasma", len(bits))
    fig = Figure(figsize=(10, 3.4 * len(ranks) + 0.5), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(ranks), 2, squeeze=False))
    for (ax, ax2), r in zip(axes, ranks):
        for k, b in enumerate(bits):
            d = df[(df["bits"] == b) & (df["rank"] == r)]
            g = d.groupby("N")
            N = np.array(sorted(d["N"].unique()))
            ax.plot(N, g["bound_closed_form"].median(), color=cmap[k], linestyle="--")
            ax.plot(N, g["error"].median(), color=cmap[k], marker="o", markersize=4,
                    linestyle="none", label=f"b = {b}")
            ax.plot(N, g["lower_bound"].median(), color=cmap[k], linestyle=":")
            pos = d[d["lower_bound"] > 0]
            ratio = (pos["bound_closed_form"] / pos["lower_bound"]).groupby(pos["N"]).median()
            ax2.plot(ratio.index, ratio.to_numpy(), color=cmap[k], marker="o", markersize=3,
                     label=f"b = {b}")
        ax.set_ylabel("layer error E (absolute)")
        ax.set_title(f"r = {r}: dashed upper bound · dots GILoRA · dotted lower bound",
                     fontsize=9)
        ax.plot([], [], color="0.3", linestyle="--", label="upper bound")
        ax.plot([], [], color="0.3", marker="o", linestyle="none", label="GILoRA (median)")
        ax.plot([], [], color="0.3", linestyle=":", label="lower bound")
        ax.legend(fontsize=7, ncols=2)
        ax2.set_ylabel("upper bound / lower bound")
        ax2.set_title(f"r = {r}: ratio (median over seeds)", fontsize=9)
        for a in (ax, ax2):
            a.set_xscale("log", base=2)
            a.set_yscale("log")
            a.set_xlabel("input dimension N (N_out = N)")
            a.grid(True, which="major", alpha=0.3)
        ax2.legend(fontsize=7, ncols=2)
    fig.suptitle(title or "Upper against lower bound as N and b grow (isotropic X, W from K)",
                 fontsize=11)
    return fig


def plot_rank_benefit(runs: pd.DataFrame, *, title: str = "") -> Figure:
    """Predicted against realised benefit of rank r (GILoRA; claim C14).

    x: predicted ``h(r) / h(0)`` with ``h(r) = ||X - X_r||_F^2 + (N + r) lam``;
    y: measured ``D(r) / D(0)`` (GILoRA's error at rank r over its error at
    rank 0, which is GPTQ's), at the same bit-width and seed. On the diagonal the
    whole predicted benefit is realised; above it, less. One colour per layer,
    one marker per rank; every bit-width of the table is drawn.
    """
    df = runs[(runs["method"] == "gilora")].dropna(subset=["h_r"])
    base = df[df["rank"] == 0].set_index(["layer", "seed", "bits"])
    base = base[["error", "h_r"]].rename(columns={"error": "error_0", "h_r": "h_r_0"})
    df = df[df["rank"] > 0].join(base, on=["layer", "seed", "bits"])
    layers = list(dict.fromkeys(df["layer"]))
    markers = dict(zip(sorted(df["rank"].unique()), "os^DvP*X"))
    fig = Figure(figsize=(9.5, 5.2), layout="constrained")     # legend beside the axes
    ax = fig.subplots()
    for k, layer in enumerate(layers):
        d = df[df["layer"] == layer]
        for r, dr in d.groupby("rank"):
            ax.scatter(dr["h_r"] / dr["h_r_0"], dr["error"] / dr["error_0"], color=f"C{k % 10}",
                       marker=markers[r], s=24, alpha=0.75)
        ax.scatter([], [], color=f"C{k % 10}", marker="o", label=layer)
    x, y = df["h_r"] / df["h_r_0"], df["error"] / df["error_0"]
    lo = float(min(x.min(), y.min()))
    ax.plot([lo, 1], [lo, 1], color="k", linewidth=1, label="realised = predicted")
    for r, mk in markers.items():
        ax.scatter([], [], marker=mk, color="0.4", label=f"r = {r}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    _plain_log(ax)
    ax.set_xlabel("predicted h(r) / h(0)")
    ax.set_ylabel("measured D(r) / D(0)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    ax.grid(True, which="both", alpha=0.2)
    bits = ", ".join(str(b) for b in sorted(df["bits"].unique()))
    fig.suptitle(title or f"Rank benefit: the bound's prediction against GILoRA's measured error "
                 f"(b = {bits})", fontsize=10)
    return fig


def _plain_log(ax) -> None:
    """Plain-number tick labels on log axes that span less than two decades."""
    from matplotlib.ticker import FuncFormatter

    def minor(v, _pos):
        lead = round(v / 10 ** np.floor(np.log10(v)), 6) if v > 0 else 0
        return f"{v:.3g}" if lead in (2, 3, 5) else ""

    for axis, (lo, hi) in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
        if axis.get_scale() == "log" and lo > 0 and hi / lo < 100:
            axis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:.3g}"))
            axis.set_minor_formatter(FuncFormatter(minor))


def plot_method_comparison(runs: pd.DataFrame, *, bits: int | None = None, rank: int | None = None,
                           baseline: str = "gptq+olrc", title: str = "") -> Figure:
    """Every method's error over ``baseline``'s, per layer, at one bit-width and rank.

    One row per layer, one marker per method (median over seeds); values below
    1 beat the baseline. Branch-less methods are at rank 0. Log x axis.
    """
    bits = _pick(runs["bits"], 3 if bits is None else bits)
    branch = runs.loc[runs["rank"] > 0, "rank"]
    rank = _pick(branch if len(branch) else runs["rank"], 8 if rank is None else rank)
    df = runs[(runs["bits"] == bits) & ((runs["rank"] == rank) | runs["method"].isin(_BRANCHLESS))]
    med = df.groupby(["layer", "method"], sort=False)["error"].median().unstack("method")
    layers = list(dict.fromkeys(df["layer"]))
    med = med.loc[layers]
    rel = med.div(med[baseline], axis=0)
    fig = Figure(figsize=(7.5, 0.9 + 0.32 * len(layers) + 0.4), layout="constrained")
    ax = fig.subplots()
    y = np.arange(len(layers))
    for method in rel.columns:
        ax.scatter(rel[method], y, s=26, alpha=0.85, **METHOD_STYLE[method])
    ax.axvline(1.0, color="k", linewidth=1)
    ax.set_yticks(y, layers, fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel(f"error / error of {METHOD_STYLE[baseline]['label']}")
    ax.grid(True, axis="x", which="both", alpha=0.3)
    fig.legend(loc="outside lower center", ncols=4, fontsize=7, frameon=False)
    fig.suptitle(title or f"Method comparison at b = {bits} bits, r = {rank}", fontsize=11)
    return fig


def plot_error_vs_effective_bits(table: pd.DataFrame, *, xmax: float | None = 6.5,
                                 title: str = "") -> Figure:
    """Relative error against effective bits per weight, one panel per layer.

    Reads a table of :func:`gilora_theory.experiments.equal_storage.storage_table`. Every
    reconstruction is a marker (filled: full-precision branch; open: quantized
    branch); each method's lower envelope (its best error at a storage budget)
    is a step line, the black dashed line the envelope over all methods.
    Log y axis; points beyond ``xmax`` bits per weight are cut off.
    """
    df = table if xmax is None else table[table["effective_bits"] <= xmax]
    keys = list(dict.fromkeys(zip(df["source"], df["layer"])))
    fig, axes = _panels(len(keys))
    for ax, (source, layer) in zip(axes, keys):
        d = df[(df["source"] == source) & (df["layer"] == layer)]
        for method, g in d.groupby("method", sort=False):
            style = METHOD_STYLE[method]
            fp = (g["branch"] == "fp").to_numpy()
            for sel, filled in ((fp, True), (~fp, False)):
                if sel.any():
                    look = style if filled else dict(
                        marker=style["marker"], facecolors="none", edgecolors=style["color"],
                        label=style["label"])
                    ax.scatter(g["effective_bits"][sel], g["relative_error"][sel], s=18,
                               alpha=0.8, **look)
            env = g.sort_values("effective_bits")
            ax.step(env["effective_bits"], env["relative_error"].cummin(), where="post",
                    color=style["color"], linewidth=0.9, alpha=0.7)
        env = d.sort_values("effective_bits")
        ax.step(env["effective_bits"], env["relative_error"].cummin(), where="post",
                label="best at this budget", **_BOUND_STYLE)
        ax.set_yscale("log")
        ax.set_title(f"{layer}\n({source}, {d['N'].iloc[0]}×{d['N_out'].iloc[0]})", fontsize=8)
        ax.set_xlabel("bits per weight (Q, grids, branch)")
        ax.set_ylabel("E / ||XW||²")
        ax.grid(True, which="both", alpha=0.3)
    _legend(fig, axes)
    fig.suptitle(title or "Error at equal storage (open markers: quantized branch)", fontsize=11)
    return fig


def save_figure(fig: Figure, path, *, dpi: int = 100) -> Path:
    """Write ``fig`` as PNG atomically, without time or version metadata (reproducible bytes)."""
    path = Path(path)
    with atomic_write(path) as f:
        fig.savefig(f, format="png", dpi=dpi, metadata={"Software": None})
    return path


def _chain_both(bits: pd.DataFrame, clipping: pd.DataFrame) -> Figure:
    return plot_bound_chain(pd.concat([bits, clipping], ignore_index=True))


def _comparison_both(synthetic: pd.DataFrame, real: pd.DataFrame) -> Figure:
    return plot_method_comparison(pd.concat([synthetic, real], ignore_index=True))


FIGURES = {
    "error_vs_rank_synthetic": (("synthetic_rank",), plot_error_vs_rank),
    "error_vs_rank_real": (("real_layers",), plot_error_vs_rank),
    "error_vs_bits_synthetic": (("synthetic_bits",), plot_error_vs_bits),
    "error_vs_bits_real": (("real_layers",), plot_error_vs_bits),
    "bound_chain_slack": (("synthetic_bits", "bound_chain"), _chain_both),
    "refinement_traces": (("synthetic_rank:traces",), plot_refinement_traces),
    "upper_vs_lower": (("scaling",), plot_bound_scaling),
    "rank_benefit_real": (("real_layers",), plot_rank_benefit),
    "method_comparison": (("synthetic_rank", "real_layers"), _comparison_both),
}
"""Figure name -> (sweep tables it reads, plotting function). A table is the
``runs.csv`` of the sweep folder of that name (``NAME:traces``: its ``traces.csv``);
the sweeps are the packaged configurations of the same names."""


def make_figures(tables="figures/tables", out="figures", *, dpi: int = 85,
                 only=None) -> dict:
    """Rebuild figures of :data:`FIGURES` from saved sweep tables.

    Parameters
    ----------
    tables : path
        Folder holding one sweep folder per configuration (``tables/NAME/runs.csv``).
    out : path
        Folder for ``<figure>.png``.
    dpi : int, default 85
    only : iterable of str, optional
        Names of the figures to build (default: all).

    Returns
    -------
    dict
        ``{"written": {name: path}, "missing": {name: message}}``; a figure whose
        table is missing is skipped with the command that produces the table.

    Raises
    ------
    ValueError
        A table that is unreadable, empty, lacks a column, or holds fewer rows
        than its ``sweep.json`` records (truncated), naming the file and the
        command that rebuilds it.
    """
    tables, out = Path(tables), Path(out)
    if not tables.is_dir():
        raise FileNotFoundError(f"tables folder {str(tables)!r} does not exist; run the sweeps "
                                f"first (gilora-theory sweep NAME --out {tables}/NAME)")
    todo, missing = {}, {}
    for name, (sources, func) in FIGURES.items():
        if only is not None and name not in only:
            continue
        paths = [_table_path(tables, s) for s in sources]
        absent = [p for p in paths if not p.is_file()]
        if absent:
            missing[name] = "; ".join(f"missing {p}: run gilora-theory sweep {p.parent.name} "
                                      f"--out {p.parent}" for p in absent)
        else:
            todo[name] = (func, paths)
    frames = {p: _read_table(p) for _f, paths in todo.values() for p in paths}  # all, then draw
    figs = {}
    for name, (func, paths) in todo.items():        # every figure drawn before any is saved
        try:
            figs[name] = func(*(frames[p] for p in paths))
        except KeyError as exc:
            raise ValueError(f"{', '.join(map(str, paths))}: column {exc} is missing, so the "
                             f"table is damaged; {_rebuild(paths[0])}") from None
    written = {name: str(save_figure(fig, out / f"{name}.png", dpi=dpi))
               for name, fig in figs.items()}
    return {"written": written, "missing": missing}


def _rebuild(path: Path) -> str:
    return (f"rebuild it with gilora-theory sweep {path.parent.name} --out {path.parent} "
            f"(finished runs are kept, the tables are rewritten)")


def _read_table(path: Path) -> pd.DataFrame:
    """A sweep table, refused (naming the file and the way to rebuild it) when it is
    unreadable, empty, or holds fewer runs than its folder's ``sweep.json`` records."""
    try:
        df = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is damaged ({' '.join(str(exc).split())}); "
                         f"{_rebuild(path)}") from None
    if df.empty:
        raise ValueError(f"{path} holds no rows; {_rebuild(path)}")
    sidecar = path.parent / "sweep.json"
    if path.name == "runs.csv" and sidecar.is_file():
        try:
            n_runs = json.loads(sidecar.read_text())["n_runs"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ValueError(f"{sidecar} is damaged ({exc}); {_rebuild(path)}") from None
        if len(df) != n_runs:
            raise ValueError(f"{path} holds {len(df)} rows but {sidecar.name} records {n_runs} "
                             f"runs: the table is truncated or damaged; {_rebuild(path)}")
    return df


def _table_path(tables: Path, source: str) -> Path:
    name, _, kind = source.partition(":")
    return tables / name / f"{kind or 'runs'}.csv"


# ----------------------------------------------------------------------------- tour pictures
# Pictures of single results (for the notebooks): they draw arrays they are given.

def plot_grid(W, grid, quantized: dict, *, columns=(0, 1, 2)) -> Figure:
    """Weights, grid levels and quantized values of a few output columns.

    Parameters
    ----------
    W : (N, N_out) ndarray
    grid : Grid
        A bounded grid (its ``2^b`` levels are the horizontal lines).
    quantized : dict
        Name -> ``Q`` (N, N_out), e.g. ``{"RTN": Q_rtn, "GPTQ": Q_gptq}``.
    columns : sequence of int
    """
    W = np.asarray(W)
    columns = [c for c in columns if c < W.shape[1]]
    fig, axes = _panels(len(columns), ncols=len(columns), size=(3.6, 3.0))
    rows = np.arange(W.shape[0])
    for ax, j in zip(axes, columns):
        for level in grid.levels(j):
            ax.axhline(level, color="0.8", linewidth=0.8, zorder=0)
        ax.scatter(rows, W[:, j], color="k", s=18, label="w (original)", zorder=3)
        for k, (name, Q) in enumerate(quantized.items()):
            off = 0.12 * (k - (len(quantized) - 1) / 2)
            ax.scatter(rows + off, np.asarray(Q)[:, j], s=30, facecolors="none",
                       edgecolors=f"C{k}", linewidths=1.3, label=name, zorder=4)
        ax.set_title(f"column j = {j} ({2 ** grid.bits} levels)", fontsize=9)
        ax.set_xlabel("input row t")
        ax.set_ylabel("weight value")
    fig.suptitle(f"The {grid.bits}-bit grid of each column (grey lines) and where each "
                 f"method puts the weights", fontsize=10)
    _legend(fig, axes)
    return fig


def plot_step_terms(step_terms: dict, *, bound: dict | None = None) -> Figure:
    """Per-step terms ``sum_j (w~_tj - q_tj)^2 / Psi_tt^2`` of GPTQ-type passes.

    Parameters
    ----------
    step_terms : dict
        Name -> (N,) per-step terms in processing order (``GPTQResult.step_terms``).
    bound : dict, optional
        Name -> (N,) per-step bounds (e.g. ``C_t / Psi_tt^2``), drawn as steps.
    """
    fig = Figure(figsize=(7.0, 3.4), layout="constrained")
    ax = fig.subplots()
    n = len(step_terms)
    for k, (name, terms) in enumerate(step_terms.items()):
        t = np.arange(len(terms))
        ax.bar(t + (k - (n - 1) / 2) * 0.8 / n, terms, width=0.8 / n, color=f"C{k}", label=name)
        if bound and name in bound:
            ax.step(t, bound[name], where="mid", color=f"C{k}", linestyle="--",
                    label=f"{name}: bound")
    ax.set_xlabel("step t (input row, processing order)")
    ax.set_ylabel("damped error added at step t")
    ax.legend(fontsize=8)
    ax.grid(True, axis="y", alpha=0.3)
    fig.suptitle("Where the error is made: the loss identity splits E_λ into per-step terms",
                 fontsize=10)
    return fig


def plot_spectrum(values: dict, *, rank: int | None = None,
                  ylabel: str = "singular value") -> Figure:
    """Descending spectra on a log axis, with the rank-r cut marked.

    Parameters
    ----------
    values : dict
        Name -> 1-D array (e.g. OLrC's ``singular_values`` or ``sqrt(eig(H))``).
    rank : int, optional
        Draw a vertical line after the first ``rank`` values (what a rank-r branch keeps).
    """
    fig = Figure(figsize=(6.0, 3.4), layout="constrained")
    ax = fig.subplots()
    for k, (name, v) in enumerate(values.items()):
        v = np.sort(np.asarray(v, dtype=float))[::-1]
        ax.plot(np.arange(1, len(v) + 1), np.maximum(v, np.finfo(float).tiny), marker="o",
                markersize=4, color=f"C{k}", label=name)
    if rank is not None:
        ax.axvline(rank + 0.5, color="k", linestyle="--", linewidth=1, label=f"rank r = {rank} cut")
    ax.set_yscale("log")
    ax.set_xlabel("index i")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    return fig


def plot_trace(trace, steps) -> Figure:
    """One refinement trace ``F`` against its half-steps (``RefineResult.trace, .steps``)."""
    trace = np.asarray(trace, dtype=float)
    fig = Figure(figsize=(6.0, 3.2), layout="constrained")
    ax = fig.subplots()
    ax.plot(np.arange(len(trace)), trace, marker="o", color="tab:red")
    labels = [_step_label(i) for i in range(len(steps))]
    ax.set_xticks(np.arange(len(trace)), labels, fontsize=7, rotation=40, ha="right")
    ax.set_ylabel("damped objective F(Q, L R)")
    ax.grid(True, alpha=0.3)
    fig.suptitle("Refinement: alternating OLrC and Bid-Up never increases F", fontsize=10)
    return fig


def plot_residuals(residuals: dict) -> Figure:
    """Heat maps of residuals ``D = W - Q - L R`` (N, N_out) on one symmetric colour scale.

    Parameters
    ----------
    residuals : dict
        Name -> (N, N_out) residual.
    """
    vmax = max(float(np.max(np.abs(D))) for D in residuals.values())
    fig, axes = _panels(len(residuals), ncols=len(residuals), size=(2.8, 3.0))
    for ax, (name, D) in zip(axes, residuals.items()):
        im = ax.imshow(np.asarray(D), cmap="RdBu_r", vmin=-vmax, vmax=vmax, aspect="auto")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("output column j")
        ax.set_ylabel("input row t")
    fig.colorbar(im, ax=axes, label="residual entry (weight units)", shrink=0.8)
    fig.suptitle("Residual D = W − Q − L R of each method", fontsize=10)
    return fig


def plot_method_errors(runs: pd.DataFrame, *, title: str = "") -> Figure:
    """Relative error of each method (bars), one panel per (layer, bits, rank) group.

    Reads a ``runs`` table (e.g. from :func:`gilora_theory.experiments.sweep.sweep_table`);
    branch-less methods appear in every rank's panel.
    """
    groups = runs[["layer", "bits", "rank"]].drop_duplicates()
    groups = groups[(groups["rank"] > 0) | (runs["rank"].max() == 0)]
    fig, axes = _panels(len(groups), ncols=min(len(groups), 3),
                        size=(4.6, 0.6 + 0.3 * runs["method"].nunique()))
    for ax, (_i, g) in zip(axes, groups.iterrows()):
        sel = (runs["layer"] == g["layer"]) & (runs["bits"] == g["bits"]) & \
            ((runs["rank"] == g["rank"]) | runs["method"].isin(_BRANCHLESS))
        d = runs[sel].groupby("method", sort=False)[["error", "signal"]].median()
        rel = d["error"] / d["signal"]
        y = np.arange(len(rel))
        ax.barh(y, rel.to_numpy(), color=[METHOD_STYLE[m]["color"] for m in rel.index])
        ax.set_yticks(y, [METHOD_STYLE[m]["label"] for m in rel.index], fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel("relative error E / ‖XW‖²")
        ax.set_title(f"{g['layer']}: b = {g['bits']}, r = {g['rank']}", fontsize=8)
        ax.grid(True, axis="x", alpha=0.3)
    fig.suptitle(title or "Relative error by method", fontsize=10)
    return fig


def plot_exact_ratios(runs: pd.DataFrame, *, title: str = "") -> Figure:
    """Each method's error over the exact optimum on tiny layers (``exact_ratio``).

    One panel per rank; one column of points per method (every layer, seed and
    bit-width of the table). A ratio of 1 is optimal; below 1 is impossible.
    Log y axis: at r >= 1 the ratios span decades.
    """
    df = runs.dropna(subset=["exact_ratio"])
    ranks = sorted(df["rank"].unique())
    fig, axes = _panels(len(ranks), ncols=len(ranks), size=(5.0, 3.6))
    jitter = np.random.default_rng(0).uniform(-0.15, 0.15, len(df))
    df = df.assign(_jitter=jitter)
    for ax, r in zip(axes, ranks):
        d = df[df["rank"] == r]
        methods = [m for m in METHOD_STYLE if m in set(d["method"])]
        for i, m in enumerate(methods):
            dm = d[d["method"] == m]
            style = METHOD_STYLE[m]
            ax.scatter(i + dm["_jitter"], dm["exact_ratio"], s=14, alpha=0.7, color=style["color"],
                       marker=style["marker"])
        ax.axhline(1.0, color="k", linewidth=1)
        ax.set_xticks(range(len(methods)), [METHOD_STYLE[m]["label"] for m in methods],
                      fontsize=7, rotation=30, ha="right")
        ax.set_yscale("log")
        ax.set_ylabel("error / exact optimum")
        ax.set_title(f"r = {r} ({d['layer'].nunique()} layers, bits "
                     f"{', '.join(str(b) for b in sorted(d['bits'].unique()))})", fontsize=9)
        ax.grid(True, axis="y", which="both", alpha=0.3)
    fig.suptitle(title or "How far each method is from the exact optimum (tiny layers)",
                 fontsize=11)
    return fig


def plot_lower_vs_exact(runs: pd.DataFrame, *, title: str = "") -> Figure:
    """The minimax lower bound against the exact optimum (claim C11), tiny layers.

    One point per (layer, seed, bits, rank) (GILoRA rows, where both columns are
    filled; a lower bound of exactly 0, i.e. ``J <= 1``, is drawn at the bottom
    edge). Points under the diagonal respect the bound for that W; the bound is a
    minimax statement, so only the worst W of the class K must lie above it.
    """
    df = runs[runs["method"] == "gilora"].dropna(subset=["exact_optimum", "lower_bound"])
    fig = Figure(figsize=(6.2, 5.0), layout="constrained")
    ax = fig.subplots()
    positive = df[df["lower_bound"] > 0]
    floor = float(positive["lower_bound"].min()) / 10 if len(positive) else 1e-12
    for k, (b, d) in enumerate(df.groupby("bits")):
        for r, dr in d.groupby("rank"):
            y = dr["lower_bound"].where(dr["lower_bound"] > 0, floor)
            ax.scatter(dr["exact_optimum"], y, color=f"C{k}", marker="os^D"[int(r) % 4], s=22,
                       alpha=0.8, label=f"b = {b}, r = {r}")
    lo = min(float(df["exact_optimum"].min()), floor)
    hi = float(max(df["exact_optimum"].max(), df["lower_bound"].max()))
    ax.plot([lo, hi], [lo, hi], color="k", linewidth=1, label="bound = optimum")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("exact optimum min E (over Q on the grid and rank-r L R)")
    ax.set_ylabel("lower bound (0 drawn at the bottom edge)")
    ax.legend(fontsize=7)
    ax.grid(True, which="major", alpha=0.3)
    fig.suptitle(title or "Minimax lower bound against exact optima (W from the class K)",
                 fontsize=10)
    return fig


_RULE_STYLE = {"bound": dict(color="tab:blue", marker="o", label="bound g(b) h(r)"),
               "measured": dict(color="tab:green", marker="D", label="measured surface"),
               "uniform": dict(color="0.4", marker="s", label="uniform (b, r)")}


def plot_allocation(table: pd.DataFrame, *, title: str = "") -> Figure:
    """Summed measured layer error against the budget, one line per allocation rule (claim C16).

    ``table``: one row per (budget, rule) with ``layer_error_sum`` (the GILoRA
    errors of the allocation's ``(b_l, r_l)``). With a ``neighbour_overlap``
    column, a second panel shows the share of held-out sentences' 10 nearest
    neighbours that survive compression.
    """
    panels = ["layer_error_sum"] + (["neighbour_overlap"] if "neighbour_overlap" in table else [])
    fig = Figure(figsize=(4.2 * len(panels), 3.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    for ax, col in zip(axes, panels):
        for rule, d in table.groupby("rule"):
            d = d.sort_values("budget")
            ax.plot(d["budget"], d[col], **_RULE_STYLE.get(rule, dict(label=rule)))
        ax.set_xlabel("budget B (bits per weight, grid and branch included)")
        ax.grid(True, alpha=0.3)
    axes[0].set_yscale("log")
    axes[0].set_ylabel("summed layer error  sum_l ||X_l (W_l - Q_l - L_l R_l)||^2")
    if len(panels) > 1:
        axes[1].set_ylabel("10-nearest-neighbour overlap")
    axes[0].legend(fontsize=8)
    fig.suptitle(title or "Bit/rank allocation under one storage budget", fontsize=10)
    return fig
