"""The notebooks run top to bottom, produce their figures and hold no logic of their own."""
import ast
import os
import sys
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))
CELL_TIMEOUT = 120  # seconds per cell; a whole notebook takes ~15 s on a loaded 2-core machine
LOGIC = (ast.FunctionDef, ast.ClassDef, ast.Lambda, ast.For, ast.While, ast.If, ast.Try, ast.With)


def _logic(source: str) -> list:
    """Statements a notebook must leave to the library (comprehensions are allowed)."""
    code = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith("%"))
    return [type(n).__name__ for n in ast.walk(ast.parse(code)) if isinstance(n, LOGIC)]


def test_the_four_notebooks_exist():
    assert [p.name for p in NOTEBOOKS] == ["01_tour.ipynb", "02_bounds_synthetic.ipynb",
                                           "03_real_minilm_layers.ipynb",
                                           "04_lower_bounds_exact.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_shape(path):
    nb = nbformat.read(path, as_version=4)
    first = nb.cells[0]
    assert first.cell_type == "markdown" and "**What you will observe**" in first.source
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not _logic(cell.source), f"logic in a notebook cell:\n{cell.source}"
            imports = [n for n in ast.walk(ast.parse(cell.source.replace("%", "#")))
                       if isinstance(n, (ast.Import, ast.ImportFrom))]
            for node in imports:
                names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                         else [node.module])
                assert all(n.split(".")[0] in ("gilora_theory", "numpy") for n in names), names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_and_draws(path, tmp_path, monkeypatch):
    # The kernel spec runs "python": make it this interpreter (the virtualenv's).
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    nbclient.NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    elapsed = time.perf_counter() - start
    plot_cells = [c for c in nb.cells if c.cell_type == "code" and "plotting.plot_" in c.source]
    assert plot_cells
    for cell in plot_cells:
        pngs = [o for o in cell.outputs if "image/png" in o.get("data", {})]
        assert len(pngs) == 1, f"no figure from:\n{cell.source}"
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if o.output_type == "error" or o.get("name") == "stderr"]
    assert not errors, errors
    assert not list(tmp_path.iterdir()), "a notebook wrote files"
    assert elapsed < 4 * CELL_TIMEOUT
