"""The ``gilora-theory`` command line.

Each subcommand registers itself through an ``_add_<name>`` function listed in
``_SUBCOMMANDS`` and is run by a ``_cmd_<name>(args)`` function that calls only
the public API. A subcommand's result is printed as one JSON object on standard
output. Any bad input ends with one line on standard error and exit status 2;
output files are written atomically, so a failed run leaves none behind.
"""
from __future__ import annotations

import argparse
import json
import math
import sys

import numpy as np

from .data.io import load_layer, save_npz
from .methods import METHODS, compress
from .storage import compression_storage

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line and exit status 2."""

    def error(self, message):  # noqa: D401 (argparse API)
        raise _UsageError(f"{self.prog}: {message}")


class _UsageError(Exception):
    pass


def _jsonable(obj):
    """Plain JSON values; non-finite floats become None (never NaN in the output)."""
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    return obj


def _add_grid_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bits", type=int, required=True, help="grid bit-width b in [1, 16]")
    p.add_argument("--rank", type=int, default=0, help="branch rank r (default 0)")
    p.add_argument("--damp", type=float, default=0.01, help="relative damping alpha (default 0.01)")
    p.add_argument("--beta", type=_beta, default=1.0,
                   help="grid clipping factor in (0, 1], or 'search': per column, the factor with "
                        "the smallest RTN calibration error (default 1)")
    p.add_argument("--unbounded-grid", action="store_true", help="use the unbounded grid (theory)")


def _beta(text: str):
    """``--beta``: a float, or ``search`` (:func:`gilora_theory.literature.search_beta`)."""
    if text == "search":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1] or 'search'; got {text!r}") from None


def _add_run(sub) -> None:
    p = sub.add_parser("run", help="compress one layer with one method")
    p.add_argument("layer", help="LAYER.npz with W and X or H")
    p.add_argument("--method", required=True, choices=METHODS)
    _add_grid_options(p)
    p.add_argument("--rounds", type=int, default=1, help="refinement rounds K (method refine)")
    p.add_argument("--iters", type=int, default=None,
                   help="LoftQ's T, CALDERA-style's K, LoRaQ's Adam steps (default 5, 5, 200)")
    p.add_argument("--l-bits", type=int, default=None,
                   help="bits of L's own grid, one per branch direction (default: full precision)")
    p.add_argument("--r-bits", type=int, default=None,
                   help="bits of R's own grid, one per branch direction (default: full precision)")
    p.add_argument("--out", required=True, help="OUT.npz for Q, L, R and the grid")
    p.set_defaults(func=_cmd_run)


def _cmd_run(args) -> dict:
    layer = load_layer(args.layer)
    c = compress(layer.W, layer.H, args.method, args.bits, args.rank, damp=args.damp,
                 beta=args.beta, unbounded=args.unbounded_grid, rounds=args.rounds,
                 l_bits=args.l_bits, r_bits=args.r_bits, x_abs_mean=layer.x_abs_mean,
                 iters=args.iters)
    save_npz(args.out, Q=c.Q, L=c.L, R=c.R, step=c.grid.step, zero=c.grid.zero,
             bits=np.asarray(c.grid.bits), beta=np.asarray(c.grid.beta),
             bounded=np.asarray(c.grid.bounded), **_branch_grids(c.branch))
    out = {"method": c.method, "bits": args.bits, "rank": args.rank, "damp": args.damp,
           "lambda": c.lam, "error": c.objective.error, "damped_error": c.objective.damped_error,
           "relative_error": c.objective.relative_error, "clipped": c.clipped}
    out.update({k: v for k, v in c.info.items()})
    # Bits per weight of Q + L R with 16-bit grid parameters and a 16-bit full-precision branch.
    out["effective_bits"] = compression_storage(c).effective_bits if c.grid.bounded else None
    if c.trace is not None:
        out["trace"] = c.trace
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
    p.add_argument("--no-progress", action="store_true", help="no progress bar on standard error")
    p.set_defaults(func=_cmd_sweep)


def _cmd_sweep(args) -> dict:
    from .experiments.sweep import run_sweep_cli
    return run_sweep_cli(args.config, args.out, workers=args.workers, progress=not args.no_progress)


def _add_figures(sub) -> None:
    p = sub.add_parser("figures", help="rebuild every figure from saved sweep tables")
    p.add_argument("--tables", default="figures/tables", help="folder of sweep folders (default figures/tables)")
    p.add_argument("--out", default="figures", help="folder for the PNG files (default figures)")
    p.set_defaults(func=_cmd_figures)


def _cmd_figures(args) -> dict:
    from .experiments.plotting import make_figures
    return make_figures(args.tables, args.out)


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
    p.set_defaults(func=_cmd_check)


def _cmd_check(args) -> int:
    from .experiments.report import run_check, verdict_table
    run = run_check(args.out, quick=args.quick, seed=args.seed, claims=args.claims,
                    live=not args.no_live, progress=not args.no_progress)
    print(verdict_table(run.results))
    print(f"reports: {run.markdown} {run.json}; figures: {len(run.figures)}")
    return run.exit_status


def _progress(args, desc: str):
    """A tqdm wrapper on standard error (None with --no-progress or without tqdm)."""
    if args.no_progress:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return lambda it: tqdm(it, desc=desc, file=sys.stderr, leave=False)


def _add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, choices=("minilm",), help="the real network")
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
    p.set_defaults(func=_cmd_extract)


def _cmd_extract(args) -> dict:
    from .data.torch_adapter import extract_model
    return extract_model(args.model, args.out, sequences=args.sequences, seq_len=args.seq_len,
                         batch_size=args.batch_size, progress=_progress(args, "extract"))


def _add_model_error(sub) -> None:
    p = sub.add_parser("model-error", help="compress every linear layer; how far the model's outputs move (needs torch)",
                       description="Compress every linear layer with one method (H from the calibration "
                                   "half of the text), run the held-out half, and print the summed "
                                   "layer-wise errors next to the output shift of hidden states and "
                                   "mean-pooled sentence embeddings.")
    _add_model_options(p)
    p.add_argument("--method", required=True, choices=METHODS)
    p.add_argument("--bits", type=int, required=True, help="grid bit-width b in [1, 16]")
    p.add_argument("--rank", type=int, default=0, help="branch rank r, capped per layer at min(N, N_out) (default 0)")
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
                          branch=args.branch, progress=_progress(args, "model-error"),
                          l_bits=args.l_bits, r_bits=args.r_bits, act_bits=args.act_bits)


def _add_bounds(sub) -> None:
    p = sub.add_parser("bounds", help="upper-bound chain of GPTQ and GILoRA, link by link, and the lower bound",
                       description="Run GPTQ and GILoRA (L = V_r) on one layer and print every link of "
                                   "the upper-bound chain (THEORY.md section 4) with the clipping "
                                   "count, plus the minimax lower bound for the layer's shape and scale.")
    p.add_argument("layer", help="LAYER.npz with W and X or H")
    _add_grid_options(p)
    p.add_argument("--damp-from", default="augmented", choices=("augmented", "hessian"),
                   help="GILoRA's damping convention (default augmented)")
    p.add_argument("--rho", type=float, default=1.0,
                   help="||L R||_F budget relative to ||W||_F for the lower bound (default 1)")
    p.set_defaults(func=_cmd_bounds)


def _chain_json(ch) -> dict:
    return {"lambda": ch.lam, "rank": ch.rank, "C": ch.C, "error": ch.error,
            "damped_error": ch.damped_error, "step_sum": ch.step_sum, "schur_sum": ch.schur_sum,
            "trace_S": ch.trace_S, "closed_form": ch.closed_form, "cor39": ch.cor39,
            "clipped": ch.clipped, "bound_ratio": ch.bound_ratio, "holds": ch.holds,
            "failed_links": list(ch.failed_links)}


def _cmd_bounds(args) -> dict:
    from .upper_bounds import layer_bounds
    layer = load_layer(args.layer)
    b = layer_bounds(layer.W, layer.H, args.bits, args.rank, damp=args.damp, beta=args.beta,
                     unbounded=args.unbounded_grid, damp_from=args.damp_from, rho=args.rho)
    return {"bits": args.bits, "rank": args.rank, "damp": args.damp, "beta": args.beta,
            "unbounded_grid": args.unbounded_grid, "lambda": b.lam,
            "gptq": _chain_json(b.gptq), "gilora": _chain_json(b.gilora),
            "lower_bound": b.lower_bound, "s_min": b.s_min}


def _add_exact(sub) -> None:
    p = sub.add_parser("exact", help="exact optimum of a tiny layer and each method's ratio to it",
                       description="Exact minimum of ||X (W - Q - L R)||_F^2 over Q on the bounded grid "
                                   "and rank-r L R (sphere decoding for r = 0, enumeration with the "
                                   "optimal L R per Q for r >= 1), and error / optimum for every method.")
    p.add_argument("layer", help="LAYER.npz with W and X or H")
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
    layer = load_layer(args.layer)
    ex = exact_optimum(layer.W, layer.H, args.bits, args.rank, beta=args.beta, limit=args.limit)
    cmp = compare_methods(layer.W, layer.H, ex, damp=args.damp, x_abs_mean=layer.x_abs_mean)
    return {"bits": args.bits, "rank": args.rank, "method": ex.method, "optimum": ex.value,
            "candidates": ex.candidates, "examined": ex.examined, "nodes": ex.nodes,
            "ratios": cmp.ratios, "errors": cmp.errors}


_SUBCOMMANDS = [_add_run, _add_sweep, _add_figures, _add_check, _add_extract, _add_model_error,
                _add_bounds, _add_exact]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every registered subcommand."""
    parser = _Parser(prog="gilora-theory",
                     description="GPTQ-intrinsic LoRA: algorithms, bounds and checks")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for add in _SUBCOMMANDS:
        add(sub)
    return parser


def main(argv=None) -> int:
    """Entry point: run a subcommand; bad input -> one line on stderr, exit 2.

    Floating-point warnings are silenced here: the library raises
    ``NumericalError`` whenever a result would be inf or NaN, so a warning
    would only be a second stderr line before that one-line error.
    """
    try:
        args = build_parser().parse_args(argv)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            result = args.func(args)
    except _UsageError as exc:
        print(" ".join(str(exc).split()), file=sys.stderr)
        return 2
    except (ValueError, TypeError, FileNotFoundError, np.linalg.LinAlgError, OSError,
            ImportError) as exc:
        msg = " ".join(str(exc).split())
        print(f"gilora-theory: error: {msg}", file=sys.stderr)
        return 2
    if isinstance(result, int):
        return result
    if result is not None:
        print(json.dumps(_jsonable(result)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
