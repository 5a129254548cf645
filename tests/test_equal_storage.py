"""The equal-storage study (C15): the literature's rows, the verdict line and the script."""
import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gilora_theory import compress
from gilora_theory.data.io import Layer
from gilora_theory.experiments import equal_storage as es
from gilora_theory.storage import compression_storage

ROOT = Path(__file__).resolve().parents[1]
VERDICT = re.compile(r"^(PASS|FAIL|REPORT) C15 [^:]+: .*\d")


@pytest.fixture(scope="module")
def layer():
    rng = np.random.default_rng(4)
    X = rng.standard_normal((40, 12)) * np.linspace(2.0, 0.2, 12)
    return Layer(rng.standard_normal((12, 8)), X.T @ X, X, 40, "t")


def test_literature_rows_are_compress_with_stored_bits_counted(layer):
    table = es.storage_table([layer], bits=(3,), ranks=(2,), branch_bits=(None, 4), plain_bits=(3,),
                             methods=es.LITERATURE_METHODS, source="unit")
    assert set(table["method"]) == set(es.LITERATURE_METHODS)
    for method in es.LITERATURE_METHODS:
        for bb in (None, 4):
            c = compress(layer.W, layer.H, method, 3, 2, l_bits=bb, r_bits=bb,
                         x_abs_mean=layer.x_abs_mean)
            row = table[(table["method"] == method) & (table["branch_bits"].isna() if bb is None
                                                       else table["branch_bits"] == bb)]
            assert len(row) == 1, (method, bb)
            assert row["error"].item() == c.objective.error, (method, bb)
            # LQER's S is folded into L: its branch costs exactly an (N, r) and an (r, N_out) factor
            assert row["effective_bits"].item() == compression_storage(c).effective_bits, (method, bb)
    assert es.storage_invariants(table)["passed"].all()


def test_lqer_rows_need_the_statistic(layer):
    bare = Layer(layer.W, layer.H, name="bare")          # H only: no x_abs_mean
    assert bare.x_abs_mean is None
    t = es.storage_table([bare, layer], bits=(3,), ranks=(2,), branch_bits=(None,), plain_bits=(3,),
                         methods=("rtn+lqer", "loftq"))
    assert set(t.loc[t["layer"] == "bare", "method"]) == {"loftq"}
    assert set(t.loc[t["layer"] == "t", "method"]) == {"rtn+lqer", "loftq"}


def test_c15_line_fails_on_a_broken_invariant(layer):
    table = es.storage_table([layer], bits=(3,), ranks=(2,), branch_bits=(None,), plain_bits=(3,),
                             methods=("gptq", "gptq+olrc", "caldera"), source="real")
    order = es.l_order_comparison([layer], bits=3, rank=2, l_bits=(2,))
    good = es.C15Study(table, es.storage_winners(table, es.C15_BUDGETS),
                       es.storage_invariants(table), order)
    assert good.ok and es.c15_line(good).startswith("REPORT C15 equal storage: real: ")
    # a GPTQ -> OLrC worse than GPTQ alone (a broken OLrC) must turn the verdict into FAIL
    broken = table.copy()
    broken.loc[broken["method"] == "gptq+olrc", "damped_error"] *= 1e3
    bad = dataclasses.replace(good, table=broken, invariants=es.storage_invariants(broken))
    assert not bad.ok and es.c15_line(bad).startswith("FAIL C15") and "olrc <= gptq" in es.c15_line(bad)
    worse_tail = dataclasses.replace(good, order=order.assign(tail_ok=False))
    assert not worse_tail.ok and "projection tail" in es.c15_line(worse_tail)


def test_c15_write_makes_tables_and_figures(tmp_path, layer):
    table = es.storage_table([layer], bits=(3,), ranks=(2,), branch_bits=(None,), plain_bits=(3,),
                             methods=("gptq", "loftq"), source="real")
    study = es.C15Study(table.assign(source="real"), es.storage_winners(table, (3.0, 40.0)),
                        es.storage_invariants(table), pd.DataFrame({"tail_ok": [True]}))
    es.c15_write(study, tmp_path)
    back = pd.read_csv(tmp_path / "tables" / "equal_storage.csv")
    assert list(back["method"]) == list(table["method"])
    assert (tmp_path / "error_vs_effective_bits.png").stat().st_size > 0
    assert not (tmp_path / "error_vs_effective_bits_synthetic.png").exists()   # no synthetic rows


def test_c15_script_prints_one_verdict_line():
    """The script runs like the other claims' (quick mode, own process, one verdict line)."""
    env = dict(os.environ, GILORA_QUICK="1", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(ROOT / "paper_checks" / "c15_equal_storage.py")],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=1200)
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, proc.stdout + proc.stderr
    m = VERDICT.match(lines[0])
    assert m, lines[0]
    assert proc.returncode == (1 if m.group(1) == "FAIL" else 0) and m.group(1) == "REPORT", lines[0]
