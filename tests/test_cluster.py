"""Sweeps past one process: a Dask cluster of worker processes, and concurrent sweeps.

* A ``LocalCluster`` of 2 worker processes gives the serial table bit for bit
  (wall-clock ``time_*`` columns aside); each layer is scattered once, and the
  workers never build a layer themselves.
* A worker killed with SIGKILL mid-sweep loses nothing and duplicates nothing
  once the sweep is rerun.
* Two sweeps started at once into one folder (two processes) split the runs:
  each run is computed by exactly one of them, and both end with the full table.
  With the claims disabled, the same check sees the duplicated work.
* Claims of a dead owner are taken over; live ones are respected.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from gilora_theory.experiments import sweep as ex

distributed = pytest.importorskip("distributed")

SWEEP = {
    "name": "cluster",
    "layers": [
        {"source": "synthetic", "name": "a", "kind": "power_law", "m": 40, "N": 10, "N_out": 5},
        {"source": "synthetic", "name": "b", "kind": "outliers", "m": 36, "N": 8, "N_out": 6},
    ],
    "methods": ["rtn", "gptq", "gilora", "refine"],
    "bits": [2, 3],
    "ranks": [0, 1, 2],
    "seeds": [0, 1, 2],
}


def _stable(df: pd.DataFrame) -> pd.DataFrame:
    return df.drop(columns=[c for c in df.columns if c.startswith("time_")])


def _run_files(out: Path) -> list[Path]:
    return sorted((out / "runs").glob("*.json"))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The serial sweep every distributed variant must reproduce."""
    return ex.run_sweep(SWEEP, tmp_path_factory.mktemp("serial") / "out")


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as cluster, \
            distributed.Client(cluster) as c:
        yield c


def _worker_cache_sizes(client) -> list[int]:
    return sorted(client.run(lambda: ex._resolve_cached.cache_info().currsize).values())


def test_local_cluster_of_two_processes_gives_the_serial_table(reference, client, tmp_path,
                                                               monkeypatch):
    """Same table bit for bit; one scatter per (layer, seed); workers resolve no layer."""
    client.run(ex._resolve_cached.cache_clear)
    scatters = []
    real_scatter = client.scatter
    monkeypatch.setattr(client, "scatter",
                        lambda data, **kw: scatters.append(data.name) or real_scatter(data, **kw))
    res = ex.run_sweep(SWEEP, tmp_path / "out", executor=client)
    assert len(client.nthreads()) == 2 and res.n_computed == res.n_runs == reference.n_runs
    pd.testing.assert_frame_equal(_stable(res.table), _stable(reference.table), check_exact=True)
    pd.testing.assert_frame_equal(res.traces, reference.traces, check_exact=True)
    assert sorted(scatters) == sorted(n for n in "ab" for _ in SWEEP["seeds"])
    assert _worker_cache_sizes(client) == [0, 0]


def test_workers_resolve_layers_themselves_without_scatter(client, tmp_path):
    """Negative control of the cache check above: the generic executor route builds layers
    in the workers, and the check sees it."""
    client.run(ex._resolve_cached.cache_clear)
    ex.run_sweep(SWEEP, tmp_path / "out", executor=client.get_executor())
    assert sum(_worker_cache_sizes(client)) > 0


def test_in_memory_table_on_a_cluster(reference, client):
    runs, _ = ex.sweep_table(SWEEP, executor=client)
    pd.testing.assert_frame_equal(_stable(runs), _stable(reference.table), check_exact=True)


def test_worker_killed_mid_sweep_loses_and_duplicates_nothing(reference, tmp_path):
    """SIGKILL one of two worker processes while runs are in flight; the sweep (rerun if
    it gave up) ends with the serial table, one file per run, every file whole."""
    out = tmp_path / "out"
    errors: list[BaseException] = []
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as cluster, \
            distributed.Client(cluster) as c:
        victim = min(c.run(os.getpid).values())

        def sweep():
            try:
                ex.run_sweep(SWEEP, out, executor=c)
            except Exception as exc:  # e.g. KilledWorker: the rerun below must recover
                errors.append(exc)

        thread = threading.Thread(target=sweep, daemon=True)
        thread.start()
        end = time.monotonic() + 120
        while len(_run_files(out)) < reference.n_runs // 3 and time.monotonic() < end:
            time.sleep(0.005) if out.is_dir() else time.sleep(0.05)
        n_at_kill = len(_run_files(out))
        os.kill(victim, signal.SIGKILL)
        thread.join(timeout=300)
        assert not thread.is_alive(), "the sweep must end by itself after a worker dies"
    assert 0 < n_at_kill < reference.n_runs, "the kill must land mid-sweep"
    again = ex.run_sweep(SWEEP, out)
    assert again.n_resumed + again.n_computed == reference.n_runs
    assert len(_run_files(out)) == reference.n_runs and again.table["run_key"].is_unique
    for f in _run_files(out):
        json.loads(f.read_text())
    pd.testing.assert_frame_equal(_stable(again.table), _stable(reference.table),
                                  check_exact=True)
    assert list((out / "claims").iterdir()) == []


def _cli(*argv: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "gilora_theory.cli", *argv],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_processes_into_one_folder_split_the_work(reference, tmp_path):
    """Both finish with the full table; every run computed by exactly one of them."""
    config = tmp_path / "sweep.json"
    config.write_text(json.dumps(SWEEP))
    out = tmp_path / "shared"
    procs = [_cli("sweep", str(config), "--out", str(out), "--no-progress") for _ in range(2)]
    results = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e for _, e in results]
    summaries = [json.loads(o) for o, _ in results]
    computed = [s["computed"] for s in summaries]
    assert sum(computed) == reference.n_runs, f"duplicated or lost work: {computed}"
    assert all(c > 0 for c in computed), f"the sweeps did not overlap: {computed}"
    assert all(s["by_others"] == reference.n_runs - s["computed"] - s["resumed"]
               for s in summaries)
    got = pd.read_csv(out / "runs.csv")
    pd.testing.assert_frame_equal(_stable(got), _stable(reference.table), check_exact=True)
    assert len(_run_files(out)) == reference.n_runs
    assert list((out / "claims").iterdir()) == []


def _two_sweeps_in_threads(out: Path) -> list[int]:
    results: list = [None, None]

    def go(i):
        results[i] = ex.run_sweep(SWEEP, out).n_computed

    threads = [threading.Thread(target=go, args=(i,), daemon=True) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    return results


def test_claims_stop_duplicated_work_and_the_check_sees_it_without_them(reference, tmp_path,
                                                                        monkeypatch):
    """Two sweeps in one process (distinct owners): the claims split the runs. With a claim
    store that grants every claim, the same count shows the duplication."""
    assert sum(_two_sweeps_in_threads(tmp_path / "claimed")) == reference.n_runs
    monkeypatch.setattr(ex._Claims, "acquire", lambda self, digest: True)
    duplicated = sum(_two_sweeps_in_threads(tmp_path / "unclaimed"))
    assert duplicated > reference.n_runs
    got = pd.read_csv(tmp_path / "unclaimed" / "runs.csv")  # still no lost or doubled row
    pd.testing.assert_frame_equal(_stable(got), _stable(reference.table), check_exact=True)


def _foreign_claim(folder: Path, digest: str, *, host: str, pid: int, age: float) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{digest}.claim"
    path.write_text(json.dumps({"owner": f"{host}:{pid}:x", "host": host, "pid": pid,
                                "time": time.time() - age}))
    os.utime(path, (time.time() - age, time.time() - age))
    return path


def test_claims_of_live_owners_hold_and_stale_ones_are_taken_over(tmp_path):
    folder = tmp_path / "claims"
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead_pid = int(gone.stdout)
    here = socket.gethostname()
    with ex._Claims(folder, timeout=60.0) as claims:
        _foreign_claim(folder, "live_here", host=here, pid=os.getppid(), age=0.0)
        _foreign_claim(folder, "dead_here", host=here, pid=dead_pid, age=0.0)
        _foreign_claim(folder, "fresh_far", host="elsewhere", pid=1, age=10.0)
        _foreign_claim(folder, "old_far", host="elsewhere", pid=1, age=61.0)
        (folder / "garbled.claim").write_text("{")
        assert not claims.acquire("live_here")
        assert claims.acquire("dead_here")  # this host, process gone: stale at once
        assert not claims.acquire("fresh_far")
        assert claims.acquire("old_far")  # not refreshed for longer than the timeout
        assert not claims.acquire("garbled")
        assert claims.acquire("new") and not claims.acquire("new")
        owner = json.loads((folder / "new.claim").read_text())["owner"]
        assert owner == claims.owner and claims.held == {"dead_here", "old_far", "new"}
    assert sorted(p.name for p in folder.iterdir()) == ["fresh_far.claim", "garbled.claim",
                                                        "live_here.claim"]


def test_held_claims_are_refreshed(tmp_path):
    folder = tmp_path / "claims"
    with ex._Claims(folder, timeout=0.2) as claims:
        assert claims.acquire("run")
        os.utime(folder / "run.claim", (0, 0))
        end = time.monotonic() + 30
        while (folder / "run.claim").stat().st_mtime == 0 and time.monotonic() < end:
            time.sleep(0.01)
        assert (folder / "run.claim").stat().st_mtime > 0


def test_sweep_takes_over_a_dead_sweeps_claim(reference, tmp_path):
    out = tmp_path / "out"
    runs = ex.expand_runs(ex.load_config(SWEEP))
    _foreign_claim(out / "claims", runs[3].digest, host="elsewhere", pid=1, age=1000.0)
    res = ex.run_sweep(SWEEP, out, claim_timeout=30.0)
    assert res.n_computed == res.n_runs
    pd.testing.assert_frame_equal(_stable(res.table), _stable(reference.table), check_exact=True)


@pytest.mark.parametrize("argv, message", [
    (["--scheduler", "local:0"], "worker count N >= 1"),
    (["--scheduler", "local:2", "--workers", "2"], "exclude each other"),
])
def test_bad_scheduler_is_one_line_and_writes_nothing(tmp_path, argv, message):
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "gilora_theory.cli", "sweep", "synthetic_rank",
                           "--out", str(out), "--no-progress", *argv],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1 and message in done.stderr
    assert not out.exists()


def test_bad_claim_timeout_and_executor(tmp_path):
    with pytest.raises(ValueError, match="claim_timeout"):
        ex.run_sweep(SWEEP, tmp_path / "a", claim_timeout=0)
    with pytest.raises(TypeError, match="executor must be"):
        ex.run_sweep(SWEEP, tmp_path / "b", executor="local:2")
