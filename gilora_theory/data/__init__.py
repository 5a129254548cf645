"""
gilora_theory.data: the layers the numerical core is run on
===========================================================

Everything here produces or stores layers ``(W, H)`` in the paper's convention
(rows of ``W`` are input features, ``H = X^T X``); nothing here compresses them.

calibration   -- the synthetic gallery: ``X`` with exactly known spectra and tail
                 energies, weight generators (class K included)
layers        -- layers in one form: synthetic gallery layers, the bundled real
                 all-MiniLM-L6-v2 sample (no torch needed), extracted folders; the
                 calibration text and ``H`` normalisations of other tools
io            -- layer files (``LAYER.npz``) read safely, every file written atomically
torch_adapter -- the only module that imports torch (import it explicitly): ``H``
                 hooks, ``W`` from a model, write-back, model-level error, extraction,
                 and the rebuild of the bundled sample

The bundled layer files (``*.npz``) and their provenance (``minilm_sample.json``)
live in this folder. Import direction: this sub-package uses the numerical core;
the core never imports it, and it never imports :mod:`gilora_theory.experiments`.
"""
