"""C13: who wins: GILoRA, its follow-ups and the GPTQ baselines.

A report: GILoRA raw, GILoRA -> OLrC and refinement loops against GPTQ,
GPTQ -> OLrC and GPTQ -> least-squares R with the same L = V_r, on every
spectrum of the gallery and on real MiniLM layers. It still fails if an
inequality that must hold is violated (e.g. OLrC after a Q never worse than
any other branch with that Q, refinement never worse than its start).

Data: the synthetic gallery and the bundled real all-MiniLM-L6-v2 layers
(``gilora_theory.experiments.paper.default_data``), seed fixed below; ``--quick`` (or the
environment variable ``GILORA_QUICK=1``) runs the small version. Prints one
verdict line with its numbers; exit status 1 when the claim fails.

    python paper_checks/c13_method_comparison.py [--quick]

[1] S. Zhang, R. Saab, "GPTQ-intrinsic LoRA", arXiv:2606.01412 (2026).
"""
import sys

from gilora_theory.experiments import paper

SEED = 20260601


def main(argv=None) -> int:
    quick = paper.quick_requested(argv)
    data = paper.default_data(quick=quick, seed=SEED)
    result = paper.c13_method_comparison(data)
    print(result.line())
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
