"""Bad input: every public entry point refuses it with a message naming the argument.

Each case of the battery runs against the Python API (every public function
that takes the offending argument) and against the command line
(``gilora_theory.cli.main``; a few also through ``python -m gilora_theory.cli``).
The command line exits 2 with exactly one line on stderr, prints nothing on
stdout and leaves no output file (nor a temporary one) behind.

Values near the float limits are not wrong in themselves: a function either
returns finite results or raises ``NumericalError`` naming what to rescale;
never inf or NaN.
"""
from __future__ import annotations

import builtins
import dataclasses
import json
import os
import pickle
import re
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import gilora_theory as gt
from gilora_theory import exact, upper_bounds
from gilora_theory.cli import main
from gilora_theory.data.io import load_layer, load_result, save_layer

N, N_OUT, M = 8, 5, 20
BITS, RANK = 3, 2

_rng = np.random.default_rng(7)
W0 = _rng.standard_normal((N, N_OUT))
X0 = _rng.standard_normal((M, N))
H0 = X0.T @ X0
GRID0 = gt.fit_grid(W0, BITS)
Q0 = GRID0.quantize(W0, np.arange(N))

# Public functions, the arguments of the battery they take, and how to call them.
API = {
    "fit_grid": (("W", "bits"), lambda a: gt.fit_grid(a["W"], a["bits"])),
    "gptq": (("W", "H", "damp"), lambda a: gt.gptq(a["W"], a["H"], GRID0, damp=a["damp"])),
    "olrc": (("W", "H", "rank", "damp"),
             lambda a: gt.olrc(a["W"], Q0, a["H"], a["rank"], damp=a["damp"])),
    "gilora": (("W", "H", "rank", "damp"),
               lambda a: gt.gilora(a["W"], a["H"], GRID0, a["rank"], damp=a["damp"])),
    "bid_up": (("W", "H", "damp"),
               lambda a: gt.bid_up(a["W"], Q0, a["H"], GRID0, damp=a["damp"])),
    "refine": (("W", "H", "rank", "damp"),
               lambda a: gt.refine(a["W"], a["H"], GRID0, Q0, a["rank"], damp=a["damp"])),
    "compress": (("W", "H", "bits", "rank", "damp"),
                 lambda a: gt.compress(a["W"], a["H"], "refine", a["bits"], a["rank"],
                                       damp=a["damp"])),
    "layer_error(H=)": (("W", "H"), lambda a: gt.layer_error(a["W"], Q0, H=a["H"])),
    "evaluate(H=)": (("W", "H"), lambda a: gt.evaluate(a["W"], Q0, H=a["H"])),
    "layer_error(X=)": (("X",), lambda a: gt.layer_error(W0, Q0, X=a["X"])),
    "evaluate(X=)": (("X",), lambda a: gt.evaluate(W0, Q0, X=a["X"])),
    "hessian": (("X",), lambda a: gt.hessian(a["X"])),
    "damping": (("H", "damp"), lambda a: gt.damping(a["H"], a["damp"])),
    "hessian_spectrum": (("H",), lambda a: gt.hessian_spectrum(a["H"])),
    "psi_factor": (("H",), lambda a: gt.psi_factor(a["H"])),
    "layer_bounds": (("W", "H", "bits", "rank", "damp"),
                     lambda a: upper_bounds.layer_bounds(a["W"], a["H"], a["bits"], a["rank"],
                                                         damp=a["damp"])),
    "factorised_bound": (("W", "H", "bits", "damp"),
                         lambda a: upper_bounds.factorised_bound(a["W"], a["H"], a["bits"],
                                                                 damp=a["damp"])),
    "exact_optimum": (("W", "H", "bits"), lambda a: exact.exact_optimum(a["W"], a["H"], a["bits"])),
    "top_eigenvectors": (("H",), lambda a: gt.top_eigenvectors(a["H"], RANK)),
    "augmented_hessian": (("H",), lambda a: gt.augmented_hessian(a["H"], np.eye(N)[:, :RANK])),
    "ridge_R": (("W", "H"), lambda a: gt.ridge_R(a["W"], Q0, a["H"], np.eye(N)[:, :RANK], 0.1)),
    "clipped_mask": (("W",), lambda a: gt.clipped_mask(GRID0, a["W"], Q0)),
}
# The name each function gives the argument in its messages (its own parameter name).
RENAME = {"bid_up": {"W": "target"}, "damping": {"damp": "alpha"}, "psi_factor": {"H": "H_lam"},
          "clipped_mask": {"W": "target"}}


@dataclass(frozen=True)
class Case:
    """``arg`` receives ``value``; the error is ``exc`` and its message matches ``words``.

    ``exc = NumericalError`` marks a scale case (finite results or that error).
    ``file_words``/``file_exc`` replace them when the value arrives in LAYER.npz;
    ``flag`` is the command-line spelling of a scalar argument; ``skip`` lists
    functions for which the value is not wrong (a shape mismatch needs W).
    """

    id: str
    arg: str
    value: object
    exc: type
    words: tuple
    file_words: tuple = ()
    file_exc: type | None = None
    flag: tuple = ()
    skip: tuple = ()


def _with(A, idx, v):
    A = np.array(A, dtype=float)
    A[idx] = v
    return A


def _indefinite():
    e, V = np.linalg.eigh(H0)
    e[0] = -0.5 * e[-1]
    return (V * e) @ V.T


CASES = [
    Case("nan-W", "W", _with(W0, (2, 3), np.nan), ValueError, ("finite", "nan", r"\(2, 3\)")),
    Case("inf-W", "W", _with(W0, (0, 0), np.inf), ValueError, ("finite", "inf")),
    Case("nan-X", "X", _with(X0, (5, 1), np.nan), ValueError, ("finite", "nan")),
    Case("inf-X", "X", _with(X0, (0, 4), -np.inf), ValueError, ("finite", "-inf")),
    Case("nan-H", "H", _with(H0, (1, 1), np.nan), ValueError, ("finite", "nan")),
    Case("inf-H", "H", _with(H0, (3, 3), np.inf), ValueError, ("finite", "inf")),
    Case("H-wrong-size", "H", H0[:-1, :-1], ValueError, (r"\(7, 7\)",), skip=("damping", "hessian_spectrum", "psi_factor", "top_eigenvectors",
               "augmented_hessian")),
    Case("H-not-square", "H", H0[:, :-1], ValueError, ("square", r"\(8, 7\)")),
    Case("X-wrong-columns", "X", X0[:, :-1], ValueError, ("shape", r"\(20, 7\)"),
         skip=("hessian",)),
    Case("W-1d", "W", W0[:, 0], ValueError, ("2-dimensional", r"\(8,\)")),
    Case("W-3d", "W", W0[None], ValueError, ("2-dimensional", r"\(1, 8, 5\)")),
    Case("X-3d", "X", X0[None], ValueError, ("2-dimensional",)),
    Case("H-1d", "H", np.diag(H0), ValueError, ("2-dimensional",)),
    Case("W-empty", "W", np.zeros((0, N_OUT)), ValueError, ("empty", r"\(0, 5\)")),
    Case("X-empty", "X", np.zeros((0, N)), ValueError, ("empty",)),
    Case("W-int", "W", np.round(W0 * 10).astype(np.int64), TypeError, ("float64", "int64")),
    Case("W-complex", "W", W0 + 1j, TypeError, ("complex",)),
    Case("W-object", "W", W0.astype(object), TypeError, ("dtype object",),
         file_words=("pickled", "refused"), file_exc=ValueError),
    Case("W-float16", "W", W0.astype(np.float16), TypeError, ("float16",)),
    Case("H-bool", "H", H0 > 0, TypeError, ("dtype bool",)),
    Case("X-ragged", "X", [[1.0, 2.0], [3.0]], ValueError, ("rectangular",),
         file_words=("pickled", "refused")),
    Case("bits-0", "bits", 0, ValueError, (r"\[1, 16\]", "got 0"), flag=("--bits", "0")),
    Case("bits-17", "bits", 17, ValueError, (r"\[1, 16\]", "got 17"), flag=("--bits", "17")),
    Case("bits-2.5", "bits", 2.5, TypeError, ("integer", "2.5"), flag=("--bits", "2.5")),
    Case("bits-bool", "bits", True, TypeError, ("integer", "True")),
    Case("rank-negative", "rank", -1, ValueError, ("got -1",), flag=("--rank", "-1")),
    Case("rank-too-large", "rank", N_OUT + 1, ValueError, (r"\[0, 5\]", "got 6"),
         flag=("--rank", "6")),
    Case("rank-1.5", "rank", 1.5, TypeError, ("integer", "1.5"), flag=("--rank", "1.5")),
    Case("damp-negative", "damp", -0.1, ValueError, ("got -0.1",), flag=("--damp=-0.1",)),
    Case("damp-nan", "damp", float("nan"), ValueError, ("finite",), flag=("--damp", "nan")),
    Case("damp-string", "damp", "0.1", TypeError, ("real number",)),
    Case("H-nonsymmetric", "H", _with(H0, (0, 1), H0[0, 1] + 1.0), ValueError,
         ("symmetric", "tolerance")),
    Case("H-negative-eigenvalue", "H", _indefinite(), ValueError,
         ("positive semi-definite", "smallest eigenvalue")),
    Case("X-overflow", "X", X0 * 1e200, gt.NumericalError, ("overflow",)),
    Case("H-near-float-max", "H", H0 * 1e306, gt.NumericalError, ("overflow",)),
    Case("W-near-float-max", "W", W0 * 1e300, gt.NumericalError, ("overflow",)),
    Case("W-subnormal", "W", W0 * 1e-320, gt.NumericalError, ("underflow",)),
]
SCALE = [c for c in CASES if c.exc is gt.NumericalError]


def _assert_names(message: str, name: str, words) -> None:
    """``message`` names the argument ``name`` (as a word) and contains every pattern."""
    assert re.search(rf"(?<![\w]){re.escape(name)}(?![\w])", message), (
        f"message does not name {name!r}: {message!r}")
    for w in words:
        assert re.search(w, message), f"message lacks {w!r}: {message!r}"


def _assert_finite(result) -> None:
    """Every float in a result (dataclass fields, nested, arrays) is finite."""
    if dataclasses.is_dataclass(result):
        for f in dataclasses.fields(result):
            _assert_finite(getattr(result, f.name))
    elif isinstance(result, (float, np.ndarray)) and np.asarray(result).dtype.kind == "f":
        assert np.all(np.isfinite(result))


def _calls(arg, skip=()):
    for fname, (takes, call) in API.items():
        if arg in takes and fname not in skip:
            yield fname, RENAME.get(fname, {}).get(arg, arg), call


@pytest.mark.parametrize("case", [c for c in CASES if c not in SCALE], ids=lambda c: c.id)
def test_python_api_refuses(case):
    """Every public function taking ``case.arg`` raises ``case.exc`` naming it."""
    base = {"W": W0, "X": X0, "H": H0, "bits": BITS, "rank": RANK, "damp": 0.01}
    n = 0
    for fname, name, call in _calls(case.arg, case.skip):
        with pytest.raises(case.exc) as info:
            call(dict(base, **{case.arg: case.value}))
        _assert_names(str(info.value), name, case.words)
        n += 1
    assert n >= 1


@pytest.mark.parametrize("case", SCALE, ids=lambda c: c.id)
def test_python_api_scale_is_finite_or_reported(case):
    """Near the float limits each function is finite or raises NumericalError naming the input."""
    base = {"W": W0, "X": X0, "H": H0, "bits": BITS, "rank": RANK, "damp": 0.01}
    raised = []
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        for fname, name, call in _calls(case.arg):
            try:
                result = call(dict(base, **{case.arg: case.value}))
            except gt.NumericalError as exc:
                _assert_names(str(exc), "Rescale", case.words)
                _assert_names(str(exc), name if name != "target" else "target", ())
                raised.append(fname)
            else:
                _assert_finite(result)
    assert raised, "no function reported the scale problem: the case tests nothing"


def test_grid_step_underflow_is_reported():
    """A 16-bit step of a column spanning 1e-320 underflows to 0: reported, not divided by."""
    with pytest.raises(gt.NumericalError, match="underflow.*16-bit.*Rescale W"):
        gt.fit_grid(W0 * 1e-320, 16)
    assert np.all(gt.fit_grid(W0 * 1e-300, 16).step > 0)


def test_small_calibration_without_damping():
    """X with fewer rows than columns and lam = 0: H is singular.

    Cholesky (default route) raises NumericalError saying so; the eig route
    succeeds under its spectral floor and reports the (rounding-sized) lam it
    used; OLrC uses the pseudo-inverse (lam stays 0). Nothing is NaN.
    """
    X = X0[: N - 3]
    H = gt.hessian(X)
    for call in (lambda: gt.gptq(W0, H, GRID0, lam=0.0),
                 lambda: gt.gilora(W0, H, GRID0, RANK, lam=0.0),
                 lambda: gt.compress(W0, H, "gptq", BITS, damp=0.0)):
        with pytest.raises(gt.NumericalError, match="numerically singular.*damp"):
            call()
    eps = np.finfo(float).eps
    res = gt.gptq(W0, H, GRID0, lam=0.0, route="eig")
    e = np.linalg.eigvalsh(H)
    assert 0 < res.lam <= N * eps * e[-1] + abs(e[0]) + 64 * N * eps * np.max(np.abs(H))
    _assert_finite(res)
    np.testing.assert_array_equal(res.Q, GRID0.quantize(res.Q, np.arange(N)))
    _assert_finite(gt.gilora(W0, H, GRID0, RANK, lam=0.0, route="eig"))
    o = gt.olrc(W0, Q0, H, RANK, lam=0.0)
    assert o.lam == 0.0
    _assert_finite(o)


def test_constant_and_zero_columns_work():
    """Constant and all-zero columns of W: a level of the grid, never NaN, RTN exact on them."""
    W = W0.copy()
    W[:, 1] = 2.5
    W[:, 3] = 0.0
    grid = gt.fit_grid(W, BITS)
    assert np.all(grid.step > 0)
    for method in gt.METHODS:
        c = gt.compress(W, H0, method, BITS, RANK, x_abs_mean=np.abs(X0).mean(axis=0))
        _assert_finite(c)
        if method == "rtn":
            np.testing.assert_array_equal(c.Q[:, [1, 3]], W[:, [1, 3]])
    _assert_finite(gt.gptq(W, H0, grid))


def test_mismatched_factors():
    """Q of the wrong shape, L without R, L and R that do not chain."""
    with pytest.raises(ValueError, match=r"Q must have W's shape"):
        gt.layer_error(W0, Q0[:-1], H=H0)
    with pytest.raises(ValueError, match=r"L and R must be given together"):
        gt.evaluate(W0, Q0, np.zeros((N, 1)), H=H0)
    with pytest.raises(ValueError, match=r"L must be \(N, r\).*L \(8, 2\), R \(3, 5\)"):
        gt.evaluate(W0, Q0, np.zeros((N, 2)), np.zeros((3, N_OUT)), H=H0)
    with pytest.raises(ValueError, match=r"Q0 must have target's shape"):
        gt.bid_up(W0, Q0[:, :-1], H0, GRID0)
    with pytest.raises(ValueError, match=r"grid has 5 columns but W has 4"):
        gt.gptq(W0[:, :-1], H0, GRID0)
    with pytest.raises(ValueError, match=r"exactly one of X .* or H"):
        gt.evaluate(W0, Q0, X=X0, H=H0)
    with pytest.raises(ValueError, match=r"L must have H's 8 rows"):
        gt.augmented_hessian(H0, np.ones((7, 1)))
    with pytest.raises(ValueError, match=r"r must be in \[0, 8\]; got 9"):
        gt.top_eigenvectors(H0, 9)
    with pytest.raises(gt.NumericalError, match="singular.*lam > 0"):
        gt.ridge_R(W0, Q0, H0, np.zeros((N, 1)), 0.0)
    with pytest.raises(ValueError, match=r"target and Q must both be"):
        gt.clipped_mask(GRID0, W0, Q0[:, :-1])


# ---------------------------------------------------------------- command line

def _save(path: Path, **arrays) -> Path:
    np.savez(path, **{k: (np.array(v, dtype=object) if isinstance(v, list) else v)
                      for k, v in arrays.items()})
    return path


COMMANDS = ("run", "bounds", "exact")


def _run(capsys, tmp_path: Path, layer, *flags, method: str = "refine", command: str = "run"):
    """``gilora-theory COMMAND LAYER ...`` in this process: status, stdout, stderr, output path."""
    out = tmp_path / "out" / "OUT.npz"
    rank = 0 if method in ("rtn", "gptq") else RANK       # --rank does not apply to those
    argv = {"run": ["run", str(layer), "--method", method, "--bits", str(BITS), "--rank",
                    str(rank), "--out", str(out)],
            "bounds": ["bounds", str(layer), "--bits", str(BITS), "--rank", str(RANK)],
            "exact": ["exact", str(layer), "--bits", str(BITS), "--rank", "0"]}[command]
    status = main([*argv, *flags])
    cap = capsys.readouterr()
    return status, cap.out, cap.err, out


def _assert_refused(status, stdout, stderr, out: Path) -> str:
    assert status == 2, stderr
    assert stdout == ""
    lines = stderr.splitlines()
    assert len(lines) == 1, f"expected exactly one stderr line, got {lines}"
    assert not out.exists()
    assert not out.parent.exists() or list(out.parent.iterdir()) == []
    return lines[0]


def _layer_for(tmp_path: Path, case: Case) -> Path:
    arrays = {"W": W0, "H": H0}
    if case.arg == "X":
        arrays = {"W": W0, "X": case.value}
    elif case.arg in ("W", "H"):
        arrays[case.arg] = case.value
    return _save(tmp_path / "LAYER.npz", **arrays)


@pytest.mark.parametrize("case", [c for c in CASES if c.arg in ("W", "X", "H") and c not in SCALE],
                         ids=lambda c: c.id)
def test_cli_refuses_bad_layer(case, tmp_path, capsys):
    """A bad array in LAYER.npz: load_layer names file and key; run, bounds and exact exit 2
    with one line."""
    layer = _layer_for(tmp_path, case)
    words = case.file_words or case.words
    with pytest.raises(case.file_exc or case.exc) as info:
        load_layer(layer)
    _assert_names(str(info.value), case.arg, words)
    assert str(layer) in str(info.value)
    for command in COMMANDS:
        line = _assert_refused(*_run(capsys, tmp_path, layer, command=command))
        _assert_names(line, case.arg, words)


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("case", [c for c in CASES if c.flag], ids=lambda c: c.id)
def test_cli_refuses_bad_flag(case, command, tmp_path, capsys):
    """A bad --bits / --rank / --damp: exit 2, one line naming the flag's argument."""
    layer = _save(tmp_path / "LAYER.npz", W=W0, H=H0)
    line = _assert_refused(*_run(capsys, tmp_path, layer, *case.flag, command=command))
    # argparse's own type=int check words non-integers differently: name + value suffice
    words = ("invalid int value", re.escape(case.flag[-1])) if case.exc is TypeError else case.words
    _assert_names(line, case.arg, words)


def _leaves(obj):
    if isinstance(obj, dict):
        return [x for v in obj.values() for x in _leaves(v)]
    if isinstance(obj, list):
        return [x for v in obj for x in _leaves(v)]
    return [obj]


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("case", SCALE, ids=lambda c: c.id)
def test_cli_scale_is_finite_or_reported(case, command, tmp_path, capsys):
    """Near the float limits the CLI either succeeds with finite numbers (no JSON null, which
    is how a non-finite float would print) or exits 2 with one line saying what to rescale."""
    layer = _layer_for(tmp_path, case)
    status, stdout, stderr, out = _run(capsys, tmp_path, layer, command=command)
    if status == 0:
        assert None not in _leaves(json.loads(stdout)), stdout
        if command == "run":
            z = load_result(out)
            assert all(np.all(np.isfinite(z[k])) for k in ("Q", "L", "R"))
    else:
        line = _assert_refused(status, stdout, stderr, out)
        _assert_names(line, "Rescale", case.words)
    if case.id in ("X-overflow", "W-near-float-max"):
        assert status == 2  # these overflow in every command


def test_cli_small_calibration_without_damping(tmp_path, capsys):
    """m < N and --damp 0: a one-line NumericalError, no output file."""
    layer = _save(tmp_path / "LAYER.npz", W=W0, X=X0[: N - 3])
    for method in ("gptq", "gilora", "refine"):
        line = _assert_refused(*_run(capsys, tmp_path, layer, "--damp", "0", method=method))
        assert "numerically singular" in line and "damp" in line
    status, stdout, _, out = _run(capsys, tmp_path, layer, "--damp", "0", method="rtn+olrc")
    assert status == 0 and out.exists()


def test_cli_constant_and_zero_columns(tmp_path, capsys):
    """Constant and zero columns: exit 0, finite JSON and output file."""
    W = W0.copy()
    W[:, 0] = -1.25
    W[:, 4] = 0.0
    layer = _save(tmp_path / "LAYER.npz", W=W, H=H0)
    status, stdout, stderr, out = _run(capsys, tmp_path, layer)
    assert status == 0, stderr
    report = json.loads(stdout)
    assert all(np.all(np.isfinite(np.asarray(v, dtype=float)))
               for k, v in report.items() if isinstance(v, (int, float, list)))
    z = load_result(out)
    assert np.all(np.isfinite(z["Q"])) and np.all(np.isfinite(z["R"]))


# ---------------------------------------------------------------- layer files

class _Marker:
    """Unpickling this object creates the file ``path`` (proof that it was unpickled)."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return builtins.open, (self.path, "w")


def _truncated(path: Path) -> Path:
    save_layer(path, W0, H=H0)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _corrupt(path: Path) -> Path:
    save_layer(path, W0, H=H0)
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        info = z.getinfo("W.npy")
    start = info.header_offset + 30 + len(info.filename) + 20
    data[start:start + 40] = bytes(40)
    path.write_bytes(bytes(data))
    return path


FILE_CASES = {
    "missing-key": (lambda p: _save(p, H=H0), ("missing key 'W'",)),
    "misnamed-key": (lambda p: _save(p, W=W0, hessian=H0), ("exactly one of keys 'X' or 'H'",
                                                              "hessian")),
    "lowercase-w": (lambda p: _save(p, w=W0, H=H0), ("missing key 'W'", "'w'")),
    "both-X-and-H": (lambda p: _save(p, W=W0, X=X0, H=H0), ("exactly one of keys",)),
    "truncated": (_truncated, ("truncated or corrupt",)),
    "corrupt": (_corrupt, ("truncated or corrupt",)),
    "empty-file": (lambda p: (p.write_bytes(b""), p)[1], ("empty",)),
    "npy-not-npz": (lambda p: (np.save(open(p, "wb"), W0), p)[1], (r"\.npy array",)),
    "text-file": (lambda p: (p.write_text("W = [1, 2]\n"), p)[1], ("not an .npz archive",)),
    "bad-n_samples": (lambda p: _save(p, W=W0, H=H0, n_samples=np.array(2.5)),
                      ("n_samples", "positive integer")),
    "bad-name": (lambda p: _save(p, W=W0, H=H0, name=np.arange(3.0)), ("'name'", "string")),
}


@pytest.mark.parametrize("kind", sorted(FILE_CASES))
def test_bad_layer_file(kind, tmp_path, capsys):
    """Missing/misnamed keys, truncated or corrupt archives: ValueError naming file and key."""
    write, words = FILE_CASES[kind]
    layer = write(tmp_path / "LAYER.npz")
    with pytest.raises(ValueError) as info:
        load_layer(layer)
    _assert_names(str(info.value), str(layer), words)
    line = _assert_refused(*_run(capsys, tmp_path, layer))
    _assert_names(line, str(layer), words)


def test_missing_file(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_layer(tmp_path / "nope.npz")
    line = _assert_refused(*_run(capsys, tmp_path, tmp_path / "nope.npz"))
    assert "nope.npz" in line and "does not exist" in line


@pytest.mark.parametrize("inside_npz", [False, True], ids=["bare-pickle", "object-array-in-npz"])
def test_pickles_are_refused_without_unpickling(inside_npz, tmp_path, capsys):
    """A file whose unpickling would create a marker file: refused, and the marker never appears.

    Negative control first: the crafted payload really does create the marker
    when unpickled, so the final assertion can fail.
    """
    marker = tmp_path / "UNPICKLED"
    layer = tmp_path / "LAYER.npz"
    if inside_npz:
        np.savez(layer, W=np.array([_Marker(marker)], dtype=object), H=H0)
        with np.load(layer, allow_pickle=True) as z:
            z["W"]
    else:
        layer.write_bytes(pickle.dumps({"W": _Marker(marker), "H": H0}))
        pickle.loads(layer.read_bytes())
    assert marker.exists(), "control: the payload must create the marker when unpickled"
    marker.unlink()

    with pytest.raises(ValueError, match="pickle.*refused.*never unpickled") as info:
        load_layer(layer)
    assert str(layer) in str(info.value)
    line = _assert_refused(*_run(capsys, tmp_path, layer))
    assert "refused" in line
    proc = subprocess.run([sys.executable, "-m", "gilora_theory.cli", "run", str(layer),
                           "--method", "gptq", "--bits", "3", "--out", str(tmp_path / "o.npz")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1
    assert not marker.exists()
    assert not (tmp_path / "o.npz").exists()


def test_subprocess_bad_input(tmp_path):
    """Through ``python -m gilora_theory.cli``: exit status 2, one stderr line, no traceback."""
    layer = _save(tmp_path / "LAYER.npz", W=_with(W0, (1, 1), np.nan), H=H0)
    good = _save(tmp_path / "GOOD.npz", W=W0, H=H0)
    out = tmp_path / "OUT.npz"
    env = dict(os.environ, PYTHONWARNINGS="default")
    for argv, words in [
        (["run", str(layer), "--method", "gilora", "--bits", "3", "--rank", "2"],
         ("W", "finite", "nan")),
        (["run", str(good), "--method", "gptq", "--bits", "17"],
         ("bits", r"\[1, 16\]")),
    ]:
        proc = subprocess.run([sys.executable, "-m", "gilora_theory.cli", *argv, "--out", str(out)],
                              capture_output=True, text=True, timeout=120, env=env)
        assert proc.returncode == 2, proc.stderr
        assert proc.stdout == ""
        assert len(proc.stderr.splitlines()) == 1, proc.stderr
        assert "Traceback" not in proc.stderr
        for w in words:
            assert re.search(w, proc.stderr), proc.stderr
        assert not out.exists()


def test_torch_hessian_file_is_loaded_weights_only(tmp_path):
    """A torch file whose unpickling would create a marker: import_hessian refuses it
    (weights-only loading) and the marker never appears; the control shows it would."""
    torch = pytest.importorskip("torch")
    from gilora_theory.data.torch_adapter import import_hessian
    marker = tmp_path / "UNPICKLED"
    path = tmp_path / "H.pt"
    torch.save({"H": torch.eye(3), "extra": _Marker(marker)}, path)
    torch.load(path, weights_only=False)
    assert marker.exists(), "control: the payload must create the marker when unpickled"
    marker.unlink()
    with pytest.raises(pickle.UnpicklingError, match="[Ww]eights only"):
        import_hessian(path, "sum", key="H")
    assert not marker.exists()


@pytest.mark.parametrize("case", [c for c in CASES if c.arg in ("W", "X", "H") and c not in SCALE],
                         ids=lambda c: c.id)
def test_save_layer_refuses_what_load_layer_would(case, tmp_path):
    """save_layer validates like load_layer: a file that could not be read back is never written."""
    path = tmp_path / "LAYER.npz"
    arrays = {"X": case.value} if case.arg == "X" else {"H": case.value if case.arg == "H" else H0}
    W = case.value if case.arg == "W" else W0
    with pytest.raises((ValueError, TypeError)) as info:
        save_layer(path, W, **arrays)
    _assert_names(str(info.value), case.arg, ())
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="n_samples must be in"):
        save_layer(path, W0, H=H0, n_samples=0)
    assert list(tmp_path.iterdir()) == []
