"""C2: the lazy-batch block size does not change the result.

GPTQ's lazy batches (blocks of B rows, one matrix product per block) are the
same arithmetic as the row-by-row pass: block sizes 1, 7 and 128 must give the
Q of a single block (a differing entry is allowed only at a detected rounding
tie) and equal per-step sums.

Data: the synthetic gallery and the bundled real all-MiniLM-L6-v2 layers
(``gilora_theory.experiments.paper.default_data``), seed fixed below; ``--quick`` (or the
environment variable ``GILORA_QUICK=1``) runs the small version. Prints one
verdict line with its numbers; exit status 1 when the claim fails.

    python paper_checks/c02_blocksize_invariance.py [--quick]

[1] S. Zhang, R. Saab, "GPTQ-intrinsic LoRA", arXiv:2606.01412 (2026).
"""
import sys

from gilora_theory.experiments import paper

SEED = 20260601


def main(argv=None) -> int:
    quick = paper.quick_requested(argv)
    data = paper.default_data(quick=quick, seed=SEED)
    result = paper.c02_blocksize_invariance(data)
    print(result.line())
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
