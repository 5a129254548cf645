"""Sphinx extension of the gilora_theory documentation: pages written from the package itself.

At ``builder-inited`` it writes, under ``docs/_generated/`` (not kept in git):

- ``api/``: one page per module, in the order of the package catalogue (the module
  docstrings of :mod:`gilora_theory`, :mod:`gilora_theory.data` and
  :mod:`gilora_theory.experiments`), each with an autosummary table and every
  public name of the module's ``__all__``;
- ``claims.rst``: every claim of :data:`gilora_theory.experiments.paper.CLAIMS`, how
  it is checked (its function's docstring) and the latest verdict recorded in the
  README (the table of the last full ``gilora-theory check``);
- ``gallery/``: the notebooks as pages, executed here with nbclient (about a minute
  on two cores) or, with ``gilora_execute_notebooks = False``, shown without outputs.

The directive ``.. gilora-cli::`` renders the command line from
:func:`gilora_theory.cli.build_parser`, so the page cannot drift from the parser.
A ``missing-reference`` handler lets ``gilora_theory.NAME`` (the re-exported public
API) point at the documented ``gilora_theory.MODULE.NAME``.
"""
from __future__ import annotations

import argparse
import base64
import importlib
import inspect
import os
import re
import sys
import tempfile
from pathlib import Path

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.ext import autosummary
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import make_refnode

_CATALOGUE_LINE = re.compile(r"^(\w+)\s+--\s")


# ----------------------------------------------------------------------------- helpers

def _write(path: Path, text: str) -> None:
    """Write ``text`` only when it differs (an unchanged page is not re-read by Sphinx)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.is_file() or path.read_text() != text:
        path.write_text(text)


def _title(text: str, char: str = "=") -> str:
    return f"{text}\n{char * len(text)}\n"


def catalogue(package: str) -> list[tuple[str, str]]:
    """``(dotted module name, description)`` in the order of ``package``'s catalogue docstring.

    The catalogue is the block of ``name -- description`` lines (descriptions may
    continue on indented lines); a sub-package is replaced by its own catalogue.
    """
    pkg = importlib.import_module(package)
    entries: list[list[str]] = []
    for line in (pkg.__doc__ or "").splitlines():
        m = _CATALOGUE_LINE.match(line)
        if m:
            entries.append([m.group(1), line[m.end():].strip()])
        elif entries and line.startswith(" ") and line.strip() and not entries[-1][1].endswith("\0"):
            entries[-1][1] += " " + line.strip()
        elif entries and not line.strip():
            entries[-1][1] += "\0"  # a blank line ends the entry's description
    out = []
    for name, text in entries:
        dotted = f"{package}.{name}"
        sub = importlib.import_module(dotted)
        out.extend(catalogue(dotted) if hasattr(sub, "__path__") else
                   [(dotted, text.rstrip("\0"))])
    return out


def _directive(obj) -> str:
    if inspect.isclass(obj):
        return "autoclass"
    if inspect.isfunction(obj):
        return "autofunction"
    return "autodata"


# ----------------------------------------------------------------------------- API pages

def api_page(dotted: str) -> str:
    """The reStructuredText API page of module ``dotted``."""
    module = importlib.import_module(dotted)
    names = list(getattr(module, "__all__", []))
    lines = [_title(f"``{dotted}``"), f".. automodule:: {dotted}", ""]
    if names:
        lines += [".. rubric:: Contents", "", ".. autosummary::", "   :nosignatures:", ""]
        lines += [f"   {name}" for name in names] + [""]
    for name in names:
        kind = _directive(getattr(module, name))
        lines.append(f".. {kind}:: {dotted}.{name}")
        if kind == "autodata":
            lines.append("   :no-value:")
        lines.append("")
    return "\n".join(lines)


def write_api(out: Path) -> list[str]:
    entries = catalogue("gilora_theory") + [("gilora_theory.cli", "the command line")]
    for dotted, _ in entries:
        _write(out / "api" / f"{dotted}.rst", api_page(dotted))
    index = [_title("API reference"),
             ".. py:module:: gilora_theory", ".. py:module:: gilora_theory.data",
             ".. py:module:: gilora_theory.experiments", "",
             "One page per module, in the order the theory is told (the catalogue in the",
             "docstring of ``gilora_theory/__init__.py``): the numerical core (NumPy and SciPy",
             "only), then the ``data`` and ``experiments`` sub-packages, then the command",
             "line. The public functions and classes of the core are also importable from",
             "``gilora_theory`` itself (``gilora_theory.gilora`` is",
             ":func:`gilora_theory.gilora.gilora`).", "",
             ".. list-table::", "   :header-rows: 1", "   :widths: 30 70", "",
             "   * - module", "     - what"]
    for dotted, text in entries:
        lines = [f"   * - :doc:`{dotted}`", f"     - {text}"]
        index += lines
    index += ["", ".. toctree::", "   :hidden:", ""] + [f"   {d}" for d, _ in entries]
    _write(out / "api" / "index.rst", "\n".join(index) + "\n")
    return [d for d, _ in entries]


# ----------------------------------------------------------------------------- claims

def readme_verdicts(readme: Path) -> dict[str, tuple[str, str, str]]:
    """``{claim id: (title, verdict, numbers)}`` from the README's verdict table."""
    rows = {}
    for line in readme.read_text().splitlines():
        cells = [c.strip().replace("\\|", "|")               # "\|" is a pipe inside a cell
                 for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]
        m = re.match(r"(C\d+)\s+(.*)", cells[0]) if len(cells) == 3 else None
        if m and line.startswith("|"):
            rows[m.group(1)] = (m.group(2), cells[1], cells[2])
    return rows


def _md_cell(text: str) -> str:
    """A Markdown table cell of the README as reStructuredText (code spans, literal stars)."""
    text = text.replace("*", r"\*").replace("|", r"\|")
    return re.sub(r"`([^`]+)`", r"``\1``", text)


def claims_page(readme: Path) -> str:
    from gilora_theory.experiments.paper import CLAIMS
    verdicts = readme_verdicts(readme)
    lines = [_title("The claims"),
             "Every claim of the paper that the package checks: one function each in",
             ":mod:`gilora_theory.experiments.paper`, run together by ``gilora-theory check``",
             "(and one script each in ``paper_checks/``). A PASS or FAIL is a verdict on the",
             "claim; REPORT marks a comparison reported with its numbers.", "",
             _title("Latest verdicts", "-"),
             "From the README's verdict table (the run it names, seed 0);",
             "a claim without a recorded verdict shows a dash.", "",
             ".. list-table::", "   :header-rows: 1", "   :widths: 8 20 8 64", "",
             "   * - claim", "     - title", "     - verdict", "     - numbers"]
    for cid in CLAIMS:
        title, verdict, numbers = verdicts.get(cid, ("", "-", ""))
        lines += [f"   * - {cid}", f"     - {_md_cell(title)}", f"     - {verdict}",
                  f"     - {_md_cell(numbers)}"]
    lines += ["", _title("How each claim is checked", "-")]
    for cid, func in CLAIMS.items():
        lines += [f".. autofunction:: {func.__module__}.{func.__name__}", "   :no-index:", ""]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- gallery

def _fence(text: str, lang: str) -> str:
    ticks = "````" if "```" in text else "```"
    return f"{ticks}{lang}\n{text.rstrip()}\n{ticks}\n"


def _output_md(out, stem: str, k: str, files: Path) -> str:
    if out.output_type == "stream":
        return _fence(out.text, "text")
    if out.output_type == "error":
        raise RuntimeError(f"notebook {stem} raised {out.ename}: {out.evalue}")
    data = out.get("data", {})
    if "image/png" in data:
        name = f"{stem}_{k}.png"
        (files / name).write_bytes(base64.b64decode(data["image/png"]))
        return f"![output]({files.name}/{name})\n"
    if "text/html" in data:
        return "```{raw} html\n" + data["text/html"].rstrip() + "\n```\n"
    if "text/plain" in data:
        return _fence(data["text/plain"], "text")
    return ""


def notebook_page(nb, stem: str, folder: Path) -> tuple[str, str | None]:
    """MyST text of a notebook (cells and stored outputs) and its first figure, if any."""
    files = folder / f"{stem}_files"
    files.mkdir(parents=True, exist_ok=True)
    parts, first = [], None
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown":
            parts.append(cell.source.rstrip() + "\n")
        elif cell.cell_type == "code":
            parts.append(_fence(cell.source, "python"))
            for j, out in enumerate(cell.get("outputs", [])):
                text = _output_md(out, stem, f"{i}_{j}", files)
                parts.append(text)
                if first is None and text.startswith("![output]"):
                    first = f"{files.name}/{stem}_{i}_{j}.png"
    parts.append(f"*Source: `notebooks/{stem}.ipynb`.*\n")
    return "\n".join(parts), first


def _execute(nb, workdir: str) -> None:
    import nbclient
    env = {"PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
           "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "MPLBACKEND": "module://matplotlib_inline.backend_inline"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                resources={"metadata": {"path": workdir}}).execute()
    finally:
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)


def write_gallery(out: Path, notebooks: Path, execute: bool) -> None:
    import nbformat
    folder = out / "gallery"
    cards = [_title("Notebook gallery"),
             "The notebooks of ``notebooks/``, "
             + ("executed when this site was built." if execute else
                "shown without outputs (this build did not execute them)."),
             "Each runs top to bottom in about 15 seconds (``tests/test_notebooks.py``).", ""]
    toc = ["```{toctree}", ":hidden:", ""]
    for path in sorted(notebooks.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        if execute:
            with tempfile.TemporaryDirectory() as tmp:
                _execute(nb, tmp)
        text, thumb = notebook_page(nb, path.stem, folder)
        _write(folder / f"{path.stem}.md", text)
        title = next((ln.lstrip("# ").strip() for ln in nb.cells[0].source.splitlines()
                      if ln.startswith("#")), path.stem)
        cards += [f"## [{title}]({path.stem}.md)", ""]
        if thumb:
            cards += [f"```{{image}} {thumb}", ":width: 360px", f":target: {path.stem}.html",
                      "```", ""]
        toc.append(path.stem)
    _write(folder / "index.md", "\n".join(cards + toc + ["```", ""]))


# ----------------------------------------------------------------------------- CLI page

def cli_rst(parser: argparse.ArgumentParser) -> list[str]:
    """reStructuredText of every subcommand of ``parser``: usage, description, options."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {a.dest: a.help for a in sub._choices_actions}
    lines = [parser.description or "", ""]
    for name, p in sub.choices.items():
        lines += [_title(f"{parser.prog} {name}", "-"), helps.get(name) or "", ""]
        if p.description:
            lines += [p.description, ""]
        lines += [".. code-block:: text", ""]
        lines += ["   " + ln for ln in p.format_usage().strip().splitlines()] + [""]
        lines += [f".. program:: {parser.prog} {name}", ""]
        for action in p._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            metavar = action.metavar or (action.dest.upper() if action.option_strings else action.dest)
            form = ", ".join(f"{o} {metavar}" if action.nargs != 0 else o
                             for o in action.option_strings) or action.dest
            lines += [f".. option:: {form}", ""]
            text = (action.help or "").replace("%(default)s", str(action.default))
            if action.choices:
                text += f" (one of: {', '.join(map(str, action.choices))})"
            lines += ["   " + (text or "(no help)"), ""]
    return lines


class CliDirective(SphinxDirective):
    """``.. gilora-cli::``: the command line, read from ``gilora_theory.cli.build_parser()``."""

    def run(self):
        from gilora_theory.cli import build_parser
        container = nodes.section()
        container.document = self.state.document
        text = "\n".join(cli_rst(build_parser())).splitlines()
        self.state.nested_parse(StringList(text, source="gilora_theory.cli.build_parser()"),
                                self.content_offset, container, match_titles=True)
        return container.children


# ----------------------------------------------------------------------------- wiring

def _documented(path: str, objects) -> str | None:
    """The documented name of the object ``path`` names (following re-exports), if any.

    ``gilora_theory.fit_grid`` is documented as ``gilora_theory.grid.fit_grid``; an
    attribute of a dataclass (``Capture.groups``, listed in its Attributes section)
    points at its class.
    """
    parts = path.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for depth, part in enumerate(parts[cut:]):
            inner = getattr(obj, part, None)
            if not (inspect.isclass(inner) or inspect.isroutine(inner) or inspect.ismodule(inner)):
                return _documented(".".join(parts[:cut + depth]), objects) if depth else None
            obj = inner
        home = f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', parts[-1])}"
        return home if home in objects else None
    return None


def resolve_reexport(app, env, node, contnode):
    """Resolve a Python reference Sphinx did not find through the objects it names.

    Only targets inside the package are tried, and only documented objects are
    linked: a name that exists nowhere still fails the build.
    """
    target, module = node.get("reftarget", ""), node.get("py:module") or ""
    if node.get("refdomain") != "py":
        return None
    objects = env.get_domain("py").objects
    candidates = ([f"{module}.{target}"] if module else []) + [target]
    for path in candidates:
        if not path.startswith("gilora_theory."):
            continue
        home = _documented(path, objects)
        if home is not None:
            entry = objects[home]
            return make_refnode(app.builder, node["refdoc"], entry.docname, entry.node_id,
                                contnode, home)
    return None


def join_reference_lines(app, what, name, obj, options, lines) -> None:
    """Join the continuation lines of each entry of a References section (in place).

    The package's reference lists are plain ``[n] author, title, arXiv id`` entries
    whose long lines continue indented; reStructuredText would read the indented
    continuation as an unexpected block. Each entry becomes one line, entries
    separated by blank lines.
    """
    start = next((i + 2 for i in range(len(lines) - 1) if lines[i].strip() == "References"
                  and set(lines[i + 1].strip()) == {"-"}), None)
    if start is None:
        return
    end = next((i - 1 for i in range(start + 1, len(lines))
                if set(lines[i].strip()) == {"-"} and lines[i - 1].strip()), len(lines))
    entries: list[str] = []
    for line in lines[start:end]:
        if line.strip() and line[:1].isspace() and entries:
            entries[-1] += " " + line.strip()
        elif line.strip():
            entries.append(line.rstrip())
    lines[start:end] = [x for e in entries for x in (e, "")]


def drop_type_docstring(app, what, name, obj, options, lines) -> None:
    """A constant without a docstring of its own shows nothing, not its type's docstring."""
    if what in ("data", "attribute") and lines and not inspect.isclass(obj) and \
            "\n".join(lines).strip() == inspect.cleandoc(type(obj).__doc__ or ""):
        lines[:] = []


def generate(app) -> None:
    out = Path(app.srcdir) / "_generated"
    write_api(out)
    repo = Path(app.srcdir).parent
    _write(out / "claims.rst", claims_page(repo / "README.md"))
    write_gallery(out, repo / "notebooks", app.config.gilora_execute_notebooks)


def setup(app):
    app.add_config_value("gilora_execute_notebooks", True, "env")
    app.add_directive("gilora-cli", CliDirective)
    app.connect("builder-inited", generate)
    app.connect("missing-reference", resolve_reexport)
    app.connect("autodoc-process-docstring", join_reference_lines, priority=400)
    app.connect("autodoc-process-docstring", drop_type_docstring, priority=400)
    # Summaries in the autosummary tables end at the first sentence; "Alg. 3 of [1]" and
    # "Cor. 3.9" are not sentence ends.
    autosummary.WELL_KNOWN_ABBREVIATIONS = (*autosummary.WELL_KNOWN_ABBREVIATIONS, "Alg.",
                                            "Cor.", "Eq.", "Thm.", "Lem.", "Sec.", "Fig.",
                                            "Prop.", "cf.")
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
