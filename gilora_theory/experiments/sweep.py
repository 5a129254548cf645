"""Sweeps: layers x methods x bits x ranks x seeds, as one tidy table.

A sweep is described by a :class:`SweepConfig` (usually a JSON file, see
:func:`load_config`). :func:`run_sweep` expands it into runs, computes each run
(serially, through any :class:`concurrent.futures.Executor`, e.g.
``ProcessPoolExecutor``, or on a Dask cluster through a ``distributed.Client``)
and writes, into an output folder ``OUT``::

    OUT/config.json        the configuration and its hash (written first)
    OUT/runs/<digest>.json one file per finished run (row + trace), written atomically
    OUT/claims/            claim markers of the runs being computed (empty at rest)
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

Concurrent sweeps
-----------------
Several sweeps of one configuration may run into the same ``OUT`` at once (on
one machine or on several sharing the folder). Each run is claimed just before
it is computed: ``OUT/claims/<digest>.claim`` is created exclusively (hard link
of a complete temporary file) with the owner's id (host, process id, random
token) and refreshed while held; the result file is written before the claim is
removed. A sweep skips runs claimed by others and waits for them at the end, so
every sweep ends with the full table and no run is computed twice. A claim is
stale, and taken over, when its owner ran on this host and its process is gone
(e.g. killed with SIGKILL), or when it was not refreshed for ``claim_timeout``
seconds (:data:`CLAIM_TIMEOUT`, 300 s: an owner on another host died). Two
sweeps taking over the same stale claim at the same instant may both compute
that run; the table stays right, as the run's file is written atomically under
its digest.

Clusters
--------
Given a ``dask.distributed`` ``Client`` (``--scheduler ADDRESS`` or
``--scheduler local:N`` on the command line), the client resolves each layer
once and scatters it to every worker (``broadcast=True``); tasks receive the
scattered layer, so a layer's arrays travel once per worker, not once per task,
and the workers need neither the layer files nor the package data. Workers only
compute and return results; this process alone writes ``OUT``. A worker that
dies has its tasks rescheduled by Dask; should the sweep give up, rerunning it
resumes as above.

Conventions
-----------
- Methods without a low-rank branch (``rtn``, ``gptq``) run at rank 0 only.
- Ranks above ``min(N, N_out)`` of a layer are skipped for that layer; the ``sweep``
  command reports them (``skipped_ranks``).
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
import contextlib
import contextvars
import functools
import hashlib
import io
import json
import os
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .. import _validation as _v
from ..data.io import atomic_write, load_layer, write_json
from ..methods import METHODS, compress
from ..objective import layer_error

__all__ = ["SweepConfig", "Run", "SweepResult", "load_config", "packaged_configs", "config_hash",
           "synthetic_spec", "resolve_layer", "data_hash", "expand_runs", "skipped_ranks", "run_one",
           "bound_columns", "exact_columns", "gap_columns", "run_sweep", "run_sweep_cli",
           "sweep_table", "assemble", "read_tables", "BRANCHLESS", "CHAIN_METHODS", "EXACT_LIMIT",
           "CLAIM_TIMEOUT"]

BRANCHLESS = ("rtn", "gptq")
"""Methods without a low-rank branch: run at rank 0 only."""

_OPTION_DEFAULTS = {"damp": 0.01, "beta": 1.0, "unbounded": False, "rounds": 2,
                    "damp_from": "augmented", "exact": False}
EXACT_LIMIT = 2 ** 20
"""Largest candidate count an ``exact`` sweep searches (larger runs leave the column empty)."""
_SOURCES = ("synthetic", "bundled", "file")
CLAIM_TIMEOUT = 300.0
"""Default seconds after which an unrefreshed claim of another host is stale (its owner died)."""



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
    _unknown_keys("sweep configuration", source,
                  ("name", "layers", "methods", "bits", "ranks", "seeds", "options"))
    missing = {"name", "layers", "methods", "bits", "ranks"} - set(source)
    if missing:
        raise ValueError(f"sweep configuration misses keys {sorted(missing)}")
    layers = tuple(_check_layer_spec(s) for s in _as_list("layers", source["layers"]))
    for spec in layers:
        _check_layer_source(spec)
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


_SPEC_KEYS = {"synthetic": ("source", "name", "kind", "m", "N", "N_out", "params", "weights",
                             "weight_params"),
              "bundled": ("source", "name", "layer"),
              "file": ("source", "name", "path")}
"""Keys a layer specification of each source may hold (see :func:`resolve_layer`)."""


def _unknown_keys(what: str, given, allowed) -> None:
    """Refuse keys outside ``allowed``, naming each with the closest allowed key."""
    import difflib
    unknown = [k for k in given if k not in allowed]
    if unknown:
        hints = []
        for k in unknown:
            close = difflib.get_close_matches(str(k), allowed, n=1, cutoff=0.6)
            hints.append(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ValueError(f"{what} has unknown keys {', '.join(hints)}; allowed: {', '.join(allowed)}")


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
    _unknown_keys(f"layer {spec['name']!r}", spec, _SPEC_KEYS[spec["source"]])
    return spec


def _check_layer_source(spec: dict) -> None:
    """What can be checked without computing: synthetic generator names and keys, that a
    bundled layer exists and a layer file is there (each message names the layer)."""
    where = f"layer {spec['name']!r}"
    if spec["source"] == "synthetic":
        from ..data.calibration import KINDS, WEIGHT_KINDS
        missing = [k for k in ("kind", "m", "N", "N_out") if k not in spec]
        if missing:
            raise ValueError(f"{where} misses keys {missing}; a synthetic layer needs kind, m, N, N_out")
        for key, kinds in (("kind", KINDS), ("weights", WEIGHT_KINDS)):
            if key in spec and spec[key] not in kinds:
                raise ValueError(f"{where}: {key} must be one of {', '.join(kinds)}; got {spec[key]!r}")
        for key in ("m", "N", "N_out"):
            _v.check_int(f"{where}: {key}", spec[key], low=1)
        for key in ("params", "weight_params"):
            if not isinstance(spec.get(key, {}), dict):
                raise ValueError(f"{where}: {key} must be a JSON object; got {spec[key]!r}")
    elif spec["source"] == "bundled":
        from ..data.layers import bundled_names
        name = spec.get("layer", spec["name"])
        if name not in bundled_names():
            raise ValueError(f"{where}: no bundled layer {name!r}; bundled: {', '.join(bundled_names())}")
    elif not Path(spec["path"]).is_file():
        raise FileNotFoundError(f"{where}: layer file {spec['path']!r} does not exist")


def _check_options(options) -> dict:
    if not isinstance(options, dict):
        raise ValueError(f"options must be a dict; got {options!r}")
    _unknown_keys("options", options, sorted(_OPTION_DEFAULTS))
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
    given = _GIVEN_LAYER.get()
    if given is not None and given[:2] == (json.dumps(spec, sort_keys=True), int(seed)):
        return given[2]  # a scattered copy handed to this task (see run_sweep)
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


def data_hash(W, H, *, generator: dict | None = None) -> str:
    """SHA-256 (first 16 hex digits) of a layer's data, equal across runs, threads and machines.

    With ``generator`` (a synthetic layer: its generator parameters and seed) the hash
    is that of the canonical JSON of ``generator`` and the shapes: a drawn ``H = X^T X``
    is a BLAS product whose last bits depend on the thread count, so its bytes would
    not do. Otherwise (a layer read from a file or bundled) it is the hash of ``W``
    and ``H`` as stored (float64 bytes and shapes).
    """
    h = hashlib.sha256()
    if generator is not None:
        h.update(json.dumps(generator, sort_keys=True).encode())
    for A in (W, H):
        A = np.ascontiguousarray(A, dtype=np.float64)
        h.update(repr(A.shape).encode())
        if generator is None:
            h.update(A.tobytes())
    return h.hexdigest()[:16]


_GENERATOR_KEYS = ("kind", "m", "N", "N_out", "params", "weights", "weight_params")


def _layer_hash(spec: dict, seed: int, layer) -> str:
    """:func:`data_hash` of a resolved layer: generator parameters for a synthetic one."""
    if not _seeded(spec):
        return data_hash(layer.W, layer.H)
    gen = {k: spec[k] for k in _GENERATOR_KEYS if k in spec}
    gen.setdefault("weights", "gaussian")
    return data_hash(layer.W, layer.H, generator={**gen, "seed": int(seed)})


@functools.lru_cache(maxsize=8)
def _layer_eigvals(spec_json: str, seed: int) -> np.ndarray:
    """Eigenvalues of the layer's ``H``, descending (for ``g_r``)."""
    layer = resolve_layer(json.loads(spec_json), seed)
    return np.linalg.eigvalsh(layer.H)[::-1]


def gap_columns(run: Run) -> dict:
    """``g_r = (s_r^2 - s_{r+1}^2) / s_r^2`` and ``gap_resolvable`` at the run's rank.

    :func:`gilora_theory.gilora.relative_gap` on the eigenvalues of the layer's
    ``H``; empty (NaN in the table) for ``r = 0``.
    """
    from ..gilora import relative_gap
    theta = _layer_eigvals(run.spec, run.seed)
    g_r, resolvable = relative_gap(theta, run.rank, theta.shape[0])
    return {"g_r": g_r, "gap_resolvable": resolvable}


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
    resolved once here (cached); a layer that cannot be made is refused naming it.
    :func:`skipped_ranks` lists what was dropped.
    """
    options = json.dumps(config.options, sort_keys=True)
    runs = []
    for li, spec in enumerate(config.layers):
        spec_json = json.dumps(spec, sort_keys=True)
        for seed in (config.seeds if _seeded(spec) else (0,)):
            N, N_out = _layer_shape(spec, seed)
            for mi, method in enumerate(config.methods):
                ranks = (0,) if method in BRANCHLESS else config.ranks
                for bits in config.bits:
                    for r in ranks:
                        if r <= min(N, N_out):
                            runs.append(Run(spec["name"], li, spec_json, seed, method, mi,
                                            bits, r, options))
    return sorted(set(runs), key=Run.sort_key)


def _layer_shape(spec: dict, seed: int) -> tuple[int, int]:
    """``W.shape`` of a layer; any failure to make it names the layer."""
    try:
        return resolve_layer(spec, seed).W.shape
    except (ValueError, TypeError, FileNotFoundError) as exc:
        raise type(exc)(f"layer {spec['name']!r} (seed {seed}): {exc}") from None


def skipped_ranks(config: SweepConfig) -> dict:
    """``{layer: [ranks]}``: ranks of the configuration above ``min(N, N_out)`` of a layer,
    which :func:`expand_runs` does not run for it."""
    out = {}
    for spec in config.layers:
        for seed in (config.seeds if _seeded(spec) else (0,)):
            big = [r for r in config.ranks if r > min(_layer_shape(spec, seed))]
            if big:
                out[spec["name"]] = big
    return out


def run_one(run: Run) -> dict:
    """Compute one run: ``{"key", "row", "trace"}`` (picklable; used by executors).

    ``row`` holds the run's identity (``layer``, ``N``, ``N_out``, ``n_samples``,
    ``seed``, ``data_hash``, ``method``, ``bits``, ``rank``), the options
    (``opt_*``), the errors of :func:`gilora_theory.methods.compress` (``error``,
    ``damped_error``, ``relative_error``), ``signal = ||X W||_F^2 = tr(W^T H W)``,
    ``lam`` and the pass damping ``pass_lam``, the clipping count ``clipped``,
    ``g_r`` and ``gap_resolvable`` (:func:`gap_columns`), the bound columns of
    :func:`bound_columns` (and of :func:`exact_columns` when the option ``exact`` is set) and the wall-clock seconds of the method,
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
           "seed": run.seed, "data_hash": _layer_hash(json.loads(run.spec), run.seed, layer),
           "method": run.method,
           "bits": run.bits, "rank": run.rank, **{f"opt_{k}": v for k, v in opts.items()},
           "error": c.objective.error, "damped_error": c.objective.damped_error,
           "relative_error": c.objective.relative_error,
           "signal": layer_error(layer.W, np.zeros_like(layer.W), H=layer.H), "lam": c.lam,
           "pass_lam": float(c.info.get("pass_lam", c.lam)), "clipped": int(c.clipped),
           **gap_columns(run), **bounds, **exact, "time_method": t1 - t0, "time_bounds": t2 - t1,
           **({"time_exact": t3 - t2} if opts["exact"] else {})}
    trace = None if c.trace is None else [float(v) for v in c.trace]
    return {"key": run.key, "row": row, "trace": trace}


CHAIN_METHODS = ("gptq", "gilora")
"""Methods whose own pass the upper-bound chain bounds (docs/theory.md, "Upper bounds")."""


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
    n_computed : int
        Runs computed by this call; the other ``n_runs - n_resumed - n_computed``
        were finished meanwhile by concurrent sweeps into the same folder.
    """

    table: pd.DataFrame
    traces: pd.DataFrame
    out: Path
    n_runs: int
    n_resumed: int
    config_hash: str
    config: SweepConfig
    n_computed: int


def run_sweep(config, out, *, executor=None, progress: bool = False,
              claim_timeout: float = CLAIM_TIMEOUT) -> SweepResult:
    """Run (or resume) a sweep into folder ``out`` and assemble its tables.

    Parameters
    ----------
    config : SweepConfig, dict, str or path
        Anything :func:`load_config` accepts.
    out : str or path
        Output folder (created). See the module docstring for its layout and
        the resume semantics.
    executor : concurrent.futures.Executor or distributed.Client, optional
        Runs are submitted to it (``run_one`` is picklable); None runs them here.
        A ``dask.distributed`` ``Client`` gets each layer scattered once to every
        worker, and its tasks take the layer from there. Only this process writes
        ``out``: finished runs are stored as they complete.
    progress : bool, default False
        Show a tqdm progress bar on standard error.
    claim_timeout : float, default :data:`CLAIM_TIMEOUT` (300 s)
        Seconds after which another host's claim that was not refreshed counts as
        stale (its sweep died) and is taken over; see "Concurrent sweeps".

    Returns
    -------
    SweepResult
    """
    config = load_config(config)
    claim_timeout = _v.check_float("claim_timeout", claim_timeout, low_open=True)
    backend = _backend(executor)
    out = Path(out)
    runs = expand_runs(config)               # every layer made before anything is written
    chash = _claim_folder(config, out)
    done = _finished_keys(out)
    n_resumed = sum(r.digest in done for r in runs)
    bar = _progress(len(runs), n_resumed, config.name, progress)
    try:
        with _Claims(out / "claims", claim_timeout) as claims:
            n_computed = _execute(out, [r for r in runs if r.digest not in done],
                                  backend, claims, bar)
    finally:
        bar.close()
    table, traces = assemble(out, runs=runs)
    _write_tables(out, config, chash, table, traces)
    return SweepResult(table, traces, out, len(runs), n_resumed, chash, config, n_computed)


def _claim_folder(config: SweepConfig, out: Path) -> str:
    chash = config_hash(config)
    path = out / "config.json"
    if path.is_file():
        held = _read_json(path, "it records which configuration the folder holds; if this is "
                                "the same configuration, delete the file and rerun, else use a "
                                "new --out")
        if held.get("config_hash") != chash:
            raise ValueError(f"{out} holds a sweep of another configuration (hash "
                             f"{held.get('config_hash')}, this one {chash}); "
                             f"use a new output folder")
    else:
        write_json(path, {"config_hash": chash, "config": config.to_dict()})
    (out / "runs").mkdir(parents=True, exist_ok=True)
    return chash


_TMP_GRACE = 60.0
"""Seconds after which a temporary run file is a leftover of a killed sweep, not a write
in progress of a concurrent one (a run file is written in milliseconds)."""


def _finished_keys(out: Path) -> set[str]:
    """Digests of the finished runs; removes temporaries a killed sweep left behind."""
    now = time.time()
    for tmp in (out / "runs").glob(".*.json.*.tmp"):
        with contextlib.suppress(FileNotFoundError):
            if now - tmp.stat().st_mtime > _TMP_GRACE:
                tmp.unlink()
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


# ----------------------------------------------------------------------------- execution

_POLL = 0.2
"""Seconds between looks at the folder while every open run is claimed by another sweep."""


class _Claims:
    """The claim markers ``OUT/claims/<digest>.claim`` of one sweep process.

    A claim is a small JSON file (``owner``, ``host``, ``pid``, ``time``) created
    exclusively: written completely under a temporary name, then hard-linked to
    the marker's name, which fails when the marker exists (atomic, also on NFS).
    While held, claims are refreshed (modification time) every ``timeout / 4``
    seconds by a background thread. A claim is stale when its owner runs on this
    host and its process is gone, or when it has not been refreshed for
    ``timeout`` seconds; a stale claim is taken over.
    """

    def __init__(self, folder: Path, timeout: float):
        self.folder, self.timeout = folder, timeout
        self.host, self.pid = socket.gethostname(), os.getpid()
        self.owner = f"{self.host}:{self.pid}:{uuid.uuid4().hex[:8]}"
        self.held: set[str] = set()
        self._lock, self._stop = threading.Lock(), threading.Event()
        self._thread = threading.Thread(target=self._refresh, daemon=True, name="sweep-claims")

    def __enter__(self):
        self.folder.mkdir(parents=True, exist_ok=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        for digest in list(self.held):
            self.release(digest)

    def acquire(self, digest: str) -> bool:
        """Claim run ``digest``: True when this process now holds it."""
        path = self.folder / f"{digest}.claim"
        if self._link(path):
            return True
        if not self._stale(path):
            return False
        tomb = path.with_name(f".{digest}.{self.owner.replace(':', '_')}.stale")
        with contextlib.suppress(FileNotFoundError):
            os.rename(path, tomb)  # only one taker wins the rename
            tomb.unlink()
        return self._link(path)

    def release(self, digest: str) -> None:
        """Give up the claim on ``digest`` (after its result is stored, or on failure)."""
        with self._lock:
            self.held.discard(digest)
        with contextlib.suppress(FileNotFoundError):
            (self.folder / f"{digest}.claim").unlink()

    def _link(self, path: Path) -> bool:
        tmp = path.with_name(f".{path.stem}.{self.owner.replace(':', '_')}.tmp")
        write_json(tmp, {"owner": self.owner, "host": self.host, "pid": self.pid,
                         "time": time.time()})
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        finally:
            tmp.unlink()
        with self._lock:
            self.held.add(path.stem)
        return True

    def _stale(self, path: Path) -> bool:
        try:
            age = time.time() - path.stat().st_mtime
            held = json.loads(path.read_text())
        except FileNotFoundError:
            return True  # released meanwhile
        except ValueError:
            held = None
        if not isinstance(held, dict):
            return age > self.timeout  # not our format: judge by age alone
        if held.get("host") == self.host and held.get("pid") != self.pid:
            return not _alive(held.get("pid"))
        return age > self.timeout

    def _refresh(self) -> None:
        while not self._stop.wait(self.timeout / 4):
            with self._lock:
                held = list(self.held)
            for digest in held:
                with contextlib.suppress(FileNotFoundError):
                    os.utime(self.folder / f"{digest}.claim")


def _alive(pid) -> bool:
    """Whether process ``pid`` of this host exists (an unreaped zombie still counts)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _execute(out: Path, pending: list[Run], backend, claims: _Claims, bar) -> int:
    """Compute the ``pending`` runs not claimed by another sweep; the number computed here.

    Runs are claimed just before submission, at most ``backend.capacity()`` in
    flight; a result is stored before its claim is released, so a run whose claim
    can be taken always shows its result file first if it has one. Runs claimed by
    others are looked at again every :data:`_POLL` seconds until finished, or
    taken over once their claim is stale.
    """
    queue, blocked, inflight, computed = list(reversed(pending)), [], {}, 0
    try:
        while queue or blocked or inflight:
            capacity = backend.capacity()
            while queue and len(inflight) < capacity:
                run = queue.pop()
                if not claims.acquire(run.digest):
                    blocked.append(run)
                elif _stored(out, run):
                    claims.release(run.digest)
                    bar.update(1)
                else:
                    inflight[backend.submit(run)] = run
            for fut in backend.wait(list(inflight), _POLL):
                run = inflight.pop(fut)
                _store(out, (run, backend.result(fut)))
                claims.release(run.digest)
                computed += 1
                bar.update(1)
            if not queue and not inflight and blocked:
                time.sleep(_POLL)
                queue, blocked = _recheck(out, blocked, bar), []
    finally:
        for fut in inflight:
            fut.cancel()
    return computed


def _stored(out: Path, run: Run) -> bool:
    return (out / "runs" / f"{run.digest}.json").is_file()


def _recheck(out: Path, blocked: list[Run], bar) -> list[Run]:
    """The blocked runs still unfinished (as a queue); count the others as done."""
    finished = {p.stem for p in (out / "runs").glob("*.json")}
    left = [r for r in blocked if r.digest not in finished]
    bar.update(len(blocked) - len(left))
    return list(reversed(left))


class _Serial:
    """Backend computing each run here, at submission."""

    def capacity(self) -> int:
        return 1

    def submit(self, run: Run) -> concurrent.futures.Future:
        fut = concurrent.futures.Future()
        try:
            fut.set_result(run_one(run))
        except Exception as exc:  # re-raised by result(), as an executor would
            fut.set_exception(exc)
        return fut

    def wait(self, futures: list, timeout: float) -> list:
        return [f for f in futures if f.done()]

    def result(self, fut):
        return fut.result()


class _Executor(_Serial):
    """Backend over a ``concurrent.futures.Executor``: twice its worker count in flight."""

    def __init__(self, executor: concurrent.futures.Executor):
        self.executor = executor
        self.workers = getattr(executor, "_max_workers", None) or os.cpu_count() or 1

    def capacity(self) -> int:
        return 2 * self.workers

    def submit(self, run: Run):
        return self.executor.submit(run_one, run)

    def wait(self, futures: list, timeout: float) -> list:
        if not futures:
            return []
        return list(concurrent.futures.wait(futures, timeout, "FIRST_COMPLETED")[0])


class _Dask(_Serial):
    """Backend over a ``distributed.Client``: layers scattered once to every worker.

    Each (layer, seed) is resolved here once and broadcast with
    ``Client.scatter``; a task gets the scattered layer as an argument, so the
    layer's arrays travel once per worker, not once per task.
    """

    def __init__(self, client):
        self.client, self.layers = client, {}
        self._capacity, self._asked = 0, -float("inf")

    def capacity(self) -> int:
        """Twice the cluster's worker threads, asked of the scheduler at most every 5 s."""
        if time.monotonic() - self._asked > 5.0:
            self._capacity = 2 * max(1, sum(self.client.nthreads().values()))
            self._asked = time.monotonic()
        return self._capacity

    def submit(self, run: Run):
        key = (run.spec, run.seed)
        if key not in self.layers:
            layer = resolve_layer(json.loads(run.spec), run.seed)
            self.layers[key] = self.client.scatter(layer, broadcast=True, hash=False)
        return self.client.submit(_run_with_layer, run, self.layers[key], pure=False)

    def wait(self, futures: list, timeout: float) -> list:
        import distributed
        if not futures:
            return []
        with contextlib.suppress(distributed.TimeoutError, TimeoutError):
            distributed.wait(futures, timeout=timeout, return_when="FIRST_COMPLETED")
        return [f for f in futures if f.done()]


_GIVEN_LAYER: contextvars.ContextVar = contextvars.ContextVar("given_layer", default=None)
"""``(spec_json, seed, layer)`` handed to a task (scattered), used by :func:`resolve_layer`."""


def _run_with_layer(run: Run, layer) -> dict:
    """:func:`run_one` with the run's layer given (a worker's scattered copy), not resolved."""
    token = _GIVEN_LAYER.set((run.spec, run.seed, layer))
    try:
        return run_one(run)
    finally:
        _GIVEN_LAYER.reset(token)


def _backend(executor):
    """The execution backend of ``executor`` (None, an Executor or a ``distributed.Client``)."""
    if executor is None:
        return _Serial()
    if hasattr(executor, "scatter") and hasattr(executor, "nthreads"):
        return _Dask(executor)
    if isinstance(executor, concurrent.futures.Executor):
        return _Executor(executor)
    raise TypeError(f"executor must be None, a concurrent.futures.Executor or a "
                    f"distributed.Client; got {type(executor).__name__}")


def _compute(pending: list[Run], executor):
    """``(run, result)`` of every run, in completion order (no claims: in memory only)."""
    backend, inflight = _backend(executor), {}
    queue = list(reversed(pending))
    try:
        while queue or inflight:
            while queue and len(inflight) < backend.capacity():
                run = queue.pop()
                inflight[backend.submit(run)] = run
            for fut in backend.wait(list(inflight), _POLL):
                yield inflight.pop(fut), backend.result(fut)
    finally:
        for fut in inflight:
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
        result = _read_json(out / "runs" / f"{run.digest}.json",
                            f"it holds run {run.key!r}; delete it and rerun the same sweep "
                            "command to recompute that run", keys=("key", "row", "trace"))
        if result["key"] != run.key:
            raise ValueError(f"{out}/runs/{run.digest}.json holds run {result['key']!r}, "
                             f"expected {run.key!r}")
        results.append(result)
    return _tables(results)


def _read_json(path: Path, recover: str, keys=()) -> dict:
    """A JSON object from a sweep folder, or a ValueError naming the file, what is wrong
    and how to recover."""
    try:
        obj = json.loads(path.read_text())
        missing = [k for k in keys if k not in obj]
    except (json.JSONDecodeError, UnicodeDecodeError, TypeError) as exc:
        raise ValueError(f"{path} is damaged ({exc}); {recover}") from None
    if not isinstance(obj, dict) or missing:
        raise ValueError(f"{path} is damaged (missing {missing or 'a JSON object'}); {recover}")
    return obj


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
    from ..provenance import provenance
    data_hashes = {f"{layer}|{seed}": h for (layer, seed), h in hashes.items()}
    write_json(out / "sweep.json", {
        "name": config.name, "config_hash": chash, "config": config.to_dict(),
        "data_hashes": data_hashes, "n_runs": int(len(table)), "tables": files,
        "versions": {"gilora_theory": __version__, "numpy": np.__version__,
                     "pandas": pd.__version__},
        "provenance": {**provenance(seeds=config.seeds, data_hashes=data_hashes),
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
    import signal
    import threading
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # Ctrl-C is the parent's to handle

    def watch():
        while os.getppid() == parent:
            time.sleep(interval)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="exit-with-parent").start()


def run_sweep_cli(config, out, *, workers: int = 1, scheduler: str | None = None,
                  progress: bool = True) -> dict:
    """:func:`run_sweep` with ``workers`` processes or on a Dask cluster (the ``sweep`` command).

    Parameters
    ----------
    config, out
        As for :func:`run_sweep`.
    workers : int, default 1
        1 computes in this process; more uses a ``ProcessPoolExecutor``
        (``spawn`` start method, so no state is inherited from this process;
        workers ignore Ctrl-C, which the parent handles).
    scheduler : str, optional
        ``"local:N"``: a ``dask.distributed.LocalCluster`` of N worker processes
        (one thread each), started here and closed at the end; any other string:
        the address of a running scheduler (e.g. ``tcp://10.0.0.5:8786``). Excludes
        ``workers > 1``.
    progress : bool, default True

    Returns
    -------
    dict
        ``name``, ``out``, ``skipped_ranks`` (the ranks a layer was too small for,
        :func:`skipped_ranks`), ``config_hash``, ``runs``, ``resumed``, ``computed``
        (by this call), ``by_others`` (by concurrent sweeps), and the paths of
        ``table``, ``traces``, ``sidecar``.
    """
    workers = _v.check_int("workers", workers, low=1)
    if scheduler is not None and workers > 1:
        raise ValueError(f"workers and scheduler exclude each other; got workers={workers} "
                         f"and scheduler={scheduler!r}")
    if scheduler is not None:
        with _dask_client(scheduler) as client:
            res = run_sweep(config, out, executor=client, progress=progress)
    elif workers == 1:
        res = run_sweep(config, out, progress=progress)
    else:
        import multiprocessing
        ctx = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=ctx,
                                                    initializer=_exit_with_parent,
                                                    initargs=(os.getpid(),)) as pool:
            res = run_sweep(config, out, executor=pool, progress=progress)
    return {"name": res.config.name, "out": str(res.out),
            "skipped_ranks": skipped_ranks(res.config),
            "config_hash": res.config_hash, "runs": res.n_runs, "resumed": res.n_resumed,
            "computed": res.n_computed,
            "by_others": res.n_runs - res.n_resumed - res.n_computed,
            "table": str(res.out / "runs.csv"),
            "traces": str(res.out / "traces.csv"), "sidecar": str(res.out / "sweep.json")}


@contextlib.contextmanager
def _dask_client(scheduler: str):
    """A ``distributed.Client`` for ``"local:N"`` (a LocalCluster of N processes) or an address."""
    if not isinstance(scheduler, str) or not scheduler:
        raise TypeError(f"scheduler must be 'local:N' or a scheduler address; got {scheduler!r}")
    try:
        import distributed
    except ImportError:
        raise ImportError("scheduler needs dask.distributed: pip install 'dask[distributed]'") \
            from None
    if not scheduler.startswith("local:"):
        with distributed.Client(scheduler, timeout="30s") as client:
            yield client
        return
    n = scheduler[len("local:"):]
    if not n.isdigit() or int(n) < 1:
        raise ValueError(f"scheduler 'local:N' needs a worker count N >= 1; got {scheduler!r}")
    with distributed.LocalCluster(n_workers=int(n), threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as cluster, \
            distributed.Client(cluster) as client:
        yield client
