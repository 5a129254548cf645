"""C6: the upper-bound chain holds whenever no clipping occurred.

E <= E_lam_aug = sum of step terms <= C sum 1/Psi_tt^2 <= C tr(S)
<= C (||X - X_r||_F^2 + (N + r) lam) (Cor. 3.9 of [1]) on every run that never
clipped; on runs that clipped (beta < 1, 2-bit grids, heavy tails) the check
reports how often and by how much a link fails, without failing the claim.

Data: the synthetic gallery and the bundled real all-MiniLM-L6-v2 layers
(``gilora_theory.experiments.paper.default_data``), seed fixed below; ``--quick`` (or the
environment variable ``GILORA_QUICK=1``) runs the small version. Prints one
verdict line with its numbers; exit status 1 when the claim fails.

    python paper_checks/c06_bound_chain.py [--quick]

[1] S. Zhang, R. Saab, "GPTQ-intrinsic LoRA", arXiv:2606.01412 (2026).
"""
import sys

from gilora_theory.experiments import paper

SEED = 20260601


def main(argv=None) -> int:
    quick = paper.quick_requested(argv)
    data = paper.default_data(quick=quick, seed=SEED)
    result = paper.c06_bound_chain(data)
    print(result.line())
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
