"""C16: bit and rank allocation under one storage budget, by the bound, by measurement, uniform.

A report: at 2.5, 3, 3.5 and 4 bits per weight (grid parameters and a 16-bit
branch counted), the summed measured layer error and, with the live
all-MiniLM-L6-v2 model, the held-out output shift and 10-nearest-neighbour
overlap of the allocations chosen from the bound g(b) h(r), from the measured
error surface, and uniformly; the share of the measured allocation's gain the
bound recovers; the bound's rank over-valuation h(r)/h(0) against D(r)/D(0).
It fails only if an allocation breaks its budget on recount or the exact
solver is beaten by a feasible competitor.

Data: live MiniLM (its last block with ``--quick``, every linear layer
otherwise) when torch and the model package are importable, else the bundled
real layers (``gilora_theory.experiments.paper.default_data``). Prints one
verdict line with its numbers; exit status 1 when the claim fails.

    python paper_checks/c16_allocation.py [--quick]

[1] S. Zhang, R. Saab, "GPTQ-intrinsic LoRA", arXiv:2606.01412 (2026).
"""
import sys

from gilora_theory.experiments import paper

SEED = 20260601


def main(argv=None) -> int:
    quick = paper.quick_requested(argv)
    data = paper.default_data(quick=quick, seed=SEED, live=True)
    result = paper.c16_allocation(data)
    print(result.line())
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
