"""An independent, deliberately straightforward reference for the definitions of [1].

Nothing here is blocked, cached or clever, and nothing imports the package's
numerics: loops over rows, columns and alphabet levels, explicit inverses and
explicit matrix square roots. Tests compare the package with these functions.

[1] S. Zhang, R. Saab, "GPTQ-intrinsic LoRA", arXiv:2606.01412 (2026).
"""
import numpy as np
import scipy.linalg


def fit_grid(W, bits, beta=1.0, groupsize=None):
    """Step and zero (G x N_out) of docs/theory.md, "The grid", one column and group at a time."""
    N, N_out = W.shape
    maxq = 2**bits - 1
    size = N if groupsize is None else groupsize
    starts = list(range(0, N, size))
    step = np.zeros((len(starts), N_out))
    zero = np.zeros((len(starts), N_out))
    for g, i0 in enumerate(starts):
        for j in range(N_out):
            col = W[i0:i0 + size, j]
            lo, hi = col.min(), col.max()
            if hi > lo:
                step[g, j] = beta * (hi - lo) / maxq
                zero[g, j] = np.round(-lo * maxq / (hi - lo))
            else:  # constant column c: the package's convention delta = |c| (1 if c = 0)
                step[g, j] = abs(lo) if lo != 0 else 1.0
                zero[g, j] = -np.round(lo / step[g, j])
    return step, zero


def quantize_entry(x, step, zero, maxq, bounded=True):
    """``delta (clip(round(x / delta) + z, 0, maxq) - z)`` for one number."""
    k = np.round(x / step) + zero
    if bounded:
        k = min(max(k, 0.0), maxq)
    return step * (k - zero)


def row_grid(step, zero, groupsize, i):
    """Step and zero rows for input row ``i``."""
    g = 0 if groupsize is None else i // groupsize
    return step[g], zero[g]


def rtn(W, step, zero, bits, groupsize=None, bounded=True):
    """Round every entry to its nearest level."""
    Q = np.zeros_like(W)
    for i in range(W.shape[0]):
        s, z = row_grid(step, zero, groupsize, i)
        for j in range(W.shape[1]):
            Q[i, j] = quantize_entry(W[i, j], s[j], z[j], 2**bits - 1, bounded)
    return Q


def psi(H_lam):
    """Lower-triangular ``Psi`` with ``Psi Psi^T = H_lam^{-1}``: numpy Cholesky of the explicit inverse."""
    return np.linalg.cholesky(np.linalg.inv(H_lam))


def gptq(W, H, step, zero, bits, lam, *, groupsize=None, bounded=True, act_order=False,
         extra_rows=None):
    """Alg. 1 row by row on ``H_lam = H + lam I`` with the reference-GPTQ conventions.

    Dead channels (``H_ii = 0``): ``H_ii := 1`` and ``W_i := 0``. ``act_order``:
    rows by decreasing ``H_ii`` (stable). ``extra_rows`` (r x N_out, with ``H`` then
    of size N + r) are carried along but never quantized (GILoRA).
    Returns ``Q`` and the pre-rounding values ``w~`` (original row order), the
    per-step terms (processing order) and the final extra rows.
    """
    N = W.shape[0]
    H = H.copy()
    W = W.copy()
    for i in range(N):
        if H[i, i] == 0:
            H[i, i] = 1.0
            W[i] = 0.0
    perm = list(range(N))
    if act_order:
        perm = sorted(range(N), key=lambda i: -H[i, i])
    n_all = H.shape[0]
    order = perm + list(range(N, n_all))
    Hp = H[np.ix_(order, order)] + lam * np.eye(n_all)
    P = psi(Hp)
    Wt = W[perm].copy() if extra_rows is None else np.vstack([W[perm], extra_rows])
    Q = np.zeros((N, W.shape[1]))
    pre = np.zeros((N, W.shape[1]))
    terms = np.zeros(N)
    for t in range(N):
        pre[perm[t]] = Wt[t]
        s, z = row_grid(step, zero, groupsize, perm[t])
        for j in range(W.shape[1]):
            Q[perm[t], j] = quantize_entry(Wt[t, j], s[j], z[j], 2**bits - 1, bounded)
        r = Wt[t] - Q[perm[t]]
        terms[t] = np.sum(r**2) / P[t, t] ** 2
        e = r / P[t, t]
        for u in range(t + 1, n_all):
            Wt[u] -= P[u, t] * e
    return Q, pre, terms, Wt[N:]


def gilora(W, H, L, step, zero, bits, lam, **kw):
    """Alg. 3: the Alg. 1 loop on ``[[H, H L], [L^T H, L^T H L]]`` for the first N rows.

    Returns ``Q``, ``w~``, the per-step terms and ``R`` (as :func:`gptq`).
    """
    r = L.shape[1]
    H_aug = np.zeros((W.shape[0] + r, W.shape[0] + r))
    H_aug[:W.shape[0], :W.shape[0]] = H
    H_aug[:W.shape[0], W.shape[0]:] = H @ L
    H_aug[W.shape[0]:, :W.shape[0]] = L.T @ H
    H_aug[W.shape[0]:, W.shape[0]:] = L.T @ H @ L
    return gptq(W, H_aug, step, zero, bits, lam, extra_rows=np.zeros((r, W.shape[1])), **kw)


def error_X(W, Q, X, L=None, R=None):
    """``||X (W - Q - L R)||_F^2`` straight from the definition."""
    D = W - Q if L is None else W - Q - L @ R
    return float(np.sum((X @ D) ** 2))


def sqrt_psd(A):
    """An explicit square root of a symmetric PSD matrix (``scipy.linalg.sqrtm``)."""
    S = scipy.linalg.sqrtm(A)
    return np.real(S)


def olrc(W, Q, H, r, lam):
    """Alg. 2 by explicit square roots: ``M = G^{-1/2} T_r(G^{1/2} (W - Q))``, ``G = H + lam I``.

    Returns ``M`` and the value ``sum_{i>r} a_i^2``; for ``lam = 0`` the
    pseudo-inverse of the square root is used.
    """
    G = H + lam * np.eye(H.shape[0])
    S = sqrt_psd(G)
    U, a, Vt = np.linalg.svd(S @ (W - Q), full_matrices=False)
    Sinv = np.linalg.inv(S) if lam > 0 else np.linalg.pinv(S)
    M = Sinv @ (U[:, :r] * a[:r]) @ Vt[:r]
    return M, float(np.sum(a[r:] ** 2))


def f_column(t, q, G):
    """``(t - q)^T G (t - q)`` for one column."""
    d = t - q
    return float(d @ G @ d)


def bid_up_sweep(T, Q0, G, step, zero, bits, groupsize=None):
    """One Bid-Up sweep by brute force: each coordinate moves to the level of least ``f``.

    For row i and column j every level of the alphabet is tried and the full
    column objective recomputed; rows with ``G_ii = 0`` are left alone.
    """
    Q = Q0.copy()
    maxq = 2**bits - 1
    for i in range(Q.shape[0]):
        if G[i, i] <= 0:
            continue
        s, z = row_grid(step, zero, groupsize, i)
        for j in range(Q.shape[1]):
            best, best_f = Q[i, j], None
            for k in range(maxq + 1):
                q = Q[:, j].copy()
                q[i] = s[j] * (k - z[j])
                f = f_column(T[:, j], q, G)
                if best_f is None or f < best_f:
                    best, best_f = q[i], f
            Q[i, j] = best
    return Q


def first_difference_is_tie(Q, Q_ref, pre_ref, step_rows, perm, tol):
    """Q and the reference Q agree, or first differ (in processing order) at a rounding tie.

    ``step_rows`` (N x N_out) is the grid step of every entry, ``tol`` the
    tie tolerance (absolute). Returns None when identical, else the step t of
    the tie; raises AssertionError with the numbers when it is not a tie.
    """
    differ = Q != Q_ref
    if not differ.any():
        return None
    t = next(t for t, i in enumerate(perm) if differ[i].any())
    i = perm[t]
    cols = np.flatnonzero(differ[i])
    gap = np.abs(Q[i, cols] - Q_ref[i, cols])
    mid = 0.5 * (Q[i, cols] + Q_ref[i, cols])
    dist = np.abs(pre_ref[i, cols] - mid)
    one_step = np.all(np.abs(gap - step_rows[i, cols]) <= 4 * np.finfo(float).eps * step_rows[i, cols])
    assert one_step and np.all(dist <= tol), (
        f"Q differs from the reference at row {i} (step {t}), columns {cols}: gap {gap} "
        f"(step {step_rows[i, cols]}), pre-rounding value {dist} from the midpoint > tol {tol}")
    return t
