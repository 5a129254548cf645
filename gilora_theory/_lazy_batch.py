"""The lazy-batch kernel shared by the GPTQ pass (Alg. 1 of [1]) and a Bid-Up sweep (Alg. 4).

Both walk the rows ``t = 0..n-1`` of an array ``Y`` in order, derive a row
``Z_t`` from the current ``Y_t`` (GPTQ: ``eps_t`` from ``w~_t``; Bid-Up: the
move ``dQ_t`` from the gradient row) and feed it forward to the later rows::

    for t = 0..n-1:
        Z_t  = step(t)                 # reads Y_t, which has every update from rows < t
        Y_s -= M_st Z_t                for all s > t (rows of Y beyond n too)

:func:`lazy_batch_sweep` runs exactly this recurrence with the updates summed
in another order (equal to rounding) and nearly all flops in BLAS-3 (the lazy
batches of the reference GPTQ [2]). Its test (``tests/test_lazy_batch.py``)
compares it with the loop above for several block sizes, and both callers
compare themselves with their own row-by-row definitions.

References
----------
[1] S. Zhang, R. Saab, "GPTQ-intrinsic LoRA", arXiv:2606.01412 (2026).
[2] E. Frantar et al., "GPTQ", arXiv:2210.17323 (2022).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import scipy.linalg

__all__ = ["lazy_batch_sweep"]

LEAF = 8
"""Rows processed one at a time at the leaves of the recursive blocking."""


def lazy_batch_sweep(Y: np.ndarray, M: np.ndarray, Z: np.ndarray, n: int, blocksize: int,
                     step: Callable[[int], None], *, window: bool = False) -> None:
    """Run ``Y_s -= sum_{t<s} M_st Z_t`` with ``Z_t = step(t)`` for ``t < n``, in place.

    Parameters
    ----------
    Y : (n_rows, k) ndarray
        Rows receiving the feedback (``n_rows >= n``; rows ``>= n`` receive
        every update but are never stepped). C-contiguous rows for the fast
        in-place product.
    M : (n_rows, >= n) ndarray
        Feedback coefficients; only ``M[s, t]`` with ``s > t`` is read.
    Z : (>= n, k) ndarray
        Row ``t`` is written by ``step(t)`` (it may be ``Y`` itself: GPTQ stores
        ``eps_t`` over ``w~_t``, whose rows are disjoint from those updated).
    n : int
        Rows stepped.
    blocksize : int
        Rows per lazy batch; results agree for every block size (to rounding).
    step : callable
        ``step(t)``, called for ``t = 0..n-1`` in order once ``Y_t`` has every
        update from rows ``< t``; it must write ``Z[t]`` (``Z[t % blocksize]``
        with ``window``).
    window : bool, default False
        ``Z`` holds only the current batch: ``blocksize`` rows, row ``t`` at
        ``t % blocksize`` (a row of ``Z`` is read only while its batch runs), so
        a caller that keeps no ``Z`` saves an ``n x k`` array. Same arithmetic.

    Notes
    -----
    Each batch of ``blocksize`` rows is split recursively in halves: the first
    half is stepped, the second half receives ``M[half2, half1] Z[half1]`` by one
    matrix product, then the second half is stepped; leaves of ``LEAF`` rows
    pull their in-leaf updates row by row. Rows below a batch receive its
    updates by one matrix product.
    """
    o = 0                     # row t of Z is Z[t - o]: o = 0, or the batch's first row

    def process(a, b):
        if b - a > LEAF:
            m = a + _split(b - a)
            process(a, m)
            _sub_matmul(Y[m:b], M[m:b, a:m], Z[a - o:m - o])
            process(m, b)
            return
        for t in range(a, b):
            if t > a:
                Y[t] -= M[t, a:t] @ Z[a - o:t - o]
            step(t)

    try:
        for i1 in range(0, n, blocksize):
            i2 = min(i1 + blocksize, n)
            o = i1 if window else 0
            process(i1, i2)
            _sub_matmul(Y[i2:], M[i2:, i1:i2], Z[i1 - o:i2 - o])
    finally:
        # ``process`` refers to itself (recursion), a reference cycle that would keep
        # Y, M and Z alive until the garbage collector runs: GBs at LLM sizes.
        process = None


def _split(n: int) -> int:
    """Size of the first half of a recursive split (a multiple of ``LEAF`` when large)."""
    if n <= 2 * LEAF:
        return n // 2
    return -(-(n // 2) // LEAF) * LEAF


def _sub_matmul(C: np.ndarray, A: np.ndarray, B: np.ndarray) -> None:
    """``C -= A @ B`` in place: one ``?gemm`` with ``beta = 1`` when ``C``'s rows are contiguous."""
    if C.shape[0] == 0 or A.shape[1] == 0:
        return
    if C.flags.c_contiguous:
        out = scipy.linalg.blas.dgemm(-1.0, B.T, A.T, beta=1.0, c=C.T, overwrite_c=1)
        if np.shares_memory(out, C):
            return
    C -= A @ B
