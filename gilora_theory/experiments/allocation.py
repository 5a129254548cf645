"""Bit and rank allocation across a model under one storage budget.

Each layer ``l`` gets a pair ``(b_l, r_l)`` from candidate sets so that the
bits the whole model stores (:func:`gilora_theory.storage.storage`: codes, grid
parameters and a 16-bit branch) stay within ``B`` bits per weight, while the
summed predicted layer error ``sum_l e_l(b_l, r_l)`` is smallest. Three rules
(:data:`RULES`) supply ``e_l``:

``bound``
    The factorised bound ``g_l(b) h_l(r)`` of Cor. 3.9 of [1] (docs/theory.md,
    "Upper bounds"), from each layer's ``W`` and
    ``H`` alone, at GILoRA's pass damping (``damp_from="augmented"``); no
    compression is run. This is how BRAID [2] allocates.
``measured``
    The undamped error ``||X (W - Q - L R)||_F^2`` of actually compressing the
    layer at each candidate (:func:`gilora_theory.methods.compress`), cached one
    JSON file per layer so an interrupted run resumes.
``uniform``
    One ``(b, r)`` for every layer: the largest ``b`` that fits, then the
    largest ``r`` (ranks capped per layer at ``min(N, N_out)``).

The choice is a multiple-choice knapsack, solved by :func:`solve` with
dynamic programming over budget units of ``resolution`` bits. Costs rounded
*up* to whole units give an allocation that surely fits the exact budget;
costs rounded *down* give a relaxation whose optimum is a lower bound on the
exact optimum. Their difference is the reported optimality gap (zero when
``resolution = 1`` bit: the costs are integers and the DP is exact).

References
----------
[1] S. Zhang, R. Saab, "GPTQ-intrinsic LoRA", arXiv:2606.01412 (2026).
[2] N. Pham, N. Gillis, "BRAID" (bit and rank allocation with the GILoRA bound),
    follow-up to [1].
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import _validation as _v
from ..data.io import write_json
from ..methods import METHODS, compress
from ..storage import storage
from ..upper_bounds import factorised_bound

__all__ = ["RULES", "Surface", "error_surface", "Allocation", "solve", "allocate",
           "uniform_choice", "surface_error", "fits", "recount_bits", "allocation_json"]

RULES = ("bound", "measured", "uniform")
DEFAULT_BITS = (2, 3, 4, 5)
DEFAULT_RANKS = (0, 8, 16, 32, 64)


@dataclass(frozen=True)
class Surface:
    """Predicted error and storage of every candidate of every layer.

    Attributes
    ----------
    names : tuple of str
        Layers, in model order.
    shapes : tuple of (int, int)
        ``(N_l, N_out_l)``.
    candidates : tuple of (int, int)
        ``(b, r)`` pairs, bits outer, ranks inner (the requested ranks; a layer
        uses ``min(r, N_l, N_out_l)``).
    error : (L, K) ndarray
        ``e_l(b, r)``: ``g_l(b) h_l(r)`` (bound) or the measured error.
    cost : (L, K) int ndarray
        ``storage(N_l, N_out_l, bits=b, rank=min(r, N_l, N_out_l)).total`` in bits.
    kind : str
        ``"bound"`` or ``"measured"``.
    """

    names: tuple
    shapes: tuple
    candidates: tuple
    error: np.ndarray
    cost: np.ndarray
    kind: str

    @property
    def n_weights(self) -> int:
        """``sum_l N_l N_out_l``."""
        return int(sum(N * M for N, M in self.shapes))


def _candidates(bits, ranks) -> tuple:
    bits = sorted({_v.check_bits("bits", b) for b in bits})
    ranks = sorted({_v.check_int("ranks", r, low=0) for r in ranks})
    if not bits or not ranks:
        raise ValueError("bits and ranks must each name at least one candidate")
    return tuple((b, r) for b in bits for r in ranks)


def _costs(shapes, candidates) -> np.ndarray:
    return np.array([[storage(N, M, bits=b, rank=min(r, N, M)).total for b, r in candidates]
                     for N, M in shapes], dtype=np.int64)


def error_surface(layers, *, by: str = "bound", bits=DEFAULT_BITS, ranks=DEFAULT_RANKS,
                  method: str = "gilora", damp: float = 0.01, cache=None,
                  progress=None, on_compression=None) -> Surface:
    """The predicted error of every layer at every candidate ``(b, r)``.

    Parameters
    ----------
    layers : sequence of Layer
        Objects with ``W`` (N, N_out), ``H`` (N, N) and ``name``.
    by : {"bound", "measured"}, default "bound"
        ``g_l(b) h_l(r)`` (Cor. 3.9 of [1]) or the error of ``compress``.
    bits, ranks : sequence of int, default (2, 3, 4, 5) and (0, 8, 16, 32, 64)
    method : str, default "gilora"
        Method of the measured surface (one of :data:`gilora_theory.methods.METHODS`).
    damp : float, default 0.01
        Relative damping ``alpha`` (of the bound's ``lam`` and of ``compress``).
    cache : path, optional
        Folder for the measured errors (one ``<name>.json`` per layer, keyed by
        a hash of ``W``, ``H``, method and damping); reruns reuse finished entries.
    progress : callable, optional
        Wraps the layer loop (e.g. ``tqdm``).
    on_compression : callable, optional
        Measured surface only: called as ``on_compression(name, b, r, compression)``
        with each :class:`~gilora_theory.methods.Compression` it computes (not for
        entries read from ``cache``), ``(b, r)`` the candidate as given, e.g. to keep
        reconstructions a caller would otherwise compute again.

    Returns
    -------
    Surface
    """
    if by not in ("bound", "measured"):
        raise ValueError(f"by must be 'bound' or 'measured'; got {by!r}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}; got {method!r}")
    layers = list(layers)
    if not layers:
        raise ValueError("layers must hold at least one layer")
    cand = _candidates(bits, ranks)
    alpha = _v.check_damp(damp)
    rows = []
    for lay in (progress(layers) if progress else layers):
        W = _v.as_matrix(f"W of {lay.name}", lay.W)
        H = _v.check_hessian(lay.H, W.shape[0])
        rows.append(_bound_row(W, H, cand, alpha) if by == "bound"
                    else _measured_row(W, H, lay.name, cand, method, alpha, cache, on_compression))
    shapes = tuple(tuple(int(n) for n in np.shape(lay.W)) for lay in layers)
    error = np.array(rows, dtype=np.float64)
    _v.check_finite_output(f"the {by} error surface", "Check the layers' W and H.", error=error)
    return Surface(tuple(lay.name for lay in layers), shapes, cand, error, _costs(shapes, cand), by)


def _bound_row(W, H, cand, alpha) -> list:
    """``g(b) h(min(r, N, N_out))`` per candidate (Cor. 3.9 of [1], GILoRA's damping)."""
    r_cap = min(W.shape)
    r_max = min(max(r for _, r in cand), r_cap)
    fb = {b: factorised_bound(W, H, b, damp=alpha, damp_from="augmented", r_max=r_max)
          for b in sorted({b for b, _ in cand})}
    return [fb[b].g * float(fb[b].h[min(r, r_cap)]) for b, r in cand]


def _fingerprint(W, H, method, alpha) -> str:
    h = hashlib.sha256()
    for A in (W, H):
        h.update(str(A.shape).encode())
        h.update(np.ascontiguousarray(A, dtype=np.float64).tobytes())
    h.update(f"{method} {alpha!r}".encode())
    return h.hexdigest()


def _measured_row(W, H, name, cand, method, alpha, cache, on_compression=None) -> list:
    """Measured errors, read from and written to ``cache/<name>.json`` after every run;
    each compression run is handed to ``on_compression`` (when given)."""
    key = _fingerprint(W, H, method, alpha)
    path = None if cache is None else Path(cache) / f"{name.replace('/', '_')}.json"
    done = {}
    if path is not None and path.is_file():
        try:
            old = json.loads(path.read_text())
            done = old["errors"] if old.get("key") == key else {}
        except (OSError, ValueError, KeyError, AttributeError):
            done = {}
    out = []
    for b, r_cand in cand:
        r = min(r_cand, *W.shape)
        tag = f"{b},{r}"
        if tag not in done:
            made = compress(W, H, method, b, r, damp=alpha)
            if on_compression is not None:
                on_compression(name, b, r_cand, made)
            done[tag] = made.objective.error
            if path is not None:
                write_json(path, {"name": name, "method": method, "damp": alpha, "key": key,
                                  "errors": done})
        out.append(float(done[tag]))
    return out


@dataclass(frozen=True)
class Allocation:
    """One ``(b_l, r_l)`` per layer within a storage budget.

    Attributes
    ----------
    rule : str
        ``"bound"``, ``"measured"`` or ``"uniform"``.
    names : tuple of str
    choice : tuple of (int, int)
        ``(b_l, r_l)``, ``r_l`` already capped at ``min(N_l, N_out_l)``.
    budget : float
        ``B``, bits per weight over the whole model.
    bits_total : int
        ``sum_l storage(N_l, N_out_l, bits=b_l, rank=r_l).total``; ``<= B sum_l N_l N_out_l``.
    effective_bits : float
        ``bits_total / sum_l N_l N_out_l``.
    predicted_error : float
        ``sum_l e_l(b_l, r_l)`` on the surface the rule minimised.
    lower_bound : float
        A proven lower bound on the least ``sum_l e_l`` any allocation within the
        budget reaches on that surface (DP with costs rounded down).
    gap : float
        ``predicted_error - lower_bound`` (>= 0): the optimality gap (for
        ``uniform``, how far one setting for all layers is from the optimum).
    resolution : int
        Bits per DP budget unit.
    """

    rule: str
    names: tuple
    choice: tuple
    budget: float
    bits_total: int
    effective_bits: float
    predicted_error: float
    lower_bound: float
    gap: float
    resolution: int


def _knapsack(error: np.ndarray, units: np.ndarray, capacity: int) -> tuple:
    """Exact multiple-choice knapsack on integer unit costs: (value, choice index per layer).

    ``best[u]``: least summed error of the layers so far using at most ``u`` units.
    """
    best = np.zeros(capacity + 1)
    picks = []
    for e, c in zip(error, units):
        new = np.full(capacity + 1, np.inf)
        arg = np.full(capacity + 1, -1, dtype=np.int64)
        for k in np.argsort(e, kind="stable"):
            if c[k] <= capacity:
                cand = np.full(capacity + 1, np.inf)
                cand[c[k]:] = best[:capacity + 1 - c[k]] + e[k]
                better = cand < new
                new[better], arg[better] = cand[better], k
        best = new
        picks.append(arg)
    if not np.isfinite(best[capacity]):
        return math.inf, None
    choice, u = [], capacity
    for arg, c in zip(reversed(picks), reversed(units)):
        k = int(arg[u])
        choice.append(k)
        u -= int(c[k])
    return float(best[capacity]), choice[::-1]


def solve(surface: Surface, budget: float, *, resolution: int | None = None,
          max_units: int = 1 << 16) -> Allocation:
    """The allocation minimising ``sum_l e_l`` with ``sum_l cost_l <= B sum_l N_l N_out_l``.

    Parameters
    ----------
    surface : Surface
    budget : float
        ``B`` in bits per weight (> 0).
    resolution : int, optional
        Bits per budget unit of the dynamic programme (default: the smallest
        that keeps the capacity at most ``max_units`` units; 1 makes it exact).
    max_units : int, default 65536

    Raises
    ------
    ValueError
        If even the cheapest candidate of every layer exceeds the budget.
    """
    B = _v.check_float("budget", budget, low=0.0, low_open=True)
    capacity = math.floor(B * surface.n_weights)
    res = (max(1, math.ceil(capacity / _v.check_int("max_units", max_units, low=1)))
           if resolution is None else _v.check_int("resolution", resolution, low=1))
    cap_units = capacity // res
    value, choice = _knapsack(surface.error, -(-surface.cost // res), cap_units)
    if choice is None:
        least = surface.cost.min(axis=1).sum() / surface.n_weights
        raise ValueError(f"budget must be at least {least:.4g} bits per weight (every layer at its "
                         f"cheapest candidate; resolution {res} bits); got {B}")
    lower, _ = _knapsack(surface.error, surface.cost // res, cap_units)
    return _allocation("measured" if surface.kind == "measured" else "bound", surface, choice,
                       B, value, lower, res)


def _allocation(rule, surface, choice, B, value, lower, res) -> Allocation:
    picked = tuple((surface.candidates[k][0], min(surface.candidates[k][1], *shape))
                   for k, shape in zip(choice, surface.shapes))
    total = recount_bits(surface.shapes, picked)
    return Allocation(rule, surface.names, picked, B, total, total / surface.n_weights,
                      float(value), float(lower), float(max(value - lower, 0.0)), int(res))


def uniform_choice(surface: Surface, budget: float) -> Allocation:
    """One ``(b, r)`` for all layers: the largest ``b`` that fits, then the largest ``r``.

    Its ``predicted_error`` is read off ``surface``; its ``lower_bound`` is that
    of :func:`solve` at the same budget, so ``gap`` is what uniformity costs.
    """
    B = _v.check_float("budget", budget, low=0.0, low_open=True)
    capacity = math.floor(B * surface.n_weights)
    totals = surface.cost.sum(axis=0)
    fits = [k for k in range(len(surface.candidates)) if totals[k] <= capacity]
    if not fits:
        raise ValueError(f"budget must be at least {totals.min() / surface.n_weights:.4g} bits per "
                         f"weight for one (b, r) in every layer; got {B}")
    k = max(fits, key=lambda j: surface.candidates[j])
    best = solve(surface, B)
    value = float(surface.error[:, k].sum())
    return _allocation("uniform", surface, [k] * len(surface.names), B, value,
                       best.lower_bound, best.resolution)


def allocate(layers, budget: float, *, by: str = "bound", bits=DEFAULT_BITS, ranks=DEFAULT_RANKS,
             method: str = "gilora", damp: float = 0.01, cache=None, resolution: int | None = None,
             progress=None) -> Allocation:
    """Allocate bits and ranks to ``layers`` under ``budget`` bits per weight by rule ``by``.

    ``bound`` and ``measured`` solve the knapsack on their surface
    (:func:`error_surface`, :func:`solve`); ``uniform`` takes
    :func:`uniform_choice` and reports its bound-predicted error. Options as in
    :func:`error_surface` and :func:`solve`.
    """
    if by not in RULES:
        raise ValueError(f"by must be one of {RULES}; got {by!r}")
    surface = error_surface(layers, by="bound" if by == "uniform" else by, bits=bits, ranks=ranks,
                            method=method, damp=damp, cache=cache, progress=progress)
    if by == "uniform":
        return uniform_choice(surface, budget)
    return solve(surface, budget, resolution=resolution)


def surface_error(surface: Surface, choice) -> float:
    """``sum_l e_l(b_l, r_l)`` of an allocation's ``choice`` (capped ranks) on ``surface``."""
    total = 0.0
    for i, (pick, shape) in enumerate(zip(choice, surface.shapes)):
        ks = [k for k, (b, r) in enumerate(surface.candidates) if (b, min(r, *shape)) == tuple(pick)]
        if not ks:
            raise ValueError(f"choice {tuple(pick)} of layer {surface.names[i]!r} is not a candidate "
                             f"of the surface ({surface.candidates})")
        total += float(surface.error[i, ks[0]])
    return total


def fits(surface: Surface, choice, budget: float, *, resolution: int = 1) -> bool:
    """Whether ``choice`` fits ``budget`` with costs rounded up to ``resolution``-bit units,
    i.e. is feasible for the dynamic programme of :func:`solve` at that resolution."""
    capacity = math.floor(budget * surface.n_weights) // resolution
    units = [-(-storage(N, M, bits=b, rank=r).total // resolution)
             for (N, M), (b, r) in zip(surface.shapes, choice)]
    return sum(units) <= capacity


def recount_bits(shapes, choice) -> int:
    """``sum_l storage(N_l, N_out_l, bits=b_l, rank=r_l).total``: the bits an allocation stores."""
    return int(sum(storage(N, M, bits=b, rank=r).total for (N, M), (b, r) in zip(shapes, choice)))


def allocation_json(a: Allocation, shapes) -> dict:
    """The ``ALLOC.json`` content: the rule, the budget, and ``(bits, rank)`` per layer."""
    return {"format": "gilora-theory allocation 1", "rule": a.rule, "budget": a.budget,
            "bits_total": a.bits_total, "effective_bits": a.effective_bits,
            "predicted_error": a.predicted_error, "lower_bound": a.lower_bound, "gap": a.gap,
            "resolution_bits": a.resolution,
            "layers": {n: {"bits": b, "rank": r, "shape": list(s)}
                       for n, (b, r), s in zip(a.names, a.choice, shapes)}}
