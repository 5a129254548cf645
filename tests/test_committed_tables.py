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


# ---------------------------------------------------------------------------------------
# The equal-storage study (C15): figures/tables/equal_storage.csv
# ---------------------------------------------------------------------------------------

ES_TABLE = TABLES / "equal_storage.csv"
ES_EXACT = ("N", "N_out", "effective_bits", "total_bits", "branch_storage_bits", "clipped")
ES_CLOSE = ("error", "damped_error", "relative_error")
ES_KEY = ["source", "layer", "method", "bits", "rank", "branch"]


def _es_samples():
    """Two cells of the study, every method in each: a synthetic layer (power law, seed of the
    study) at 3 bits, rank 4, and the first bundled real layer at 2 bits, rank 8."""
    from gilora_theory.data import layers as data
    from gilora_theory.experiments import equal_storage as es
    syn = data.synthetic_layers(es.C15_KINDS, m=256, N=128, N_out=96, rng=es.C15_SEED)[0]
    real = data.bundled_layers(data.bundled_names()[:1])[0]
    return [("synthetic", syn, 3, 4, (None, 4)), ("real", real, 2, 8, (None, 8))]


def _es_recompute(source, layer, bits, rank, branch_bits) -> pd.DataFrame:
    from gilora_theory.experiments import equal_storage as es
    return es.storage_table([layer], bits=(bits,), ranks=(rank,), branch_bits=branch_bits,
                            plain_bits=(bits,), source=source)


def _es_tolerance(layer) -> float:
    e = np.linalg.eigvalsh(layer.H)
    lam = 0.01 * float(np.mean(np.diag(layer.H)))
    return 64 * layer.W.shape[0] * EPS * (e[-1] + lam) / (max(e[0], 0.0) + lam)


def _es_mismatches(new: pd.DataFrame, committed: pd.DataFrame, tol: float) -> list:
    """Rows of ``new`` missing from ``committed`` or differing beyond ``tol`` (relative)."""
    old = committed.set_index(ES_KEY)
    bad = []
    for _, row in new.iterrows():
        key = tuple(row[k] for k in ES_KEY)
        if key not in old.index:
            bad.append(f"{key}: not in the committed table")
            continue
        ref = old.loc[[key]]
        if len(ref) != 1:
            bad.append(f"{key}: {len(ref)} committed rows")
            continue
        ref = ref.iloc[0]
        for col in ES_EXACT:
            a, b = row[col], ref[col]
            if not (pd.isna(a) and pd.isna(b)) and float(a) != float(b):
                bad.append(f"{key}: {col} {b!r} -> {a!r}")
        for col in ES_CLOSE:
            a, b = float(row[col]), float(ref[col])
            if abs(a - b) > tol * max(abs(a), abs(b)):
                bad.append(f"{key}: {col} {b!r} -> {a!r} (rel. tol {tol:.2g})")
    return bad


@pytest.fixture(scope="module")
def es_recomputed():
    committed = pd.read_csv(ES_TABLE)
    out = []
    for source, layer, bits, rank, bb in _es_samples():
        from gilora_theory.gilora import relative_gap
        theta = np.linalg.eigvalsh(layer.H)[::-1]
        assert relative_gap(theta, rank, layer.H.shape[0])[1], f"{layer.name}: gap not resolvable"
        out.append((_es_recompute(source, layer, bits, rank, bb), _es_tolerance(layer)))
    return committed, out


def test_committed_equal_storage_rows_regenerate(es_recomputed):
    """Every method's rows of two cells of figures/tables/equal_storage.csv, recomputed."""
    from gilora_theory.experiments.equal_storage import TABLE_METHODS
    committed, samples = es_recomputed
    bad = []
    for new, tol in samples:
        assert set(new.method) == set(TABLE_METHODS)       # every method of the study sampled
        bad += _es_mismatches(new, committed, tol)
    assert bad == [], ("figures/tables/equal_storage.csv does not regenerate from the code "
                       "(python paper_checks/c15_equal_storage.py):\n" + "\n".join(bad))


def test_a_drifted_equal_storage_row_is_caught(es_recomputed):
    """An error off by 10x the tolerance, another bit count, or a missing row is reported."""
    committed, samples = es_recomputed
    new, tol = samples[0]
    assert _es_mismatches(new, committed, tol) == []
    row = new.iloc[3]
    where = np.flatnonzero(np.all([committed[k] == row[k] for k in ES_KEY], axis=0))[0]
    drifted = committed.copy()
    drifted.loc[where, "error"] *= 1 + 10 * tol
    drifted.loc[where, "effective_bits"] += 0.125
    found = _es_mismatches(new, drifted, tol)
    assert any(": error " in m for m in found) and any("effective_bits" in m for m in found)
    assert any("not in the committed" in m for m in _es_mismatches(new, committed.drop(where), tol))
