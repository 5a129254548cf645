"""Determinism: same inputs and seed give the same bits, in this process and in a fresh one;
block sizes agree; the order in which layers are processed changes nothing.

Measured and recorded here as well: with a different BLAS thread count the
quantized ``Q`` stays bit-identical on these problems while ``L`` and ``R``
agree to rounding (OLrC fixes the sign of each singular pair, which LAPACK
would otherwise choose differently).
"""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import numpy as np
import pytest

import gilora_theory as gt
from gilora_theory.data.calibration import calibration, weights
from gilora_theory.experiments.sweep import sweep_table

EPS = np.finfo(np.float64).eps


def _layer(kind: str, m: int, N: int, N_out: int, seed: int):
    rng = np.random.default_rng(seed)
    X = calibration(kind, m, N, rng=rng).X
    return weights("gaussian", N, N_out, rng=rng), gt.hessian(X)


def _arrays(result):
    """Every ndarray and float of a result, in field order (recursively)."""
    if dataclasses.is_dataclass(result):
        out = []
        for f in dataclasses.fields(result):
            out += _arrays(getattr(result, f.name))
        return out
    if isinstance(result, np.ndarray):
        return [result]
    if isinstance(result, (float, np.floating)):
        return [np.asarray(result)]
    if isinstance(result, dict):
        return [a for v in result.values() for a in _arrays(v)]
    return []


def _same_bits(a, b) -> bool:
    xs, ys = _arrays(a), _arrays(b)
    return len(xs) == len(ys) and all(
        x.shape == y.shape and x.dtype == y.dtype and x.tobytes() == y.tobytes()
        for x, y in zip(xs, ys))


def _calls(W, H):
    grid = gt.fit_grid(W, 3)
    Q = grid.quantize(W, np.arange(W.shape[0]))
    calls = {
        "fit_grid": lambda: gt.fit_grid(W, 3, beta=0.9),
        "gptq": lambda: gt.gptq(W, H, grid),
        "gptq-eig-act_order": lambda: gt.gptq(W, H, grid, route="eig", act_order=True),
        "olrc": lambda: gt.olrc(W, Q, H, 3),
        "gilora": lambda: gt.gilora(W, H, grid, 3),
        "gilora-l_bits": lambda: gt.gilora(W, H, grid, 3, l_bits=4, damp_from="hessian"),
        "bid_up": lambda: gt.bid_up(W, Q, H, grid, sweeps=2),
        "refine": lambda: gt.refine(W, H, grid, Q, 3, rounds=2),
        "evaluate": lambda: gt.evaluate(W, Q, H=H, lam=0.1),
        "hessian_spectrum": lambda: gt.hessian_spectrum(H),
        "top_eigenvectors": lambda: gt.top_eigenvectors(H, 3),
    }
    for method in gt.METHODS:
        calls[f"compress-{method}"] = lambda method=method: gt.compress(
            W, H, method, 3, 3, x_abs_mean=np.sqrt(np.diag(H)))
    return calls


def test_repeat_is_bit_identical_and_inputs_untouched():
    """Every public function twice on the same inputs: the same bits, and the inputs unchanged."""
    W, H = _layer("outliers", 96, 24, 10, seed=1)
    W_copy, H_copy = W.copy(), H.copy()
    for name, call in _calls(W, H).items():
        first, second = call(), call()
        assert _arrays(first), name
        assert _same_bits(first, second), name
    assert W.tobytes() == W_copy.tobytes() and H.tobytes() == H_copy.tobytes()


_DIGEST = r"""
import hashlib, numpy as np, gilora_theory as gt
from gilora_theory.data.calibration import calibration, weights
def digest():
    h = hashlib.sha256()
    for kind, seed in (("power_law", 3), ("rank_deficient", 4), ("conditioned", 5)):
        rng = np.random.default_rng(seed)
        m = 20 if kind == "rank_deficient" else 120
        X = calibration(kind, m, 40, rng=rng).X
        W = weights("heavy_tailed", 40, 24, rng=rng)
        H = gt.hessian(X)
        h.update(X.tobytes() + W.tobytes())
        for method in gt.METHODS:
            c = gt.compress(W, H, method, 3, 4, route="eig", x_abs_mean=np.abs(X).mean(axis=0))
            for A in (c.Q, c.L, c.R, np.array([c.objective.error, c.lam])):
                h.update(np.ascontiguousarray(A).tobytes())
    return h.hexdigest()
"""


def _digest_here() -> str:
    space: dict = {}
    exec(_DIGEST, space)
    return space["digest"]()


def _digest_in_subprocess(env_extra: dict | None = None) -> str:
    env = dict(os.environ, **(env_extra or {}))
    code = _DIGEST + "\nprint(digest())\n"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_fresh_subprocess_gives_the_same_bits():
    """Gallery draws from a seed and every method on them: one digest, here and in a new process."""
    here = _digest_here()
    assert here == _digest_here()
    assert _digest_in_subprocess() == here


def test_rng_arguments_are_the_only_randomness():
    """An int seed equals default_rng(seed); the global NumPy state has no effect."""
    np.random.seed(1)
    a = calibration("heavy_rows", 50, 10, rng=7).X
    np.random.seed(2)
    np.random.random(17)
    b = calibration("heavy_rows", 50, 10, rng=np.random.default_rng(7)).X
    assert a.tobytes() == b.tobytes()
    c = calibration("heavy_rows", 50, 10, rng=8).X
    assert a.tobytes() != c.tobytes()  # the seed does matter


_THREADS = r"""
import sys, numpy as np, gilora_theory as gt
rng = np.random.default_rng(0)
N, N_out = 256, 128
X = rng.standard_normal((512, N)) * np.geomspace(1, 1e-2, N)
W = rng.standard_normal((N, N_out))
H = gt.hessian(X)
out = {}
for method in ("gptq", "gilora", "gptq+olrc", "refine"):
    c = gt.compress(W, H, method, 3, 8)
    out[method + "_Q"], out[method + "_LR"] = c.Q, c.L @ c.R
    out[method + "_L"], out[method + "_R"] = c.L, c.R
np.savez(sys.argv[1], **out)
"""


def test_blas_thread_count(tmp_path):
    """1 vs 2 BLAS threads: Q identical; L, R and L R agree to rounding (64 N eps of their scale)."""
    files = []
    for t in ("1", "2"):
        env = dict(os.environ, OMP_NUM_THREADS=t, OPENBLAS_NUM_THREADS=t, MKL_NUM_THREADS=t)
        path = tmp_path / f"t{t}.npz"
        proc = subprocess.run([sys.executable, "-c", _THREADS, str(path)], capture_output=True,
                              text=True, timeout=300, env=env)
        assert proc.returncode == 0, proc.stderr
        files.append(np.load(path))
    a, b = files
    tol = 64 * 256 * EPS
    for key in a.files:
        if key.endswith("_Q"):
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
        elif a[key].size:
            scale = np.max(np.abs(a[key]))
            assert np.max(np.abs(a[key] - b[key])) <= tol * scale, key


@pytest.mark.parametrize("kind", ["isotropic", "exponential", "outliers", "rank_deficient"])
def test_block_sizes_agree(kind):
    """Blocksizes 1, 3, 16 and 128: Q identical; continuous outputs within 64 N eps of their scale."""
    m = 16 if kind == "rank_deficient" else 100
    W, H = _layer(kind, m, 33, 9, seed=len(kind))
    grid = gt.fit_grid(W, 3)
    Q0 = grid.quantize(W, np.arange(33))
    runs = {bs: (gt.gptq(W, H, grid, blocksize=bs),
                 gt.gilora(W, H, grid, 4, blocksize=bs),
                 gt.bid_up(W, Q0, H, grid, sweeps=2, blocksize=bs),
                 gt.refine(W, H, grid, Q0, 4, rounds=2, blocksize=bs),
                 gt.compress(W, H, "refine", 3, 4, blocksize=bs))
            for bs in (1, 3, 16, 128)}
    ref = runs[128]
    tol = 64 * 33 * EPS
    for bs, results in runs.items():
        for r0, r1 in zip(ref, results):
            np.testing.assert_array_equal(r0.Q, r1.Q, err_msg=f"blocksize {bs}")
            for x, y in zip(_arrays(r0), _arrays(r1)):
                assert x.shape == y.shape
                if x.dtype.kind != "f":
                    np.testing.assert_array_equal(x, y, err_msg=f"blocksize {bs}")
                elif x.size:
                    scale = max(float(np.max(np.abs(x))), np.finfo(float).tiny)
                    assert np.all(np.abs(x - y) <= tol * scale), f"blocksize {bs}"


def test_layer_order_does_not_matter():
    """Three layers compressed in one order, then in the reverse: the same bits per layer."""
    layers = {k: _layer(k, 80, 20, 8, seed=i) for i, k in
              enumerate(("power_law", "low_rank_noise", "conditioned"))}
    forward = {k: gt.compress(W, H, "refine", 3, 2) for k, (W, H) in layers.items()}
    backward = {k: gt.compress(W, H, "refine", 3, 2) for k, (W, H) in reversed(layers.items())}
    for k in layers:
        assert _same_bits(forward[k], backward[k]), k


def test_sweep_rows_do_not_depend_on_layer_order():
    """A sweep over two layers, configured in either order: the same row for every run key."""
    layers = [{"source": "synthetic", "name": "a", "kind": "power_law", "m": 48, "N": 12,
               "N_out": 6},
              {"source": "synthetic", "name": "b", "kind": "outliers", "m": 40, "N": 10,
               "N_out": 7}]
    config = {"name": "order", "methods": ["gptq", "gilora", "refine"], "bits": [3],
              "ranks": [0, 2], "seeds": [0, 1]}
    forward, _ = sweep_table(dict(config, layers=layers))
    backward, _ = sweep_table(dict(config, layers=layers[::-1]))
    drop = [c for c in forward.columns if c.startswith("time_")]
    f = forward.drop(columns=drop).set_index("run_key").sort_index()
    b = backward.drop(columns=drop).set_index("run_key").sort_index()
    assert len(f) == 20
    assert f.equals(b)
