"""The committed sweep tables under figures/tables/ regenerate from the current code (issue 13).

For every committed sweep folder, a deterministic sample of its rows (one per
method, the run whose key has the smallest SHA-1 among the layers of the
smallest size, so the sample is cheap and does not depend on the table's row
order) is recomputed with :func:`gilora_theory.experiments.sweep.run_one` from
the packaged configuration of the same name, and must agree with the committed
row:

- the configuration hash and the data hash exactly (both hash only data and
  parameters: equal across runs, thread counts and machines);
- ``clipped`` exactly;
- every error and bound column within ``64 N eps cond(H_lam)`` relative (the
  error of an error evaluation ``tr(D^T H D)`` with a ``D`` from a pass on
  ``H_lam``, whose rounding is amplified at most by the condition number).

Rows of methods that use ``V_r`` on a layer whose eigengap at ``r`` float64 does
not resolve (``gap_resolvable`` False: ``span(V_r)`` depends on rounding, and
with it ``Q``) are recomputed but only their method-independent columns are
compared; the test reports how many such rows it met.

A failure here means the committed table was not produced by the current code:
regenerate it (commands in figures/README.md).
"""
import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gilora_theory.experiments import sweep

ROOT = Path(__file__).resolve().parents[1]
TABLES = ROOT / "figures" / "tables"
FOLDERS = sorted(p.parent for p in TABLES.glob("*/sweep.json"))
EPS = np.finfo(np.float64).eps
COMPARED = ("error", "damped_error", "relative_error", "signal", "lam", "h_r", "g_b", "cor39",
            "bound_error", "bound_step_sum", "bound_closed_form")
ALWAYS = ("signal", "h_r", "g_b", "data_hash")
USES_V_R = ("gilora", "gilora+olrc", "gptq+ls", "refine")


def _sample(runs, table: pd.DataFrame) -> list:
    """One run per method: smallest SHA-1 of its key among the smallest layers."""
    small = table[table.N * table.N_out == (table.N * table.N_out).min()]
    keys = set(small.run_key)
    chosen = {}
    for run in runs:
        if run.key not in keys:
            continue
        digest = hashlib.sha1(run.key.encode()).hexdigest()
        if run.method not in chosen or digest < chosen[run.method][0]:
            chosen[run.method] = (digest, run)
    return [run for _, run in sorted(chosen.values(), key=lambda x: x[0])]


def _tolerance(run) -> float:
    """``64 N eps cond(H_lam)``: relative tolerance of a recomputed error of this run."""
    layer = sweep.resolve_layer(json.loads(run.spec), run.seed)
    opts = json.loads(run.options)
    e = np.linalg.eigvalsh(layer.H)
    lam = opts["damp"] * float(np.mean(np.diag(layer.H)))
    return 64 * layer.W.shape[0] * EPS * (e[-1] + lam) / (max(e[0], 0.0) + lam)


def test_every_committed_sweep_is_sampled():
    names = {p.name for p in FOLDERS}
    assert names and names <= set(sweep.packaged_configs())


@pytest.mark.parametrize("folder", FOLDERS, ids=[p.name for p in FOLDERS])
def test_committed_rows_regenerate(folder):
    table, _, sidecar = sweep.read_tables(folder)
    config = sweep.load_config(folder.name)
    assert sidecar["config_hash"] == sweep.config_hash(config), (
        f"{folder} was swept with another configuration than the packaged {folder.name!r}")
    sample = _sample(sweep.expand_runs(config), table)
    assert sample, f"no run of {folder.name} found in its table"
    committed = table.set_index("run_key")
    bad, unresolvable = [], 0
    for run in sample:
        row = sweep.run_one(run)["row"]
        unresolvable += run.method in USES_V_R and row.get("gap_resolvable") is False
        bad += _mismatches(run, row, committed.loc[run.key])
    print(f"{folder.name}: {len(sample)} rows recomputed, {unresolvable} with an unresolvable gap")
    assert bad == [], f"{folder.name} does not regenerate from the code:\n" + "\n".join(bad)


def _mismatches(run, row: dict, old) -> list:
    """Differences between a recomputed row and the committed one beyond the tolerance."""
    tol = _tolerance(run)
    skip_method = run.method in USES_V_R and row.get("gap_resolvable") is False
    bad = []
    if row["data_hash"] != old["data_hash"]:
        bad.append(f"{run.key}: data_hash {old['data_hash']} -> {row['data_hash']}")
    if not skip_method and int(row["clipped"]) != int(old["clipped"]):
        bad.append(f"{run.key}: clipped {old['clipped']} -> {row['clipped']}")
    for col in COMPARED:
        if col not in old or row.get(col) is None or pd.isna(old[col]):
            continue
        if skip_method and col not in ALWAYS:
            continue
        new, ref = float(row[col]), float(old[col])
        if abs(new - ref) > tol * max(abs(ref), abs(new)):
            bad.append(f"{run.key}: {col} {ref!r} -> {new!r} (rel. tol {tol:.2g})")
    return bad


def test_a_drifted_row_is_caught():
    """A committed error off by 10x the tolerance, or another data hash, is reported."""
    folder = TABLES / "bound_chain"
    table = sweep.read_tables(folder)[0].set_index("run_key")
    run = _sample(sweep.expand_runs(sweep.load_config("bound_chain")), table.reset_index())[0]
    row = sweep.run_one(run)["row"]
    old = table.loc[run.key].copy()
    assert _mismatches(run, row, old) == []
    tol = _tolerance(run)
    assert tol < 1e-6
    old["error"] *= 1 + 10 * tol
    assert [m for m in _mismatches(run, row, old) if ": error " in m]
    old["data_hash"] = "0" * 16
    assert [m for m in _mismatches(run, row, old) if "data_hash" in m]
