"""The content-keyed memo: the same bytes give the kept result, any other bytes a fresh one.

Kept results are those of the deterministic O(N^3) steps that one ``H`` meets
many times (the PSD test at every public boundary, ``eigh``, ``eigvalsh``).
The memo must never change a number: the tests compare against fresh
computations bit for bit, change one bit of ``H`` and see a recomputation,
and check that what users receive cannot corrupt what is kept.
"""
import numpy as np
import pytest
import scipy.linalg

from gilora_theory import _memo, compress, hessian_spectrum
from gilora_theory.objective import eigvalsh_kept


@pytest.fixture(autouse=True)
def empty_memo():
    _memo.clear()
    yield
    _memo.clear()


def _H(n=30, seed=0):
    X = np.random.default_rng(seed).standard_normal((2 * n, n))
    return X.T @ X


def test_same_bytes_computed_once_other_bytes_again():
    calls = []

    def f(A, k):
        calls.append(k)
        return A.sum() * k

    H = _H()
    assert _memo.memo("t", H, f, 2) == _memo.memo("t", H.copy(), f, 2)     # same bytes, new array
    assert calls == [2]
    _memo.memo("t", H, f, 3)                                          # other arguments
    G = H.copy()
    G[4, 7] = np.nextafter(G[4, 7], np.inf)                           # one bit
    _memo.memo("t", G, f, 2)
    assert calls == [2, 3, 2]


def test_memory_order_and_strides_are_part_of_the_key():
    seen = []
    A = np.arange(12.0).reshape(3, 4)
    for view in (A, np.asfortranarray(A), A[::-1]):
        _memo.memo("order", view, lambda B: seen.append(B.copy()) or 0)
    assert len(seen) == 3                          # the same values differ from the bytes' view


def test_kept_arrays_are_read_only_and_users_get_copies():
    H = _H()
    spec = hessian_spectrum(H)
    e, V = scipy.linalg.eigh(H, check_finite=False)
    assert np.array_equal(spec.eigvals, e) and np.array_equal(spec.eigvecs, V)   # bit for bit
    spec.eigvecs[:] = 0.0                                    # a user's write ...
    again = hessian_spectrum(H)
    assert np.array_equal(again.eigvecs, V)                  # ... does not reach the memo
    ev = eigvalsh_kept(H)
    assert np.array_equal(ev, scipy.linalg.eigvalsh(H, check_finite=False))
    with pytest.raises(ValueError):
        ev[0] = 1.0


def test_results_larger_than_the_budget_are_not_kept(monkeypatch):
    monkeypatch.setattr(_memo, "MAX_BYTES", 1000)
    calls = []
    big = np.ones((20, 20))                       # 3200 bytes of result
    for _ in range(2):
        _memo.memo("big", big, lambda A: calls.append(1) or A * 2.0)
    assert len(calls) == 2
    small = [np.full((5, 5), float(i)) for i in range(8)]      # 200 bytes each: 5 fit
    for A in small:
        _memo.memo("small", A, lambda A: A * 2.0)
    assert len(_memo._store) == 5


def test_many_small_results_stay_and_the_byte_count_stays_exact(monkeypatch):
    """A few hundred small results are all kept (a cap of 32 recomputed a third of
    ``check --quick``'s); the running byte count equals the held arrays' bytes through
    evictions by size and by number, least recently used first."""
    _memo.clear()
    calls = []
    mats = [np.full((4, 4), float(i)) for i in range(300)]
    for _ in range(2):
        for A in mats:
            _memo.memo("few", A, lambda A: calls.append(1) or A[0].copy())
    assert len(calls) == 300
    monkeypatch.setattr(_memo, "MAX_BYTES", 10 * 32)       # ten 4-float vectors
    new = np.full((4, 4), -1.0)
    _memo.memo("few", new, lambda A: A[0].copy())             # evictions by size
    assert len(_memo._store) == 10 and _memo._held[0] == 320
    assert _memo._held[0] == sum(_memo._nbytes(v) for v in _memo._store.values())
    monkeypatch.setattr(_memo, "MAX_ENTRIES", 3)
    _memo.memo("few", mats[1], lambda A: A[0].copy())         # evictions by number
    assert len(_memo._store) == 3 and _memo._held[0] == 96
    assert [k[1][3] for k in _memo._store] == [_memo.digest(A)[3] for A in (mats[299], new, mats[1])]
    _memo.clear()
    assert _memo._held[0] == 0


def _indefinite_after_psd():
    """The PSD test passes ``H`` (and keeps that), then is asked about ``H - c u u^T``
    (diagonal positive, indefinite) at the same tolerance: True if it refuses it."""
    from gilora_theory._validation import _is_psd
    H = _H()
    assert _is_psd(H, 1e-9)
    u = np.ones(30) / np.sqrt(30)
    bad = H - 2 * scipy.linalg.eigvalsh(H)[-1] * np.outer(u, u)
    assert np.min(np.diag(bad)) > 0 and scipy.linalg.eigvalsh(bad)[0] < 0
    return not _is_psd(bad, 1e-9)


def test_a_non_psd_H_is_still_refused_after_a_psd_one_was_kept():
    assert _indefinite_after_psd()
    W = np.random.default_rng(1).standard_normal((30, 8))
    H = _H()
    compress(W, H, "gptq", 3)
    with pytest.raises(ValueError, match="positive semi-definite"):
        compress(W, H - 2 * scipy.linalg.eigvalsh(H)[-1] * np.full((30, 30), 1 / 30), "gptq", 3)


def test_negative_a_memo_keyed_by_shape_alone_lets_the_indefinite_H_through(monkeypatch):
    monkeypatch.setattr(_memo, "digest", lambda A: (A.shape, A.dtype.str))
    assert not _indefinite_after_psd()


def test_compress_gives_the_same_bits_with_and_without_the_memo():
    """Fourteen methods on one H (as C13 runs them): kept results equal fresh ones."""
    H = _H(40, 2)
    W = np.random.default_rng(3).standard_normal((40, 12))
    methods = ("gptq+olrc", "rtn+olrc", "caldera", "rtn+qera-exact", "refine")
    first = {m: compress(W, H, m, 3, 4) for m in methods}
    again = {m: compress(W, H, m, 3, 4) for m in methods}                 # served from the memo
    for m in methods:
        _memo.clear()
        fresh = compress(W, H, m, 3, 4)
        for got in (first[m], again[m]):
            assert np.array_equal(got.Q, fresh.Q) and np.array_equal(got.L, fresh.L)
            assert np.array_equal(got.R, fresh.R)
            assert got.objective == fresh.objective
