"""C4: the damped loss equals the sum of the per-step terms.

W - Q = Psi E, hence E_lam(Q) = sum_t ||w~_t - q_t||^2 / Psi_tt^2 for GPTQ; for
GILoRA E + lam ||W - Q||^2 + lam ||R||^2 equals its step sum (Sec. 3 of [1]).

Data: the synthetic gallery and the bundled real all-MiniLM-L6-v2 layers
(``gilora_theory.experiments.paper.default_data``), seed fixed below; ``--quick`` (or the
environment variable ``GILORA_QUICK=1``) runs the small version. Prints one
verdict line with its numbers; exit status 1 when the claim fails.

    python paper_checks/c04_loss_identity.py [--quick]

[1] S. Zhang, R. Saab, "GPTQ-intrinsic LoRA", arXiv:2606.01412 (2026).
"""
import sys

from gilora_theory.experiments import paper

SEED = 20260601


def main(argv=None) -> int:
    quick = paper.quick_requested(argv)
    data = paper.default_data(quick=quick, seed=SEED)
    result = paper.c04_loss_identity(data)
    print(result.line())
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
