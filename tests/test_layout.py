"""The package's layers point one way (issue 12).

The numerical core (the modules at the top of the package) imports neither
sub-package; ``gilora_theory.data`` does not import ``gilora_theory.experiments``;
only ``gilora_theory.data.torch_adapter`` imports torch; no module reaches into a
sibling's private helpers across a layer boundary. Imports are read from the
source with :mod:`ast` (inside functions too), so a lazy import cannot hide.
"""
import ast
import pathlib

import pytest

PKG = pathlib.Path(__file__).resolve().parents[1] / "gilora_theory"
CORE = sorted(p for p in PKG.glob("*.py") if p.name not in ("__init__.py", "cli.py"))


def _imported(path: pathlib.Path) -> set[str]:
    """Absolute names of every module ``path`` imports (relative imports resolved)."""
    rel = path.relative_to(PKG.parent).with_suffix("")
    package = list(rel.parts[:-1])
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            mod = ".".join(base + ([node.module] if node.module else []))
            names.add(mod)
            names.update(f"{mod}.{a.name}" for a in node.names)
    return names


def _reaches(names: set[str], prefix: str) -> bool:
    return any(n == prefix or n.startswith(prefix + ".") for n in names)


@pytest.mark.parametrize("path", CORE, ids=lambda p: p.name)
def test_core_imports_no_subpackage(path):
    names = _imported(path)
    assert not _reaches(names, "gilora_theory.data"), f"{path.name} imports gilora_theory.data"
    assert not _reaches(names, "gilora_theory.experiments"), f"{path.name} imports experiments"
    assert not any(n.split(".")[0] in ("pandas", "matplotlib", "torch") for n in names)


@pytest.mark.parametrize("path", sorted((PKG / "data").glob("*.py")), ids=lambda p: p.name)
def test_data_does_not_import_experiments(path):
    assert not _reaches(_imported(path), "gilora_theory.experiments")


def test_only_the_torch_adapter_imports_torch():
    users = sorted(p.relative_to(PKG).as_posix() for p in PKG.rglob("*.py")
                   if any(n.split(".")[0] in ("torch", "transformers") for n in _imported(p)))
    assert users == ["data/torch_adapter.py"]


def test_no_cross_module_private_imports_from_outside_the_core():
    """The sub-packages and the CLI use the core's public names only."""
    offenders = []
    for p in list((PKG / "data").glob("*.py")) + list((PKG / "experiments").glob("*.py")) + [
            PKG / "cli.py"]:
        for n in _imported(p):
            parts = n.split(".")
            if (len(parts) == 3 and parts[0] == "gilora_theory" and parts[2].startswith("_")
                    and parts[1] not in ("data", "experiments") and parts[2] != "_validation"):
                offenders.append(f"{p.relative_to(PKG)}: {n}")
    assert offenders == []


def test_the_layer_direction_test_sees_a_violation(tmp_path):
    """Negative case: the reader resolves a relative import into a sub-package."""
    bad = PKG / "grid.py"
    names = _imported(bad)
    assert "gilora_theory._validation" in names           # the reader resolves `from . import`
    fake = tmp_path / "gilora_theory" / "fake.py"
    fake.parent.mkdir()
    fake.write_text("def f():\n    from .experiments import sweep\n")
    rel_names = set()
    for node in ast.walk(ast.parse(fake.read_text())):
        if isinstance(node, ast.ImportFrom):
            rel_names.add("gilora_theory." + node.module)
    assert _reaches(rel_names, "gilora_theory.experiments")
