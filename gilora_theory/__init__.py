"""
gilora_theory: low-precision plus low-rank layer compression, implemented and validated
=======================================================================================

A reference implementation of "GPTQ-intrinsic LoRA" (S. Zhang, R. Saab,
arXiv:2606.01412): a layer ``X W`` is approximated by ``X (Q + L R)`` with ``Q`` on
a low-bit grid and ``L R`` of low rank, judged by ``||X (W - Q - L R)||_F^2``.
Rows of ``W`` are input features.

Modules, in the order the theory is told
----------------------------------------
The numerical core (NumPy and SciPy only), flat at the top of the package:

grid         -- the asymmetric per-column grid (bounded and unbounded), clipping report
objective    -- ``H = X^T X``, damping, the layer error and its damped/relative forms
gptq         -- Alg. 1, GPTQ: the paper's row loop and its lazy-batch equivalent
olrc         -- Alg. 2, optimal low-rank compensation for a fixed Q
gilora       -- Alg. 3, GPTQ-intrinsic LoRA (augmented Hessian), Schur complement
bidup        -- Alg. 4, Bid-Up, and the refinement loop
upper_bounds -- the upper-bound chain (Cor. 3.9) link by link, any L; g(b) h(r); clipping sweep
lower_bounds -- the information-theoretic (minimax) lower bound, the class K, dominant scaling
exact        -- exact optima on tiny layers (sphere decoding; enumeration with OLrC per Q)
methods      -- compositions compared in the experiments (RTN, GPTQ+OLrC, ...), and their
                comparison with an exact optimum
branch       -- a low-rank branch on its own low-bit grids (L before the GILoRA pass, R after)
datafree     -- compensation without calibration data: SVD fit, quantized-branch fits
literature   -- the literature's methods with their authors' conventions: LQER, QERA,
                EoRA's eigenvalue cutoff, LoftQ, CALDERA-style, LoRaQ; per-column beta search
storage      -- effective bits per weight of Q + L R, grid parameters included
checks       -- correctness checks to run on your own data (loss identity, OLrC optimality, ...)
provenance   -- what produced a result: versions, git commit, threads, seeds, data hashes

Two sub-packages, imported explicitly:

data         -- the layers: synthetic gallery, bundled real MiniLM layers, layer files,
                the torch adapter (the only module importing torch)
experiments  -- the claims C1..C15, sweeps, the equal-storage study, reports, figures

and the ``gilora-theory`` command line (:mod:`gilora_theory.cli`). The core imports
neither sub-package; ``data`` never imports ``experiments``
(``tests/test_layout.py``). The mathematics is in ``docs/theory.md``.
"""
from .bidup import BidUpResult, RefineResult, bid_up, refine
from .branch import (BranchResult, QuantizedBranch, gilora_branch, olrc_branch, quantize_after,
                     quantize_branch, refit_R)
from .datafree import (QuantizedFit, SVDFit, alternating_fit, coordinate_fit, guaranteed_increase,
                       svd_fit)
from .checks import (CheckResult, check_bidup_argmin, check_blocksize_invariance,
                     check_gilora_r0_is_gptq, check_loss_identity, check_monotone,
                     check_olrc_optimality, check_refine_trace, check_ridge_solution,
                     check_routes_agree,
                     check_scaling, check_schur_gptq)
from .gilora import (EigenSubspace, GILoRAResult, augmented_hessian, eigen_subspace, gilora,
                     relative_gap, schur_complement, top_eigenvectors)
from .gptq import GPTQResult, gptq, psi_factor
from .grid import Grid, clipped_mask, fit_grid
from .methods import METHODS, Compression, MethodComparison, compare_methods, compress, ridge_R
from .objective import (HessianSpectrum, Objective, damping, evaluate, hessian,
                        hessian_spectrum, layer_error)
from .olrc import OLrCResult, olrc
from .upper_bounds import (BoundChain, ChainLink, ClippingSweep, FactorisedBound, LayerBounds,
                           bound_chain, clipping_sweep, factorised_bound, layer_bounds)
from .lower_bounds import (ScalingComparison, bad_fraction, degrees_ratio, lower_bound,
                           sample_class_k, scaling_comparison, volume_lower_bound)
from .exact import ExactOptimum, exact_optimum
from .storage import Storage, compression_storage, storage, storage_of
from ._validation import NumericalError

__version__ = "0.1.0"

__all__ = [
    "Grid", "fit_grid", "clipped_mask",
    "hessian", "damping", "layer_error", "evaluate", "Objective", "HessianSpectrum",
    "hessian_spectrum",
    "gptq", "GPTQResult", "psi_factor",
    "olrc", "OLrCResult",
    "gilora", "GILoRAResult", "augmented_hessian", "schur_complement", "top_eigenvectors",
    "eigen_subspace", "EigenSubspace", "relative_gap",
    "bid_up", "BidUpResult", "refine", "RefineResult",
    "compress", "Compression", "METHODS", "ridge_R",
    "bound_chain", "BoundChain", "ChainLink", "layer_bounds", "LayerBounds", "factorised_bound",
    "FactorisedBound", "clipping_sweep", "ClippingSweep",
    "lower_bound", "degrees_ratio", "sample_class_k", "volume_lower_bound", "bad_fraction",
    "scaling_comparison", "ScalingComparison",
    "exact_optimum", "ExactOptimum", "compare_methods", "MethodComparison",
    "quantize_branch", "QuantizedBranch", "BranchResult", "refit_R", "quantize_after",
    "olrc_branch", "gilora_branch",
    "svd_fit", "SVDFit", "alternating_fit", "coordinate_fit", "QuantizedFit", "guaranteed_increase",
    "storage", "storage_of", "compression_storage", "Storage",
    "CheckResult", "check_loss_identity", "check_gilora_r0_is_gptq", "check_blocksize_invariance",
    "check_routes_agree", "check_ridge_solution", "check_schur_gptq", "check_olrc_optimality",
    "check_bidup_argmin", "check_monotone", "check_refine_trace", "check_scaling",
    "NumericalError",
]
