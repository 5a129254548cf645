"""Content-keyed memo of deterministic ``O(N^3)`` results on one matrix.

One ``H`` reaches many public functions in a comparison: C13 runs fourteen
methods on each layer, CALDERA-style runs a GPTQ pass and an OLrC per
iteration, ``gilora-theory run`` validates ``H`` and then factors it. Each
public function validates ``H`` at its own boundary (a Cholesky of
``H + tol I``), and several eigendecompose it. Those results depend only on
the bytes of ``H`` (and the arguments named in the key), so they are kept
under a digest of the bytes: the same bytes in, the same bits out, whichever
call computed them first. Nothing else is shared: a changed ``H`` (even one
bit) has another digest and is computed afresh.

Held arrays are read-only; callers that hand them to users copy them
(:func:`gilora_theory.objective.hessian_spectrum`). At most ``MAX_BYTES`` of
arrays and ``MAX_ENTRIES`` results are kept, least recently used dropped
first, so an LLM-sized ``H`` (1.2 GB at N = 12288) is never held beyond its call.
The byte budget is what bounds memory; the entry cap is set high enough that
small results (a PSD verdict, a spectrum's eigenvalues) are not pushed out by
their own number: ``gilora-theory check --quick`` asks about some 1,300 distinct
matrices, and a cap of 32 had it recompute a third of them.
"""
from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

import numpy as np

MAX_BYTES = 512 * 2 ** 20
"""Largest total size of the arrays held (bytes)."""

MAX_ENTRIES = 4096
"""Largest number of results held."""

_store: OrderedDict = OrderedDict()
_held = [0]                       # bytes of the arrays in _store (kept with it, under _lock)
_lock = threading.Lock()


def digest(A: np.ndarray) -> tuple:
    """``(shape, dtype, memory order, SHA-256 of the bytes)`` of ``A`` (no copy when contiguous)."""
    if A.flags.c_contiguous:
        order, view = "C", A
    elif A.flags.f_contiguous:
        order, view = "F", A.T
    else:
        order, view = "C", np.ascontiguousarray(A)
    h = hashlib.sha256(memoryview(view).cast("B")).hexdigest()
    return A.shape, A.dtype.str, order, h


def _nbytes(value) -> int:
    if isinstance(value, np.ndarray):
        return value.nbytes
    if isinstance(value, tuple):
        return sum(_nbytes(v) for v in value)
    return 0


def _freeze(value):
    if isinstance(value, np.ndarray):
        value.flags.writeable = False
    elif isinstance(value, tuple):
        for v in value:
            _freeze(v)
    return value


def memo(kind: str, A: np.ndarray, compute, *args):
    """``compute(A, *args)``, or the result kept for the same ``kind``, bytes of ``A`` and ``args``.

    ``compute`` must be a pure function of its arguments. Arrays in the result
    (a value, an array or a tuple of them) come back read-only.
    """
    key = (kind, digest(A), args)
    with _lock:
        if key in _store:
            _store.move_to_end(key)
            return _store[key]
    value = _freeze(compute(A, *args))
    size = _nbytes(value)
    if size > MAX_BYTES:
        return value
    with _lock:
        if key not in _store:          # another thread may have kept it meanwhile
            _store[key] = value
            _held[0] += size
        while len(_store) > MAX_ENTRIES or _held[0] > MAX_BYTES:
            _held[0] -= _nbytes(_store.popitem(last=False)[1])
    return value


def clear() -> None:
    """Forget every kept result."""
    with _lock:
        _store.clear()
        _held[0] = 0
