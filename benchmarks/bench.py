"""Performance benchmark of the numerical core: ``python benchmarks/bench.py``.

Every figure is a **ratio of two times measured in the same run** (the machine
is shared and noisy); each repetition measures all of them once, and the median
ratio is printed with its spread (min..max over repetitions) and a PASS/FAIL
word against its target. The layer is synthetic and float64: ``H = X^T X`` of a
power-law calibration matrix (singular values ``i^-1/2``, as real activations
decay; :func:`gilora_theory.data.calibration.power_law`), Gaussian ``W`` (N x N),
a 4-bit grid, ``r = 32``.

Flop model (``N`` inputs, ``N'`` outputs, ``r`` rank, ``k`` eigensolver block)
------------------------------------------------------------------------------
==================  ==============================================================
matrix product      ``2 N^3`` (the machine's BLAS rate: ``A @ B``, two N x N)
GPTQ                ``N^3 / 3`` Cholesky of ``J H_lam J`` + ``N^3 / 3`` triangular
                    inverse + ``N^2 N'`` for the pass (``w~_s -= Psi_st eps_t``
                    over ``s > t``): ``5/3 N^3`` at ``N = N'``
row-by-row GPTQ     the same arithmetic, one rank-one update per row (BLAS-2);
                    its factorisation is Cholesky + a triangular solve against I
Bid-Up sweep        ``N^2 N'`` (the lower-triangular gradient updates a sweep needs)
OLrC (partial)      ``2 N^2 N'`` for ``B = diag(sqrt(e + lam)) V^T D``, ``N N'^2``
                    for its Gram matrix, ``2 N'^2 k`` per filtered-subspace product
refinement round    OLrC from the carried Gram matrix (no ``B``, no new Gram), a
                    sweep, and ``2 nnz(dQ) (N + 2 N')`` for the sparse updates of
                    ``H_lam D`` and the Gram matrix by Bid-Up's moves ``dQ``
==================  ==============================================================

Two kinds of time are reported: **algorithm** (the private kernels the public
functions call: factorisation and pass, sweep, OLrC kernel; the layer is
already validated) and **public call** (with the input validation at the public
boundary, e.g. the positive semi-definiteness check of ``H``). The GPTQ rate,
Bid-Up, OLrC and refinement targets are judged on algorithm times (the same
kind on both sides of each ratio); GILoRA against GPTQ on public calls. Every
timed call starts with an empty memo of results on ``H`` (:mod:`gilora_theory._memo`),
as a user's first call does. ``gilora-theory run --method gptq`` is timed as a new
process on the same layer written to an ``.npz`` file (start-up to the written
grid codes) against the public ``gptq()`` call of the same repetition.

**Required parts.** Beside ``run``, ``gptq+olrc`` and OLrC given ``Q`` (issue 15's targets
1-3) an info row gives the sum of the arithmetic that route cannot skip, each part timed alone
in the same repetition (:func:`required_parts`, :data:`PARTS`): what any faster
implementation of the same route would still pay. A target whose required parts alone exceed
its limit cannot be met by better code around them, only by changing what is computed.

Output: the target table on standard output, ``--out`` (default ``figures/``)
receives ``bench_scaling.csv``, ``bench_scaling.png`` and ``bench_results.json``.
The environment's BLAS settings are used as they are (``OPENBLAS_CORETYPE``
and thread counts are reported, never changed).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import scipy.linalg

from gilora_theory import _memo
from gilora_theory.bidup import _round, _sweep, bid_up, refine
from gilora_theory.data.calibration import calibration, weights
from gilora_theory.gilora import gilora
from gilora_theory.methods import compress
from gilora_theory._krylov import _dense_top, top_eigenpairs_explicit
from gilora_theory._validation import check_hessian
from gilora_theory.gptq import _run, _run_keeping_factors, gptq
from gilora_theory.grid import fit_grid
from gilora_theory.data.io import atomic_write, load_layer, save_npz
from gilora_theory.objective import _signal, damped, hessian_spectrum
from gilora_theory.olrc import _gram_route, _olrc, olrc
from gilora_theory.provenance import provenance

__all__ = ["Target", "Layer", "make_layer", "naive_gptq", "randomized_olrc", "measure",
           "required_parts", "PARTS", "scaling", "size_targets", "llm_layers", "machine", "main"]


@dataclass(frozen=True)
class Target:
    """One benchmark figure: ``ratio`` (median over repetitions) against ``limit``.

    ``sense`` is ``"<="`` (a cost ratio), ``">="`` (a rate or speed-up ratio) or
    ``"info"`` (no target: printed for information, never counted);
    ``spread`` is ``(min, max)`` over repetitions.
    """

    name: str
    ratio: float
    spread: tuple
    limit: float
    sense: str
    note: str = ""

    @property
    def passed(self) -> bool:
        """``ratio <= limit`` or ``ratio >= limit`` according to ``sense`` (True for info)."""
        if self.sense == "info":
            return True
        return self.ratio <= self.limit if self.sense == "<=" else self.ratio >= self.limit

    def line(self) -> str:
        """One printed row: name, ratio, spread, target, verdict, note."""
        lo, hi = self.spread
        word = "INFO" if self.sense == "info" else ("PASS" if self.passed else "FAIL")
        goal = "no target" if self.sense == "info" else f"target {self.sense} {self.limit:g}"
        return (f"{word}  {self.name:<54s} {self.ratio:8.3f}  [{lo:.3f}..{hi:.3f}]  "
                f"{goal}  {self.note}")


@dataclass(frozen=True)
class Layer:
    """A benchmark layer: ``W`` (N x N'), ``H`` (N x N), grid, damping, cached spectrum."""

    W: np.ndarray
    H: np.ndarray
    grid: object
    lam: float
    spec: object = None


def make_layer(N: int, N_out: int | None = None, *, bits: int = 4, seed: int = 0,
               spectrum: bool = True) -> Layer:
    """Power-law calibration (singular values ``i^-1/2``), Gaussian ``W``, ``bits``-bit grid.

    With ``spectrum`` the eigendecomposition of ``H`` is cached (setup, never timed).
    """
    N_out = N if N_out is None else N_out
    H = calibration("power_law", N, N, exponent=0.5, rng=seed).H
    H = 0.5 * (H + H.T)
    W = weights("gaussian", N, N_out, rng=seed + 1)
    return Layer(W, H, fit_grid(W, bits), 0.01 * float(np.mean(np.diag(H))),
                 hessian_spectrum(H) if spectrum else None)


def naive_gptq(W: np.ndarray, H_lam: np.ndarray, grid) -> np.ndarray:
    """Straightforward GPTQ: Psi by Cholesky and a triangular solve, one rank-one update per row."""
    n = H_lam.shape[0]
    C = scipy.linalg.cholesky(H_lam[::-1, ::-1], lower=True, check_finite=False)
    Psi = scipy.linalg.solve_triangular(C, np.eye(n), lower=True, check_finite=False).T[::-1, ::-1]
    Wt = W.copy()
    Q = np.empty_like(W)
    for t in range(n):
        Q[t] = grid.quantize(Wt[t])
        e = (Wt[t] - Q[t]) / Psi[t, t]
        Wt[t + 1:] -= np.outer(Psi[t + 1:, t], e)
    return Q


def randomized_olrc(W: np.ndarray, Q: np.ndarray, H: np.ndarray, lam: float, r: int, *,
                    oversample: int = 10, power: int = 4, rng=0) -> float:
    """A peer's approximate OLrC: randomized SVD of ``A = C^T (W - Q)`` (``H_lam = C C^T``).

    Sketch ``r + oversample`` columns, ``power`` power iterations (each re-orthonormalised),
    the rank-r truncation of ``A`` on the sketch's range; returns its objective
    ``||A - A_r||_F^2`` (the exact optimum is the tail of ``A``'s singular values).
    """
    rng = np.random.default_rng(rng)
    C = scipy.linalg.cholesky(H + lam * np.eye(H.shape[0]), lower=True, check_finite=False)
    A = C.T @ (W - Q)
    Y = np.linalg.qr(A @ rng.standard_normal((A.shape[1], r + oversample)))[0]
    for _ in range(power):
        Y = np.linalg.qr(A @ np.linalg.qr(A.T @ Y)[0])[0]
    U, s, Vt = np.linalg.svd(Y.T @ A, full_matrices=False)
    Ar = (Y @ (U[:, :r] * s[:r])) @ Vt[:r]
    return float(np.sum((A - Ar) ** 2))


def _note(msg: str) -> None:
    """Progress on standard error (the results go to standard output)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _clock(f, *args, **kwargs) -> tuple[float, object]:
    """Seconds of ``f(*args, **kwargs)`` and its result; the memo of results on ``H``
    (:mod:`gilora_theory._memo`) is emptied first, so every call pays what a user's first
    call pays (its validation and factorisations), not what an earlier call left."""
    _memo.clear()
    t0 = time.perf_counter()
    out = f(*args, **kwargs)
    return time.perf_counter() - t0, out


def _gemm_time(N: int, rng) -> float:
    A, B = rng.standard_normal((N, N)), rng.standard_normal((N, N))
    return _clock(np.matmul, A, B)[0]


def _gptq_algorithm(layer: Layer):
    N = layer.W.shape[0]
    return _run(layer.W, layer.H, layer.grid, N, lam=layer.lam, route="cholesky",
                blocksize=128, act_order=False, damp_policy="raise")


def _sweep_once(layer: Layer, Q0: np.ndarray, G: np.ndarray) -> float:
    """Time of one ``_sweep`` from ``Q0`` with the gradient ``G (W - Q0)`` given."""
    Q = Q0.copy()
    Gr = G @ (layer.W - Q)
    return _clock(_sweep, layer.W, Q, G, Gr, layer.grid, 128)[0]


def _round_once(layer: Layer, Q0, G, spec, r: int) -> float:
    """Time of one refinement round as :func:`refine` runs it, in its steady state.

    What :func:`refine` carries from round to round is computed here before the
    clock starts: ``GD = H_lam (W - Q)``, the Gram matrix ``K = D^T GD`` and the
    previous ``R`` (from one earlier round). The timed round is
    :func:`gilora_theory.bidup._round`: OLrC (partial, from ``GD`` and ``K``),
    one Bid-Up sweep with its ``f``, and the updates of ``GD`` and ``K``.
    """
    W, Q = layer.W, Q0.copy()
    GD = G @ (W - Q)
    K = (W - Q).T @ GD if _gram_route(W.shape, r, layer.lam, spec=spec) else None
    args = (W, Q, G, layer.grid, spec, r, layer.lam)
    _, R, _, _, GD, K = _round(*args, GD, K, None, 1, 128)
    return _clock(_round, *args, GD, K, R, 1, 128)[0]


def _process_seconds(*args: str) -> float:
    """Wall time of ``python ARGS`` in a new process (output captured; a failure raises)."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, *args], check=True, capture_output=True)
    return time.perf_counter() - t0


def _cli_run_time(layer_file: Path, bits: int) -> float:
    """Wall time of ``gilora-theory run LAYER --method gptq`` in a new process: start-up and
    imports, loading ``W`` and ``H``, validating once, the pass, the evaluation and writing
    the grid-code file (issue 15, target 1)."""
    out = layer_file.with_name("run-out.npz")
    out.unlink(missing_ok=True)
    return _process_seconds("-m", "gilora_theory.cli", "run", str(layer_file), "--method",
                            "gptq", "--bits", str(bits), "--out", str(out), "--no-progress")


def _startup_time() -> float:
    """Wall time of a new process that only imports the command line (``gilora_theory.cli``)."""
    return _process_seconds("-c", "import gilora_theory.cli")


def required_parts(layer: Layer, r: int, Q: np.ndarray) -> dict:
    """Times of the arithmetic that issue 15's targets 1-3 cannot skip, each timed alone.

    - ``validate``: the public boundary's test of ``H`` (symmetry, and positive
      semi-definiteness by a Cholesky factorisation), which ``gptq()`` pays too;
    - ``signal``: ``||XW||_F^2``, the reference of the relative error that ``run`` and
      ``compress`` report (``gilora_theory.objective._signal``, ``N^2 N'`` flops);
    - ``cholesky`` and ``trmm``: ``H_lam = C C^T`` and ``C^T (W - Q)``, the scaled residual
      of OLrC given ``Q`` (``N^3 / 3 + N^2 N'`` flops);
    - ``gram``: ``E^T E`` for GPTQ's scaled errors ``E`` (``N N'^2`` flops);
    - ``eig_route``, ``eig_dense``: its top ``r`` eigenpairs by the package's route
      (:func:`gilora_theory._krylov.top_eigenpairs_explicit`) and by ``?syevr``.

    ``E`` of the pass and ``C^T (W - Q)`` have the same singular values (both are ``H_lam^{1/2}
    (W - Q)`` up to an orthogonal factor), so one eigenproblem stands for both routes.
    """
    W, H, lam = layer.W, layer.H, layer.lam
    t = {"validate": _clock(check_hessian, H, W.shape[0])[0], "signal": _clock(_signal, H, W)[0]}
    H_lam = damped(H, lam)                          # as OLrC given Q forms it (untimed)
    t["cholesky"], C = _clock(scipy.linalg.cholesky, H_lam, lower=True, overwrite_a=True,
                              check_finite=False)
    D = W - Q
    t["trmm"] = _clock(scipy.linalg.blas.dtrmm, 1.0, C, D, lower=1, trans_a=1)[0]
    del C, D, H_lam
    E = _run_keeping_factors(W, H, layer.grid, W.shape[0], lam=lam, route="cholesky",
                             blocksize=128, act_order=False, damp_policy="raise")[2]
    t["gram"], K = _clock(np.matmul, E.T, E)
    t["eig_route"] = _clock(top_eigenpairs_explicit, K, r)[0]
    t["eig_dense"] = _clock(_dense_top, K, r)[0]
    return t


PARTS = {
    "cli_run": ("gptq_public", "signal", "startup", "load"),
    "gptq_olrc_public": ("gptq_public", "signal", "gram", "eig"),
    "olrc_given_q_public": ("validate", "cholesky", "trmm", "gram", "eig"),
}
"""Each timed route of targets 1-3 and the parts it cannot skip (``eig``: the faster of
``eig_route`` and ``eig_dense``); their sum is stored as ``<route>_parts``."""


def _add_part_sums(t: dict) -> dict:
    """``t`` with ``eig`` and ``<route>_parts`` for every route of :data:`PARTS` it timed."""
    t["eig"] = min(t["eig_route"], t["eig_dense"])
    for route, parts in PARTS.items():
        if all(p in t for p in (route,) + parts):
            t[f"{route}_parts"] = sum(t[p] for p in parts)
    return t


def measure(layer: Layer, r: int, *, rng, layer_file: Path | None = None) -> dict:
    """One repetition: every time (seconds) on ``layer``, same conditions for all."""
    W, H, grid, lam = layer.W, layer.H, layer.grid, layer.lam
    N = W.shape[0]
    t = {"gemm": _gemm_time(N, rng)}
    if layer_file is not None:
        t["cli_run"] = _cli_run_time(layer_file, grid.bits)
        t["startup"] = _startup_time()
        t["load"] = _clock(load_layer, layer_file, psd=False)[0]
    t["gptq_algorithm"], run = _clock(_gptq_algorithm, layer)
    t["gptq_public"], res = _clock(gptq, W, H, grid, lam=lam)
    t["gilora_public"], _ = _clock(gilora, W, H, grid, r, lam=lam)
    G = H + lam * np.eye(N)
    t["sweep_algorithm"] = _sweep_once(layer, res.Q, G)
    t["bidup_public"], _ = _clock(bid_up, W, res.Q, H, grid, lam=lam, sweeps=1)
    spec = layer.spec
    t["olrc_algorithm"], _ = _clock(_olrc, W - res.Q, spec, r, lam, svd="partial")
    t["olrc_public"], _ = _clock(olrc, W, res.Q, H, r, lam=lam, spectrum=spec, svd="partial")
    t["olrc_given_q_public"], exact = _clock(olrc, W, res.Q, H, r, lam=lam, svd="partial")
    t["olrc_randomized"], approx = _clock(randomized_olrc, W, res.Q, H, lam, r)
    t["randomized_excess"] = approx / exact.value - 1.0          # not a time: its value gap
    t["gptq_olrc_public"], comp = _clock(compress, W, H, "gptq+olrc", layer.grid.bits, r,
                                         grid=grid)
    t["gptq_olrc_width"] = comp.info.get("certified_width", float("nan"))   # not a time
    t["round_algorithm"] = _round_once(layer, res.Q, G, spec, r)
    t["refine_public"], _ = _clock(refine, W, H, grid, res.Q, r, rounds=1, lam=lam,
                                   spectrum=spec)
    if not np.array_equal(run[0], res.Q):
        raise AssertionError("algorithm and public GPTQ disagree")
    t.update(required_parts(layer, r, res.Q))
    return _add_part_sums(t)


def _ratios(reps: list[dict], num: str, den: str, scale: float = 1.0) -> tuple[float, tuple]:
    vals = [scale * rep[num] / rep[den] for rep in reps]
    return float(np.median(vals)), (float(min(vals)), float(max(vals)))


def core_targets(reps: list[dict], N: int, naive_time: float | None, naive_N: int) -> list[Target]:
    """The timing targets of issue 6 from the repetitions (ratios within each repetition)."""
    gptq_flops, gemm_flops = (5.0 / 3.0) * N ** 3, 2.0 * N ** 3
    rate = gptq_flops / gemm_flops         # time ratio gemm/gptq times flop ratio = rate ratio
    out = []
    m, s = _ratios(reps, "gemm", "gptq_algorithm", rate)
    out.append(Target(f"GPTQ {N} flop rate / BLAS matmul rate (algorithm)", m, s, 0.5, ">=",
                      "flops 5/3 N^3"))
    m, s = _ratios(reps, "gemm", "gptq_public", rate)
    out.append(Target(f"GPTQ {N} flop rate / BLAS matmul rate (public call)", m, s, 0.5, ">=",
                      "incl. input validation"))
    if "cli_run" in reps[0]:
        m, s = _ratios(reps, "cli_run", "gptq_public")
        out.append(Target("gilora-theory run --method gptq (new process) / gptq() public", m, s,
                          1.5, "<=", "start-up, load, validate, pass, evaluate, save codes"))
        out.append(_parts_target(reps, "cli_run", "  its required parts alone / gptq() public"))
    if naive_time is not None:
        scale = (N / naive_N) ** 3
        vals = [naive_time * scale / rep["gptq_algorithm"] for rep in reps]
        note = "measured at N" if naive_N == N else f"measured at {naive_N}, x(N/n)^3"
        out.append(Target(f"row-by-row loop time / GPTQ time at {N}", float(np.median(vals)),
                          (min(vals), max(vals)), 10.0, ">=", note))
    for name, num, den, limit in [
            ("GILoRA r=32 (V_r included) / GPTQ (public calls)", "gilora_public", "gptq_public",
             2.0),
            ("Bid-Up sweep / GPTQ (algorithm)", "sweep_algorithm", "gptq_algorithm", 1.5),
            ("Bid-Up sweeps=1 / GPTQ (public calls)", "bidup_public", "gptq_public", None),
            ("OLrC r=32 given eig(H) / GPTQ (algorithm)", "olrc_algorithm", "gptq_algorithm", 1.0),
            ("OLrC r=32 given eig(H) / GPTQ (public calls)", "olrc_public", "gptq_public", None),
            ("refinement round / GPTQ (algorithm)", "round_algorithm", "gptq_algorithm", 3.0),
            ("refine rounds=1 (2 OLrC + 1 Bid-Up) / GPTQ (public)", "refine_public", "gptq_public",
             None),
            ("compress gptq+olrc r=32 / GPTQ (public calls)", "gptq_olrc_public", "gptq_public",
             2.0),
            ("OLrC r=32 given Q, no eig(H) / GPTQ (public calls)", "olrc_given_q_public",
             "gptq_public", 2.0),
            ("randomized-SVD OLrC (r+10, 4 its) / exact OLrC given Q", "olrc_randomized",
             "olrc_given_q_public", None)]:
        m, s = _ratios(reps, num, den)
        out.append(Target(name, m, s, limit if limit is not None else float("nan"),
                          "<=" if limit is not None else "info", _extra_note(reps, num)))
        if num in PARTS and f"{num}_parts" in reps[0]:
            out.append(_parts_target(reps, num, "  its required parts alone / gptq() public"))
    return out


def _parts_target(reps: list[dict], route: str, name: str) -> Target:
    """Info row: the sum of ``route``'s required parts (:data:`PARTS`, each timed alone in the
    same repetition) over the public ``gptq()``; the note gives each part in seconds (median)."""
    m, s = _ratios(reps, f"{route}_parts", "gptq_public")
    parts = [p for p in PARTS[route] if p != "gptq_public"]
    med = {p: float(np.median([rep[p] for rep in reps]))
           for p in parts + ["eig_route", "eig_dense"]}
    label = {"validate": "validate H", "signal": "||XW||^2", "startup": "start-up+imports",
             "load": "load", "gram": "Gram E^T E", "cholesky": "Cholesky", "trmm": "C^T D",
             "eig": f"top-r eig (route {med['eig_route']:.2f}, ?syevr {med['eig_dense']:.2f})"}
    first = "gptq() + " if "gptq_public" in PARTS[route] else ""
    return Target(name, m, s, float("nan"), "info",
                  first + " + ".join(f"{label[p]} {med[p]:.2f} s" for p in parts))


def _extra_note(reps: list[dict], num: str) -> str:
    """The value-side facts printed beside a time ratio (median over repetitions)."""
    if num == "olrc_randomized":
        gap = float(np.median([rep["randomized_excess"] for rep in reps]))
        return f"its value exceeds the exact optimum by {gap:.2e} (relative)"
    if num == "gptq_olrc_public":
        widths = [rep["gptq_olrc_width"] for rep in reps]
        if not all(np.isfinite(widths)):
            return "reference OLrC route (the Psi route needs min(N, N') >= 512 and 32 r <= it)"
        return (f"route Psi T_r(E), certified relative width {float(np.median(widths)):.1e} "
                "(tolerance 1e-10)")
    return ""


_MEMORY_CHILD = r"""
import json, sys, tracemalloc
import numpy as np
def hwm():  # peak resident set of this process image (VmHWM; exec resets it, unlike ru_maxrss)
    with open("/proc/self/status") as f:
        return next(int(ln.split()[1]) * 1024 for ln in f if ln.startswith("VmHWM"))
d = np.load(sys.argv[1])
W, H, r = d["W"], d["H"], int(d["r"])
from gilora_theory import fit_grid, gilora
grid = fit_grid(W, 4)
base = hwm()
tracemalloc.start()
gilora(W, H, grid, r)
traced = tracemalloc.get_traced_memory()[1]
tracemalloc.stop()
print(json.dumps({"base": base, "peak": hwm(), "traced_peak": traced}))
"""


def memory(layer: Layer, r: int) -> tuple[Target, dict]:
    """Peak resident memory of ``gilora`` in a fresh process against ``4 (|H| + |W| + |H_aug|)``.

    The peak resident set (``VmHWM`` of ``/proc/self/status``; ``ru_maxrss`` would
    keep the parent's peak across ``exec``) of the whole child process:
    interpreter, libraries, the inputs and the run. ``tracemalloc`` reports the
    peak of the run's own Python/NumPy allocations. Linux only.
    """
    N, N_out = layer.W.shape
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "layer.npz"
        save_npz(path, W=layer.W, H=layer.H, r=r)
        out = subprocess.run([sys.executable, "-c", _MEMORY_CHILD, str(path)], check=True,
                             capture_output=True, text=True)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    budget_bytes = layer.H.nbytes + layer.W.nbytes + 8 * (N + r) ** 2
    ratio = got["peak"] / budget_bytes
    got.update(budget_bytes=budget_bytes)
    note = (f"peak RSS {got['peak'] / 2**20:.0f} MiB (before the run {got['base'] / 2**20:.0f}), "
            f"traced {got['traced_peak'] / 2**20:.0f} MiB; |H|+|W|+|H_aug| "
            f"{budget_bytes / 2**20:.0f} MiB")
    return Target(f"GILoRA {N} r={r} peak RSS / (|H|+|W|+|H_aug|)", ratio, (ratio, ratio),
                  4.0, "<=", note), got


_LLM_CHILD = r"""
import json, sys, time
import numpy as np
def hwm():
    with open("/proc/self/status") as f:
        return next(int(ln.split()[1]) * 1024 for ln in f if ln.startswith("VmHWM"))
N, N_out, r = (int(a) for a in sys.argv[1:4])
from gilora_theory import fit_grid, gilora, gptq, refine
from gilora_theory.data.calibration import calibration, weights
H = calibration("power_law", N, N, exponent=0.5, rng=0).H
H = 0.5 * (H + H.T)
W = weights("gaussian", N, N_out, rng=1)
grid = fit_grid(W, 4)
base = hwm()
out = {"base": base}
def clock(f, *a, **k):
    t0 = time.perf_counter(); res = f(*a, **k); return time.perf_counter() - t0, res
A = np.random.default_rng(2).standard_normal((N, N))
out["gemm"], _ = clock(np.matmul, A, A)
del A, _
out["gptq"], _ = clock(gptq, W, H, grid)
del _
out["gilora"], g = clock(gilora, W, H, grid, r)
out["refine_round"], _ = clock(refine, W, H, grid, g.Q, r, rounds=1)
out["peak"] = hwm()
print(json.dumps(out))
"""


def llm_layers(shapes, r: int = 64) -> list[Target]:
    """Issue 15 target 5: GPTQ, GILoRA (rank ``r``) and one refinement round on LLM-sized layers.

    Each shape runs in a fresh process (setup included in its resident set; the
    peak is ``VmHWM``) against ``4 (|H| + |W| + |H_aug|)``; times are printed as
    ratios to one ``N x N`` matrix product in the same process.
    """
    out = []
    for N, N_out in shapes:
        _note(f"LLM-sized layer {N} x {N_out} (subprocess)")
        res = subprocess.run([sys.executable, "-c", _LLM_CHILD, str(N), str(N_out), str(r)],
                             check=True, capture_output=True, text=True)
        got = json.loads(res.stdout.strip().splitlines()[-1])
        budget = 8 * (N * N + N * N_out + (N + r) ** 2)
        ratio = got["peak"] / budget
        out.append(Target(f"{N}x{N_out} peak RSS / (|H|+|W|+|H_aug|)", ratio, (ratio, ratio), 4.0,
                          "<=", f"peak {got['peak'] / 2**30:.1f} GiB"))
        for key in ("gptq", "gilora", "refine_round"):
            q = got[key] / got["gemm"]
            out.append(Target(f"{N}x{N_out} {key} (r={r}) / N x N matmul", q, (q, q),
                              float("nan"), "info", f"{got[key]:.1f} s"))
    return out


def exact_targets() -> list[Target]:
    """Exact optimum: an r = 0 column (16 inputs, 3 bits) and enumeration speed for r = 1."""
    from gilora_theory.exact import exact_optimum
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 16))
    W = rng.standard_normal((16, 1)) / 4
    t0, res = _clock(exact_optimum, W, X.T @ X, 3, 0, limit=2 ** 26)
    out = [Target("exact r=0 column, N=16, 3 bits: seconds", t0, (t0, t0), 1.0, "<=",
                  f"{res.nodes} nodes of {8 ** 16:.2e} candidates")]
    X = rng.standard_normal((16, 5))
    W = rng.standard_normal((5, 2))
    t1, res = _clock(exact_optimum, W, X.T @ X, 2, 1, limit=2 ** 21)
    rate = res.candidates / t1
    out.append(Target("exact r=1 enumeration: candidates per second / 1e6", rate / 1e6,
                      (rate / 1e6, rate / 1e6), 1.0, ">=",
                      f"{res.candidates} candidates in {t1:.2f} s"))
    return out


def scaling(sizes, r: int, *, rng, reps4096: list[dict] | None = None) -> tuple[list, dict]:
    """Rows ``(algorithm, N, seconds)``: one measurement per size (4096 reused if given),
    and every size's times (``{N: measure(...)}``) for :func:`size_targets`."""
    rows, times = [], {}
    for N in sizes:
        if N == 4096 and reps4096:
            t = {k: float(np.median([rep[k] for rep in reps4096])) for k in reps4096[0]}
        else:
            t = measure(make_layer(N), min(r, N // 8), rng=rng)
        times[N] = t
        for key in ("gptq_algorithm", "gilora_public", "sweep_algorithm", "olrc_algorithm",
                    "round_algorithm", "gemm"):
            rows.append({"algorithm": key, "N": N, "seconds": t[key]})
    return rows, times


def size_targets(times: dict, N_main: int, r: int) -> list[Target]:
    """Issue 15's OLrC targets at the scaling table's other sizes 1024 and 2048 (target 3
    names them; one measurement each): OLrC given Q and ``gptq+olrc``, each <= 2 public
    ``gptq()`` calls of the same run, each followed by its required parts (info) when timed."""
    out = []
    for N in sorted(n for n in times if n in (1024, 2048) and n != N_main):
        t, rank = times[N], min(r, N // 8)
        for name, num in ((f"OLrC r={rank} given Q / GPTQ (public calls) at {N}",
                           "olrc_given_q_public"),
                          (f"compress gptq+olrc r={rank} / GPTQ (public calls) at {N}",
                           "gptq_olrc_public")):
            ratio = t[num] / t["gptq_public"]
            out.append(Target(name, ratio, (ratio, ratio), 2.0, "<=",
                              f"one run: {t[num]:.2f} s against {t['gptq_public']:.2f} s"))
            if f"{num}_parts" in t:
                out.append(_parts_target([t], num, f"  its required parts alone at {N}"))
    return out


def fitted_exponents(rows: list[dict]) -> dict:
    """Least-squares slope of ``log t`` against ``log N`` per algorithm."""
    out = {}
    for alg in dict.fromkeys(row["algorithm"] for row in rows):
        pts = [(row["N"], row["seconds"]) for row in rows if row["algorithm"] == alg]
        if len(pts) >= 2:
            x, y = np.log([p[0] for p in pts]), np.log([p[1] for p in pts])
            out[alg] = float(np.polyfit(x, y, 1)[0])
    return out


def write_scaling(rows: list[dict], out: Path) -> dict:
    """``bench_scaling.csv`` (tidy) and ``bench_scaling.png`` (log-log, fitted exponents)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd
    slopes = fitted_exponents(rows)
    table = pd.DataFrame(rows)
    table["fitted_exponent"] = table["algorithm"].map(slopes)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(out / "bench_scaling.csv", "w") as f:
        table.to_csv(f, index=False)
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for alg, grp in table.groupby("algorithm", sort=False):
        ax.loglog(grp["N"], grp["seconds"], "o-", label=f"{alg} (slope {slopes.get(alg, 0):.2f})")
    ax.set_xlabel("N = N' (float64)")
    ax.set_ylabel("seconds")
    ax.set_title("Time against layer size (r = min(32, N/8))")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_write(out / "bench_scaling.png") as f:
        fig.savefig(f, format="png", dpi=120)
    plt.close(fig)
    return slopes


def sweep_speedup(workers: int = 2) -> Target:
    """Sweep wall time with 1 worker process over that with ``workers`` (BLAS 1 thread each)."""
    import concurrent.futures
    import multiprocessing
    from gilora_theory.experiments.sweep import run_sweep
    config = {"name": "bench", "methods": ["gptq", "gilora", "refine"], "bits": [3],
              "ranks": [0, 4, 8], "seeds": list(range(16)), "options": {"rounds": 2},
              "layers": [{"source": "synthetic", "name": "pl", "kind": "power_law", "m": 512,
                          "N": 192, "N_out": 192, "params": {"exponent": 1.0},
                          "weights": "gaussian"}]}
    times = {}
    saved = {k: os.environ.get(k) for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}
    os.environ.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    try:
        for n in (1, workers):
            with tempfile.TemporaryDirectory() as tmp, concurrent.futures.ProcessPoolExecutor(
                    n, mp_context=multiprocessing.get_context("spawn")) as pool:
                list(pool.map(abs, range(n)))           # start the workers before timing
                times[n] = _clock(run_sweep, config, Path(tmp) / "out", executor=pool)[0]
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    s = times[1] / times[workers]
    return Target(f"sweep speed-up with {workers} workers", s, (s, s), 1.5, ">=",
                  f"{times[1]:.1f} s -> {times[workers]:.1f} s")


def machine() -> dict:
    """CPU, cores, BLAS and the BLAS environment variables in force."""
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f
                        if ln.startswith("model name")), cpu)
    except OSError:
        pass
    cfg = np.show_config(mode="dicts")
    blas = cfg.get("Build Dependencies", {}).get("blas", {})
    env = {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
                                          "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "numpy": np.__version__, "scipy": scipy.__version__,
            "blas": f"{blas.get('name')} {blas.get('version')}", "env": env,
            "provenance": provenance()}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python benchmarks/bench.py",
                                description="Performance targets as same-run time ratios.")
    p.add_argument("--N", type=int, default=4096, help="layer size of the targets (N = N')")
    p.add_argument("--rank", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--naive-n", type=int, default=None,
                   help="size at which the row-by-row loop is timed (default N; 0 skips it)")
    p.add_argument("--sizes", type=int, nargs="*", default=[512, 1024, 2048, 4096],
                   help="sizes of the scaling table (none skips it)")
    p.add_argument("--skip", nargs="*", default=[], choices=["memory", "exact", "sweep"])
    p.add_argument("--llm", nargs="*", default=[], metavar="NxN_OUT",
                   help="LLM-sized layers to run (e.g. 12288x4096 8192x8192; none by default)")
    p.add_argument("--out", type=Path, default=Path("figures"))
    return p


def main(argv=None) -> int:
    """Run the benchmark; print the table; exit status 0 (a FAIL is a finding, not an error)."""
    args = _parser().parse_args(argv)
    rng = np.random.default_rng(0)
    info = machine()
    print(json.dumps(info))
    _note(f"building the {args.N} x {args.N} layer and its spectrum (setup)")
    layer = make_layer(args.N)
    tmp = Path(tempfile.mkdtemp(prefix="gilora-bench-"))
    layer_file = tmp / "layer.npz"
    np.savez(layer_file, W=layer.W, H=layer.H)
    reps = []
    for i in range(args.repeats):
        _note(f"repetition {i + 1} of {args.repeats}")
        reps.append(measure(layer, args.rank, rng=rng, layer_file=layer_file))
        _note(json.dumps({k: round(v, 3) for k, v in reps[-1].items()}))
    shutil.rmtree(tmp, ignore_errors=True)
    naive_n = args.N if args.naive_n is None else args.naive_n
    naive_time = None
    if naive_n:
        _note(f"row-by-row loop at N = {naive_n}")
        small = layer if naive_n == args.N else make_layer(naive_n, spectrum=False)
        H_lam = small.H + small.lam * np.eye(naive_n)
        naive_time, Qn = _clock(naive_gptq, small.W, H_lam, small.grid)
        Qf = _gptq_algorithm(small)[0]
        print(f"row-by-row loop at N={naive_n}: {naive_time:.1f} s; its Q differs from the "
              f"blocked pass in {int(np.count_nonzero(Qn != Qf))} of {Qn.size} entries")
    targets = core_targets(reps, args.N, naive_time, naive_n)
    extra = {}
    if "memory" not in args.skip:
        _note("memory (subprocess)")
        tgt, extra["memory"] = memory(layer, args.rank)
        targets.append(tgt)
    if "exact" not in args.skip:
        targets += exact_targets()
    if "sweep" not in args.skip:
        targets.append(sweep_speedup())
    if args.llm:
        targets += llm_layers([tuple(int(v) for v in s.split("x")) for s in args.llm])
    slopes = {}
    if args.sizes:
        _note(f"scaling table {sorted(args.sizes)}")
        rows, times = scaling(sorted(args.sizes), args.rank, rng=rng,
                              reps4096=reps if args.N == 4096 else None)
        targets += size_targets(times, args.N, args.rank)
        slopes = write_scaling(rows, args.out)
        print("fitted exponents (time ~ N^p):",
              json.dumps({k: round(v, 2) for k, v in slopes.items()}))
    for tgt in targets:
        print(tgt.line())
    counted = [t for t in targets if t.sense != "info"]
    print(f"targets met: {sum(t.passed for t in counted)} of {len(counted)}")
    args.out.mkdir(parents=True, exist_ok=True)
    with atomic_write(args.out / "bench_results.json", "w") as f:
        f.write(json.dumps(
            {"machine": info, "N": args.N, "rank": args.rank, "repetitions": reps,
             "targets": [asdict(t) | {"passed": t.passed} for t in targets],
             "fitted_exponents": slopes, **extra}, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
