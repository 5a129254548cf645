"""Issue 14 (a newcomer's path through the command line) and the result-file format of issue 15.

Each test names the issue item it covers. Most run ``main([...])`` in this process; the
items about exit codes, tracebacks and signals run ``python -m gilora_theory.cli`` in a
subprocess (several refusals per subprocess where possible: each start costs ~1-2 s).
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import gilora_theory._validation as _v
from gilora_theory import compress, exact
from gilora_theory.cli import _progress, main
from gilora_theory.data.io import code_dtype, load_layer, load_result, save_layer, save_npz
from gilora_theory.grid import fit_grid

CLI = [sys.executable, "-m", "gilora_theory.cli"]


@pytest.fixture
def layer(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 12))
    path = tmp_path / "L.npz"
    save_layer(path, rng.standard_normal((12, 6)), X=X)
    return path


def cli(capsys, *argv):
    """``main`` in this process: (status, stdout, stderr lines)."""
    status = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return status, cap.out, cap.err.splitlines()


def refused(capsys, *argv, words=()):
    """Exit 2, nothing on stdout, one stderr line holding every word (regex)."""
    status, out, err = cli(capsys, *argv)
    assert status == 2 and out == "" and len(err) == 1, (status, out, err)
    for w in words:
        assert re.search(w, err[0]), err[0]
    return err[0]


@pytest.fixture
def no_compute(monkeypatch):
    """Any call of the method means the refusal came after the work: fail."""
    def boom(*a, **k):
        raise AssertionError("compress was called before the refusal")
    monkeypatch.setattr("gilora_theory.cli.compress", boom)


# ------------------------------------------------------------ 1, 2: outputs checked first

def test_out_that_is_the_input_is_refused_before_any_work(capsys, tmp_path, layer, no_compute):
    """Item 1: the same file, a symbolic link and a hard link to it; the layer is intact."""
    before = layer.read_bytes()
    (tmp_path / "sym.npz").symlink_to(layer)
    os.link(layer, tmp_path / "hard.npz")
    for src, out in ((layer, layer), (tmp_path / "sym.npz", layer), (layer, tmp_path / "hard.npz")):
        refused(capsys, "run", src, "--method", "gptq", "--bits", 3, "--out", out,
                words=("--out", "input file", "another output name"))
    assert layer.read_bytes() == before and load_layer(layer).W.shape == (12, 6)


def test_unwritable_or_folder_out_is_refused_before_any_work(capsys, tmp_path, layer, no_compute):
    """Item 2: --out a folder, under /proc, under a file, or empty: named, before the work."""
    (tmp_path / "d").mkdir()
    (tmp_path / "f").write_text("x")
    for out, words in ((tmp_path / "d", ("--out", "is a folder")),
                       ("/proc/o.npz", ("--out", "writable folder", "/proc")),
                       (tmp_path / "f" / "o.npz", ("--out", "a file|folder")),
                       ("", ("--out", "empty"))):
        line = refused(capsys, "run", layer, "--method", "gptq", "--bits", 3, "--out", out,
                       words=words)
        assert ".tmp" not in line                      # never a temporary file's name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["L.npz", "d", "f"]


def test_folder_outputs_of_every_command_are_checked_first(capsys, tmp_path):
    """Item 2: sweep, figures, extract and check with --out a file: one line naming --out
    (extract and check refuse before torch or any claim runs)."""
    f = tmp_path / "file"
    f.write_text("keep")
    for argv in (["sweep", "synthetic_rank"], ["figures", "--tables", "figures/tables"],
                 ["extract", "--model", "minilm"], ["check", "--claims", "C1"]):
        refused(capsys, *argv, "--out", f, words=("--out", "must be a folder", "is a file"))
    assert f.read_text() == "keep"


# ------------------------------------------------------------------ 3: exact refuses first

def test_exact_refuses_from_the_count_not_an_overflow(capsys, tmp_path, monkeypatch):
    """Item 3: 20 x 16 at 4 bits, r = 1: the candidate count 16^320, no 'Rescale'."""
    rng = np.random.default_rng(1)
    path = tmp_path / "t.npz"
    save_layer(path, rng.standard_normal((20, 16)), X=rng.standard_normal((40, 20)))
    monkeypatch.setattr(exact, "_enumerate_matrix", _never)
    line = refused(capsys, "exact", path, "--bits", 4, "--rank", 1,
                   words=(r"16\^320", "2.08e\\+385", "limit=1048576"))
    assert "Rescale" not in line


def _never(*a, **k):
    raise AssertionError("the search started before the refusal")


def test_exact_r0_on_a_real_layer_is_refused_by_the_estimate_before_searching(capsys, tmp_path,
                                                                           monkeypatch):
    """Item 3: r = 0 on a bundled 384 x 384 layer: refused from the estimate; the sphere
    decoder is never entered."""
    path = tmp_path / "real.npz"
    assert cli(capsys, "layers", "--export", "encoder.layer.0.attention.self.query",
               "--out", path)[0] == 0
    monkeypatch.setattr(exact, "_sphere_column", _never)
    refused(capsys, "exact", path, "--bits", 4, words=("estimated to visit", "nodes", "limit"))


@pytest.mark.parametrize("kind", ["isotropic", "power_law", "conditioned", "rank_deficient",
                                  "outliers"])
def test_sphere_estimate_never_refuses_a_search_that_finishes(kind):
    """The estimate overshoots ill-conditioned H by many decades: the margin must cover that
    on layers the search finishes quickly (otherwise a feasible search would be refused)."""
    from gilora_theory.data.calibration import calibration
    rng = np.random.default_rng(7)
    for N, N_out, b in ((10, 2, 2), (14, 2, 3), (20, 2, 2), (28, 2, 2)):
        m = N - 1 if kind == "rank_deficient" else 2 * N
        H = calibration(kind, m, N, rng=rng).H
        W = rng.standard_normal((N, N_out))
        try:
            ex = exact.exact_optimum(W, H, b, limit=2 ** 16)
        except ValueError as err:               # the node limit stopped it: not the estimate
            assert "visited more than" in str(err), str(err)
            continue
        lv = exact._alphabet(fit_grid(W, b), None, N, N_out)
        _j, log_nodes = exact._sphere_estimate(H, W, lv)
        assert log_nodes - np.log10(max(ex.nodes, 1)) < exact.SPHERE_MARGIN, (N, b, log_nodes)


def test_sphere_margin_is_what_separates(monkeypatch):
    """Negative case: with no margin, the same estimate refuses a search that finishes."""
    from gilora_theory.data.calibration import calibration
    rng = np.random.default_rng(3)
    H = calibration("rank_deficient", 27, 28, rng=rng).H
    W = rng.standard_normal((28, 2))
    assert exact.exact_optimum(W, H, 2).value >= 0
    monkeypatch.setattr(exact, "SPHERE_MARGIN", 0)
    with pytest.raises(ValueError, match="estimated to visit"):
        exact.exact_optimum(W, H, 2)


# -------------------------------------------------------- 4, 5: sweep configuration checks

def _config(tmp_path, **layer_keys):
    spec = {"source": "synthetic", "name": "a", "kind": "isotropic", "m": 24, "N": 8,
            "N_out": 8, **layer_keys}
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"name": "t", "layers": [spec], "methods": ["gptq", "gilora"],
                                "bits": [3], "ranks": [0, 2, 50]}))
    return path


def test_bad_configuration_writes_nothing_and_the_fixed_one_runs(capsys, tmp_path):
    """Item 4: a typo in the kind, a missing key, a missing file: exit 2, --out not even
    created; after the fix the same --out runs."""
    out = tmp_path / "sweep"
    for bad, words in (({"kind": "isotropc"}, ("layer 'a'", "kind", "isotropc")),
                       ({"N_out": None}, ("N_out",)),
                       ({"source": "file", "path": str(tmp_path / "nope.npz")},
                        ("nope.npz", "does not exist"))):
        cfg = _config(tmp_path, **bad)
        if bad.get("N_out", 0) is None:
            spec = json.loads(cfg.read_text())
            del spec["layers"][0]["N_out"]
            cfg.write_text(json.dumps(spec))
        if bad.get("source") == "file":
            spec = json.loads(cfg.read_text())
            spec["layers"][0] = {"source": "file", "name": "a", "path": bad["path"]}
            cfg.write_text(json.dumps(spec))
        refused(capsys, "sweep", cfg, "--out", out, "--no-progress", words=words)
        assert not out.exists()
    status, stdout, _ = cli(capsys, "sweep", _config(tmp_path), "--out", out, "--no-progress")
    assert status == 0 and json.loads(stdout)["computed"] == 3


def test_misspelt_keys_are_errors_and_dropped_ranks_are_reported(capsys, tmp_path):
    """Item 5: 'parms', 'weight', 'wieghts' refused naming the key, the allowed ones and a
    close match; ranks above min(N, N_out) are listed in skipped_ranks."""
    for key, hint in (("parms", "params"), ("weight", "weights"), ("wieghts", "weights")):
        refused(capsys, "sweep", _config(tmp_path, **{key: {}}), "--out", tmp_path / "o",
                words=(f"'{key}'", f"did you mean '{hint}'", "allowed: source, name"))
    status, stdout, _ = cli(capsys, "sweep", _config(tmp_path), "--out", tmp_path / "o",
                            "--no-progress")
    assert status == 0 and json.loads(stdout)["skipped_ranks"] == {"a": [50]}


# ------------------------------------------------------------- 6: damaged tables and files

def test_damaged_sweep_files_are_named_with_the_way_to_recover(capsys, tmp_path):
    """Item 6: a broken runs/*.json and config.json; deleting the run file as told recovers."""
    out, cfg = tmp_path / "s", _config(tmp_path)
    assert cli(capsys, "sweep", cfg, "--out", out, "--no-progress")[0] == 0
    run_file = sorted((out / "runs").glob("*.json"))[0]
    run_file.write_text(run_file.read_text()[:15])
    refused(capsys, "sweep", cfg, "--out", out, "--no-progress",
            words=(re.escape(run_file.name), "damaged", "delete it and rerun"))
    run_file.unlink()
    status, stdout, _ = cli(capsys, "sweep", cfg, "--out", out, "--no-progress")
    assert status == 0 and json.loads(stdout)["computed"] == 1
    (out / "config.json").write_text("{not json")
    refused(capsys, "sweep", cfg, "--out", out, words=("config.json", "damaged", "new --out"))


def test_damaged_tables_stop_figures_before_any_is_drawn(capsys, tmp_path):
    """Item 6: a renamed column, a truncated table, a header-only table: exit 2 naming the
    file and the sweep command that rebuilds it, and no figure written."""
    import shutil
    good = Path(__file__).resolve().parents[1] / "figures" / "tables"
    cases = [("real_layers/runs.csv", lambda t: t.replace("bits", "bitz", 1), "column 'bits'"),
             ("scaling/runs.csv", lambda t: t[:3000], "truncated"),
             ("synthetic_rank/traces.csv", lambda t: t.splitlines()[0] + "\n", "no rows")]
    for rel, damage, words in cases:
        tables, figs = tmp_path / f"t{len(words)}", tmp_path / f"f{len(words)}"
        shutil.copytree(good, tables)
        (tables / rel).write_text(damage((tables / rel).read_text()))
        refused(capsys, "figures", "--tables", tables, "--out", figs,
                words=(re.escape(rel), words, "gilora-theory sweep"))
        assert not figs.exists() or list(figs.iterdir()) == []


# ---------------------------------------------------- 7, 8: options that do not apply

def test_options_that_do_not_apply_are_refused(capsys, layer, no_compute):
    """Items 7 and 8: --rounds bounded and refine-only; --rank / --l-bits / --r-bits need a
    method with a branch (and a positive rank)."""
    base = ["run", layer, "--bits", 3, "--out", Path(layer).with_name("o.npz")]
    for extra, words in ((["--method", "refine", "--rank", 2, "--rounds", 10 ** 9],
                          ("--rounds", r"\[0, 100\]", "got 1000000000")),
                         (["--method", "gilora", "--rank", 2, "--rounds", 3],
                          ("--rounds", "refine only")),
                         (["--method", "gptq", "--rank", 8], ("--rank", "no low-rank branch")),
                         (["--method", "rtn", "--l-bits", 4], ("--l-bits", "no low-rank branch")),
                         (["--method", "gilora", "--r-bits", 4], ("--r-bits", "--rank >= 1"))):
        refused(capsys, *base, *extra, words=words)


def test_json_says_what_was_done(capsys, tmp_path, layer):
    """Item 8: rank as run, rounds for refine, and the trace explained next to a quantized
    branch (the trace is the full-precision loop; damped_error is after the branch grids)."""
    out = tmp_path / "o.npz"
    status, stdout, _ = cli(capsys, "run", layer, "--method", "refine", "--bits", 3, "--rank", 2,
                            "--rounds", 2, "--l-bits", 4, "--r-bits", 4, "--out", out)
    report = json.loads(stdout)
    assert status == 0 and report["rank"] == 2 and report["rounds"] == 2
    assert "trace_note" in report and report["trace"][-1] != report["damped_error"]
    status, stdout, _ = cli(capsys, "run", layer, "--method", "gptq", "--bits", 3, "--out", out)
    report = json.loads(stdout)
    assert report["rank"] == 0 and "rounds" not in report and "trace_note" not in report
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert "`pass_lam`" in readme


# -------------------------------------------------------------- 10, 11: smaller items

def test_claims_and_check_out_edge_cases(capsys, monkeypatch):
    """Item 10: '' and repeated ids refused; --out '' refused; before any claim runs."""
    monkeypatch.setattr("gilora_theory.experiments.report.run_check", _never)
    refused(capsys, "check", "--claims", "", words=("--claims", "claim ids"))
    refused(capsys, "check", "--claims", "C1,,C6", words=("--claims",))
    refused(capsys, "check", "--claims", "C1,C1", words=("--claims", "C1 more than once"))
    refused(capsys, "check", "--claims", "C1", "--out", "", words=("--out", "empty"))


def test_flags_as_typed_and_advice_the_cli_offers(capsys, tmp_path, layer):
    """Item 11: a folder as the layer; --seq-len in a message; singular-H advice names
    --route eig (which then works), never route='eig' or damp_policy."""
    refused(capsys, "run", tmp_path, "--method", "gptq", "--bits", 3, "--out", tmp_path / "o.npz",
            words=("is a folder",))
    refused(capsys, "extract", "--model", "minilm", "--seq-len", 2, "--out", tmp_path / "x",
            words=("--seq-len", r"\[3, 512\]"))
    rng = np.random.default_rng(0)
    sing = tmp_path / "sing.npz"
    save_layer(sing, rng.standard_normal((8, 5)), X=rng.standard_normal((5, 8)))
    line = refused(capsys, "run", sing, "--method", "gptq", "--bits", 3, "--damp", 0,
                   "--out", tmp_path / "o.npz", words=("singular", "--damp", "--route eig"))
    assert "route='eig'" not in line and "damp_policy" not in line
    status, _, _ = cli(capsys, "run", sing, "--method", "gptq", "--bits", 3, "--damp", 0,
                       "--route", "eig", "--out", tmp_path / "o.npz")
    assert status == 0


def test_exact_optimum_zero_is_explained(capsys, tmp_path):
    """Item 11: W on the grid, so the optimum is 0 and the ratios are null with a note."""
    H = np.diag([1.0, 2.0, 3.0])
    W = np.array([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])      # on its own 1-bit grid
    path = tmp_path / "z.npz"
    save_layer(path, W, H=H)
    status, stdout, _ = cli(capsys, "exact", path, "--bits", 1)
    report = json.loads(stdout)
    assert status == 0 and report["optimum"] == 0 and "ratios_note" in report


# --------------------------------------------------------------- friction: layers, TINY

def test_layers_lists_and_exports_and_the_readme_examples_work(capsys, tmp_path):
    """`layers` lists the bundled layers with shapes; `--export` writes a file `run` takes;
    the README's tiny `exact` example works."""
    status, stdout, _ = cli(capsys, "layers")
    listing = json.loads(stdout)
    assert status == 0 and listing["bundled"]["encoder.layer.0.attention.self.query"]["shape"] == [384, 384]
    assert "synthetic/isotropic" in listing["synthetic"]
    tiny = tmp_path / "tiny.npz"
    assert cli(capsys, "layers", "--export", "synthetic/isotropic", "--shape", "4,2",
               "--out", tiny)[0] == 0
    status, stdout, _ = cli(capsys, "exact", tiny, "--bits", 2, "--rank", 1)
    assert status == 0 and json.loads(stdout)["candidates"] == 4 ** 8
    refused(capsys, "layers", "--export", "nope", "--out", tmp_path / "n.npz",
            words=("--export", "no bundled layer 'nope'"))
    refused(capsys, "layers", "--export", "synthetic/isotropic", "--out", tmp_path / "n.npz",
            words=("--shape",))
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert "gilora-theory layers --export" in readme and "--shape 4,2" in readme


def test_progress_loops_are_labelled_by_phase():
    """model-error's two loops no longer share one label."""
    pytest.importorskip("tqdm")

    class Args:
        no_progress = False
    wrap = _progress(Args(), "model-error: calibration batches", "model-error: compress layers")
    labels = [wrap(range(1)).desc, wrap(range(1)).desc, wrap(range(1)).desc]
    assert labels == ["model-error: calibration batches", "model-error: compress layers",
                      "model-error: compress layers"]


# ------------------------------------------------ issue 15 item 1: result file, H once

@pytest.mark.parametrize("bits", [2, 8, 9, 16])
def test_result_stores_codes_in_the_smallest_dtype_and_q_comes_back_bit_for_bit(capsys, tmp_path,
                                                                             layer, bits):
    out = tmp_path / "o.npz"
    assert cli(capsys, "run", layer, "--method", "gilora", "--bits", bits, "--rank", 2,
               "--out", out)[0] == 0
    L = load_layer(layer)
    c = compress(L.W, L.H, "gilora", bits, 2)
    with np.load(out, allow_pickle=False) as z:
        assert "Q" not in z.files and z["Q_codes"].dtype == (np.uint8 if bits <= 8 else np.uint16)
        Q = z["step"] * (z["Q_codes"] - z["zero"])
    assert np.array_equal(Q, c.Q) and code_dtype(bits).itemsize == (1 if bits <= 8 else 2)


def test_unbounded_grid_and_old_files_keep_a_float_q(capsys, tmp_path, layer):
    """Off a bounded grid Q stays float64; a file of the old format (float Q, compressed)
    is read by load_result; a code array that does not reproduce Q is never stored."""
    out = tmp_path / "o.npz"
    assert cli(capsys, "run", layer, "--method", "gptq", "--bits", 3, "--unbounded-grid",
               "--out", out)[0] == 0
    with np.load(out) as z:
        assert "Q" in z.files and "Q_codes" not in z.files
    L = load_layer(layer)
    c = compress(L.W, L.H, "gptq", 3)
    old = tmp_path / "old.npz"
    save_npz(old, Q=c.Q, L=c.L, R=c.R, step=c.grid.step, zero=c.grid.zero, bits=np.asarray(3))
    assert np.array_equal(load_result(old)["Q"], c.Q)
    from gilora_theory.data.io import _grid_codes
    off = c.Q.copy()
    off[0, 0] += 1e-3 * c.grid.step[0, 0]                  # negative case: not on the grid
    assert _grid_codes(off, c.grid) is None and _grid_codes(c.Q, c.grid) is not None


def test_codes_are_checked_in_every_row_block(monkeypatch):
    """``_grid_codes`` works in row blocks: codes equal the one-shot rounding, and an
    entry off the grid (or beyond the clip range) in the last block is still refused."""
    from gilora_theory import fit_grid
    from gilora_theory.data import io
    monkeypatch.setattr(io, "_ROWS", 4)
    rng = np.random.default_rng(5)
    W = rng.standard_normal((18, 5))
    grid = fit_grid(W, 3)
    Q = grid.quantize(W, np.arange(18))
    codes = io._grid_codes(Q, grid)
    np.testing.assert_array_equal(codes, (np.round(Q / grid.step) + grid.zero).astype(np.uint8))
    for bad in (1e-3 * grid.step[0, 4], 100 * grid.step[0, 4]):
        off = Q.copy()
        off[17, 4] += bad
        assert io._grid_codes(off, grid) is None


@pytest.mark.parametrize("compressed", [False, True])
def test_layer_files_are_uncompressed_by_default_and_both_kinds_load(tmp_path, compressed):
    import zipfile
    rng = np.random.default_rng(6)
    X, W = rng.standard_normal((30, 8)), rng.standard_normal((8, 4))
    path = tmp_path / "l.npz"
    save_layer(path, W, H=X.T @ X, **({"compressed": True} if compressed else {}))
    with zipfile.ZipFile(path) as z:
        kinds = {i.compress_type for i in z.infolist()}
    assert kinds == ({zipfile.ZIP_DEFLATED} if compressed else {zipfile.ZIP_STORED})
    layer = load_layer(path)
    assert np.array_equal(layer.W, W) and np.array_equal(layer.H, X.T @ X)


def test_run_tests_h_once(capsys, tmp_path, layer, monkeypatch):
    """The layer file's H is not factorised by the CLI a second time: `run --method rtn`
    (whose core calls no other validating function) runs the PSD test exactly once."""
    calls = []
    real = _v._is_psd
    monkeypatch.setattr(_v, "_is_psd", lambda *a: calls.append(1) or real(*a))
    save_layer(tmp_path / "h.npz", load_layer(layer).W, H=load_layer(layer).H)
    calls.clear()
    assert cli(capsys, "run", tmp_path / "h.npz", "--method", "rtn", "--bits", 3,
               "--out", tmp_path / "o.npz")[0] == 0
    assert len(calls) == 1
    calls.clear()
    load_layer(tmp_path / "h.npz")                         # control: the default tests it
    assert len(calls) == 1


# ------------------------------------------------------------------ subprocess: exit codes

def test_subprocess_refusals_are_one_line_exit_2(tmp_path, layer):
    """Item acceptance: through the real entry point, no traceback, one stderr line."""
    script = (
        "import sys\n"
        "from gilora_theory.cli import main\n"
        "argvs = [a.split('\\x1f') for a in sys.argv[1:]]\n"
        "print(';'.join(str(main(a)) for a in argvs))\n")
    argvs = [["run", str(layer), "--method", "gptq", "--bits", "3", "--out", str(layer)],
             ["run", str(layer), "--method", "gptq", "--bits", "3", "--rank", "8", "--out",
              str(tmp_path / "o.npz")],
             ["check", "--claims", ""]]
    proc = subprocess.run([sys.executable, "-c", script, *("\x1f".join(a) for a in argvs)],
                          capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip() == "2;2;2" and "Traceback" not in proc.stderr
    assert len(proc.stderr.splitlines()) == 3
    proc = subprocess.run([*CLI, "run", str(layer), "--method", "gptq", "--bits", "3",
                           "--out", str(layer)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1


def _popen_as_from_a_terminal(argv):
    """``Popen`` with SIGINT live in the child, as a terminal's Ctrl-C finds it.

    A background job of a non-interactive shell (``pytest ... &``) starts with SIGINT
    ignored; an ignored signal stays ignored across ``exec`` and Python then installs no
    KeyboardInterrupt handler, so the child would never see the test's SIGINT. A handled
    signal is reset to its default across ``exec``: this process handles it while the
    child starts, then its own disposition is restored.
    """
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    finally:
        signal.signal(signal.SIGINT, before)


def test_ctrl_c_is_one_line_exit_130_and_the_sweep_resumes(tmp_path):
    """Item 9: SIGINT to a running sweep (2 workers): one line, exit 130, no traceback;
    the same command then finishes the sweep."""
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"name": "slow", "layers": [
        {"source": "synthetic", "name": "a", "kind": "isotropic", "m": 200, "N": 96,
         "N_out": 96}], "methods": ["gilora", "refine"], "bits": [2, 3],
        "ranks": [1, 4], "seeds": [0, 1, 2], "options": {"rounds": 3}}))
    out = tmp_path / "s"
    argv = [*CLI, "sweep", str(cfg), "--out", str(out), "--workers", "2", "--no-progress"]
    proc = _popen_as_from_a_terminal(argv)
    deadline = time.monotonic() + 300
    while not (out / "runs").exists() or not list((out / "runs").glob("*.json")):
        assert time.monotonic() < deadline and proc.poll() is None, "no run finished"
        time.sleep(0.1)
    assert proc.poll() is None, "the sweep ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 130, stderr
    assert stderr.strip() == "gilora-theory: interrupted; rerun the same command to resume"
    assert stdout == ""
    done = subprocess.run(argv, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["resumed"] >= 1 and summary["resumed"] + summary["computed"] == summary["runs"]
