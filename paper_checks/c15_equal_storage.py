"""C15: at equal storage, which compression wins? (issue 8; the LoRaQ question)

A report, not a claim of [1]: a low-rank branch costs memory, so methods are
compared at equal *effective bits per weight* (Q's codes, its 16-bit step and
zero per column, and the branch at 16 bits or on its own 8/6/4-bit grids with
their 16-bit parameters; gilora_theory.storage). For every storage budget it
reports which reconstruction (method, main bits, rank, branch bits) has the
smallest relative error ``E / ||XW||_F^2`` within it: GPTQ and RTN at 2..8
bits, GPTQ -> OLrC, GILoRA, GILoRA + refinement, data-free SVD branches, and
the literature's methods (LQER, QERA, EoRA, LoftQ, CALDERA-style, LoRaQ; issue
16), each with a full-precision or quantized branch. It also measures whether
quantizing L *before* the GILoRA pass beats quantizing it after, and what
quantizing L costs in the upper bound against the measurement.

It fails if an inequality that must hold is violated: GPTQ -> OLrC never worse
than GPTQ, refinement never worse than its GILoRA start (damped errors, full-
precision branches), every effective-bit count equal to the formula, and the
quantized L's projection tail ||X (I - L L^+)||_F^2 never below that of V_r.
The study is gilora_theory.experiments.equal_storage (c15_compute, c15_line).

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
import sys
from pathlib import Path

import pandas as pd

from gilora_theory.experiments import equal_storage as es
from gilora_theory.experiments import paper

SEED = es.C15_SEED
COLUMNS = ["source", "layer", "budget", "method", "bits", "rank", "branch", "effective_bits",
           "relative_error", "runner_up", "margin", "best_gptq"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="C15: which method wins at equal storage")
    parser.add_argument("--quick", action="store_true", help="two synthetic and two real layers")
    parser.add_argument("--out", default=None,
                        help="folder for the figures and tables/ (default: the repository's "
                             "figures/ for the full run, nothing for --quick)")
    parser.add_argument("--show", action="store_true", help="also print the tables")
    args = parser.parse_args(argv)
    quick = paper.quick_requested(["--quick"] if args.quick else [])
    study = es.c15_compute(quick=quick, seed=SEED)
    out = args.out or (None if quick else Path(__file__).resolve().parent.parent / "figures")
    if out is not None:
        es.c15_write(study, out)
    if args.show:
        with pd.option_context("display.width", 200, "display.max_rows", 500):
            print(study.winners[COLUMNS].to_string(index=False, float_format=lambda x: f"{x:.4g}"))
            print(study.order.to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    print(es.c15_line(study))
    return 0 if study.ok else 1


if __name__ == "__main__":
    sys.exit(main())
