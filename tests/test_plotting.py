"""Figures: drawn from tables only, showing the table's numbers, written reproducibly."""
import json

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

import gilora_theory as gt
from gilora_theory.experiments import sweep as ex
from gilora_theory.experiments import plotting

LAYERS = [{"source": "synthetic", "name": n, "kind": k, "m": 48, "N": 12, "N_out": 8,
           "params": p} for n, k, p in (("pow", "power_law", {"exponent": 1.0}),
                                         ("out", "outliers", {"n_outliers": 2}))]
SMALL = {"name": "small", "layers": LAYERS, "methods": list(gt.METHODS), "bits": [2, 3],
         "ranks": [0, 2, 4], "seeds": [0, 1], "options": {"rounds": 2}}
SCALING = {"name": "scaling", "layers": [
    {"source": "synthetic", "name": f"iso{n}", "kind": "isotropic", "m": 2 * n, "N": n,
     "N_out": n, "weights": "class_k"} for n in (8, 16)],
    "methods": ["gptq", "gilora"], "bits": [2, 3], "ranks": [0, 2], "seeds": [0]}
CLIPPING = {**SMALL, "name": "clip", "methods": ["gptq", "gilora"], "options": {"beta": 0.7}}


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    """Sweep folders under the names make_figures expects (small stand-ins)."""
    root = tmp_path_factory.mktemp("tables")
    small = ex.run_sweep(SMALL, root / "synthetic_rank")
    for name in ("synthetic_bits", "real_layers"):
        ex.run_sweep({**SMALL, "name": name}, root / name)
    ex.run_sweep(CLIPPING, root / "bound_chain")
    ex.run_sweep(SCALING, root / "scaling")
    return root, small.table, small.traces


def _line(ax, label):
    (line,) = [ln for ln in ax.get_lines() if ln.get_label() == label]
    return line


def test_error_vs_rank_draws_the_table_medians(tables):
    _, runs, _ = tables
    fig = plotting.plot_error_vs_rank(runs, bits=3)
    axes = [a for a in fig.axes if a.get_visible()]
    assert len(axes) == 2 and all(a.get_yscale() == "log" for a in axes)
    ax = axes[0]
    assert ax.get_title() == "pow" and ax.get_xlabel() == "rank r"
    assert "relative error" in ax.get_ylabel()
    d = runs[(runs["layer"] == "pow") & (runs["bits"] == 3) & (runs["method"] == "gilora")]
    expect = (d["error"] / d["signal"]).groupby(d["rank"]).median()
    x, y = _line(ax, "GILoRA").get_data()
    np.testing.assert_array_equal(x, expect.index.to_numpy())
    np.testing.assert_array_equal(y, expect.to_numpy())
    db = (d["bound_closed_form"] / d["signal"]).groupby(d["rank"]).median()
    xb, yb = _line(ax, "bound (Cor. 3.9)").get_data()
    np.testing.assert_array_equal(yb, db.to_numpy())
    # the bound lies above GILoRA's error (the chain held on these unclipped-or-not runs)
    assert np.all(yb >= y)


def test_error_vs_bits_and_method_comparison(tables):
    _, runs, _ = tables
    fig = plotting.plot_error_vs_bits(runs, rank=2)
    ax = [a for a in fig.axes if a.get_visible()][0]
    assert ax.get_xlabel() == "bits b" and ax.get_yscale() == "log"
    d = runs[(runs["layer"] == "pow") & (runs["method"] == "gptq")]
    _, y = _line(ax, "GPTQ").get_data()
    want = (d["error"] / d["signal"]).groupby(d["bits"]).median()
    np.testing.assert_array_equal(y, want.to_numpy())
    fig = plotting.plot_method_comparison(runs, bits=3, rank=2)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and "GPTQ → OLrC" in ax.get_xlabel()
    base = runs[(runs["bits"] == 3) & (runs["rank"] == 2) & (runs["method"] == "gptq+olrc")]
    gil = runs[(runs["bits"] == 3) & (runs["rank"] == 2) & (runs["method"] == "gilora")]
    want = (gil.groupby("layer", sort=False)["error"].median()
            / base.groupby("layer", sort=False)["error"].median()).to_numpy()
    (coll,) = [c for c in ax.collections if c.get_label() == "GILoRA"]
    np.testing.assert_allclose(coll.get_offsets()[:, 0], want, rtol=4 * np.finfo(float).eps)


def test_rank_benefit_points_are_the_measured_and_predicted_ratios(tables):
    _, runs, _ = tables
    fig = plotting.plot_rank_benefit(runs)
    ax = fig.axes[0]
    pts = np.vstack([c.get_offsets() for c in ax.collections if len(c.get_offsets())])
    g = runs[runs["method"] == "gilora"]
    base = g[g["rank"] == 0].set_index(["layer", "seed", "bits"])
    base = base[["error", "h_r"]].rename(columns={"error": "error_0", "h_r": "h_r_0"})
    pos = g[g["rank"] > 0].join(base, on=["layer", "seed", "bits"])
    want = np.c_[pos["h_r"] / pos["h_r_0"], pos["error"] / pos["error_0"]]
    assert len(pts) == len(want)
    np.testing.assert_allclose(np.sort(pts, axis=0), np.sort(want, axis=0),
                               rtol=4 * np.finfo(float).eps)
    assert ax.get_xlabel() == "predicted h(r) / h(0)" and ax.get_ylabel() == "measured D(r) / D(0)"


def test_chain_traces_and_scaling_figures(tables):
    root, runs, traces = tables
    clip = pd.read_csv(root / "bound_chain" / "runs.csv")
    fig = plotting.plot_bound_chain(pd.concat([runs, clip], ignore_index=True))
    titles = [a.get_title() for a in fig.axes]
    assert any("β = 1" in t for t in titles) and any("β = 0.7" in t for t in titles)
    fig = plotting.plot_refinement_traces(traces, bits=2)
    ax = [a for a in fig.axes if a.get_visible()][0]
    for line in ax.get_lines():
        y = line.get_ydata()
        assert y[0] == 1.0 and np.all(np.diff(y) <= 64 * np.finfo(float).eps)  # non-increasing
    scaling = pd.read_csv(root / "scaling" / "runs.csv")
    fig = plotting.plot_bound_scaling(scaling)
    assert len(fig.axes) == 4 and all(a.get_xscale() == "log" for a in fig.axes)


def test_make_figures_reads_tables_only_and_is_reproducible(tables, tmp_path, monkeypatch):
    root, _, _ = tables

    def no_computing(*a, **k):
        raise AssertionError("plotting must not compute")

    for mod, name in ((gt.methods, "compress"), (ex, "run_one")):
        monkeypatch.setattr(mod, name, no_computing)
    res = plotting.make_figures(root, tmp_path / "a", dpi=50)
    assert set(res["written"]) == set(plotting.FIGURES) and not res["missing"]
    again = plotting.make_figures(root, tmp_path / "b", dpi=50, only=["rank_benefit_real"])
    a = (tmp_path / "a" / "rank_benefit_real.png").read_bytes()
    assert a[:8] == b"\x89PNG\r\n\x1a\n"
    assert a == (tmp_path / "b" / "rank_benefit_real.png").read_bytes()
    assert list(again["written"]) == ["rank_benefit_real"]


def test_missing_tables_are_reported_not_invented(tables, tmp_path, capsys):
    root, _, _ = tables
    only_one = tmp_path / "t"
    (only_one / "scaling").mkdir(parents=True)
    for f in ("runs.csv", "traces.csv", "sweep.json"):
        (only_one / "scaling" / f).write_bytes((root / "scaling" / f).read_bytes())
    with pytest.raises(FileNotFoundError, match="run the sweeps"):
        plotting.make_figures(tmp_path / "nowhere", tmp_path / "figs")
    from gilora_theory.cli import main
    assert main(["figures", "--tables", str(only_one), "--out", str(tmp_path / "f2")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert list(out["written"]) == ["upper_vs_lower"]
    assert (tmp_path / "f2" / "upper_vs_lower.png").is_file()
    assert "gilora-theory sweep real_layers" in out["missing"]["rank_benefit_real"]
    assert main(["figures", "--tables", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_tour_pictures():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 6))
    W = rng.standard_normal((6, 4))
    H = gt.hessian(X)
    grid = gt.fit_grid(W, 2)
    g = gt.gptq(W, H, grid)
    figs = [plotting.plot_grid(W, grid, {"GPTQ": g.Q}, columns=(0, 3, 9)),
            plotting.plot_step_terms({"GPTQ": g.step_terms}),
            plotting.plot_spectrum({"s": np.sqrt(np.linalg.eigvalsh(H))}, rank=2),
            plotting.plot_trace([3.0, 2.0, 2.0], ("start", "olrc", "bidup")),
            plotting.plot_residuals({"GPTQ": W - g.Q})]
    assert all(isinstance(f, Figure) for f in figs)
    assert len([a for a in figs[0].axes if a.get_visible()]) == 2  # column 9 does not exist
    levels = sorted(ln.get_ydata()[0] for ln in figs[0].axes[0].get_lines())
    np.testing.assert_array_equal(levels, np.sort(grid.levels(0)))


def test_every_method_has_one_style():
    assert set(gt.METHODS) <= set(plotting.METHOD_STYLE)
    labels = [s["label"] for s in plotting.METHOD_STYLE.values()]
    assert len(set(labels)) == len(labels)
