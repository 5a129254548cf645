"""Input validation at the public boundary (private; kernels trust their inputs).

Every check raises ``TypeError`` for a wrong type, ``ValueError`` for a wrong
value, naming the argument, what was expected, what arrived and how to fix it.
"""
from __future__ import annotations

import numbers

import numpy as np
import scipy.linalg
import scipy.linalg.lapack

from . import _memo

__all__ = [
    "NumericalError", "as_matrix", "check_bits", "check_beta", "check_int",
    "check_damp", "check_hessian", "check_rank", "check_same_rows", "check_finite_output",
]

_EPS = np.finfo(np.float64).eps


class NumericalError(np.linalg.LinAlgError):
    """A numerical failure (e.g. a Hessian that is not positive definite after damping)."""


def as_matrix(name: str, A, *, ndim: int = 2, allow_empty: bool = False,
              dtype=np.float64) -> np.ndarray:
    """Return ``A`` as a finite float64 array with ``ndim`` dimensions.

    float32 and float64 inputs are accepted (float32 is promoted); integer,
    boolean, complex, object and float16 inputs are refused.
    """
    if isinstance(A, (str, bytes)) or A is None:
        raise TypeError(f"{name} must be a float32 or float64 array; got {type(A).__name__}")
    try:
        arr = np.asarray(A)
    except ValueError as exc:
        raise ValueError(f"{name} must be a rectangular array; {exc}") from None
    if arr.dtype not in (np.float32, np.float64):
        raise TypeError(
            f"{name} must be a float32 or float64 array; got dtype {arr.dtype}. "
            f"Convert it explicitly, e.g. {name}.astype(numpy.float64)"
            + (" (complex values are not supported)" if np.iscomplexobj(arr) else ""))
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-dimensional; got shape {arr.shape}")
    if not allow_empty and arr.size == 0:
        raise ValueError(f"{name} must not be empty; got shape {arr.shape}")
    arr = np.asarray(arr, dtype=dtype)
    if not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise ValueError(f"{name} must be finite; found {arr[tuple(bad)]} at index {tuple(int(i) for i in bad)}")
    return arr


def check_int(name: str, value, *, low: int, high: int | None = None) -> int:
    """An integer (not bool, not a float) in ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer; got {value!r} of type {type(value).__name__}")
    value = int(value)
    if value < low or (high is not None and value > high):
        rng = f"[{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be in {rng}; got {value}")
    return value


def check_bits(name: str, bits) -> int:
    """A bit-width in [1, 16]."""
    return check_int(name, bits, low=1, high=16)


def check_rank(rank, N: int, N_out: int) -> int:
    """A rank in [0, min(N, N_out)]."""
    return check_int("rank", rank, low=0, high=min(N, N_out))


def check_float(name: str, value, *, low: float = 0.0, low_open: bool = False,
                high: float | None = None) -> float:
    """A finite real number in the stated range."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number; got {value!r} of type {type(value).__name__}")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite; got {value}")
    if value < low or (low_open and value == low) or (high is not None and value > high):
        lo = f"({low}" if low_open else f"[{low}"
        hi = f"{high}]" if high is not None else "inf)"
        raise ValueError(f"{name} must be in {lo}, {hi}; got {value}")
    return value


def check_beta(beta) -> float:
    """Clipping factor in (0, 1]."""
    return check_float("beta", beta, low=0.0, low_open=True, high=1.0)


def check_damp(damp) -> float:
    """Relative damping ``alpha >= 0``."""
    return check_float("damp", damp, low=0.0)


def check_same_rows(name_a: str, a: np.ndarray, name_b: str, b: np.ndarray,
                    axis_a: int = 0, axis_b: int = 0) -> None:
    """Shapes agree along the stated axes."""
    if a.shape[axis_a] != b.shape[axis_b]:
        raise ValueError(
            f"{name_a} has shape {a.shape} and {name_b} has shape {b.shape}: "
            f"axis {axis_a} of {name_a} must equal axis {axis_b} of {name_b}")


def check_same_shape(name: str, a: np.ndarray, ref_name: str, ref: np.ndarray) -> None:
    """Raise ``ValueError`` unless ``a`` has ``ref``'s shape (e.g. ``Q`` and ``W``)."""
    if a.shape != ref.shape:
        raise ValueError(f"{name} must have {ref_name}'s shape {ref.shape}; got {a.shape}")


def check_hessian(H, N: int | None = None, *, name: str = "H", psd: bool = True) -> np.ndarray:
    """A finite, symmetric, positive semi-definite (within tolerance) N x N matrix.

    Symmetry tolerance: ``|H - H^T| <= 64 eps max|H|`` (the residual of an
    accumulated ``X^T X`` is a few eps). PSD tolerance: smallest eigenvalue
    ``>= -64 N eps max|H|``. The exact symmetric part ``0.5 H + 0.5 H^T`` is
    returned; an exactly symmetric float64 ``H`` is returned as given, without
    a copy (a contiguous copy only if its memory is strided), so callers must
    never write into the result.
    """
    H = as_matrix(name, H)
    if H.shape[0] != H.shape[1]:
        raise ValueError(f"{name} must be square; got shape {H.shape}")
    if N is not None and H.shape[0] != N:
        raise ValueError(f"{name} must be {N} x {N} to match W's {N} rows; got shape {H.shape}")
    scale = max_abs(H)
    asym = _asymmetry(H)
    if asym > 64 * _EPS * scale:
        raise ValueError(
            f"{name} must be symmetric; max |{name} - {name}^T| is {asym:.3g} "
            f"(tolerance {64 * _EPS * scale:.3g}). Pass (H + H.T) / 2 if the asymmetry is rounding")
    if asym > 0:
        H = _symmetric_part(H)
    elif not (H.flags.c_contiguous or H.flags.f_contiguous):
        H = H.copy(order="K")
    if psd and scale > 0:
        tol = 64 * H.shape[0] * _EPS * scale
        if np.min(np.diag(H)) < -tol or not _is_psd(H, tol):
            smallest = float(scipy.linalg.eigvalsh(H, subset_by_index=[0, 0])[0])
            if smallest < -tol:
                raise ValueError(
                    f"{name} must be symmetric positive semi-definite; smallest eigenvalue is "
                    f"{smallest:.3g} (tolerance {tol:.3g}). Check how {name} was accumulated "
                    f"(it should be X^T X)")
    return H


def max_abs(A: np.ndarray) -> float:
    """``max |A_ij|`` without an ``|A|`` temporary (two reductions)."""
    return float(max(A.max(), -A.min()))


def _asymmetry(H: np.ndarray, b: int = 256) -> float:
    """``max |H - H^T|`` over ``b x b`` tiles ``i <= j`` (no full-size temporary).

    A tile and its mirror are both cache-sized, so the transposed read is cheap.
    An entry difference that overflows is ``inf`` (and then rejected).
    """
    n, asym = H.shape[0], 0.0
    with np.errstate(over="ignore"):
        for i in range(0, n, b):
            for j in range(i, n, b):
                asym = max(asym, max_abs(H[i:i + b, j:j + b] - H[j:j + b, i:i + b].T))
    return asym


def _symmetric_part(H: np.ndarray, rows: int = 256) -> np.ndarray:
    """``0.5 H + 0.5 H^T`` in row blocks (small temporaries only).

    ``0.5 H + 0.5 H^T`` rather than ``0.5 (H + H^T)``: the latter overflows for
    entries near the float limit.
    """
    S = np.empty_like(H)
    for i in range(0, H.shape[0], rows):
        np.add(0.5 * H[i:i + rows], 0.5 * H[:, i:i + rows].T, out=S[i:i + rows])
    return S


def _is_psd(H: np.ndarray, tol: float) -> bool:
    """Cheap sufficient test: Cholesky of ``H + tol I`` succeeds (kept per bytes of ``H``,
    :mod:`gilora_theory._memo`: one ``H`` validated by several public calls is factored once)."""
    return _memo.memo("psd", H, _cholesky_succeeds, tol)


def _cholesky_succeeds(H: np.ndarray, tol: float) -> bool:
    """Cholesky of ``H + tol I`` succeeds.

    ``H`` is exactly symmetric here, so its copy in its own memory order read
    the other way (``A.T = A``) is the Fortran array LAPACK factors in place.
    """
    A = H.copy(order="K")
    A.flat[::A.shape[0] + 1] += tol
    _, info = scipy.linalg.lapack.dpotrf(A if A.flags.f_contiguous else A.T, lower=1,
                                         overwrite_a=1, clean=0)
    del A, _
    return info == 0


def check_finite_output(what: str, hint: str, **outputs) -> None:
    """Raise ``NumericalError`` if any output (array or scalar) holds inf or NaN.

    Finite inputs can still overflow float64 on the way (``X^T X`` of entries
    near 1e200, an error ``tr(D^T H D)`` of huge weights): this is the check at
    the public boundary that no NaN or inf leaves the package silently.
    ``what`` names the computation, ``hint`` says which argument to rescale.
    """
    for key, value in outputs.items():
        arr = np.asarray(value)
        if arr.dtype.kind in "fc" and not np.all(np.isfinite(arr)):
            bad = np.argwhere(~np.isfinite(arr))[0] if arr.ndim else ()
            where = f" at index {tuple(int(i) for i in bad)}" if arr.ndim else ""
            raise NumericalError(
                f"{what} overflowed float64: {key} is {arr[tuple(bad)]}{where} although the "
                f"inputs are finite. {hint}")


def check_channel_statistic(name: str, x, N: int) -> np.ndarray:
    """A per-input-channel statistic (``x_abs_mean``, ``x_abs_max``): finite, ``>= 0``, shape ``(N,)``."""
    x = as_matrix(name, x, ndim=1)
    if x.shape != (N,):
        raise ValueError(f"{name} must have shape ({N},), one value per input feature (row of W); "
                         f"got shape {x.shape}")
    if np.any(x < 0):
        raise ValueError(f"{name} must be >= 0 (a mean or max of |x|); smallest is {x.min():.3g}")
    return x
