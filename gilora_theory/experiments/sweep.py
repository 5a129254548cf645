"""Sweeps: layers x methods x bits x ranks x seeds, as one tidy table.

A sweep is described by a :class:`SweepConfig` (usually a JSON file, see
:func:`load_config`). :func:`run_sweep` expands it into runs, computes each run
(serially or through any :class:`concurrent.futures.Executor`, e.g.
``ProcessPoolExecutor`` or a ``dask.distributed`` client's ``get_executor()``)
and writes, into an output folder ``OUT``::

    OUT/config.json        the configuration and its hash (written first)
    OUT/runs/<digest>.json one file per finished run (row + trace), written atomically
    OUT/runs.csv           the tidy table: one row per run, sorted by run key
    OUT/traces.csv         refinement traces: one row per (run, trace entry)
    OUT/*.parquet          the same two tables, only when pyarrow is installed
    OUT/sweep.json         sidecar: configuration, its hash, data hashes, versions

Resume semantics
----------------
A run counts as finished once its ``runs/<digest>.json`` exists; that file is
written to a temporary name, flushed, fsync'ed and renamed, so it is either
complete or absent (an interruption, even ``SIGKILL``, loses at most the runs in
flight). Restarting the same sweep into the same ``OUT`` skips every finished run,
computes the others and assembles the tables from all run files, sorted by run key
(layer, seed, method, bits, rank in configuration order), so an interrupted and
resumed sweep gives the same table as an uninterrupted one: every column is
identical except the wall-clock ``time_*`` columns. ``OUT`` holding a sweep of a
different configuration is refused. A layer whose data hash changed between the
interrupted and the resumed part (e.g. an edited layer file) is refused too.

Conventions
-----------
- Methods without a low-rank branch (``rtn``, ``gptq``) run at rank 0 only.
- Ranks above ``min(N, N_out)`` of a layer are skipped for that layer.
- Seeds generate synthetic layers (``numpy.random.default_rng(seed)``); fixed
  layers (files, bundled real layers) do not depend on a seed and run once, with
  ``seed = 0`` in the table.
- Every algorithm in the core is deterministic, so a run depends only on its key
  and the configuration's options.

References
----------
[1] S. Zhang, R. Saab, "GPTQ-intrinsic LoRA", arXiv:2606.01412 (2026).
"""
from __future__ import annotations

import concurrent.futures
import functools
import hashlib
import io
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .. import _validation as _v
from ..data.io import atomic_write, load_layer, write_json
from ..methods import METHODS, compress
from ..objective import layer_error

__all__ = ["SweepConfig", "Run", "SweepResult", "load_config", "packaged_configs", "config_hash",
           "synthetic_spec", "resolve_layer", "data_hash", "expand_runs", "run_one",
           "bound_columns", "exact_columns", "run_sweep", "run_sweep_cli", "sweep_table",
           "assemble", "read_tables", "BRANCHLESS", "CHAIN_METHODS", "EXACT_LIMIT"]

BRANCHLESS = ("rtn", "gptq")
"""Methods without a low-rank branch: run at rank 0 only."""

_OPTION_DEFAULTS = {"damp": 0.01, "beta": 1.0, "unbounded": False, "rounds": 2,
                    "damp_from": "augmented", "exact": False}
EXACT_LIMIT = 2 ** 20
"""Largest candidate count an ``exact`` sweep searches (larger runs leave the column empty)."""
_SOURCES = ("synthetic", "bundled", "file")


@dataclass(frozen=True)
class SweepConfig:
    """What a sweep runs.

    Attributes
    ----------
    name : str
        Name of the sweep (names the table folder in ``figures/tables``).
    layers : tuple of dict
        Layer specifications, each with ``"source"`` in ``synthetic``, ``bundled``,
        ``file`` and a unique ``"name"`` (see :func:`resolve_layer`).
    methods : tuple of str
        Members of :data:`gilora_theory.methods.METHODS`.
    bits : tuple of int
    ranks : tuple of int
    seeds : tuple of int
        Seeds of synthetic layers.
    options : dict
        ``damp``, ``beta``, ``unbounded``, ``rounds``, ``damp_from`` passed to
        :func:`gilora_theory.methods.compress` (defaults 0.01, 1.0, False, 2,
        ``"augmented"``), and ``exact`` (default False): also compute the exact
        optimum of each (layer, seed, bits, rank) on tiny layers
        (:func:`exact_columns`).
    """

    name: str
    layers: tuple
    methods: tuple
    bits: tuple
    ranks: tuple
    seeds: tuple = (0,)
    options: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """Plain JSON-able form (lists, sorted option keys)."""
        d = asdict(self)
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}


def load_config(source) -> SweepConfig:
    """A validated :class:`SweepConfig` from a dict, a JSON file or a packaged name.

    Parameters
    ----------
    source : dict, str or path
        A mapping with keys ``name``, ``layers``, ``methods``, ``bits``, ``ranks``
        and optional ``seeds``, ``options``; or the path of a JSON file holding
        one; or the name of a configuration shipped in ``gilora_theory/experiments/configs``
        (e.g. ``"synthetic_rank"``).
    """
    if isinstance(source, SweepConfig):
        source = source.to_dict()
    if not isinstance(source, dict):
        source = _read_config_file(source)
    unknown = set(source) - {"name", "layers", "methods", "bits", "ranks", "seeds", "options"}
    if unknown:
        raise ValueError(f"sweep configuration has unknown keys {sorted(unknown)}")
    missing = {"name", "layers", "methods", "bits", "ranks"} - set(source)
    if missing:
        raise ValueError(f"sweep configuration misses keys {sorted(missing)}")
    layers = tuple(_check_layer_spec(s) for s in _as_list("layers", source["layers"]))
    names = [s["name"] for s in layers]
    if len(set(names)) != len(names):
        raise ValueError(f"layer names must be unique; got {names}")
    methods = tuple(_as_list("methods", source["methods"]))
    for m in methods:
        if m not in METHODS:
            raise ValueError(f"methods: each must be one of {', '.join(METHODS)}; got {m!r}")
    return SweepConfig(
        name=_check_name(source["name"]), layers=layers, methods=methods,
        bits=tuple(_v.check_bits("bits", b) for b in _as_list("bits", source["bits"])),
        ranks=tuple(_v.check_int("ranks", r, low=0) for r in _as_list("ranks", source["ranks"])),
        seeds=tuple(_v.check_int("seeds", s, low=0)
                    for s in _as_list("seeds", source.get("seeds", [0]))),
        options=_check_options(source.get("options", {})))


def _read_config_file(source) -> dict:
    path = Path(source)
    if not path.is_file() and path.suffix == "" and "/" not in str(source):
        path = Path(__file__).parent / "configs" / f"{source}.json"
    if not path.is_file():
        raise FileNotFoundError(f"sweep configuration {str(source)!r} is neither a file nor a "
                                f"packaged configuration ({', '.join(packaged_configs())})")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None


def packaged_configs() -> list[str]:
    """Names of the sweep configurations shipped in ``gilora_theory/experiments/configs``."""
    return sorted(p.stem for p in (Path(__file__).parent / "configs").glob("*.json"))


def _as_list(name, value) -> list:
    if not isinstance(value, (list, tuple)) or len(value) == 0:
        raise ValueError(f"{name} must be a non-empty list; got {value!r}")
    if len(set(map(json.dumps, value))) != len(value):
        raise ValueError(f"{name} must not repeat entries; got {value!r}")
    return list(value)


def _check_name(name) -> str:
    if not isinstance(name, str) or not name or any(c in name for c in "/\\|"):
        raise ValueError(f"name must be a non-empty string without '/', '\\' or '|'; got {name!r}")
    return name


def _check_layer_spec(spec) -> dict:
    if not isinstance(spec, dict) or spec.get("source") not in _SOURCES:
        raise ValueError(f"each layer must be a dict with 'source' in {_SOURCES}; got {spec!r}")
    spec = dict(spec)
    if spec["source"] == "file":
        if "path" not in spec:
            raise ValueError(f"a 'file' layer needs 'path'; got {spec!r}")
        spec.setdefault("name", Path(spec["path"]).stem)
    if "name" not in spec:
        raise ValueError(f"a {spec['source']!r} layer needs 'name'; got {spec!r}")
    _check_name(spec["name"])
    return spec


def _check_options(options) -> dict:
    if not isinstance(options, dict):
        raise ValueError(f"options must be a dict; got {options!r}")
    unknown = set(options) - set(_OPTION_DEFAULTS)
    if unknown:
        raise ValueError(f"options has unknown keys {sorted(unknown)}; "
                         f"known: {sorted(_OPTION_DEFAULTS)}")
    out = {**_OPTION_DEFAULTS, **options}
    _v.check_damp(out["damp"])
    _v.check_beta(out["beta"])
    _v.check_int("rounds", out["rounds"], low=0)
    for flag in ("unbounded", "exact"):
        if not isinstance(out[flag], bool):
            raise TypeError(f"options.{flag} must be true or false; got {out[flag]!r}")
    if out["damp_from"] not in ("augmented", "hessian"):
        raise ValueError(f"options.damp_from must be 'augmented' or 'hessian'; "
                         f"got {out['damp_from']!r}")
    return dict(sorted(out.items()))


def config_hash(config: SweepConfig) -> str:
    """SHA-256 (first 16 hex digits) of the configuration's canonical JSON."""
    text = json.dumps(config.to_dict(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------- layers

def resolve_layer(spec: dict, seed: int = 0):
    """The :class:`gilora_theory.data.io.Layer` a layer specification names.

    ``{"source": "file", "path": P}`` reads ``LAYER.npz``;
    ``{"source": "bundled", "name": NAME}`` loads a real layer shipped with the
    package (:mod:`gilora_theory.data.layers`; ``"layer"`` overrides the name looked up);
    ``{"source": "synthetic", "name", "kind", "m", "N", "N_out", "params",
    "weights", "weight_params"}`` draws ``X = calibration(kind, m, N, **params)``
    from the gallery (:mod:`gilora_theory.data.calibration`), then
    ``W = weights(weights, N, N_out, **weight_params)`` (default ``gaussian``),
    both from one ``numpy.random.default_rng(seed)``. Results are cached per
    process (a file layer is read again when its modification time changes).
    """
    spec = _check_layer_spec(spec)
    stamp = None
    if spec["source"] == "file" and Path(spec["path"]).is_file():
        st = Path(spec["path"]).stat()
        stamp = (st.st_mtime_ns, st.st_size)  # an edited file is read again
    seed = int(seed) if _seeded(spec) else 0
    return _resolve_cached(json.dumps(spec, sort_keys=True), seed, stamp)


def synthetic_spec(name: str, kind: str, *, m: int, N: int, N_out: int,
                   weights: str = "gaussian", **params) -> dict:
    """A ``synthetic`` layer specification (see :func:`resolve_layer`).

    ``params`` go to the gallery generator ``kind`` of
    :func:`gilora_theory.data.calibration.calibration`; ``weights`` names the weight
    generator (:data:`gilora_theory.data.calibration.WEIGHT_KINDS`).
    """
    return {"source": "synthetic", "name": name, "kind": kind, "m": m, "N": N, "N_out": N_out,
            "params": params, "weights": weights}


def _seeded(spec: dict) -> bool:
    return spec["source"] == "synthetic"


@functools.lru_cache(maxsize=8)
def _resolve_cached(spec_json: str, seed: int, stamp):
    spec = json.loads(spec_json)
    if spec["source"] == "file":
        return load_layer(spec["path"])
    if spec["source"] == "synthetic":
        return _synthetic_layer(spec, seed)
    from ..data.layers import load_bundled
    return load_bundled(spec.get("layer", spec["name"]))


def _synthetic_layer(spec: dict, seed: int):
    """``X`` from the gallery, then ``W``, both from one ``default_rng(seed)``."""
    from ..data.calibration import calibration, weights
    from ..data.io import Layer
    missing = {"kind", "m", "N", "N_out"} - set(spec)
    if missing:
        raise ValueError(f"synthetic layer {spec['name']!r} misses keys {sorted(missing)}")
    rng = np.random.default_rng(seed)
    cal = calibration(spec["kind"], spec["m"], spec["N"], rng=rng, **spec.get("params", {}))
    W = weights(spec.get("weights", "gaussian"), spec["N"], spec["N_out"], rng=rng,
                **spec.get("weight_params", {}))
    return Layer(W, cal.H, cal.X, cal.X.shape[0], spec["name"])


def data_hash(W, H) -> str:
    """SHA-256 (first 16 hex digits) of a layer's ``W`` and ``H`` (float64 bytes and shapes)."""
    h = hashlib.sha256()
    for A in (W, H):
        A = np.ascontiguousarray(A, dtype=np.float64)
        h.update(repr(A.shape).encode())
        h.update(A.tobytes())
    return h.hexdigest()[:16]


# ----------------------------------------------------------------------------- runs

@dataclass(frozen=True)
class Run:
    """One run of a sweep: a layer (and seed), a method, a bit-width and a rank.

    Attributes
    ----------
    layer : str
    layer_index : int
        Position of the layer in the configuration (sort order).
    spec : str
        The layer specification as canonical JSON.
    seed, method, bits, rank
    method_index : int
        Position of the method in the configuration (sort order).
    options : str
        The configuration's options as canonical JSON.
    """

    layer: str
    layer_index: int
    spec: str
    seed: int
    method: str
    method_index: int
    bits: int
    rank: int
    options: str

    @property
    def key(self) -> str:
        """``layer|seed|method|b<bits>|r<rank>``: unique within a sweep."""
        return f"{self.layer}|{self.seed}|{self.method}|b{self.bits}|r{self.rank}"

    @property
    def digest(self) -> str:
        """File name stem of the run's result: SHA-1 of the key and options."""
        return hashlib.sha1(f"{self.key}#{self.options}".encode()).hexdigest()[:20]

    def sort_key(self) -> tuple:
        return (self.layer_index, self.seed, self.method_index, self.bits, self.rank)


def expand_runs(config: SweepConfig) -> list[Run]:
    """Every run of ``config``, sorted by run key (see module conventions).

    Layer shapes are needed to drop ranks above ``min(N, N_out)``: each layer is
    resolved once here (cached).
    """
    options = json.dumps(config.options, sort_keys=True)
    runs = []
    for li, spec in enumerate(config.layers):
        spec_json = json.dumps(spec, sort_keys=True)
        for seed in (config.seeds if _seeded(spec) else (0,)):
            N, N_out = resolve_layer(spec, seed).W.shape
            for mi, method in enumerate(config.methods):
                ranks = (0,) if method in BRANCHLESS else config.ranks
                for bits in config.bits:
                    for r in ranks:
                        if r <= min(N, N_out):
                            runs.append(Run(spec["name"], li, spec_json, seed, method, mi,
                                            bits, r, options))
    return sorted(set(runs), key=Run.sort_key)


def run_one(run: Run) -> dict:
    """Compute one run: ``{"key", "row", "trace"}`` (picklable; used by executors).

    ``row`` holds the run's identity (``layer``, ``N``, ``N_out``, ``n_samples``,
    ``seed``, ``data_hash``, ``method``, ``bits``, ``rank``), the options
    (``opt_*``), the errors of :func:`gilora_theory.methods.compress` (``error``,
    ``damped_error``, ``relative_error``), ``signal = ||X W||_F^2 = tr(W^T H W)``,
    ``lam`` and the pass damping ``pass_lam``, the clipping count ``clipped``,
    the bound columns of :func:`bound_columns` (and of :func:`exact_columns`
    when the option ``exact`` is set) and the wall-clock seconds of the method,
    the bounds and the exact search (``time_method``, ``time_bounds``,
    ``time_exact``). ``trace`` is the refinement trace (``refine`` only) or None.
    """
    layer = resolve_layer(json.loads(run.spec), run.seed)
    opts = json.loads(run.options)
    t0 = time.perf_counter()
    c = compress(layer.W, layer.H, run.method, run.bits, run.rank, damp=opts["damp"],
                 beta=opts["beta"], unbounded=opts["unbounded"], rounds=opts["rounds"],
                 damp_from=opts["damp_from"], x_abs_mean=layer.x_abs_mean)
    t1 = time.perf_counter()
    bounds = bound_columns(run)
    t2 = time.perf_counter()
    exact = exact_columns(run, c.objective.error) if opts["exact"] else {}
    t3 = time.perf_counter()
    N, N_out = layer.W.shape
    row = {"run_key": run.key, "layer": run.layer, "N": N, "N_out": N_out,
           "n_samples": layer.n_samples if layer.n_samples is not None else -1,
           "seed": run.seed, "data_hash": data_hash(layer.W, layer.H), "method": run.method,
           "bits": run.bits, "rank": run.rank, **{f"opt_{k}": v for k, v in opts.items()},
           "error": c.objective.error, "damped_error": c.objective.damped_error,
           "relative_error": c.objective.relative_error,
           "signal": layer_error(layer.W, np.zeros_like(layer.W), H=layer.H), "lam": c.lam,
           "pass_lam": float(c.info.get("pass_lam", c.lam)), "clipped": int(c.clipped),
           **bounds, **exact, "time_method": t1 - t0, "time_bounds": t2 - t1,
           **({"time_exact": t3 - t2} if opts["exact"] else {})}
    trace = None if c.trace is None else [float(v) for v in c.trace]
    return {"key": run.key, "row": row, "trace": trace}


CHAIN_METHODS = ("gptq", "gilora")
"""Methods whose own pass the upper-bound chain bounds (THEORY.md section 4)."""


def bound_columns(run: Run) -> dict:
    """The bound columns of one run's row (:mod:`gilora_theory.upper_bounds`).

    For every run: ``g_b``, ``h_r``, ``h_0``, ``r_star``, ``h_convex`` of the
    factorised form ``g(b) h(r)`` (with the run's ``damp_from``) and ``cor39 =
    g(b) h(r)``. For GPTQ and GILoRA runs (:data:`CHAIN_METHODS`), the chain of
    that pass, link by link: ``bound_error`` (E), ``bound_damped_aug``
    (``E_lam_aug``), ``bound_step_sum``, ``bound_schur_sum``, ``bound_trace_S``,
    ``bound_closed_form``, ``bound_C``, ``bound_lam``, ``bound_holds`` (every link
    within its tolerance), ``bound_failed`` (names of failed links, ``;``-joined),
    ``bound_ratio`` (``E / closed_form``), and the minimax ``lower_bound`` with
    ``s_min`` (:func:`gilora_theory.upper_bounds.layer_bounds`); these are empty
    (NaN in the table) for the other methods, whose passes the chain does not bound.
    """
    fb = _factorised(run.spec, run.seed, run.bits, run.options)
    cols = {"g_b": fb.g, "h_r": float(fb.h[run.rank]), "h_0": float(fb.h[0]),
            "r_star": fb.r_star, "h_convex": fb.convex, "cor39": fb.g * float(fb.h[run.rank])}
    chain = {k: None for k in _CHAIN_COLUMNS}
    if run.method in CHAIN_METHODS:
        from ..upper_bounds import layer_bounds
        layer = resolve_layer(json.loads(run.spec), run.seed)
        opts = json.loads(run.options)
        lb = layer_bounds(layer.W, layer.H, run.bits, run.rank, damp=opts["damp"],
                          beta=opts["beta"], unbounded=opts["unbounded"],
                          damp_from=opts["damp_from"])
        ch = lb.gptq if run.method == "gptq" else lb.gilora
        chain = {"bound_error": ch.error, "bound_damped_aug": ch.damped_error,
                 "bound_step_sum": ch.step_sum, "bound_schur_sum": ch.schur_sum,
                 "bound_trace_S": ch.trace_S, "bound_closed_form": ch.closed_form,
                 "bound_C": ch.C, "bound_lam": ch.lam, "bound_holds": ch.holds,
                 "bound_failed": ";".join(ch.failed_links), "bound_ratio": ch.bound_ratio,
                 "lower_bound": lb.lower_bound, "s_min": lb.s_min}
    return {**cols, **chain}


_CHAIN_COLUMNS = ("bound_error", "bound_damped_aug", "bound_step_sum", "bound_schur_sum",
                  "bound_trace_S", "bound_closed_form", "bound_C", "bound_lam", "bound_holds",
                  "bound_failed", "bound_ratio", "lower_bound", "s_min")


def exact_columns(run: Run, error: float) -> dict:
    """Exact optimum of the run's (layer, seed, bits, rank) and the run's ratio to it.

    ``exact_optimum`` is ``min ||X (W - Q - L R)||_F^2`` over Q on the run's grid
    and rank-r ``L R`` (:func:`gilora_theory.exact.exact_optimum`; sphere decoding
    for r = 0, enumeration otherwise); ``exact_ratio = error / exact_optimum``
    (>= 1: no method beats the optimum), ``exact_examined`` and
    ``exact_candidates``. A search larger than :data:`EXACT_LIMIT` candidates is
    not attempted: the columns are then empty (NaN in the table).
    """
    layer = resolve_layer(json.loads(run.spec), run.seed)
    N, N_out = layer.W.shape
    levels = 2 ** run.bits
    count = N_out * levels ** N if run.rank == 0 else levels ** (N * N_out)
    if count > EXACT_LIMIT:
        return {"exact_optimum": None, "exact_ratio": None, "exact_examined": None,
                "exact_candidates": count}
    opt = _exact(run.spec, run.seed, run.bits, run.rank, run.options)
    ratio = error / opt.value if opt.value > 0 else (1.0 if error == 0 else float("inf"))
    return {"exact_optimum": opt.value, "exact_ratio": ratio, "exact_examined": opt.examined,
            "exact_candidates": opt.candidates}


@functools.lru_cache(maxsize=64)
def _exact(spec_json: str, seed: int, bits: int, rank: int, options_json: str):
    from ..exact import exact_optimum
    from ..grid import fit_grid
    layer = resolve_layer(json.loads(spec_json), seed)
    opts = json.loads(options_json)
    grid = fit_grid(layer.W, bits, beta=opts["beta"])
    return exact_optimum(layer.W, layer.H, rank=rank, grid=grid, limit=EXACT_LIMIT)


@functools.lru_cache(maxsize=64)
def _factorised(spec_json: str, seed: int, bits: int, options_json: str):
    """``factorised_bound`` of a layer (one eigendecomposition per layer, bits and options)."""
    from ..upper_bounds import factorised_bound
    layer = resolve_layer(json.loads(spec_json), seed)
    opts = json.loads(options_json)
    return factorised_bound(layer.W, layer.H, bits, beta=opts["beta"], damp=opts["damp"],
                            damp_from=opts["damp_from"])


# ----------------------------------------------------------------------------- driver

@dataclass(frozen=True)
class SweepResult:
    """What :func:`run_sweep` did.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per run, sorted by run key.
    traces : pandas.DataFrame
        ``run_key, layer, seed, method, bits, rank, step, label, value`` per trace entry.
    out : pathlib.Path
    n_runs : int
        Runs in the configuration.
    n_resumed : int
        Runs found finished on start (not recomputed).
    config_hash : str
    config : SweepConfig
    """

    table: pd.DataFrame
    traces: pd.DataFrame
    out: Path
    n_runs: int
    n_resumed: int
    config_hash: str
    config: SweepConfig


def run_sweep(config, out, *, executor: concurrent.futures.Executor | None = None,
              progress: bool = False) -> SweepResult:
    """Run (or resume) a sweep into folder ``out`` and assemble its tables.

    Parameters
    ----------
    config : SweepConfig, dict, str or path
        Anything :func:`load_config` accepts.
    out : str or path
        Output folder (created). See the module docstring for its layout and
        the resume semantics.
    executor : concurrent.futures.Executor, optional
        Runs are submitted to it (``run_one`` is picklable); None runs them here.
        Finished runs are written by this process as they complete.
    progress : bool, default False
        Show a tqdm progress bar on standard error.

    Returns
    -------
    SweepResult
    """
    config = load_config(config)
    out = Path(out)
    chash = _claim_folder(config, out)
    runs = expand_runs(config)
    done = _finished_keys(out)
    pending = [r for r in runs if r.digest not in done]
    bar = _progress(len(runs), len(runs) - len(pending), config.name, progress)
    try:
        for result in _compute(pending, executor):
            _store(out, result)
            bar.update(1)
    finally:
        bar.close()
    table, traces = assemble(out, runs=runs)
    _write_tables(out, config, chash, table, traces)
    return SweepResult(table, traces, out, len(runs), len(runs) - len(pending), chash, config)


def _claim_folder(config: SweepConfig, out: Path) -> str:
    chash = config_hash(config)
    path = out / "config.json"
    if path.is_file():
        held = json.loads(path.read_text())
        if held.get("config_hash") != chash:
            raise ValueError(f"{out} holds a sweep of another configuration (hash "
                             f"{held.get('config_hash')}, this one {chash}); "
                             f"use a new output folder")
    else:
        write_json(path, {"config_hash": chash, "config": config.to_dict()})
    (out / "runs").mkdir(parents=True, exist_ok=True)
    return chash


def _finished_keys(out: Path) -> set[str]:
    """Digests of the finished runs; removes temporaries a killed sweep left behind."""
    for tmp in (out / "runs").glob(".*.json.*.tmp"):
        tmp.unlink(missing_ok=True)
    return {p.stem for p in (out / "runs").glob("*.json")}


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, initial: int, name: str, enabled: bool):
    """A tqdm bar on standard error, or a silent stand-in (tqdm not even imported)."""
    if not enabled:
        return _NoBar()
    from tqdm import tqdm
    return tqdm(total=total, initial=initial, desc=f"sweep {name}", unit="run")


def _compute(pending: list[Run], executor):
    if executor is None:
        for run in pending:
            yield run, run_one(run)
        return
    futures = {executor.submit(run_one, run): run for run in pending}
    try:
        for fut in concurrent.futures.as_completed(futures):
            yield futures[fut], fut.result()
    finally:
        for fut in futures:
            fut.cancel()


def _store(out: Path, item) -> None:
    run, result = item
    with atomic_write(out / "runs" / f"{run.digest}.json", "w") as f:
        json.dump(result, f, allow_nan=True)


def assemble(out, *, runs: list[Run] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The run table and the trace table from the finished run files in ``out``.

    Rows are sorted by run key (configuration order); with ``runs`` given, every
    run must be finished and only those runs are used. Raises ValueError when a
    layer's data hash differs between runs.
    """
    out = Path(out)
    if runs is None:
        config = load_config(json.loads((out / "config.json").read_text())["config"])
        runs = expand_runs(config)
    results = []
    for run in sorted(runs, key=Run.sort_key):
        result = json.loads((out / "runs" / f"{run.digest}.json").read_text())
        if result["key"] != run.key:
            raise ValueError(f"{out}/runs/{run.digest}.json holds run {result['key']!r}, "
                             f"expected {run.key!r}")
        results.append(result)
    return _tables(results)


def _tables(results: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run table and trace table from ``run_one`` results already in run-key order."""
    traces = [{**{k: res["row"][k] for k in _TRACE_ID}, "step": step,
               "label": _trace_label(step), "value": value}
              for res in results for step, value in enumerate(res["trace"] or [])]
    table = _as_read_back(pd.DataFrame([res["row"] for res in results]))
    _check_data_hashes(table)
    traces = pd.DataFrame(traces, columns=[*_TRACE_ID, "step", "label", "value"])
    return table, _as_read_back(traces)


def _as_read_back(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` as its CSV file reads back (same dtypes and values: floats round-trip exactly)."""
    return pd.read_csv(io.StringIO(df.to_csv(index=False)))


def sweep_table(config, *, executor: concurrent.futures.Executor | None = None,
                progress: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(runs, traces)`` of a sweep computed in memory (no files, no resume).

    The same tables :func:`run_sweep` writes, for notebooks and small studies.
    """
    runs = expand_runs(load_config(config))
    bar = _progress(len(runs), 0, "in memory", progress)
    results = {}
    try:
        for run, result in _compute(runs, executor):
            results[run.key] = result
            bar.update(1)
    finally:
        bar.close()
    return _tables([results[r.key] for r in runs])


_TRACE_ID = ("run_key", "layer", "seed", "method", "bits", "rank")


def _trace_label(step: int) -> str:
    """Entry ``step`` of a refinement trace: start, then (olrc, bidup) rounds, final olrc."""
    return "start" if step == 0 else ("olrc" if step % 2 == 1 else "bidup")


def _check_data_hashes(table: pd.DataFrame) -> None:
    n = table.groupby(["layer", "seed"])["data_hash"].nunique()
    if (n > 1).any():
        bad = [f"{layer} (seed {seed})" for layer, seed in n[n > 1].index]
        raise ValueError(f"data hash changed between runs of {', '.join(bad)}: the layer data "
                         f"changed during the sweep; rerun into a new output folder")


def _write_tables(out: Path, config: SweepConfig, chash: str, table, traces) -> None:
    """CSV tables (and Parquet copies when pyarrow is installed), then the sidecar."""
    import importlib.util
    files = []
    for name, df in (("runs", table), ("traces", traces)):
        with atomic_write(out / f"{name}.csv", "w") as f:
            df.to_csv(f, index=False)
        files.append(f"{name}.csv")
        if importlib.util.find_spec("pyarrow") is not None:
            with atomic_write(out / f"{name}.parquet") as f:
                df.to_parquet(f, index=False)
            files.append(f"{name}.parquet")
    hashes = table.groupby(["layer", "seed"])["data_hash"].first()
    from .. import __version__
    write_json(out / "sweep.json", {
        "name": config.name, "config_hash": chash, "config": config.to_dict(),
        "data_hashes": {f"{layer}|{seed}": h for (layer, seed), h in hashes.items()},
        "n_runs": int(len(table)), "tables": files,
        "versions": {"gilora_theory": __version__, "numpy": np.__version__,
                     "pandas": pd.__version__}})


def read_tables(folder) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """``(runs, traces, sidecar)`` of an assembled sweep folder."""
    folder = Path(folder)
    if not (folder / "runs.csv").is_file():
        raise FileNotFoundError(f"{folder}/runs.csv does not exist; run the sweep first "
                                f"(gilora-theory sweep CONFIG --out {folder})")
    sidecar = json.loads((folder / "sweep.json").read_text())
    return (pd.read_csv(folder / "runs.csv"),
            pd.read_csv(folder / "traces.csv"), sidecar)


def _exit_with_parent(parent: int, interval: float = 0.5) -> None:
    """Worker initializer: end this worker once its parent is gone (e.g. killed with SIGKILL).

    Otherwise a worker whose sweep was killed would block forever on its result pipe.
    """
    import threading

    def watch():
        while os.getppid() == parent:
            time.sleep(interval)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="exit-with-parent").start()


def run_sweep_cli(config, out, *, workers: int = 1, progress: bool = True) -> dict:
    """:func:`run_sweep` with ``workers`` processes; a JSON-able summary (the ``sweep`` command).

    ``workers = 1`` computes in this process; more uses a ``ProcessPoolExecutor``
    (``spawn`` start method, so no state is inherited from this process).
    """
    workers = _v.check_int("workers", workers, low=1)
    if workers == 1:
        res = run_sweep(config, out, progress=progress)
    else:
        import multiprocessing
        ctx = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=ctx,
                                                    initializer=_exit_with_parent,
                                                    initargs=(os.getpid(),)) as pool:
            res = run_sweep(config, out, executor=pool, progress=progress)
    return {"name": res.config.name, "out": str(res.out),
            "config_hash": res.config_hash, "runs": res.n_runs, "resumed": res.n_resumed,
            "computed": res.n_runs - res.n_resumed, "table": str(res.out / "runs.csv"),
            "traces": str(res.out / "traces.csv"), "sidecar": str(res.out / "sweep.json")}
