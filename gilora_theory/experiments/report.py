"""The verdict table and the written reports of ``gilora-theory check``.

Takes the :class:`~gilora_theory.experiments.paper.ClaimResult` list of a run and renders

- the verdict table (one line per claim, plain text for a terminal),
- ``report.md``: verdicts, numbers, the tables behind the comparison claims and
  links to the figures, and
- ``report.json``: claim id -> ``{"verdict", "title", "summary", "metrics"}``
  plus a ``"meta"`` entry (seed, mode, data, timings and the provenance of
  :func:`gilora_theory.provenance.provenance`).

Both files are written atomically (:func:`gilora_theory.data.io.atomic_write`); no
value in ``report.json`` is NaN (non-finite floats become ``null``).

References
----------
[1] S. Zhang, R. Saab, "GPTQ-intrinsic LoRA", arXiv:2606.01412 (2026).
"""
from __future__ import annotations

import math
import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import _validation as _v
from ..data.io import atomic_write, jsonable, writable_folder, write_json

__all__ = ["verdict_table", "report_markdown", "report_dict", "write_report",
           "markdown_table", "exit_status", "CheckRun", "run_check", "claim_figures", "limited_threads"]

_RULE_WIDTH = 100


def exit_status(results) -> int:
    """0 when every claim holds (PASS or REPORT), 1 when any claim FAILs."""
    return 1 if any(res.verdict == "FAIL" for res in results) else 0


def verdict_table(results) -> str:
    """One line per claim: ``VERDICT  Cn  title: summary`` under a header line."""
    lines = [f"{'verdict':<7}  {'claim':<5}  what was checked", "-" * _RULE_WIDTH]
    for res in results:
        lines.append(f"{res.verdict:<7}  {res.claim:<5}  {res.title}: {res.summary}")
    n_fail = sum(res.verdict == "FAIL" for res in results)
    lines.append("-" * _RULE_WIDTH)
    lines.append(f"{len(results)} claims: {len(results) - n_fail} hold, {n_fail} fail")
    return "\n".join(lines)


def _cell(value) -> str:
    """A table cell: floats with 4 significant digits, everything else as text."""
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.4g}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_cell(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_cell(v) for v in value) + "]"
    return str(value).replace("|", "\\|")


def markdown_table(df, *, max_rows: int = 60) -> str:
    """A pandas DataFrame as a GitHub markdown table (first ``max_rows`` rows)."""
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in df.head(max_rows).itertuples(index=False):
        lines.append("| " + " | ".join(_cell(v) for v in row) + " |")
    if len(df) > max_rows:
        lines.append(f"\n({len(df) - max_rows} more rows in report.json)")
    return "\n".join(lines)


def _metric_lines(metrics: dict) -> list[str]:
    return [f"- `{key}`: {_cell(value)}" for key, value in metrics.items()]


def report_markdown(results, *, figures=(), meta=None, notes=()) -> str:
    """The text of ``report.md``.

    Parameters
    ----------
    results : sequence of ClaimResult
    figures : sequence of (title, path) pairs
        Figures written next to the report; paths relative to the report.
    meta : dict, optional
        Run description (mode, seed, data, timings), listed at the top.
    notes : sequence of str
        Extra remarks (e.g. "live MiniLM skipped: torch not importable").
    """
    out = ["# gilora-theory check: paper claims of [1] arXiv:2606.01412", ""]
    for key, value in (meta or {}).items():
        out.append(f"- {key}: {_cell(value) if not isinstance(value, (list, tuple)) else ', '.join(map(str, value))}")
    out += [f"- note: {note}" for note in notes]
    out += ["", "## Verdicts", "", "| claim | verdict | title | numbers |", "|---|---|---|---|"]
    for res in results:
        out.append(f"| {res.claim} | **{res.verdict}** | {_cell(res.title)} | {_cell(res.summary)} |")
    out += ["", "A claim FAILs only when data contradicts it; REPORT claims (C13, C14) compare "
            "methods and FAIL only if an inequality that must hold is violated.", ""]
    out += ["## Figures", ""]
    if figures:
        out += [f"![{title}]({path})" for title, path in figures]
    else:
        out.append("No figures were written (see notes above).")
    for res in results:
        out += ["", f"## {res.claim} {res.title}: {res.verdict}", "", res.summary, ""]
        out += _metric_lines(res.metrics)
        if res.table is not None and len(res.table):
            out += ["", markdown_table(res.table)]
    return "\n".join(out) + "\n"


def report_dict(results, *, meta=None) -> dict:
    """``report.json`` content: claim id -> verdict, title, summary, metrics, table rows."""
    out = {}
    for res in results:
        entry = {"verdict": res.verdict, "title": res.title, "summary": res.summary,
                 "metrics": res.metrics}
        if res.table is not None:
            entry["table"] = res.table
        out[res.claim] = entry
    out["meta"] = dict(meta or {})
    return jsonable(out)


def write_report(out_dir, results, *, figures=(), meta=None, notes=()) -> tuple[Path, Path]:
    """Write ``out_dir/report.md`` and ``out_dir/report.json`` atomically.

    ``figures`` holds (title, path) pairs; paths are written relative to ``out_dir``.
    Returns the two paths.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rel = [(title, os.path.relpath(Path(path), out_dir)) for title, path in figures]
    md_path, json_path = out_dir / "report.md", out_dir / "report.json"
    with atomic_write(md_path, "w") as f:
        f.write(report_markdown(results, figures=rel, meta=meta, notes=notes))
    write_json(json_path, report_dict(results, meta=dict(meta or {}, notes=list(notes))))
    return md_path, json_path


_FIGURES = (
    # (claim, plotting function, file name, title)
    ("C6", "plot_bound_chain", "bound_chain.png", "C6: slack of the upper-bound chain"),
    ("C9", "plot_refinement_traces", "refinement_traces.png", "C9: refinement traces"),
    ("C12", "plot_bound_scaling", "bound_scaling.png", "C12: upper against lower bound"),
    ("C13", "plot_method_comparison", "method_comparison.png", "C13: method comparison"),
    ("C14", "plot_rank_benefit", "rank_benefit.png", "C14: predicted against realised rank benefit"),
    ("C16", "plot_allocation", "allocation.png", "C16: error against budget per allocation rule"),
)


def claim_figures(results, out_dir) -> tuple[list, list]:
    """Draw the figures of the claims' tables with :mod:`gilora_theory.experiments.plotting`.

    Returns ``(figures, notes)``: (title, path) pairs of the PNG files written to
    ``out_dir/figures`` and a note for each figure that could not be drawn
    (plotting or matplotlib missing, or the claim's table absent).
    """
    try:
        from . import plotting
    except ImportError as exc:
        return [], [f"no figures: gilora_theory.experiments.plotting is not importable ({exc})"]
    tables = {res.claim: res for res in results}
    figures, notes = [], []
    for claim, func, name, title in _FIGURES:
        (Path(out_dir) / "figures" / name).unlink(missing_ok=True)  # never leave a stale figure
        res = tables.get(claim)
        table = None if res is None else (res.figure_data if res.figure_data is not None
                                          else res.table)
        if table is None or not len(table) or not hasattr(plotting, func):
            notes.append(f"figure {name} not drawn: no {claim} table or no plotting.{func}")
            continue
        try:
            fig = getattr(plotting, func)(table)
        except (KeyError, ValueError, TypeError) as exc:
            notes.append(f"figure {name} not drawn: plotting.{func} refused the {claim} table "
                         f"({type(exc).__name__}: {exc})")
            continue
        figures.append((title, plotting.save_figure(fig, Path(out_dir) / "figures" / name)))
    return figures, notes


@dataclass(frozen=True)
class CheckRun:
    """What :func:`run_check` did.

    Attributes
    ----------
    results : list of ClaimResult
        One per claim, in order.
    markdown : pathlib.Path
        ``report.md``.
    json : pathlib.Path
        ``report.json``.
    figures : list of (str, pathlib.Path)
        Figures written.
    notes : list of str
        Data sources skipped, figures not drawn.
    exit_status : int
        0 when every claim holds, 1 when one FAILs.
    """

    results: list
    markdown: Path
    json: Path
    figures: list
    notes: list
    exit_status: int


def run_check(out_dir, *, quick: bool = False, seed: int = 0, claims=None, live: bool = True,
              progress: bool = True, threads: int = 1) -> CheckRun:
    """The main job: every claim of [1] on the default data, then the reports and figures.

    Parameters
    ----------
    out_dir : path
        Folder for ``report.md``, ``report.json`` and ``figures/`` (created).
    quick : bool, default False
        The quick sweeps (minutes) instead of the full ones.
    seed : int, default 0
        Seed of the synthetic data and every random draw.
    claims : sequence of str, optional
        Claim ids to run (default all).
    live : bool, default True
        Also use the live MiniLM model when torch is importable.
    progress : bool, default True
        A tqdm progress bar on standard error.
    threads : int, default 1
        Threads of the BLAS libraries and of torch while the claims run
        (:func:`limited_threads`). The claims' matrices are small: on a 2-core
        machine a second thread made ``check --quick`` take 2.2x the CPU time and
        1.2x the wall time. One thread also makes the report's bits independent of
        the machine's core count.
    """
    from . import paper
    seed = _v.check_int("seed", seed, low=0)
    threads = _v.check_int("threads", threads, low=1)
    ids = paper.claim_ids(claims)
    out_dir = writable_folder(out_dir, "out")         # fail now, not after the claims
    t0 = time.perf_counter()
    with limited_threads(threads):
        data = paper.default_data(quick=quick, seed=seed, live=live)
    notes = list(data.notes)
    results = []
    bar = _progress(len(ids), progress)
    with limited_threads(threads):                    # again: torch was loaded with the data
        for cid in ids:
            if bar is not None:
                bar.set_description(f"claim {cid}")
            results.append(paper.run_claim(cid, data))
            if bar is not None:
                bar.update()
    if bar is not None:
        bar.close()
    figures, fig_notes = claim_figures(results, out_dir)
    meta = {"mode": "quick" if quick else "full", "seed": seed, "data": list(data.sources),
            "seconds": round(time.perf_counter() - t0, 1), "exit_status": exit_status(results),
            "threads": threads, "provenance": _provenance(data)}
    md, js = write_report(out_dir, results, figures=figures, meta=meta, notes=notes + fig_notes)
    return CheckRun(results, md, js, figures, notes + fig_notes, exit_status(results))


@contextmanager
def limited_threads(n: int):
    """At most ``n`` threads in the BLAS/OpenMP libraries loaded now, and in torch if loaded.

    ``threadpoolctl.threadpool_limits`` reaches only the libraries already
    loaded when it is entered; enter it again after loading more (torch).
    The previous limits are restored on exit.
    """
    from threadpoolctl import threadpool_limits
    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch is not None else None
    with threadpool_limits(limits=n):
        if torch is not None:
            torch.set_num_threads(n)
        try:
            yield
        finally:
            if torch is not None:
                torch.set_num_threads(before)


def _provenance(data) -> dict:
    """:func:`gilora_theory.provenance.provenance` of a check: the seed, real layers' data hashes.

    Synthetic layers are identified by their generator and seed (``data.sources``);
    real layers by :func:`gilora_theory.experiments.sweep.data_hash` of their stored bytes.
    """
    from ..provenance import provenance
    from .sweep import data_hash
    hashes = {lay.name: data_hash(lay.W, lay.H) for lay in data.layers if lay.name in data.real}
    return provenance(seeds=[data.seed], data_hashes=hashes)


def _progress(total: int, enabled: bool):
    """A tqdm bar on standard error, or None."""
    if not enabled:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, unit="claim", file=sys.stderr)
