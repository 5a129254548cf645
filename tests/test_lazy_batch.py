"""The lazy-batch kernel shared by the GPTQ pass and the Bid-Up sweep, against its plain loop."""
import numpy as np
import pytest

from gilora_theory import _lazy_batch
from gilora_theory._lazy_batch import lazy_batch_sweep

EPS = np.finfo(np.float64).eps


def plain_loop(Y, M, n, f):
    """The recurrence as written: ``Z_t = f(t, Y_t)``, then ``Y_s -= M_st Z_t`` for ``s > t``."""
    Y, Z = Y.copy(), np.zeros((n, Y.shape[1]))
    for t in range(n):
        Z[t] = f(t, Y[t])
        Y[t + 1:] -= np.outer(M[t + 1:, t], Z[t])
    return Y, Z


def _case(n_rows=70, n=61, k=9, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n_rows, k)), rng.standard_normal((n_rows, n_rows)) / n_rows


def _f(t, y):
    return np.tanh(y) * (1 + t % 3)          # any row map: the kernel must call it in order


@pytest.mark.parametrize("blocksize", [1, 5, 16, 17, 128])
def test_kernel_equals_the_plain_loop(blocksize):
    Y0, M = _case()
    Y_ref, Z_ref = plain_loop(Y0, M, 61, _f)
    Y, Z, order = Y0.copy(), np.full((61, 9), np.nan), []

    def step(t):
        order.append(t)
        Z[t] = _f(t, Y[t])

    lazy_batch_sweep(Y, M, Z, 61, blocksize, step)
    assert order == list(range(61))
    tol = 64 * 70 * EPS * max(np.abs(Y_ref).max(), 1.0)      # same sums in another order
    assert np.max(np.abs(Z - Z_ref)) <= tol
    assert np.max(np.abs(Y[61:] - Y_ref[61:])) <= tol     # rows beyond n get every update


def test_z_may_live_in_y_s_memory():
    """GPTQ stores eps_t over w~_t: the rows written and the rows updated are disjoint."""
    Y0, M = _case(n_rows=40, n=40)
    Y_ref, Z_ref = plain_loop(Y0, M, 40, _f)
    Y = Y0.copy()

    def step(t):
        Y[t] = _f(t, Y[t])

    lazy_batch_sweep(Y, M, Y, 40, 8, step)
    assert np.max(np.abs(Y - Z_ref)) <= 64 * 40 * EPS * np.abs(Z_ref).max()


def test_negative_a_kernel_that_drops_the_batch_products_is_caught(monkeypatch):
    """Without the BLAS-3 updates (across halves and below batches) the comparison fails."""
    Y0, M = _case()
    Z_ref = plain_loop(Y0, M, 61, _f)[1]
    monkeypatch.setattr(_lazy_batch, "_sub_matmul", lambda C, A, B: None)
    Y, Z = Y0.copy(), np.zeros((61, 9))

    def step(t):
        Z[t] = _f(t, Y[t])

    lazy_batch_sweep(Y, M, Z, 61, 16, step)
    assert np.max(np.abs(Z - Z_ref)) > 1e3 * 64 * 70 * EPS * np.abs(Z_ref).max()


@pytest.mark.parametrize("blocksize", [1, 5, 16, 17, 128])
def test_window_holds_one_batch_and_changes_no_bit(blocksize):
    """``window=True`` (Z of ``blocksize`` rows, as Bid-Up's sweep uses it) gives the same
    bits as a full Z, and reads a row of Z only while its batch runs."""
    Y0, M = _case()
    Y_full, Z_full = Y0.copy(), np.zeros((61, 9))

    def step_full(t):
        Z_full[t] = _f(t, Y_full[t])

    lazy_batch_sweep(Y_full, M, Z_full, 61, blocksize, step_full)
    Y, rows = Y0.copy(), min(blocksize, 61)
    Z = np.zeros((rows, 9))
    seen = np.zeros((61, 9))

    def step(t):
        if t % blocksize == 0:
            Z[:] = np.nan              # the previous batch's rows must no longer be read
        Z[t % blocksize] = _f(t, Y[t])
        seen[t] = Z[t % blocksize]

    lazy_batch_sweep(Y, M, Z, 61, blocksize, step, window=True)
    np.testing.assert_array_equal(seen, Z_full)
    np.testing.assert_array_equal(Y, Y_full)


def test_arrays_are_released_when_the_sweep_returns():
    """No reference cycle keeps ``Y``, ``M`` or ``Z`` alive after the call (at LLM sizes a
    stale array held until the garbage collector runs is 512 MiB of peak memory)."""
    import gc
    import weakref

    class Tracked(np.ndarray):
        pass

    gc.disable()
    try:
        Y0, M = _case()
        Y, Z = Y0.copy().view(Tracked), np.zeros((61, 9)).view(Tracked)

        def step(t):
            Z[t] = _f(t, Y[t])

        lazy_batch_sweep(Y, M, Z, 61, 16, step)
        refs = [weakref.ref(Y), weakref.ref(Z)]
        del Y, Z, step
        assert [r() is None for r in refs] == [True, True]
    finally:
        gc.enable()
