"""Interrupted work loses nothing.

* Every file the package writes appears atomically: a static audit of the
  package source finds no write that bypasses :func:`gilora_theory.data.io.atomic_write`
  (or ``save_npz`` / ``write_json``, which use it), and a failed write leaves
  neither the target nor its temporary file.
* A sweep killed with SIGKILL at (seeded) random moments and restarted ends
  with exactly the rows of an uninterrupted run (wall-clock ``time_*`` columns
  aside).
* An extraction (:func:`gilora_theory.data.torch_adapter.extract`, the engine of
  ``gilora-theory extract``) killed the same way and restarted ends with exactly
  the files and manifest of an uninterrupted one. The smallest model that
  exercises resume is used (a chain of 40 small linear layers) instead of MiniLM,
  whose 37 layers take about a minute to extract on two cores.
"""
from __future__ import annotations

import ast
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import gilora_theory
from gilora_theory.experiments.sweep import run_sweep
from gilora_theory.data.io import atomic_write, save_npz, write_json

PACKAGE = Path(gilora_theory.__file__).parent

# Calls that write a file: (attribute or function name, index of the target argument).
_WRITERS = {"save": 0, "savez": 0, "savez_compressed": 0, "savetxt": 0, "to_csv": 0,
            "to_parquet": 0, "to_json": 0, "savefig": 0, "write_text": None,
            "write_bytes": None, "tofile": 0, "dump": 1}


def _atomic_names(tree: ast.AST) -> set[str]:
    """Names bound by ``with atomic_write(...) as NAME`` anywhere in a module."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.With, ast.AsyncWith)):
            for item in node.items:
                call = item.context_expr
                if (isinstance(call, ast.Call) and getattr(call.func, "id",
                        getattr(call.func, "attr", None)) == "atomic_write"
                        and isinstance(item.optional_vars, ast.Name)):
                    names.add(item.optional_vars.id)
    return names


def _non_atomic_writes(path: Path) -> list[str]:
    """Write calls in ``path`` whose target is not a file object from ``atomic_write``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    safe = _atomic_names(tree)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = getattr(node.func, "attr", getattr(node.func, "id", None))
        if name == "open" or (isinstance(node.func, ast.Attribute) and name == "fdopen"):
            mode = node.args[1] if len(node.args) > 1 else next(
                (k.value for k in node.keywords if k.arg == "mode"), None)
            if isinstance(mode, ast.Constant) and set(str(mode.value)) & set("wax+"):
                if not (path.name == "io.py" and name == "fdopen"):
                    found.append(f"{path.name}:{node.lineno} {name}(..., {mode.value!r})")
            continue
        if name not in _WRITERS or name == "dump" and getattr(node.func, "value", None) is None:
            continue
        idx = _WRITERS[name]
        if idx is None:
            found.append(f"{path.name}:{node.lineno} .{name}()")
            continue
        target = node.args[idx] if len(node.args) > idx else next(
            (k.value for k in node.keywords if k.arg in ("path_or_buf", "fp", "fname", "file")),
            None)
        if target is None:
            continue  # df.to_csv() / json.dump-like calls without a file return text, write nothing
        if not (isinstance(target, ast.Name) and target.id in safe):
            found.append(f"{path.name}:{node.lineno} {name}({ast.unparse(target) if target else ''})")
    return found


def test_every_package_write_is_atomic():
    """No module writes a file except through atomic_write (and the helpers built on it)."""
    modules = sorted(PACKAGE.rglob("*.py"))
    assert len(modules) > 10
    found = [w for path in modules for w in _non_atomic_writes(path)]
    assert found == [], "writes bypassing io.atomic_write:\n" + "\n".join(found)


def test_the_audit_detects_plain_writes(tmp_path):
    """Negative control: the audit flags the writes it is meant to catch."""
    src = tmp_path / "bad.py"
    src.write_text(
        "import numpy as np, json\n"
        "from .io import atomic_write\n"
        "def f(path, df, fig, obj):\n"
        "    np.savez(path, a=1)\n"
        "    df.to_csv(path)\n"
        "    fig.savefig(path)\n"
        "    open(path, 'w').write('x')\n"
        "    json.dump(obj, open(path, 'w'))\n"
        "    df.to_csv(path_or_buf=path)\n"
        "    text = df.to_csv(index=False)\n"
        "    with atomic_write(path) as g:\n"
        "        np.savez(g, a=1)\n"
        "        json.dump(obj, g)\n")
    flagged = _non_atomic_writes(src)
    assert len(flagged) == 7, flagged


def test_failed_write_leaves_nothing(tmp_path):
    """An exception inside atomic_write: no target, no temporary file; an old file survives."""
    target = tmp_path / "sub" / "x.json"
    with pytest.raises(RuntimeError):
        with atomic_write(target, "w") as f:
            f.write("partial")
            raise RuntimeError("interrupted")
    assert not target.exists() and list(target.parent.iterdir()) == []
    write_json(target, {"a": 1})
    with pytest.raises(TypeError):
        write_json(target, {"a": object()})
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in target.parent.iterdir()] == ["x.json"]
    save_npz(tmp_path / "y.npz", A=np.arange(3.0))
    with np.load(tmp_path / "y.npz") as z:
        np.testing.assert_array_equal(z["A"], np.arange(3.0))


# ---------------------------------------------------------------- kill and resume

SWEEP = {
    "name": "resume",
    "layers": [
        {"source": "synthetic", "name": "a", "kind": "power_law", "m": 48, "N": 12, "N_out": 6},
        {"source": "synthetic", "name": "b", "kind": "outliers", "m": 40, "N": 10, "N_out": 7},
    ],
    "methods": ["rtn", "gptq", "gilora", "refine"],
    "bits": [2, 3],
    "ranks": [0, 2],
    "seeds": [0, 1, 2],
}


def _start(argv: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "gilora_theory.cli", *argv],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _kill_after(proc: subprocess.Popen, ready, delay: float, timeout: float = 120.0) -> bool:
    """SIGKILL ``proc`` ``delay`` seconds after ``ready()`` holds; True if it was still running."""
    end = time.monotonic() + timeout
    while not ready() and proc.poll() is None and time.monotonic() < end:
        time.sleep(0.002)
    time.sleep(delay)
    running = proc.poll() is None
    if running:
        os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=timeout)
    return running and proc.returncode == -signal.SIGKILL


def _n_finished(folder: Path) -> int:
    runs = folder / "runs"
    return len(list(runs.glob("*.json"))) if runs.is_dir() else 0


def _table(folder: Path, name: str) -> pd.DataFrame:
    df = pd.read_csv(folder / f"{name}.csv")
    return df.drop(columns=[c for c in df.columns if c.startswith("time_")])


def test_sweep_killed_at_random_moments_resumes_to_the_same_table(tmp_path):
    """SIGKILL during start-up, in the middle (twice) and near the end; the restart completes
    the sweep: same rows as an uninterrupted run, each run exactly once, every run file whole."""
    config = tmp_path / "sweep.json"
    config.write_text(json.dumps(SWEEP))
    reference = run_sweep(SWEEP, tmp_path / "reference")
    n_runs = reference.n_runs
    out = tmp_path / "killed"
    rng = np.random.default_rng(20260606)
    kill_points = [0, int(rng.integers(1, n_runs // 3)), int(rng.integers(n_runs // 2, n_runs - 5)),
                   n_runs - 1]
    killed = 0
    for k in kill_points:
        before = _n_finished(out)
        proc = _start(["sweep", str(config), "--out", str(out), "--no-progress"])
        killed += _kill_after(proc, lambda: _n_finished(out) >= max(k, before),
                              delay=float(rng.uniform(0.0, 0.02)))
    assert killed >= 3, "the kills must land while the sweep runs, or nothing is tested"
    assert 0 < _n_finished(out) < n_runs + 1
    done = subprocess.run([sys.executable, "-m", "gilora_theory.cli", "sweep", str(config),
                           "--out", str(out), "--no-progress"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["runs"] == n_runs and summary["resumed"] + summary["computed"] == n_runs
    assert summary["resumed"] > 0

    for f in (out / "runs").glob("*.json"):
        json.loads(f.read_text())  # every finished-run file is complete
    assert _n_finished(out) == n_runs
    for name in ("runs", "traces"):
        got, want = _table(out, name), _table(tmp_path / "reference", name)
        assert got["run_key"].is_unique if name == "runs" else True
        pd.testing.assert_frame_equal(got, want, check_exact=True)


_CHAIN = """
import sys, torch
from gilora_theory.data.torch_adapter import extract

SETTINGS = {"model": "tanh-chain-40"}


def build():
    torch.manual_seed(0)
    layers = [m for _ in range(40) for m in (torch.nn.Linear(48, 48), torch.nn.Tanh())]
    g = torch.Generator().manual_seed(1)
    return torch.nn.Sequential(*layers), [torch.randn(64, 48, generator=g) for _ in range(4)]


if __name__ == "__main__":
    model, batches = build()
    extract(model, batches, sys.argv[1], settings=SETTINGS)
"""


def test_extraction_killed_at_random_moments_resumes_to_the_same_files(tmp_path):
    """SIGKILL while layer files are being written (twice); the restart skips the complete
    files and ends with the same arrays and manifest layers as an uninterrupted extraction."""
    torch = pytest.importorskip("torch")
    from gilora_theory.data.io import load_layer
    from gilora_theory.data.torch_adapter import MANIFEST, extract
    script = tmp_path / "chain.py"
    script.write_text(_CHAIN)
    space: dict = {"__name__": "chain"}
    exec(_CHAIN, space)
    model, batches = space["build"]()
    reference = extract(model, batches, tmp_path / "reference", settings=space["SETTINGS"])
    assert len(reference["layers"]) == 40 and torch.get_num_threads() >= 1

    out = tmp_path / "killed"
    rng = np.random.default_rng(20260607)
    killed = 0
    n_files = lambda: len(list(out.glob("*.npz"))) if out.is_dir() else 0  # noqa: E731
    for k in sorted(rng.integers(2, 38, size=2)):
        proc = subprocess.Popen([sys.executable, str(script), str(out)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        killed += _kill_after(proc, lambda: n_files() >= k, delay=float(rng.uniform(0.0, 0.01)))
    assert killed == 2, "the kills must land while files are being written"
    partial = json.loads((out / MANIFEST).read_text())
    assert not partial["complete"] and 0 < len(partial["layers"]) < 40
    kept = {e["file"]: (out / e["file"]).stat().st_mtime_ns for e in partial["layers"].values()}

    done = subprocess.run([sys.executable, str(script), str(out)], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    final = json.loads((out / MANIFEST).read_text())
    assert final["complete"]
    assert final["layers"] == reference["layers"]  # same file hashes, same n_samples
    for name, entry in reference["layers"].items():
        got, want = load_layer(out / entry["file"]), load_layer(tmp_path / "reference" / entry["file"])
        assert got.W.tobytes() == want.W.tobytes() and got.H.tobytes() == want.H.tobytes(), name
        assert got.n_samples == want.n_samples
    assert sorted(p.name for p in out.glob("*.npz")) == sorted(e["file"] for e in final["layers"].values())
    assert {f: (out / f).stat().st_mtime_ns for f in kept} == kept  # complete files were skipped
