"""Calibration data in one form: synthetic gallery layers, bundled real layers, files.

Every loader returns :class:`gilora_theory.data.io.Layer` objects (``W`` (N, N_out),
rows = input features; ``H = X^T X``), so the experiments treat a synthetic
layer, a real layer shipped with the package and an extracted layer alike:

- :func:`synthetic_layers`: ``X`` from the gallery (:mod:`gilora_theory.data.calibration`)
  and ``W`` from a weight generator;
- :func:`load_bundled` / :func:`bundled_layers`: a sample of real
  all-MiniLM-L6-v2 layers bundled in ``gilora_theory/data/`` (no torch needed);
  :func:`bundled_provenance` says how they were made;
- :func:`directory_layers`: the output of ``gilora-theory extract``;
- :func:`load_layers` dispatches on a source name or a path.

The bundled sample stores ``W`` exactly (the model's float32 weights) and ``H``
accumulated in float64 by :func:`gilora_theory.data.torch_adapter.capture` and then
rounded to float32 to fit the size budget: each entry carries a relative error of
at most ``2^-24``, i.e. ``H_stored = H + E`` with ``|E_ij| <= 2^-24 |H_ij|``.
The loader promotes it back to float64; the provenance JSON records the smallest
eigenvalue of the stored ``H`` relative to its largest. Rebuild the sample with
``python -m gilora_theory.data.torch_adapter --rebuild`` (needs the torch extra).

:func:`calibration_text` is the calibration corpus (standard-library
``pydoc_data.topics``, whose text varies with the Python patch version, hence
its SHA-256 in every output); :func:`unnormalise_hessian` undoes the scalings
other tools apply to a stored ``H``.

References
----------
[1] S. Zhang, R. Saab, "GPTQ-intrinsic LoRA", arXiv:2606.01412 (2026).
[2] E. Frantar et al., "GPTQ", arXiv:2210.17323 (2022) (``H = 2 / n_sequences sum x x^T``).
"""
from __future__ import annotations

import functools
import hashlib
import json
import platform
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import _validation as _v
from .calibration import KINDS, calibration, weights
from .io import Layer, load_layer

__all__ = [
    "CalibrationText", "calibration_text", "NORMALISATIONS", "unnormalise_hessian",
    "BUNDLE_DIR", "bundled_names", "bundled_provenance", "load_bundled", "bundled_layers",
    "synthetic_layers", "directory_layers", "load_layers", "SAMPLE_LAYERS",
]

BUNDLE_DIR = Path(__file__).resolve().parent
_PROVENANCE = "minilm_sample.json"


@dataclass(frozen=True)
class CalibrationText:
    """The calibration corpus.

    Attributes
    ----------
    text : str
        ``"\\n\\n".join(pydoc_data.topics.topics[k] for k in sorted(topics))``.
    sha256 : str
        SHA-256 of ``text`` encoded as UTF-8 (hex).
    python : str
        The Python version whose standard library supplied the text.
    """

    text: str
    sha256: str
    python: str


@functools.lru_cache(maxsize=1)
def calibration_text() -> CalibrationText:
    """The standard library's help topics as one text, with its hash (stdlib only)."""
    from pydoc_data.topics import topics
    text = "\n\n".join(topics[k] for k in sorted(topics))
    return CalibrationText(text, hashlib.sha256(text.encode("utf-8")).hexdigest(),
                           platform.python_version())


NORMALISATIONS = ("sum", "2/sequences", "2/tokens", "1/tokens")


def unnormalise_hessian(H_stored, normalisation: str, *, n_sequences: int | None = None,
                        n_tokens: int | None = None) -> np.ndarray:
    """Recover ``H = X^T X`` from a Hessian another tool stored with a scaling.

    =============== ======================================= ===================
    normalisation   stored                                  returned
    =============== ======================================= ===================
    ``sum``         ``X^T X``                               ``H_stored``
    ``2/sequences`` ``(2 / n_sequences) X^T X`` (GPTQ [2])  ``H_stored n_s / 2``
    ``2/tokens``    ``(2 / n_tokens) X^T X``                ``H_stored n_t / 2``
    ``1/tokens``    ``X^T X / n_tokens`` (a mean)           ``H_stored n_t``
    =============== ======================================= ===================

    ``X`` (m, N) has one row per token, ``m = n_tokens``; GPTQ's running update
    counts calibration *sequences*. The result is validated as a symmetric
    positive semi-definite float64 matrix.

    Parameters
    ----------
    H_stored : (N, N) array_like
    normalisation : str
        One of :data:`NORMALISATIONS`.
    n_sequences, n_tokens : int, optional
        The count the stored scaling used (required by the matching convention).
    """
    if normalisation not in NORMALISATIONS:
        raise ValueError(f"normalisation must be one of {', '.join(NORMALISATIONS)}; "
                         f"got {normalisation!r}")
    H = _v.check_hessian(H_stored, name="H_stored")
    if normalisation == "sum":
        return H.copy()  # check_hessian may return H_stored itself: never hand it back
    count_name = "n_sequences" if normalisation == "2/sequences" else "n_tokens"
    count = n_sequences if count_name == "n_sequences" else n_tokens
    if count is None:
        raise ValueError(f"normalisation {normalisation!r} needs {count_name}=")
    count = _v.check_int(count_name, count, low=1)
    return H * (count / 2.0 if normalisation.startswith("2/") else float(count))


def bundled_provenance() -> dict:
    """How the bundled sample was made: text hash, sequences, versions, per-layer facts."""
    path = BUNDLE_DIR / _PROVENANCE
    if not path.is_file():
        raise FileNotFoundError(f"the bundled sample is missing ({path}); rebuild it with "
                                f"python -m gilora_theory.data.torch_adapter --rebuild")
    return json.loads(path.read_text())


def bundled_names() -> tuple:
    """Names of the bundled real layers (e.g. ``encoder.layer.0.attention.self.query``)."""
    return tuple(bundled_provenance()["layers"])


def load_bundled(name: str) -> Layer:
    """One bundled real layer by name (float64 ``W`` and ``H``; see module docstring)."""
    layers = bundled_provenance()["layers"]
    if name not in layers:
        raise ValueError(f"no bundled layer {name!r}; bundled layers are {', '.join(layers)}")
    return load_layer(BUNDLE_DIR / layers[name]["file"])


def bundled_layers(names=None) -> list:
    """The bundled real layers (all by default, in provenance order)."""
    return [load_bundled(n) for n in (bundled_names() if names is None else names)]


def synthetic_layers(kinds=KINDS, *, m: int, N: int, N_out: int, weight_kind: str = "gaussian",
                     rng=None) -> list:
    """One gallery layer per calibration kind, ``X`` (m, N) then ``W`` (N, N_out).

    All draws come from one ``numpy.random.default_rng(rng)`` in ``kinds`` order.
    ``rank_deficient`` uses ``min(m, N - 1)`` rows (it needs fewer rows than N);
    the others need ``m >= N``. Each layer keeps its ``X`` and is named
    ``synthetic/<kind>``.
    """
    rng = np.random.default_rng(rng)
    out = []
    for kind in kinds:
        rows = min(m, N - 1) if kind == "rank_deficient" else m
        cal = calibration(kind, rows, N, rng=rng)
        W = weights(weight_kind, N, N_out, rng=rng)
        out.append(Layer(W, cal.H, cal.X, rows, f"synthetic/{kind}"))
    return out


def directory_layers(path) -> list:
    """The layers an ``extract`` run wrote to ``path``, in its manifest's order.

    Without a ``manifest.json``, every ``*.npz`` in ``path`` in name order. A
    manifest of an interrupted extraction (``"complete": false``) is refused.
    """
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"layer directory {str(path)!r} does not exist")
    manifest = path / "manifest.json"
    if manifest.is_file():
        entries = json.loads(manifest.read_text())
        if entries.get("complete") is False:
            raise ValueError(f"{path} holds an interrupted extraction; rerun the same "
                             f"gilora-theory extract command to finish it")
        files = [e["file"] for e in entries["layers"].values()]
    else:
        files = sorted(p.name for p in path.glob("*.npz"))
    if not files:
        raise ValueError(f"{path} holds no layer files (*.npz)")
    return [load_layer(path / f) for f in files]


def load_layers(source="bundled", **kwargs) -> list:
    """Layers from ``"bundled"``, ``"synthetic"`` (keywords of :func:`synthetic_layers`),
    a directory (:func:`directory_layers`) or one ``LAYER.npz`` path."""
    if source == "bundled":
        return bundled_layers(**kwargs)
    if source == "synthetic":
        return synthetic_layers(**kwargs)
    path = Path(source)
    if path.is_dir():
        return directory_layers(path)
    return [load_layer(path)]


SAMPLE_LAYERS = (
    "encoder.layer.0.attention.self.query",
    "encoder.layer.0.attention.output.dense",
    "encoder.layer.0.intermediate.dense",
    "encoder.layer.0.output.dense",
    "encoder.layer.5.attention.self.query",
    "encoder.layer.5.attention.output.dense",
)
