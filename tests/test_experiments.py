"""Sweeps: expansion, tables, resume after interruption, executors (process pool, Dask)."""
import concurrent.futures
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

import gilora_theory as gt
from gilora_theory.experiments import sweep as ex
from gilora_theory.data.io import load_layer, save_layer

EPS = np.finfo(np.float64).eps


def _layer_file(tmp_path, name, N, N_out, m, seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((m, N)) * np.linspace(2.0, 0.2, N)
    W = rng.standard_normal((N, N_out))
    path = tmp_path / f"{name}.npz"
    save_layer(path, W, X=X, name=name)
    return path, W, X


@pytest.fixture
def config(tmp_path):
    a, _, _ = _layer_file(tmp_path, "a", 12, 6, 40, 0)
    b, _, _ = _layer_file(tmp_path, "b", 8, 10, 30, 1)
    return {"name": "unit", "layers": [{"source": "file", "path": str(a)},
                                       {"source": "file", "path": str(b), "name": "bee"}],
            "methods": ["gptq", "gilora", "refine"], "bits": [2, 3], "ranks": [0, 2, 7],
            "seeds": [0, 1], "options": {"rounds": 2}}


def _stable(table: pd.DataFrame) -> pd.DataFrame:
    """Every column but the wall-clock ones."""
    return table[[c for c in table.columns if not c.startswith("time_")]]


def test_expansion_and_rows_match_direct_calls(config, tmp_path):
    runs = ex.expand_runs(ex.load_config(config))
    keys = [r.key for r in runs]
    assert len(keys) == len(set(keys))
    # gptq at rank 0 only; rank 7 dropped for layer 'bee' (N_out=10, N=8 -> 7 allowed) kept,
    # rank 7 for 'a' (min(12, 6) = 6) dropped; fixed layers run once (seed 0).
    assert "a|0|gilora|b2|r7" not in keys and "bee|0|gilora|b2|r7" in keys
    assert not any("gptq|b2|r2" in k for k in keys) and not any("|1|" in k for k in keys)
    assert len(runs) == 2 * 2 * (1 + 2 * 2) + 2 * 2 * 1  # a: 2 ranks per branch method; bee: 3
    res = ex.run_sweep(config, tmp_path / "out")
    t = res.table
    assert list(t["run_key"]) == keys and res.n_runs == len(keys) and res.n_resumed == 0
    row = t[t["run_key"] == "bee|0|gilora|b3|r2"].iloc[0]
    lay = load_layer(config["layers"][1]["path"])
    c = gt.compress(lay.W, lay.H, "gilora", 3, 2, damp=0.01)
    assert row["error"] == c.objective.error and row["relative_error"] == c.objective.relative_error
    assert row["clipped"] == c.clipped and row["lam"] == c.lam
    assert row["data_hash"] == ex.data_hash(lay.W, lay.H) and (row["N"], row["N_out"]) == (8, 10)
    # refinement traces: 1 + 2 * rounds + 1 entries, non-increasing, the last one equal
    # to the run's damped error
    for key, tr in res.traces.groupby("run_key"):
        v = tr.sort_values("step")["value"].to_numpy()
        assert len(v) == 2 + 2 * 2 and tr["label"].iloc[0] == "start"
        assert np.all(np.diff(v) <= 64 * EPS * v[0])
        damped = t.loc[t["run_key"] == key, "damped_error"].iloc[0]
        assert abs(v[-1] - damped) <= 64 * EPS * v[0]


def test_files_and_sidecar(config, tmp_path):
    out = tmp_path / "out"
    res = ex.run_sweep(config, out)
    runs, traces, side = ex.read_tables(out)
    pd.testing.assert_frame_equal(_stable(runs), _stable(res.table), check_dtype=False)
    assert side["config_hash"] == ex.config_hash(ex.load_config(config)) == res.config_hash
    assert set(side["data_hashes"]) == {"a|0", "bee|0"} and side["n_runs"] == len(runs)
    assert len(list((out / "runs").glob("*.json"))) == len(runs)
    assert not list(out.rglob("*.tmp"))
    if "runs.parquet" in side["tables"]:
        pd.testing.assert_frame_equal(pd.read_parquet(out / "runs.parquet"), res.table)
    else:
        with pytest.raises(ImportError):
            import pyarrow  # noqa: F401  (Parquet is written exactly when pyarrow exists)


def test_resume_after_interruption_gives_the_same_table(config, tmp_path, monkeypatch):
    full = ex.run_sweep(config, tmp_path / "full").table
    real_run_one, calls = ex.run_one, []

    def dies_after_five(run):
        if len(calls) == 5:
            raise KeyboardInterrupt
        calls.append(run.key)
        return real_run_one(run)

    monkeypatch.setattr(ex, "run_one", dies_after_five)
    with pytest.raises(KeyboardInterrupt):
        ex.run_sweep(config, tmp_path / "cut")
    assert len(list((tmp_path / "cut" / "runs").glob("*.json"))) == 5
    assert not (tmp_path / "cut" / "runs.csv").exists()
    monkeypatch.setattr(ex, "run_one", real_run_one)
    resumed = ex.run_sweep(config, tmp_path / "cut")
    assert resumed.n_resumed == 5 and resumed.table["run_key"].is_unique
    pd.testing.assert_frame_equal(_stable(resumed.table), _stable(full), check_exact=True)
    # A second call recomputes nothing.
    assert ex.run_sweep(config, tmp_path / "cut").n_resumed == len(full)


def test_process_pool_gives_the_serial_table(config, tmp_path):
    serial = ex.run_sweep(config, tmp_path / "s").table
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=ctx) as pool:
        par = ex.run_sweep(config, tmp_path / "p", executor=pool).table
    pd.testing.assert_frame_equal(_stable(par), _stable(serial), check_exact=True)


def test_dask_client_executor_gives_the_serial_table(config, tmp_path):
    distributed = pytest.importorskip("distributed")
    serial = ex.run_sweep(config, tmp_path / "s").table
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        par = ex.run_sweep(config, tmp_path / "d", executor=client.get_executor()).table
    pd.testing.assert_frame_equal(_stable(par), _stable(serial), check_exact=True)


def test_refuses_another_configuration_and_changed_data(config, tmp_path):
    out = tmp_path / "out"
    ex.run_sweep(config, out)
    other = {**config, "bits": [4]}
    with pytest.raises(ValueError, match="another configuration"):
        ex.run_sweep(other, out)
    # A layer file edited between an interruption and the resume: refused, not mixed.
    for p in (out / "runs").glob("*.json"):
        if json.loads(p.read_text())["key"].startswith("a|0|gilora"):
            p.unlink()
    _layer_file(tmp_path, "a", 12, 6, 40, 99)
    with pytest.raises(ValueError, match="data hash changed"):
        ex.run_sweep(config, out)


@pytest.mark.parametrize("patch, match", [
    ({"methods": ["gptq", "nope"]}, "methods"),
    ({"bits": [0]}, "bits"),
    ({"ranks": []}, "ranks"),
    ({"layers": [{"source": "web"}]}, "source"),
    ({"options": {"damp": -1.0}}, "damp"),
    ({"options": {"colour": 1}}, "unknown keys"),
    ({"name": "a/b"}, "name"),
    ({"extra": 1}, "unknown keys"),
])
def test_bad_configurations_are_refused(config, patch, match):
    with pytest.raises((ValueError, TypeError), match=match):
        ex.load_config({**config, **patch})


def test_cli_sweep_and_config_file(config, tmp_path, capsys):
    from gilora_theory.cli import main
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps(config))
    assert main(["sweep", str(path), "--out", str(tmp_path / "o"), "--no-progress"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["computed"] == first["runs"] > 0 and first["resumed"] == 0
    assert main(["sweep", str(path), "--out", str(tmp_path / "o"), "--no-progress"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert second["resumed"] == second["runs"] and second["computed"] == 0
    assert main(["sweep", str(tmp_path / "missing.json"), "--out", str(tmp_path / "x")]) == 2
    assert "neither a file" in capsys.readouterr().err


_KILLED_PARENT = """
import concurrent.futures, multiprocessing, os, time
from gilora_theory.experiments.sweep import _exit_with_parent

if __name__ == "__main__":
    pool = concurrent.futures.ProcessPoolExecutor(
        1, mp_context=multiprocessing.get_context("spawn"),
        initializer=_exit_with_parent if WATCH else None,
        initargs=(os.getpid(), 0.1) if WATCH else ())
    print(pool.submit(os.getpid).result(), flush=True)
    pool.submit(time.sleep, 120)
    time.sleep(120)
"""


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] == "Z"
    except FileNotFoundError:
        return True


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs /proc")
@pytest.mark.parametrize("watch", [True, False])
def test_workers_exit_when_the_sweep_is_killed(tmp_path, watch):
    """A sweep killed with SIGKILL leaves no worker behind; without the watcher one would
    stay blocked forever (the negative case, killed here by the test)."""
    script = tmp_path / "parent.py"
    script.write_text(f"WATCH = {watch}\n" + _KILLED_PARENT)
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    worker = int(proc.stdout.readline())
    assert not _gone(worker)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + (20 if watch else 1.5)
    while not _gone(worker) and time.monotonic() < deadline:
        time.sleep(0.1)
    survived = not _gone(worker)
    if survived:
        os.kill(worker, signal.SIGKILL)
    assert survived != watch


# ------------------------------------------------ provenance and data hashes (issue 13)

def test_sweep_sidecar_records_provenance_and_data_hashes(tmp_path):
    import json
    from gilora_theory.experiments import sweep
    spec = sweep.synthetic_spec("tiny", "power_law", m=24, N=8, N_out=6, exponent=1.0)
    config = sweep.load_config({"name": "prov", "layers": [spec], "methods": ["gptq", "gilora"],
                                "bits": [3], "ranks": [2], "seeds": [0, 1]})
    res = sweep.run_sweep(config, tmp_path / "out", progress=False)
    side = json.loads((tmp_path / "out" / "sweep.json").read_text())
    prov = side["provenance"]
    assert prov["seeds"] == [0, 1] and prov["data_hashes"] == side["data_hashes"]
    assert {"gilora_theory", "git_commit", "numpy", "scipy", "blas", "threads"} <= set(prov)
    gil = res.table[res.table.method == "gilora"]
    assert gil.g_r.between(0, 1).all() and gil.gap_resolvable.all()


def test_synthetic_data_hash_depends_on_parameters_not_on_H_bytes():
    from gilora_theory.experiments import sweep
    spec = sweep.synthetic_spec("tiny", "power_law", m=24, N=8, N_out=6, exponent=1.0)
    layer = sweep.resolve_layer(spec, 0)
    h = sweep._layer_hash(spec, 0, layer)
    # the same generator and seed: the same hash even if H's last bits differ (another BLAS)
    H2 = layer.H * (1 + 4 * np.finfo(float).eps)
    assert sweep._layer_hash(spec, 0, type(layer)(layer.W, H2, layer.X, layer.n_samples, layer.name)) == h
    assert sweep._layer_hash(spec, 1, sweep.resolve_layer(spec, 1)) != h
    other = dict(spec, params={"exponent": 2.0})
    assert sweep._layer_hash(other, 0, sweep.resolve_layer(other, 0)) != h
    # a layer read from a file is hashed by its bytes
    assert sweep.data_hash(layer.W, layer.H) != sweep.data_hash(layer.W, H2)
