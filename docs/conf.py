"""Sphinx configuration of the gilora_theory documentation.

Build (warnings are errors, so a broken docstring or a dead cross-reference fails)::

    python -m sphinx -W -b html docs docs/_build/html

Pages under ``docs/_generated/`` are written at build time by ``docs/_ext/gilora_docs.py``
(API pages in the package catalogue's order, the command line from argparse, the claims,
the notebook gallery) and are not kept in git.
"""
import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS / "_ext"))  # the local extension (Sphinx's usual layout)

import gilora_theory  # noqa: E402

project = "gilora_theory"
author = "the gilora_theory authors"
copyright = "2026, the gilora_theory authors"
release = version = gilora_theory.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "myst_parser",
    "gilora_docs",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints"]
root_doc = "index"

# Dead internal cross-references are errors; references into other projects cannot be
# resolved offline (no intersphinx inventories are fetched), so those are ignored by name.
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(numpy|np|scipy|pandas|pd|matplotlib|torch|transformers|distributed|dask|"
               r"concurrent|pathlib|argparse|collections|typing|os|io|json|dataclasses)(\..*)?"),
    (r"py:class", r"(optional|default.*|array_like|ndarray|callable|iterable|path|path-like)"),
]

autodoc_default_options = {"members": False}
autodoc_typehints = "none"  # the numpydoc Parameters sections carry the types and shapes
autosummary_generate = False
numpydoc_show_class_members = False
numpydoc_xref_param_type = False
numpydoc_validation_checks = set()

myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3

html_theme = "alabaster"
html_static_path = []
html_title = f"gilora_theory {release}"
html_theme_options = {"description": "GPTQ-intrinsic LoRA: implemented and validated",
                      "fixed_sidebar": True}

# Notebook gallery: executed at build time (``GILORA_DOCS_EXECUTE=0`` renders the code only).
gilora_execute_notebooks = os.environ.get("GILORA_DOCS_EXECUTE", "1") not in ("", "0")
