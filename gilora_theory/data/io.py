"""Layer files and atomic writes.

``LAYER.npz`` holds ``W`` (N x N_out, rows = input features) and either ``X``
(m x N) or ``H`` (N x N, with optional scalar ``n_samples``); optional string
``name``; optional per-input-channel statistics ``x_abs_mean`` and ``x_abs_max``
(N,), the mean and max of ``|x_i|`` over the calibration tokens (LQER's scale
needs the mean; computed from ``X`` when the file holds ``X``). Files are read
with ``allow_pickle=False``: an object array is refused without being unpickled. Every file the package writes appears atomically
(written to a temporary name in the same folder, then renamed).

``OUT.npz`` (written by ``gilora-theory run``, :func:`save_result`) holds ``Q`` as
integer grid codes ``Q_codes`` (the smallest unsigned dtype holding ``2^b - 1``)
with the grid ``step``, ``zero`` (each ``(1, N_out)``), so that::

    Q = step * (Q_codes - zero)

reproduces the method's ``Q`` bit for bit, plus ``L``, ``R``, ``bits``, ``beta``,
``bounded`` and, with a quantized branch, its grids. A ``Q`` that is not on a
bounded grid (the unbounded grid of the theory) is stored as float64 ``Q``, as
files written before this format always were; :func:`load_result` reads both.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import _validation as _v
from ..objective import hessian

__all__ = ["Layer", "load_layer", "save_layer", "atomic_write", "save_npz", "write_json",
           "writable_folder", "check_folder", "writable_file", "save_result", "load_result", "code_dtype",
           "jsonable"]


@dataclass(frozen=True)
class Layer:
    """One layer: weights and calibration.

    Attributes
    ----------
    W : (N, N_out) ndarray
    H : (N, N) ndarray
        ``X^T X`` (computed from ``X`` when the file holds ``X``).
    X : (m, N) ndarray or None
    n_samples : int or None
        Rows of ``X`` accumulated into ``H``, if known.
    name : str
    x_abs_mean : (N,) ndarray or None
        ``mean_t |x_ti|`` per input feature over the calibration tokens, if known.
    x_abs_max : (N,) ndarray or None
        ``max_t |x_ti|`` per input feature, if known.
    """

    W: np.ndarray
    H: np.ndarray
    X: np.ndarray | None = None
    n_samples: int | None = None
    name: str = "layer"
    x_abs_mean: np.ndarray | None = None
    x_abs_max: np.ndarray | None = None

    def __post_init__(self):
        """A layer with ``X`` gets its channel statistics from ``X`` where not given."""
        if self.X is not None and (self.x_abs_mean is None or self.x_abs_max is None):
            mean, top = channel_statistics(self.X.shape[1], self.X, self.x_abs_mean, self.x_abs_max)
            object.__setattr__(self, "x_abs_mean", mean)
            object.__setattr__(self, "x_abs_max", top)


_KEYS = ("W", "X", "H", "n_samples", "name", "x_abs_mean", "x_abs_max")
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


def load_layer(path, *, psd: bool = True) -> Layer:
    """Read and validate a ``LAYER.npz`` (see module docstring).

    ``psd=False`` skips only the positive semi-definiteness test of a stored
    ``H`` (shape, finiteness and symmetry are still checked): for a caller that
    passes ``H`` straight to a public function which tests it anyway, so that a
    large ``H`` is factorised once, not twice.

    The file's first bytes are checked before ``numpy.load`` sees it, and only
    the keys listed above are read, each with ``allow_pickle=False``: a pickle
    (bare, or as an object array inside the archive) is refused, never unpickled.

    Raises
    ------
    FileNotFoundError, ValueError, TypeError
        Missing file, unreadable/corrupt archive, pickled objects, missing or
        misnamed keys, bad shapes or values (each message names the file and key).
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"layer file {str(path)!r} is a folder; give a LAYER.npz file "
                         "(gilora-theory layers --export NAME --out L.npz writes one)")
    if not path.is_file():
        raise FileNotFoundError(f"layer file {str(path)!r} does not exist")
    with open(path, "rb") as f:
        head = f.read(6)
    if not head.startswith(_ZIP_MAGIC):
        raise ValueError(f"{path}: not an .npz archive; {_describe(head)}. "
                         "Write layer files with numpy.savez or gilora_theory.data.io.save_layer")
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = set(z.files)
            data = {k: _read_key(z, k, path) for k in _KEYS if k in keys}
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
        raise ValueError(f"{path}: not a readable .npz file ({exc}); is it truncated or corrupt?") from None
    try:
        return _layer_from_arrays(data, keys, str(path), psd)
    except (ValueError, TypeError) as exc:
        raise type(exc)(f"{path}: {exc}") from None


def _describe(head: bytes) -> str:
    """What a file that is not a zip archive looks like, from its first bytes."""
    if not head:
        return "the file is empty"
    if head[:1] == b"\x80":
        return "it is a Python pickle, which is refused (never unpickled)"
    if head.startswith(b"\x93NUMPY"):
        return "it is a single .npy array"
    return f"it starts with bytes {head!r}"


def _read_key(z, key: str, path: Path) -> np.ndarray:
    """One array of the archive; object arrays are refused by ``allow_pickle=False``."""
    try:
        return z[key]
    except ValueError as exc:
        if "allow_pickle" in str(exc) or "object" in str(exc).lower():
            raise ValueError(f"{path}: key {key!r} holds pickled Python objects, which are refused "
                             "(never unpickled); store plain float arrays") from None
        raise ValueError(f"{path}: key {key!r} is not a readable array ({exc}); "
                         "is the file truncated or corrupt?") from None


def _layer_from_arrays(data: dict, keys: set, where: str, psd: bool = True) -> Layer:
    if "W" not in data:
        raise ValueError(f"missing key 'W' (found {sorted(keys)}); a layer file needs W and X or H")
    if ("X" in data) == ("H" in data):
        raise ValueError(f"needs exactly one of keys 'X' or 'H'; found {sorted(keys)}")
    W = _v.as_matrix("W", data["W"])
    X = None
    if "X" in data:
        X = _v.as_matrix("X", data["X"])
        _v.check_same_rows("X", X, "W", W, axis_a=1)
        H = hessian(X)
    else:
        H = _v.check_hessian(data["H"], W.shape[0], psd=psd)
    n_samples = _scalar(data, "n_samples", "iuf", "a positive integer")
    if n_samples is not None and not (float(n_samples).is_integer() and n_samples >= 1):
        raise ValueError(f"key 'n_samples' must be a positive integer; got {n_samples}")
    n_samples = X.shape[0] if X is not None else (None if n_samples is None else int(n_samples))
    name = _scalar(data, "name", "U", "a string")
    stats = channel_statistics(W.shape[0], X, data.get("x_abs_mean"), data.get("x_abs_max"))
    return Layer(W, H, X, n_samples, Path(where).stem if name is None else str(name), *stats)


def channel_statistics(N: int, X=None, x_abs_mean=None, x_abs_max=None) -> tuple:
    """Validated ``(x_abs_mean, x_abs_max)`` (each ``(N,)`` or None), computed from ``X`` where absent.

    Each must be finite and ``>= 0``, and the mean may not exceed the max
    (beyond float32 rounding).
    """
    stats = [None if v is None else _v.check_channel_statistic(k, v, N)
             for k, v in (("x_abs_mean", x_abs_mean), ("x_abs_max", x_abs_max))]
    if X is not None:
        A = np.abs(X)
        stats = [A.mean(axis=0) if stats[0] is None else stats[0],
                 A.max(axis=0) if stats[1] is None else stats[1]]
    mean, top = stats
    if mean is not None and top is not None:
        over = mean > top * (1 + 8 * np.finfo(np.float32).eps)
        if np.any(over):
            i = int(np.argmax(over))
            raise ValueError(f"x_abs_mean must not exceed x_abs_max; at feature {i} the mean is "
                             f"{mean[i]:.6g} and the max {top[i]:.6g}")
    return mean, top


def _scalar(data: dict, key: str, kinds: str, what: str):
    """An optional scalar key of dtype kind in ``kinds`` (None when absent)."""
    if key not in data:
        return None
    a = np.asarray(data[key])
    if a.ndim != 0 or a.dtype.kind not in kinds:
        raise ValueError(f"key {key!r} must be {what} scalar; got dtype {a.dtype}, shape {a.shape}")
    return a.item()


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


@contextlib.contextmanager
def atomic_write(path, mode: str = "wb"):
    """Open a temporary file beside ``path``; rename it to ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the usual permissions
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def writable_folder(path, name: str = "out") -> Path:
    """``path`` as a folder that exists and takes files, checked before a long job writes to it.

    Creates the folder (and its parents) if needed and writes and removes a
    probe file in it, so that a folder that cannot be written (under a file,
    on a read-only file system, without permission) fails at once, naming the
    argument ``name``, instead of at the end of the job.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{name} must be a folder; {str(path)!r} is a file")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise OSError(f"{name} must be a writable folder; {str(path)!r}: "
                      f"{exc.strerror or exc}") from None
    return path


def check_folder(path, name: str = "--out") -> Path:
    """Like :func:`writable_folder`, but leaves nothing behind: a folder that does not
    exist yet is created, probed and removed again (with any parents it needed)."""
    if str(path) == "":
        raise ValueError(f"{name} must be a folder path; got an empty string")
    path = Path(path)
    if path.exists():
        return writable_folder(path, name)
    created = [p for p in [path, *path.parents] if not p.exists()]
    try:
        writable_folder(path, name)
    finally:
        for p in created:                 # deepest first
            with contextlib.suppress(OSError):
                p.rmdir()
    return path


def writable_file(path, name: str = "--out", *, inputs=()) -> Path:
    """``path`` as an output file, checked before any work: never an input, a folder, or unwritable.

    Refuses an empty path, an existing folder, a path that is one of ``inputs``
    (the same file, also through a symbolic or hard link, which the write would
    replace), and a folder that cannot take files (probed as in
    :func:`writable_folder`, which creates it). Each message names ``name``.
    """
    if str(path) == "":
        raise ValueError(f"{name} must be a file path; got an empty string")
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{name} must be a file path; {str(path)!r} is a folder")
    for src in inputs:
        if path.exists() and Path(src).exists() and os.path.samefile(path, src):
            raise ValueError(f"{name} {str(path)!r} is the input file {str(src)!r}; writing it "
                             "would replace the input: choose another output name")
    writable_folder(path.parent, name=f"the folder of {name}")
    return path


def save_npz(path, *, compressed: bool = True, **arrays) -> None:
    """``numpy.savez_compressed`` (``compressed=False``: ``numpy.savez``) written atomically."""
    with atomic_write(path) as f:
        (np.savez_compressed if compressed else np.savez)(f, **arrays)


def code_dtype(bits: int) -> np.dtype:
    """The smallest unsigned integer dtype holding the codes ``0, ..., 2^bits - 1``."""
    return np.dtype(np.uint8 if bits <= 8 else np.uint16 if bits <= 16 else np.uint32)


def _grid_codes(Q: np.ndarray, grid):
    """Integer codes of ``Q`` on ``grid`` when ``step * (codes - zero)`` gives ``Q`` back
    bit for bit (bounded per-column grid); else None."""
    if not grid.bounded or grid.step.shape[0] != 1:
        return None
    codes = np.empty(Q.shape, dtype=code_dtype(grid.bits))
    for i in range(0, Q.shape[0], _ROWS):          # row blocks: no N x N_out temporaries
        rows = slice(i, i + _ROWS)
        with np.errstate(divide="ignore", invalid="ignore"):
            k = np.round(Q[rows] / grid.step) + grid.zero
        if not (np.all(np.isfinite(k)) and k.min() >= 0 and k.max() <= grid.maxq):
            return None
        codes[rows] = k
        if not np.array_equal(grid.step * (codes[rows] - grid.zero), Q[rows]):
            return None
    return codes


_ROWS = 512
"""Rows per block when :func:`_grid_codes` checks that the codes give ``Q`` back."""


def save_result(path, Q, L, R, grid, **extra) -> None:
    """Write a compression result ``Q + L R`` as ``OUT.npz`` (format in the module docstring).

    Parameters
    ----------
    path : str or path
    Q : (N, N_out) ndarray
        On ``grid``; stored as integer codes when they reproduce it exactly.
    L : (N, r) ndarray
    R : (r, N_out) ndarray
    grid : Grid
    **extra : array_like
        Further arrays stored as given (e.g. the branch's grids).

    Stored uncompressed: zlib on a large float array costs more time than the
    method that produced it, and the codes are already ``b`` bits of 8 or 16.
    """
    codes = _grid_codes(Q, grid)
    arrays = {"Q": Q} if codes is None else {"Q_codes": codes}
    save_npz(path, compressed=False, **arrays, L=L, R=R, step=grid.step, zero=grid.zero,
             bits=np.asarray(grid.bits), beta=np.asarray(grid.beta),
             bounded=np.asarray(grid.bounded), **extra)


def load_result(path) -> dict:
    """The arrays of an ``OUT.npz`` by name, with float64 ``Q`` reconstructed from codes.

    Reads both formats: ``Q_codes`` (``Q = step * (Q_codes - zero)``) and the
    older float64 ``Q``. Read with ``allow_pickle=False``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"result file {str(path)!r} does not exist")
    try:
        with np.load(path, allow_pickle=False) as z:
            out = {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable result file ({exc}); is it truncated?") from None
    if "Q_codes" in out:
        out["Q"] = out["step"] * (out.pop("Q_codes") - out["zero"])
    if "Q" not in out:
        raise ValueError(f"{path}: neither 'Q' nor 'Q_codes' found (keys {sorted(out)})")
    return out


def save_layer(path, W, *, H=None, X=None, n_samples=None, name=None, x_abs_mean=None,
               x_abs_max=None, compressed: bool = False) -> None:
    """Write a ``LAYER.npz`` atomically (exactly one of ``H`` or ``X``).

    The arrays are validated as :func:`load_layer` would (a file that could not
    be read back is never written) and stored unchanged. Uncompressed by default
    (``compressed=True``: zlib, as :func:`numpy.savez_compressed`): float64 weights
    and Gram matrices shrink by only about 7% under zlib, and inflating them made
    loading a 4096 x 4096 layer several times slower (1.4-1.7 s against 0.2 s);
    :func:`load_layer` reads both kinds.
    """
    if (H is None) == (X is None):
        raise ValueError("give exactly one of H or X")
    Wv = _v.as_matrix("W", W)
    if H is not None:
        _v.check_hessian(H, Wv.shape[0])
    else:
        _v.check_same_rows("X", _v.as_matrix("X", X), "W", Wv, axis_a=1)
    channel_statistics(Wv.shape[0], None, x_abs_mean, x_abs_max)
    arrays = {"W": np.asarray(W), "H" if H is not None else "X": np.asarray(H if H is not None else X)}
    if n_samples is not None:
        n = _v.check_int("n_samples", n_samples, low=1)
        arrays["n_samples"] = np.asarray(n)
    if name is not None:
        arrays["name"] = np.asarray(str(name))
    for key, value in (("x_abs_mean", x_abs_mean), ("x_abs_max", x_abs_max)):
        if value is not None:
            arrays[key] = np.asarray(value)
    save_npz(path, compressed=compressed, **arrays)


def write_json(path, obj) -> None:
    """Write ``obj`` as indented JSON atomically."""
    with atomic_write(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=False)
        f.write("\n")


def jsonable(obj):
    """Plain JSON values: NumPy scalars and arrays as Python ones, non-finite floats as None
    (never NaN in a JSON output), DataFrames as row records, keys as strings."""
    if hasattr(obj, "to_dict") and hasattr(obj, "columns"):
        return jsonable(obj.to_dict(orient="records"))
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    return obj
