"""Every file the repository's text cites exists (issue 13 item 5).

Scans the tracked text files (code, docs, notebooks, configurations) for paths
into the repository's own folders (``docs/...``, ``figures/...``,
``paper_checks/...``, ``benchmarks/...``, ``notebooks/...``, ``tests/...``,
``gilora_theory/...`` ending in a file extension) and for ``THEORY.md``, and
requires each to exist; a ``docs/theory.md, "Section"`` citation must name a
heading of docs/theory.md.
"""
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TEXT = {".py", ".md", ".json", ".ipynb", ".toml", ".txt", ".cfg", ".ini", ".yml", ".yaml"}
FOLDERS = ("docs", "figures", "paper_checks", "benchmarks", "notebooks", "tests", "gilora_theory")
PATH = re.compile(r"(?<![\w./-])((?:%s)/[\w./-]*\w\.(?:py|md|json|csv|png|ipynb|npz|toml|txt))"
                  % "|".join(FOLDERS))
SECTION = re.compile(r'docs/theory\.md, "([^"]+)"')


def _text_files() -> list:
    try:
        out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                             timeout=30, check=True).stdout.split()
        files = [ROOT / f for f in out]
    except (OSError, subprocess.SubprocessError):
        files = [p for p in ROOT.rglob("*") if ".git" not in p.parts]
    files += [p for p in (ROOT / "tests").glob("*.py")]  # new, not yet tracked
    this = Path(__file__).resolve()  # its own examples are deliberately missing
    return sorted({p for p in files if p.suffix in TEXT and p.is_file() and p.resolve() != this})


def _citations():
    for path in _text_files():
        text = path.read_text(errors="replace")
        for m in PATH.finditer(text):
            yield path.relative_to(ROOT).as_posix(), m.group(1)
        if "THEORY.md" in text:
            yield path.relative_to(ROOT).as_posix(), "THEORY.md"


def test_the_scan_finds_citations():
    cited = {target for _, target in _citations()}
    assert "docs/theory.md" in cited and len(cited) > 10


def test_every_cited_file_exists():
    missing = sorted({f"{src}: {target}" for src, target in _citations()
                      if not (ROOT / target).exists()})
    assert missing == []


def test_cited_sections_of_theory_exist():
    headings = [ln.lstrip("#").strip() for ln in (ROOT / "docs" / "theory.md").read_text().splitlines()
                if ln.startswith("## ")]
    bad = []
    for path in _text_files():
        for m in SECTION.finditer(path.read_text(errors="replace")):
            if not any(h.startswith(m.group(1)) for h in headings):
                bad.append(f"{path.relative_to(ROOT)}: {m.group(1)}")
    assert bad == []


@pytest.mark.parametrize("text, found", [("see THEORY.md section 3", "THEORY.md"),
                                         ("in docs/nowhere.md", "docs/nowhere.md")])
def test_a_missing_citation_is_caught(text, found, tmp_path):
    hits = [m.group(1) for m in PATH.finditer(text)] + (["THEORY.md"] if "THEORY.md" in text else [])
    assert found in hits and not (ROOT / found).exists()
