"""C15: at equal storage, which compression wins? (issue 8; the LoRaQ question)

A report, not a claim of [1]: a low-rank branch costs memory, so methods are
compared at equal *effective bits per weight* (Q's codes, its 16-bit step and
zero per column, and the branch at 16 bits or on its own 8/6/4-bit grids with
their 16-bit parameters; gilora_theory.storage). For every storage budget it
reports which reconstruction (method, main bits, rank, branch bits) has the
smallest relative error ``E / ||XW||_F^2`` within it: GPTQ and RTN at 2..8
bits, GPTQ -> OLrC, GILoRA, GILoRA + refinement, and data-free SVD branches
(on GPTQ's and on RTN's Q), each with a full-precision or quantized branch.
It also measures whether quantizing L *before* the GILoRA pass (so the pass
absorbs L's rounding) beats quantizing it after, and what quantizing L costs in
the upper bound for a general L (docs/theory.md, "Upper bounds") against the measurement.

It fails if an inequality that must hold is violated: GPTQ -> OLrC never worse
than GPTQ, refinement never worse than its GILoRA start (damped errors, full-
precision branches), every effective-bit count equal to the formula, and the
quantized L's projection tail ||X (I - L L^+)||_F^2 never below that of V_r.

Data: synthetic gallery layers and the bundled real all-MiniLM-L6-v2 layers,
seed fixed below. The full run writes ``figures/tables/equal_storage.csv``,
``figures/tables/equal_storage_winners.csv``, ``figures/error_vs_effective_bits.png``
(real layers) and ``figures/error_vs_effective_bits_synthetic.png`` (``--out DIR``
elsewhere; ``--quick`` writes nothing unless ``--out`` is given). Prints one verdict
line; ``--show`` also prints the winners and the L-order tables.

    python paper_checks/c15_equal_storage.py [--quick] [--out DIR] [--show]

[1] S. Zhang, R. Saab, "GPTQ-intrinsic LoRA", arXiv:2606.01412 (2026).
"""
import argparse
import os
import sys
from pathlib import Path

import pandas as pd

from gilora_theory.data import layers as data
from gilora_theory.experiments.equal_storage import (l_order_comparison, storage_invariants, storage_table,
                                         storage_winners)
from gilora_theory.experiments.plotting import plot_error_vs_effective_bits, save_figure

SEED = 20260601
BUDGETS = (2.25, 2.5, 2.75, 3.0, 3.25, 3.5, 4.0, 4.5, 5.0, 6.0)
SYNTHETIC_KINDS = ("power_law", "outliers", "low_rank_noise", "isotropic")


def compute(quick: bool):
    """The table (synthetic, then real rows), the winners, the invariants and the L-order table."""
    N, N_out = (64, 48) if quick else (128, 96)
    syn = data.synthetic_layers(SYNTHETIC_KINDS[:2] if quick else SYNTHETIC_KINDS,
                                m=2 * N, N=N, N_out=N_out, rng=SEED)
    names = data.bundled_names()
    real = data.bundled_layers(names[:2] if quick else names)
    table = pd.concat([
        storage_table(syn, ranks=(4, 16), branch_bits=(None, 8, 4) if quick else (None, 8, 6, 4),
                      source="synthetic"),
        storage_table(real, ranks=(8, 32), branch_bits=(None, 8, 4) if quick else (None, 8, 6, 4),
                      source="real")], ignore_index=True)
    order = l_order_comparison(real, bits=3, rank=32, l_bits=(2, 4))
    return table, storage_winners(table, BUDGETS), storage_invariants(table), order


def summary(winners: pd.DataFrame, source: str) -> str:
    """``method: wins/cases`` over (layer, budget) pairs, and the median margin of the branch."""
    w = winners[winners["source"] == source]
    counts = w["method"].value_counts()
    branch = w[w["rank"] > 0]
    gain = (branch["best_gptq"] / branch["relative_error"]).median() if len(branch) else float("nan")
    wins = ", ".join(f"{m} {n}/{len(w)}" for m, n in counts.items())
    return f"{source}: {wins}; median GPTQ-only/winner error {gain:.2f}x where a branch wins"


def write(out: Path, table: pd.DataFrame, winners: pd.DataFrame) -> None:
    """The tables and the two figures (real and synthetic layers) under ``out``."""
    (out / "tables").mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "tables" / "equal_storage.csv", index=False)
    winners.to_csv(out / "tables" / "equal_storage_winners.csv", index=False)
    for source, name in (("real", "error_vs_effective_bits"),
                         ("synthetic", "error_vs_effective_bits_synthetic")):
        save_figure(plot_error_vs_effective_bits(table[table["source"] == source]),
                    out / f"{name}.png")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="C15: which method wins at equal storage")
    parser.add_argument("--quick", action="store_true", help="two synthetic and two real layers")
    parser.add_argument("--out", default=None,
                        help="folder for the figures and tables/ (default: the repository's "
                             "figures/ for the full run, nothing for --quick)")
    parser.add_argument("--show", action="store_true", help="also print the tables")
    args = parser.parse_args(argv)
    quick = args.quick or os.environ.get("GILORA_QUICK", "0") not in ("", "0")
    table, winners, inv, order = compute(quick)
    out = args.out or (None if quick else Path(__file__).resolve().parent.parent / "figures")
    if out is not None:
        write(Path(out), table, winners)
    if args.show:
        cols = ["source", "layer", "budget", "method", "bits", "rank", "branch",
                "effective_bits", "relative_error", "runner_up", "margin", "best_gptq"]
        with pd.option_context("display.width", 200, "display.max_rows", 500):
            print(winners[cols].to_string(index=False, float_format=lambda x: f"{x:.4g}"))
            print(order.to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    failed = inv[~inv["passed"]]
    tails_ok = bool(order["tail_ok"].all())
    verdict = "REPORT" if failed.empty and tails_ok else "FAIL"
    o2 = order[order["l_bits"] == 2]
    numbers = (f"{summary(winners, 'real')}; {summary(winners, 'synthetic')}; "
               f"L before/after the pass at 2 bits: median error ratio "
               f"{o2['before_over_after'].median():.3f} (vs after+refit "
               f"{o2['before_over_after_refit'].median():.3f}); cost of a 2-bit L: error x"
               f"{(o2['error_before'] / o2['error_fp']).median():.3f}, bound x"
               f"{(o2['bound_before'] / o2['bound_fp']).median():.3f} (medians); "
               f"{len(inv) - len(failed)}/{len(inv)} invariants hold"
               + ("" if tails_ok else "; a quantized L's projection tail fell below V_r's"))
    if not failed.empty:
        numbers += f"; first failure: {failed.iloc[0].to_dict()}"
    print(f"{verdict} C15 equal storage: {numbers}")
    return 0 if verdict == "REPORT" else 1


if __name__ == "__main__":
    sys.exit(main())
