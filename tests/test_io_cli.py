"""``gilora-theory run`` end to end, layer files, and a few refused inputs."""
import json
import subprocess
import sys

import numpy as np
import pytest

from gilora_theory import METHODS, check_monotone, compress
from gilora_theory.cli import BRANCHLESS, main
from gilora_theory.data.io import load_layer, load_result, save_layer

EPS = np.finfo(float).eps
KEYS = {"method", "bits", "rank", "damp", "lambda", "error", "damped_error", "relative_error",
        "clipped"}


@pytest.fixture(scope="module")
def arrays():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((30, 6)) @ np.diag(np.linspace(2.0, 0.3, 6))
    return rng.standard_normal((6, 4)), X


@pytest.fixture
def layer_X(tmp_path, arrays):
    W, X = arrays
    path = tmp_path / "layer.npz"
    save_layer(path, W, X=X)
    return path


def run(capsys, *argv):
    code = main(list(map(str, argv)))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("method", METHODS)
def test_run_every_method(capsys, tmp_path, layer_X, arrays, method):
    W, X = arrays
    out_path = tmp_path / "out.npz"
    rank = 0 if method in BRANCHLESS else 2
    extra = ("--rounds", 2) if method == "refine" else ()
    code, out, err = run(capsys, "run", layer_X, "--method", method, "--bits", 3, "--rank", rank,
                         "--damp", 0.02, *extra, "--out", out_path)
    assert code == 0 and err == ""
    report = json.loads(out)
    assert KEYS <= report.keys()
    assert (report["method"], report["bits"], report["rank"], report["damp"]) == (method, 3, rank, 0.02)
    c = compress(W, X.T @ X, method, 3, rank, damp=0.02, rounds=2, x_abs_mean=np.abs(X).mean(axis=0))
    with np.load(out_path, allow_pickle=False) as z:     # Q as uint8 grid codes, no float Q
        assert {"Q_codes", "L", "R", "step", "zero", "bits"} <= set(z.files) and "Q" not in z.files
        assert z["Q_codes"].dtype == np.uint8 and int(z["bits"]) == 3
        Q = z["step"] * (z["Q_codes"] - z["zero"])       # the documented one-line reconstruction
    np.testing.assert_array_equal(Q, c.Q)
    z = load_result(out_path)
    for key, want in (("Q", c.Q), ("L", c.L), ("R", c.R), ("step", c.grid.step),
                      ("zero", c.grid.zero)):
        np.testing.assert_array_equal(z[key], want)
    assert report["error"] == c.objective.error and report["lambda"] == c.lam
    assert report["relative_error"] == c.objective.relative_error
    assert report["clipped"] == c.clipped
    if method == "refine":
        trace = np.array(report["trace"])
        assert len(trace) == 6
        scale = 6 * np.linalg.norm(X, 2) ** 2 * (np.linalg.norm(W) + np.linalg.norm(c.Q)) ** 2 * (1 + 0.02)
        assert check_monotone(trace, scale=scale).passed
    else:
        assert "trace" not in report


def test_run_from_H_with_n_samples_and_unbounded_grid(capsys, tmp_path, arrays):
    W, X = arrays
    path = tmp_path / "layer_h.npz"
    save_layer(path, W, H=X.T @ X, n_samples=30, name="blk.0")
    layer = load_layer(path)
    assert layer.n_samples == 30 and layer.name == "blk.0" and layer.X is None
    code, out, _ = run(capsys, "run", path, "--method", "gilora", "--bits", 2, "--rank", 1,
                       "--unbounded-grid", "--out", tmp_path / "o.npz")
    assert code == 0
    assert json.loads(out)["error"] == compress(W, X.T @ X, "gilora", 2, 1, unbounded=True).objective.error


def test_load_layer_from_X(layer_X, arrays):
    W, X = arrays
    layer = load_layer(layer_X)
    np.testing.assert_array_equal(layer.W, W)
    np.testing.assert_array_equal(layer.H, X.T @ X)
    assert layer.n_samples == 30 and layer.name == "layer"


def test_subprocess_entry_point(tmp_path, layer_X):
    out_path = tmp_path / "sub.npz"
    proc = subprocess.run([sys.executable, "-m", "gilora_theory.cli", "run", str(layer_X),
                           "--method", "gptq+olrc", "--bits", "4", "--rank", "1", "--out",
                           str(out_path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert KEYS <= json.loads(proc.stdout).keys()
    assert out_path.is_file()


def refused(capsys, out_path, *argv):
    code, out, err = run(capsys, *argv, "--out", out_path)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out_path.exists()
    assert not [p for p in out_path.parent.iterdir() if p.name.startswith(f".{out_path.name}")]
    return err


def test_missing_key_is_refused(capsys, tmp_path):
    path = tmp_path / "noW.npz"
    np.savez(path, X=np.ones((3, 2)))
    err = refused(capsys, tmp_path / "o.npz", "run", path, "--method", "gptq", "--bits", 3)
    assert "'W'" in err


def test_bits_out_of_range_is_refused(capsys, tmp_path, layer_X):
    err = refused(capsys, tmp_path / "o.npz", "run", layer_X, "--method", "gptq", "--bits", 17)
    assert "bits" in err


class _Marker:
    """Unpickling this object would create a file (it must never happen)."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_pickled_object_array_is_refused_without_unpickling(capsys, tmp_path):
    marker = tmp_path / "unpickled"
    path = tmp_path / "evil.npz"
    obj = np.empty(1, dtype=object)
    obj[0] = _Marker(str(marker))
    np.savez(path, W=obj, X=np.ones((3, 1)))
    assert not marker.exists()
    err = refused(capsys, tmp_path / "o.npz", "run", path, "--method", "rtn", "--bits", 2)
    assert "pickle" in err
    assert not marker.exists()


@pytest.mark.parametrize("method", ["gptq+olrc", "gilora", "rtn+svd"])
def test_run_stores_the_branch_grids_and_they_reproduce_L_and_R(capsys, tmp_path, layer_X,
                                                                 method):
    from gilora_theory.grid import Grid
    out_path = tmp_path / "out.npz"
    code, out, err = run(capsys, "run", layer_X, "--method", method, "--bits", 3, "--rank", 2,
                         "--l-bits", 3, "--r-bits", 4, "--out", out_path)
    assert code == 0 and err == ""
    with np.load(out_path, allow_pickle=False) as z:
        L, R = z["L"], z["R"]
        lg = Grid(z["L_step"], z["L_zero"], int(z["L_bits"]))
        rg = Grid(z["R_step"], z["R_zero"], int(z["R_bits"]))
        assert str(z["r_axis"]) == "row" and int(z["L_bits"]) == 3 and int(z["R_bits"]) == 4
    assert np.array_equal(lg.quantize(L, np.arange(L.shape[0])), L)      # L is on its grid
    assert np.array_equal(rg.quantize(R.T, np.arange(R.shape[1])), R.T)  # R^T on its grid
    assert len(np.unique(L[:, 0])) <= 8 and len(np.unique(R.T[:, 0])) <= 16
    plain = tmp_path / "plain.npz"
    assert run(capsys, "run", layer_X, "--method", method, "--bits", 3, "--rank", 2,
               "--out", plain)[0] == 0
    with np.load(plain, allow_pickle=False) as z:
        assert not {"L_step", "R_step", "r_axis"} & set(z.files)
