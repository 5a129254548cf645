"""The documentation site's generated pages cover what they claim to cover.

The build itself (``python -m sphinx -W -b html docs docs/_build/html``) runs in
``.ci/run``; these tests check the generators of ``docs/_ext/gilora_docs.py`` without a
build: every subcommand and option reaches the CLI page, every public module gets an
API page in the catalogue's order, reference lists are joined without losing text,
and cross-reference fallback links only to documented objects.
"""
from __future__ import annotations

import argparse
import importlib.util
import re
from pathlib import Path

import pytest

pytest.importorskip("sphinx")

import gilora_theory  # noqa: E402
from gilora_theory.cli import build_parser  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("gilora_docs", ROOT / "docs" / "_ext" / "gilora_docs.py")
docs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(docs)


def _subparsers(parser: argparse.ArgumentParser) -> dict:
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices


def _missing_from_page(parser: argparse.ArgumentParser, text: str) -> list[str]:
    """Subcommands and options of ``parser`` that the CLI page text does not document."""
    missing = []
    for name, sub in _subparsers(parser).items():
        if f".. program:: {parser.prog} {name}" not in text:
            missing.append(name)
        for action in sub._actions:
            names = action.option_strings or [action.dest]
            if not isinstance(action, argparse._HelpAction) and not any(
                    re.search(rf"^\.\. option:: (.*, )?{re.escape(n)}\b", text, re.MULTILINE) for n in names):
                missing.append(f"{name} {names[0]}")
    return missing


def test_cli_page_documents_every_subcommand_and_option():
    parser = build_parser()
    text = "\n".join(docs.cli_rst(parser))
    assert _missing_from_page(parser, text) == []
    assert ".. option:: --scheduler ADDRESS|local:N" in text
    assert len(_subparsers(parser)) >= 8


def test_cli_coverage_check_sees_a_dropped_option():
    """Negative control: a page without one option, or without one subcommand, is caught."""
    parser = build_parser()
    text = "\n".join(docs.cli_rst(parser))
    dropped = re.sub(r"^\.\. option:: --scheduler.*$", "", text, flags=re.MULTILINE)
    assert _missing_from_page(parser, dropped) == ["sweep --scheduler"]
    no_exact = text.replace(f".. program:: {parser.prog} exact", "")
    assert "exact" in _missing_from_page(parser, no_exact)


def _package_modules() -> list[str]:
    """Every public module of the package (files), as dotted names."""
    pkg = Path(gilora_theory.__file__).parent
    out = []
    for path in pkg.rglob("*.py"):
        parts = path.relative_to(pkg.parent).with_suffix("").parts
        if parts[-1] == "__init__" or any(p.startswith("_") for p in parts) or "testing" in parts:
            continue
        out.append(".".join(parts))
    return sorted(out)


def test_every_public_module_has_an_api_page_in_catalogue_order():
    listed = [d for d, _ in docs.catalogue("gilora_theory")] + ["gilora_theory.cli"]
    assert sorted(listed) == _package_modules()
    core = [line.split()[0] for line in gilora_theory.__doc__.splitlines()
            if re.match(r"^\w+\s+--\s", line)]
    assert [d.split(".")[1] for d in listed if d.count(".") == 1][:len(core) - 2] == \
        [c for c in core if c not in ("data", "experiments")]
    page = docs.api_page("gilora_theory.grid")
    for name in gilora_theory.grid.__all__:
        assert f"gilora_theory.grid.{name}" in page


def test_module_coverage_check_sees_a_missing_module():
    """Negative control: a catalogue without one module does not match the package."""
    listed = [d for d, _ in docs.catalogue("gilora_theory") if d != "gilora_theory.storage"]
    assert sorted(listed + ["gilora_theory.cli"]) != _package_modules()


def test_reference_lines_are_joined_without_losing_text():
    lines = ["Summary.", "", "References", "----------",
             "[1] S. Zhang, R. Saab, \"GPTQ-intrinsic LoRA\",", "    arXiv:2606.01412 (2026).",
             "[2] E. Frantar et al., \"GPTQ\", arXiv:2210.17323 (2022).", "",
             "Examples", "--------", ">>> 1", "    continued"]
    docs.join_reference_lines(None, "module", "m", None, {}, lines)
    assert lines == ["Summary.", "", "References", "----------",
                     "[1] S. Zhang, R. Saab, \"GPTQ-intrinsic LoRA\", arXiv:2606.01412 (2026).", "",
                     "[2] E. Frantar et al., \"GPTQ\", arXiv:2210.17323 (2022).", "",
                     "Examples", "--------", ">>> 1", "    continued"]


def test_reference_fallback_links_only_documented_objects():
    objects = {"gilora_theory.grid.fit_grid": None, "gilora_theory.data.torch_adapter.Capture": None}
    assert docs._documented("gilora_theory.fit_grid", objects) == "gilora_theory.grid.fit_grid"
    assert docs._documented("gilora_theory.data.torch_adapter.Capture.X", objects) == \
        "gilora_theory.data.torch_adapter.Capture"
    assert docs._documented("gilora_theory.no_such_function", objects) is None
    assert docs._documented("gilora_theory.gptq", objects) is None  # exists, not documented


def test_claims_page_has_every_claim_and_the_readme_verdicts():
    from gilora_theory.experiments.paper import CLAIMS, VERDICTS
    verdicts = docs.readme_verdicts(ROOT / "README.md")
    assert set(verdicts) <= set(CLAIMS) and len(verdicts) >= 14
    assert all(v in VERDICTS for _, v, _ in verdicts.values())
    page = docs.claims_page(ROOT / "README.md")
    for cid, func in CLAIMS.items():
        assert f"   * - {cid}\n" in page and f"{func.__module__}.{func.__name__}" in page
