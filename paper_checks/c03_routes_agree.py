"""C3: the Cholesky route and the eig+QR route agree.

Psi (lower triangular, Psi Psi^T = H_lam^{-1}) from the Cholesky factor of the
inverse and from an eigendecomposition followed by a QR of H_lam^{-1/2} must
agree to 64 N eps cond(H_lam), and GPTQ must give the same Q with either.

Data: the synthetic gallery and the bundled real all-MiniLM-L6-v2 layers
(``gilora_theory.experiments.paper.default_data``), seed fixed below; ``--quick`` (or the
environment variable ``GILORA_QUICK=1``) runs the small version. Prints one
verdict line with its numbers; exit status 1 when the claim fails.

    python paper_checks/c03_routes_agree.py [--quick]

[1] S. Zhang, R. Saab, "GPTQ-intrinsic LoRA", arXiv:2606.01412 (2026).
"""
import sys

from gilora_theory.experiments import paper

SEED = 20260601


def main(argv=None) -> int:
    quick = paper.quick_requested(argv)
    data = paper.default_data(quick=quick, seed=SEED)
    result = paper.c03_routes_agree(data)
    print(result.line())
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
