"""The ``gilora-theory`` command line.

Each subcommand registers itself through an ``_add_<name>`` function listed in
``_SUBCOMMANDS`` and is run by a ``_cmd_<name>(args)`` function that calls only
the public API. A subcommand's result is printed as one JSON object on standard
output. Any bad input ends with one line on standard error and exit status 2,
naming the flag or file; every output path is checked before any work, and files
are written atomically, so a failed or interrupted run leaves none behind.
Ctrl-C ends a command with one line and exit status 130.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import sys

import numpy as np

from . import __version__
from .data.io import check_folder, jsonable, load_layer, save_result, writable_file
from .methods import METHODS, compress
from .storage import compression_storage

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line and exit status 2."""

    def error(self, message):  # noqa: D401 (argparse API)
        raise _UsageError(f"{self.prog}: {message}")


class _UsageError(Exception):
    pass


def _add_grid_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bits", type=int, required=True, help="grid bit-width b in [1, 16]")
    p.add_argument("--rank", type=int, default=0, help="branch rank r (default 0)")
    p.add_argument("--damp", type=float, default=0.01, help="relative damping alpha (default 0.01)")
    p.add_argument("--beta", type=_beta, default=1.0,
                   help="grid clipping factor in (0, 1], or 'search': per column, the factor with "
                        "the smallest RTN calibration error (default 1)")
    p.add_argument("--unbounded-grid", action="store_true", help="use the unbounded grid (theory)")


BRANCHLESS = ("rtn", "gptq")
"""Methods without a low-rank branch: ``--rank``, ``--l-bits``, ``--r-bits`` do not apply."""
MAX_ROUNDS = 100
"""Largest ``--rounds``: each round costs about one GPTQ pass."""
STOP_RTOL = 1e-12
"""``run --method refine`` stops after a round that lowers ``F`` by at most this share of ``F``."""
ITERATED = ("loftq", "caldera", "rtn+loraq")
"""Methods that take ``--iters`` (LoftQ's T, CALDERA-style's K, LoRaQ's Adam steps)."""


def _beta(text: str):
    """``--beta``: a float, or ``search`` (:func:`gilora_theory.literature.search_beta`)."""
    if text == "search":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1] or 'search'; got {text!r}") from None


def _add_run(sub) -> None:
    p = sub.add_parser("run", help="compress one layer with one method",
                       description="Compress LAYER.npz with one method; write Q (integer grid codes: "
                                   "Q = step * (Q_codes - zero)), L, R and the grid to --out, and "
                                   "print the errors as JSON. Get a layer file with "
                                   "'gilora-theory layers --export NAME --out L.npz'.")
    p.add_argument("layer", help="LAYER.npz with W and X or H")
    p.add_argument("--method", required=True, choices=METHODS)
    _add_grid_options(p)
    p.add_argument("--rounds", type=int, default=None,
                   help=f"refinement rounds K in [0, {MAX_ROUNDS}] (method refine only; default 1); "
                        f"the loop stops early after a round that lowers F by at most "
                        f"{STOP_RTOL:g} F, and the JSON's rounds_run says how many ran")
    p.add_argument("--iters", type=int, default=None,
                   help="LoftQ's T, CALDERA-style's K, LoRaQ's Adam steps (methods loftq, caldera, "
                        "rtn+loraq; default 5, 5, 200)")
    p.add_argument("--l-bits", type=int, default=None,
                   help="bits of L's own grid, one per branch direction (default: full precision)")
    p.add_argument("--r-bits", type=int, default=None,
                   help="bits of R's own grid, one per branch direction (default: full precision)")
    p.add_argument("--route", default="cholesky", choices=("cholesky", "eig"),
                   help="factorisation of the GPTQ/GILoRA pass: eig copes with a nearly "
                        "singular H (default cholesky)")
    p.add_argument("--out", required=True, help="OUT.npz for Q (grid codes), L, R and the grid")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on standard error")
    p.set_defaults(func=_cmd_run, interrupted="interrupted; nothing was written")


def _check_run_options(args) -> None:
    """Refuse options that do not apply to the method (nothing is silently ignored)."""
    where = f"--method {args.method}"
    if args.method in BRANCHLESS:
        for flag, value in (("--rank", args.rank), ("--l-bits", args.l_bits),
                            ("--r-bits", args.r_bits)):
            if value not in (None, 0):
                raise ValueError(f"{flag} does not apply to {where}, which has no low-rank "
                                 f"branch; drop {flag} or pick a method with a branch "
                                 f"({', '.join(m for m in METHODS if m not in BRANCHLESS)})")
    elif args.rank == 0 and (args.l_bits is not None or args.r_bits is not None):
        raise ValueError("--l-bits/--r-bits need a branch: give --rank >= 1")
    if args.rounds is not None and args.method != "refine":
        raise ValueError(f"--rounds applies to --method refine only; got {where}")
    if args.iters is not None and args.method not in ITERATED:
        raise ValueError(f"--iters applies to --method {', '.join(ITERATED)} only; got {where}")
    args.rounds = 1 if args.rounds is None else args.rounds


def _cmd_run(args) -> dict:
    _check_run_options(args)
    out_path = writable_file(args.out, "--out", inputs=[args.layer])
    phase = _phases(args, "run", ("load", args.method, "save"))
    layer = load_layer(args.layer, psd=False)      # compress tests H once, below
    phase()
    _check_flag("--rank", args.rank, 0, min(layer.W.shape))
    c = compress(layer.W, layer.H, args.method, args.bits, args.rank, damp=args.damp,
                 beta=args.beta, unbounded=args.unbounded_grid, rounds=args.rounds,
                 l_bits=args.l_bits, r_bits=args.r_bits, route=args.route,
                 x_abs_mean=layer.x_abs_mean, iters=args.iters,
                 stop_rtol=STOP_RTOL if args.method == "refine" else None)
    phase()
    save_result(out_path, c.Q, c.L, c.R, c.grid, **_branch_grids(c.branch))
    phase(done=True)
    return _run_json(args, c)


def _run_json(args, c) -> dict:
    """What was done: options that applied, errors, extras (``pass_lam``, ...)."""
    out = {"method": c.method, "bits": args.bits, "rank": c.L.shape[1], "damp": args.damp,
           "lambda": c.lam, "error": c.objective.error, "damped_error": c.objective.damped_error,
           "relative_error": c.objective.relative_error, "clipped": c.clipped}
    if args.method == "refine":
        out["rounds"] = args.rounds
    out.update({k: v for k, v in c.info.items()})
    # Bits per weight of Q + L R with 16-bit grid parameters and a 16-bit full-precision branch.
    out["effective_bits"] = compression_storage(c).effective_bits if c.grid.bounded else None
    if c.trace is not None:
        out["trace"] = c.trace
        if c.branch is not None:
            out["trace_note"] = ("trace is F of the full-precision refinement; damped_error is "
                                 "F after L and R are put on their own grids")
    return out


def _branch_grids(branch) -> dict:
    """``L_step, L_zero, L_bits`` (grid of ``L``, per column) and ``R_...`` (grid of ``R^T``
    when ``r_axis`` is ``"row"``, of ``R`` otherwise) for the arrays of OUT.npz."""
    out = {}
    if branch is None:
        return out
    for name, g in (("L", branch.L_grid), ("R", branch.R_grid)):
        if g is not None:
            out.update({f"{name}_step": g.step, f"{name}_zero": g.zero,
                        f"{name}_bits": np.asarray(g.bits)})
    out["r_axis"] = np.asarray(branch.r_axis)
    return out


def _add_sweep(sub) -> None:
    p = sub.add_parser("sweep", help="run (or resume) a sweep of layers x methods x bits x ranks x seeds",
                       description="Run a sweep into --out; rerunning the same command resumes it "
                                   "(finished runs are kept, never recomputed or duplicated).")
    p.add_argument("config", help="CONFIG.json, or the name of a packaged configuration")
    p.add_argument("--out", required=True, help="output folder (runs/, runs.csv, traces.csv, sweep.json)")
    p.add_argument("--workers", type=int, default=1, help="worker processes (default 1: in this process)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS|local:N",
                   help="compute on a Dask cluster: the address of a running dask.distributed "
                        "scheduler, or local:N for a LocalCluster of N worker processes "
                        "(only this process writes --out)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on standard error")
    p.set_defaults(func=_cmd_sweep, interrupted=_RESUME)


_RESUME = "interrupted; rerun the same command to resume"


def _cmd_sweep(args) -> dict:
    from .experiments.sweep import run_sweep_cli
    check_folder(args.out, "--out")
    return run_sweep_cli(args.config, args.out, workers=args.workers, scheduler=args.scheduler,
                         progress=not args.no_progress)


def _nonempty(path: str, flag: str) -> str:
    if path == "":
        raise ValueError(f"{flag} must be a path; got an empty string")
    return path


def _add_figures(sub) -> None:
    p = sub.add_parser("figures", help="rebuild every figure from saved sweep tables")
    p.add_argument("--tables", default="figures/tables", help="folder of sweep folders (default figures/tables)")
    p.add_argument("--out", default="figures", help="folder for the PNG files (default figures)")
    p.set_defaults(func=_cmd_figures)


def _cmd_figures(args) -> dict:
    from .experiments.plotting import make_figures
    check_folder(args.out, "--out")
    return make_figures(_nonempty(args.tables, "--tables"), args.out)


def _add_check(sub) -> None:
    p = sub.add_parser("check", help="verify every paper claim C1-C14 on the default data; write the reports",
                       description="Run every paper-claim check on the embedded default data (synthetic "
                                   "gallery, bundled real MiniLM layers, and the live model when torch is "
                                   "importable); print the verdict table; write OUT/report.md, "
                                   "OUT/report.json and OUT/figures/. Exit status 0 when every claim "
                                   "holds, 1 when one FAILs, 2 on bad input.")
    p.add_argument("--quick", action="store_true", help="smaller sweeps (under 5 minutes on 2 cores)")
    p.add_argument("--out", default="check-out", help="output folder (default check-out)")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic data and random draws (default 0)")
    p.add_argument("--claims", default=None, help="comma-separated claim ids, e.g. C1,C6 (default all)")
    p.add_argument("--no-live", action="store_true", help="do not use the live MiniLM model even if torch is importable")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on standard error")
    p.add_argument("--threads", type=int, default=1,
                   help="BLAS and torch threads while the claims run (default 1: their matrices are "
                        "small, and a second thread costs more CPU than it saves wall time)")
    p.set_defaults(func=_cmd_check)


def _claims(text: str | None) -> list | None:
    """``--claims``: a non-empty, comma-separated list of distinct claim ids."""
    if text is None:
        return None
    ids = [c.strip() for c in text.split(",")]
    if not any(ids) or not all(ids):
        raise ValueError(f"--claims must be comma-separated claim ids, e.g. C1,C6; got {text!r}")
    repeated = sorted({c for c in ids if ids.count(c) > 1})
    if repeated:
        raise ValueError(f"--claims names {', '.join(repeated)} more than once; got {text!r}")
    return ids


def _cmd_check(args) -> int:
    from .experiments.report import run_check, verdict_table
    claims = _claims(args.claims)
    check_folder(args.out, "--out")
    run = run_check(args.out, quick=args.quick, seed=args.seed, claims=claims,
                    live=not args.no_live, progress=not args.no_progress, threads=args.threads)
    print(verdict_table(run.results))
    print(f"reports: {run.markdown} {run.json}; figures: {len(run.figures)}")
    return run.exit_status


def _tqdm():
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm


def _progress(args, *labels: str):
    """A tqdm wrapper on standard error (None with --no-progress or without tqdm); the
    k-th loop it wraps is labelled ``labels[k]`` (the last label for any later loop)."""
    tqdm = _tqdm()
    if args.no_progress or tqdm is None:
        return None
    calls = iter(range(10 ** 9))
    return lambda it: tqdm(it, desc=labels[min(next(calls), len(labels) - 1)],
                           file=sys.stderr, leave=False)


def _phases(args, command: str, names: tuple):
    """A bar over the labelled phases of a long command (``run: load``, ``run: gptq``, ...),
    shown on standard error when it is a terminal; call it to end a phase."""
    tqdm = _tqdm()
    if args.no_progress or tqdm is None:
        return lambda done=False: None
    bar = tqdm(total=len(names), desc=f"{command}: {names[0]}", file=sys.stderr,
               leave=False, disable=None, bar_format="{desc} [{n}/{total} phases, {elapsed}]")
    step = iter(names[1:])

    def advance(done: bool = False) -> None:
        bar.update(1)
        if done:
            bar.close()
        else:
            bar.set_description_str(f"{command}: {next(step, names[-1])}")
    return advance


def _add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True,
                   help="minilm (the default real network) or PATH, a local transformers checkpoint "
                        "folder (AutoModel / AutoModelForCausalLM, no remote code)")
    p.add_argument("--text", default=None,
                   help="calibration text FILE (UTF-8; first half calibration, second half held out; "
                        "default: the standard library's pydoc_data.topics)")
    p.add_argument("--sequences", type=int, default=128, help="calibration sequences (default 128)")
    p.add_argument("--seq-len", type=int, default=128, help="tokens per sequence, [CLS] and [SEP] included (default 128)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on standard error")


def _add_extract(sub) -> None:
    p = sub.add_parser("extract", help="write W and H of every linear layer of a real model (needs torch)",
                       description="Run calibration text through the model and write OUT/<layer>.npz "
                                   "(W, float64 H = X^T X, n_samples) per linear layer plus "
                                   "OUT/manifest.json. Rerunning resumes: complete files are kept.")
    _add_model_options(p)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--batch-size", type=int, default=16, help="sequences per forward pass (default 16)")
    p.set_defaults(func=_cmd_extract, interrupted=_RESUME)


def _cmd_extract(args) -> dict:
    from .data.torch_adapter import extract_model
    check_folder(args.out, "--out")
    return extract_model(args.model, args.out, sequences=args.sequences, seq_len=args.seq_len,
                         batch_size=args.batch_size, text=args.text,
                         progress=_progress(args, "extract: calibration batches"))


def _add_model_error(sub) -> None:
    p = sub.add_parser("model-error", help="compress every linear layer; how far the model's outputs move (needs torch)",
                       description="Compress every linear layer with one method (H from the calibration "
                                   "half of the text), run the held-out half, and print the summed "
                                   "layer-wise errors next to the output shift of hidden states and "
                                   "mean-pooled sentence embeddings.")
    _add_model_options(p)
    p.add_argument("--method", required=True, choices=METHODS)
    p.add_argument("--bits", type=int, default=None,
                   help="grid bit-width b in [1, 16] (required unless --allocation)")
    p.add_argument("--rank", type=int, default=0, help="branch rank r, capped per layer at min(N, N_out) (default 0)")
    p.add_argument("--allocation", default=None,
                   help="ALLOC.json from gilora-theory allocate: (bits, rank) per layer")
    p.add_argument("--damp", type=float, default=0.01, help="relative damping alpha (default 0.01)")
    p.add_argument("--heldout", type=int, default=32, help="held-out sequences (default 32)")
    p.add_argument("--branch", action="store_true", help="low-rank side branches instead of merged weights")
    p.add_argument("--l-bits", type=int, default=None, help="bits of L's own grid (default: full precision)")
    p.add_argument("--r-bits", type=int, default=None, help="bits of R's own grid (default: full precision)")
    p.add_argument("--act-bits", type=int, default=None,
                   help="with --branch: quantize the branch activations x L per token to this many bits")
    p.set_defaults(func=_cmd_model_error)


def _cmd_model_error(args) -> dict:
    from .data.torch_adapter import evaluate_model
    return evaluate_model(args.model, args.method, args.bits, args.rank, sequences=args.sequences,
                          heldout=args.heldout, seq_len=args.seq_len, damp=args.damp,
                          branch=args.branch, text=args.text, allocation=args.allocation,
                          l_bits=args.l_bits, r_bits=args.r_bits, act_bits=args.act_bits,
                          progress=_progress(args, "model-error: calibration batches",
                                             "model-error: compress layers"))


def _add_bounds(sub) -> None:
    p = sub.add_parser("bounds", help="upper-bound chain of GPTQ and GILoRA, link by link, and the lower bound",
                       description="Run GPTQ and GILoRA (L = V_r) on one layer and print every link of "
                                   "the upper-bound chain (docs/theory.md, 'Upper bounds') with the clipping "
                                   "count, plus the minimax lower bound for the layer's shape and scale.")
    p.add_argument("layer", help="LAYER.npz with W and X or H")
    _add_grid_options(p)
    p.add_argument("--damp-from", default="augmented", choices=("augmented", "hessian"),
                   help="GILoRA's damping convention (default augmented)")
    p.add_argument("--rho", type=float, default=1.0,
                   help="||L R||_F budget relative to ||W||_F for the lower bound (default 1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on standard error")
    p.set_defaults(func=_cmd_bounds)


def _chain_json(ch) -> dict:
    return {"lambda": ch.lam, "rank": ch.rank, "C": ch.C, "error": ch.error,
            "damped_error": ch.damped_error, "step_sum": ch.step_sum, "schur_sum": ch.schur_sum,
            "trace_S": ch.trace_S, "closed_form": ch.closed_form, "cor39": ch.cor39,
            "clipped": ch.clipped, "bound_ratio": ch.bound_ratio, "holds": ch.holds,
            "failed_links": list(ch.failed_links)}


def _cmd_bounds(args) -> dict:
    from .upper_bounds import layer_bounds
    phase = _phases(args, "bounds", ("load", "GPTQ and GILoRA chains, lower bound"))
    layer = load_layer(args.layer, psd=False)      # layer_bounds tests H
    phase()
    _check_flag("--rank", args.rank, 0, min(layer.W.shape))
    b = layer_bounds(layer.W, layer.H, args.bits, args.rank, damp=args.damp, beta=args.beta,
                     unbounded=args.unbounded_grid, damp_from=args.damp_from, rho=args.rho)
    phase(done=True)
    return {"bits": args.bits, "rank": args.rank, "damp": args.damp, "beta": args.beta,
            "unbounded_grid": args.unbounded_grid, "lambda": b.lam,
            "gptq": _chain_json(b.gptq), "gilora": _chain_json(b.gilora),
            "lower_bound": b.lower_bound, "s_min": b.s_min}


def _add_exact(sub) -> None:
    p = sub.add_parser("exact", help="exact optimum of a tiny layer and each method's ratio to it",
                       description="Exact minimum of ||X (W - Q - L R)||_F^2 over Q on the bounded grid "
                                   "and rank-r L R (sphere decoding for r = 0, enumeration with the "
                                   "optimal L R per Q for r >= 1), and error / optimum for every method. "
                                   "For tiny layers only: r >= 1 enumerates all 2^(b N N_out) matrices "
                                   "(at most --limit; e.g. a 4 x 2 layer at 2 bits has 4^8 = 65536), "
                                   "r = 0 searches N_out columns of 2^(b N) candidates each (sphere "
                                   "decoding prunes most; N <= 16 inputs at 2-3 bits is quick). A larger "
                                   "search is refused before it starts. Example: gilora-theory layers "
                                   "--export synthetic/isotropic --shape 4,2 --out tiny.npz; "
                                   "gilora-theory exact tiny.npz --bits 2 --rank 1")
    p.add_argument("layer", help="LAYER.npz with W and X or H (tiny: see above)")
    p.add_argument("--bits", type=int, required=True, help="grid bit-width b in [1, 16]")
    p.add_argument("--rank", type=int, default=0, help="branch rank r (default 0)")
    p.add_argument("--damp", type=float, default=0.01, help="relative damping of the methods (default 0.01)")
    p.add_argument("--beta", type=float, default=1.0, help="grid clipping factor in (0, 1] (default 1)")
    p.add_argument("--limit", type=int, default=2 ** 20,
                   help="largest enumeration (sphere decoding: nodes per column) (default 2^20)")
    p.set_defaults(func=_cmd_exact)


def _cmd_exact(args) -> dict:
    from .exact import exact_optimum
    from .methods import compare_methods
    layer = load_layer(args.layer, psd=False)      # exact_optimum tests H
    _check_flag("--rank", args.rank, 0, min(layer.W.shape))
    ex = exact_optimum(layer.W, layer.H, args.bits, args.rank, beta=args.beta, limit=args.limit)
    cmp = compare_methods(layer.W, layer.H, ex, damp=args.damp, x_abs_mean=layer.x_abs_mean)
    out = {"bits": args.bits, "rank": args.rank, "method": ex.method, "optimum": ex.value,
           "candidates": ex.candidates, "examined": ex.examined, "nodes": ex.nodes,
           "ratios": cmp.ratios, "errors": cmp.errors}
    if ex.value == 0:
        out["ratios_note"] = ("the optimum is 0 (W is reproduced exactly), so error / optimum "
                              "is undefined (null); compare the errors instead")
    return out


def _add_allocate(sub) -> None:
    p = sub.add_parser("allocate", help="bits and rank per layer under one storage budget",
                       description="Choose (b, r) per layer from the candidate sets so that the whole "
                                   "model's effective bits per weight (grid parameters and a 16-bit "
                                   "branch included) stay within --budget, minimising the summed "
                                   "predicted layer error; exact multiple-choice knapsack (dynamic "
                                   "programming), with its optimality gap. Writes ALLOC.json.")
    p.add_argument("layers", help="LAYERS_DIR written by gilora-theory extract")
    p.add_argument("--budget", type=float, required=True, help="bits per weight B over the whole model")
    p.add_argument("--bits", dest="bits_list", metavar="LIST", default="2,3,4,5",
                   help="candidate bit-widths (default 2,3,4,5)")
    p.add_argument("--ranks", dest="ranks_list", metavar="LIST", default="0,8,16,32,64",
                   help="candidate ranks (default 0,8,16,32,64)")
    p.add_argument("--by", default="bound", choices=("bound", "measured", "uniform"),
                   help="bound: g(b) h(r), no compression runs; measured: compress each layer at each "
                        "candidate (cached in --cache, resumable); uniform: one (b, r) that fits (default bound)")
    p.add_argument("--method", default="gilora", choices=METHODS, help="method of --by measured (default gilora)")
    p.add_argument("--damp", type=float, default=0.01, help="relative damping alpha (default 0.01)")
    p.add_argument("--cache", default=None, help="folder for measured errors (default OUT's folder/alloc-cache)")
    p.add_argument("--resolution", type=int, default=None,
                   help="bits per budget unit of the DP (default: budget / 65536 units; 1 is exact)")
    p.add_argument("--out", required=True, help="ALLOC.json")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on standard error")
    p.set_defaults(func=_cmd_allocate)


def _int_list(name: str, text: str) -> list:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{name} must be comma-separated integers, e.g. 2,3,4; got {text!r}") from None


def _cmd_allocate(args) -> dict:
    from pathlib import Path

    from .data.io import write_json
    from .data.layers import directory_layers
    from .experiments.allocation import allocate, allocation_json
    out = writable_file(args.out, "--out")
    layers = directory_layers(args.layers)
    cache = args.cache if args.cache is not None else Path(args.out).resolve().parent / "alloc-cache"
    a = allocate(layers, args.budget, by=args.by, bits=_int_list("--bits", args.bits_list),
                 ranks=_int_list("--ranks", args.ranks_list), method=args.method, damp=args.damp,
                 cache=cache if args.by == "measured" else None, resolution=args.resolution,
                 progress=_progress(args, f"allocate ({args.by})"))
    doc = allocation_json(a, [lay.W.shape for lay in layers])
    write_json(out, doc)
    return dict(doc, out=str(out))


def _add_layers(sub) -> None:
    p = sub.add_parser("layers", help="list the bundled layers; --export one as LAYER.npz",
                       description="List the real all-MiniLM-L6-v2 layers bundled with the package "
                                   "and the synthetic gallery, or write one as a LAYER.npz for run, "
                                   "bounds and exact: --export NAME --out L.npz (a synthetic layer "
                                   "synthetic/KIND needs --shape N,N_OUT).")
    p.add_argument("--export", metavar="NAME", default=None,
                   help="a bundled layer name or synthetic/KIND")
    p.add_argument("--out", default=None, help="LAYER.npz to write (with --export)")
    p.add_argument("--shape", default=None, help="N,N_OUT of a synthetic layer, e.g. 4,2")
    p.add_argument("--samples", type=int, default=None,
                   help="calibration rows m of a synthetic layer (default 4 N)")
    p.add_argument("--seed", type=int, default=0, help="seed of a synthetic layer (default 0)")
    p.set_defaults(func=_cmd_layers)


def _cmd_layers(args) -> dict:
    from .data.calibration import KINDS
    from .data.io import save_layer
    from .data.layers import bundled_provenance
    prov = bundled_provenance()
    if args.export is None:
        if args.out is not None or args.shape is not None:
            raise ValueError("--out and --shape go with --export NAME")
        return {"bundled": {n: {"shape": e["shape"], "n_samples": e["n_samples"],
                                "source": f"{prov['model']} ({e['file']})"}
                            for n, e in prov["layers"].items()},
                "synthetic": [f"synthetic/{k}" for k in KINDS],
                "export": "gilora-theory layers --export NAME --out L.npz"}
    if args.out is None:
        raise ValueError("--export needs --out L.npz")
    out = writable_file(args.out, "--out")
    layer = _export_layer(args, prov, KINDS)
    save_layer(out, layer.W, H=layer.H, n_samples=layer.n_samples, name=layer.name)
    return {"written": str(out), "name": layer.name, "shape": list(layer.W.shape),
            "n_samples": layer.n_samples}


def _export_layer(args, prov: dict, kinds: tuple):
    """The layer ``--export`` names: bundled, or ``synthetic/KIND`` of ``--shape``."""
    from .data.io import Layer
    from .data.layers import load_bundled
    if not args.export.startswith("synthetic/"):
        if args.shape is not None or args.samples is not None:
            raise ValueError("--shape and --samples apply to synthetic/KIND layers only")
        if args.export not in prov["layers"]:
            raise ValueError(f"--export: no bundled layer {args.export!r}; choose one of "
                             f"{', '.join(prov['layers'])} or synthetic/KIND")
        return load_bundled(args.export)
    from .data.calibration import calibration, weights
    kind = args.export.partition("/")[2]
    if kind not in kinds:
        raise ValueError(f"--export: unknown synthetic kind {kind!r}; choose one of {', '.join(kinds)}")
    if args.shape is None or not re.fullmatch(r"\s*\d+\s*,\s*\d+\s*", args.shape):
        raise ValueError(f"--shape must be N,N_OUT (e.g. 4,2) for a synthetic layer; got {args.shape!r}")
    N, N_out = (int(v) for v in args.shape.split(","))
    _check_flag("--shape N", N, 1, None)
    _check_flag("--shape N_OUT", N_out, 1, None)
    m = 4 * N if args.samples is None else _check_flag("--samples", args.samples, 1, None)
    rng = np.random.default_rng(_check_flag("--seed", args.seed, 0, None))
    cal = calibration(kind, m, N, rng=rng)
    return Layer(weights("gaussian", N, N_out, rng=rng), cal.H, None, cal.X.shape[0], args.export)


_SUBCOMMANDS = [_add_layers, _add_run, _add_sweep, _add_figures, _add_check, _add_extract,
                _add_model_error, _add_bounds, _add_exact, _add_allocate]


_INT_FLAGS = {"bits": (1, 16), "l_bits": (1, 16), "r_bits": (1, 16), "rank": (0, None),
              "rounds": (0, MAX_ROUNDS), "limit": (1, None), "workers": (1, None),
              "sequences": (1, None), "seq_len": (3, 512), "batch_size": (1, None),
              "heldout": (1, None), "seed": (0, None), "samples": (1, None), "iters": (0, None),
              "act_bits": (1, 16), "threads": (1, None)}
_FLOAT_FLAGS = {"damp": (0.0, False, None), "beta": (0.0, True, 1.0), "rho": (0.0, False, None)}


def _check_flag(flag: str, value: int, low: int, high: int | None) -> int:
    """An integer option in ``[low, high]``, refused naming the flag as typed."""
    if value < low or (high is not None and value > high):
        want = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"{flag} must be {want}; got {value}")
    return value


def _check_flags(args) -> None:
    """Every numeric option in range before any work (messages name the flags)."""
    for dest, (low, high) in _INT_FLAGS.items():
        if getattr(args, dest, None) is not None:
            _check_flag("--" + dest.replace("_", "-"), getattr(args, dest), low, high)
    for dest, (low, open_low, high) in _FLOAT_FLAGS.items():
        v = getattr(args, dest, None)
        if isinstance(v, str):                    # --beta search
            continue
        if v is not None and not (math.isfinite(v) and (v > low if open_low else v >= low)
                                  and (high is None or v <= high)):
            want = f"in ({low}, {high}]" if open_low else f">= {low}"
            raise ValueError(f"--{dest} must be a finite number {want}; got {v}")


def _as_typed(message: str, args) -> str:
    """A library message in the user's terms: ``seq_len`` -> ``--seq-len``, and advice
    naming Python options the command line offers as flags (or leaves out)."""
    for dest in vars(args) if args is not None else ():
        if "_" in dest and dest not in ("func", "interrupted"):
            message = re.sub(rf"\b{dest}\b", "--" + dest.replace("_", "-"), message)
    message = re.sub(r",? or pass damp_policy='increase'", "", message)
    route = " or use --route eig" if getattr(args, "route", None) else ""
    message = re.sub(r",? use route='eig'( \(spectral floor\))?", route, message)
    return message.replace("Increase damp", "Increase --damp")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every registered subcommand."""
    parser = _Parser(prog="gilora-theory",
                     description="GPTQ-intrinsic LoRA: algorithms, bounds and checks")
    parser.add_argument("--version", action="version", version=f"gilora-theory {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for add in _SUBCOMMANDS:
        add(sub)
    return parser


def main(argv=None) -> int:
    """Entry point: run a subcommand; bad input -> one line on stderr, exit 2;
    Ctrl-C -> one line, exit 130.

    Floating-point warnings are silenced here: the library raises
    ``NumericalError`` whenever a result would be inf or NaN, so a warning
    would only be a second stderr line before that one-line error.
    """
    args = None
    try:
        args = build_parser().parse_args(argv)
        _check_flags(args)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            result = args.func(args)
    except _UsageError as exc:
        print(" ".join(str(exc).split()), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"gilora-theory: {getattr(args, 'interrupted', 'interrupted')}", file=sys.stderr)
        return 130
    except (ValueError, TypeError, FileNotFoundError, np.linalg.LinAlgError, OSError,
            ImportError) as exc:
        msg = _as_typed(" ".join(str(exc).split()), args)
        print(f"gilora-theory: error: {msg}", file=sys.stderr)
        return 2
    if isinstance(result, int):
        return result
    if result is not None:
        print(json.dumps(jsonable(result)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
