"""Provenance of a computed result: package version, git commit, library versions, threads.

Recorded in every file the package writes results into (``sweep.json``,
``report.json``, the benchmark's results, the extraction manifest), so a number
can be traced to the code, libraries and thread counts that produced it
(docs/theory.md, "Reproducibility"). Standard library, NumPy and SciPy only.
"""
from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

import numpy as np
import scipy

__all__ = ["provenance", "git_commit", "THREAD_VARIABLES"]

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                    "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")
"""Environment variables that set BLAS/OpenMP thread counts (recorded as found, or None)."""


def git_commit(path=None) -> str | None:
    """The commit of the git checkout holding ``path`` (default: this package), or None.

    ``None`` when the package is not run from a checkout or git is not installed.
    A ``+dirty`` suffix marks uncommitted changes to tracked files.
    """
    where = Path(path) if path is not None else Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True,
                              text=True, timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=where,
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def _blas() -> str:
    """Name and version of the BLAS NumPy was built against."""
    try:
        cfg = np.show_config(mode="dicts")
    except TypeError:  # NumPy < 1.25 has no mode argument
        return "unknown"
    blas = cfg.get("Build Dependencies", {}).get("blas", {})
    return f"{blas.get('name')} {blas.get('version')}"


def provenance(*, seeds=None, data_hashes=None) -> dict:
    """A JSON-able record of what produced a result.

    Parameters
    ----------
    seeds : list of int, optional
        Seeds of the random draws behind the result.
    data_hashes : dict, optional
        Data hashes of the layers used (``gilora_theory.experiments.sweep.data_hash``).

    Returns
    -------
    dict
        ``gilora_theory`` (version), ``git_commit`` (None outside a checkout),
        ``python``, ``numpy``, ``scipy``, ``blas``, ``platform``, ``cpu_count``,
        ``threads`` (the variables of :data:`THREAD_VARIABLES`), and ``seeds`` and
        ``data_hashes`` when given.
    """
    from . import __version__
    out = {"gilora_theory": __version__, "git_commit": git_commit(),
           "python": platform.python_version(), "numpy": np.__version__,
           "scipy": scipy.__version__, "blas": _blas(), "platform": platform.platform(),
           "cpu_count": os.cpu_count(),
           "threads": {k: os.environ.get(k) for k in THREAD_VARIABLES}}
    if seeds is not None:
        out["seeds"] = [int(s) for s in seeds]
    if data_hashes is not None:
        out["data_hashes"] = dict(data_hashes)
    return out
