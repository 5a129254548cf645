"""C10: h(r) is convex with minimiser r* = #{s_i^2 > lam}.

In the factorised bound g(b) h(r), h(r) = ||X - X_r||_F^2 + (N + r) lam is
convex in r and minimal at r* = #{s_i^2 > lam} (Sec. 4 of docs/theory.md).

Data: the synthetic gallery and the bundled real all-MiniLM-L6-v2 layers
(``gilora_theory.experiments.paper.default_data``), seed fixed below; ``--quick`` (or the
environment variable ``GILORA_QUICK=1``) runs the small version. Prints one
verdict line with its numbers; exit status 1 when the claim fails.

    python paper_checks/c10_h_convex_rstar.py [--quick]

[1] S. Zhang, R. Saab, "GPTQ-intrinsic LoRA", arXiv:2606.01412 (2026).
"""
import sys

from gilora_theory.experiments import paper

SEED = 20260601


def main(argv=None) -> int:
    quick = paper.quick_requested(argv)
    data = paper.default_data(quick=quick, seed=SEED)
    result = paper.c10_h_convex_rstar(data)
    print(result.line())
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
