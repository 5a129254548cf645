"""The property-test budget.

The monotonicity and bound properties (Bid-Up never increases f, the refinement
trace never increases, the upper-bound chain holds without clipping) ask for at
least 2000 examples each under the default deterministic profile ``ci``
(derandomized, no example database). ``GILORA_HYPOTHESIS=long`` multiplies every
``scaled(n)`` budget by 20 and draws fresh random seeds. This file reads the
settings hypothesis attached to those tests, in this process and in a fresh one
with the switch set, so a budget silently lowered (or a renamed test) fails here.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import settings

from gilora_theory.testing.budget import scaled

TESTS = Path(__file__).parent
MIN_EXAMPLES = 2000
LONG_FACTOR = 20

# Paper claim -> (test module, hypothesis test) whose budget is checked.
REQUIRED = {
    "C6 upper-bound chain without clipping": ("test_upper_bounds.py",
                                              "test_chain_holds_without_clipping"),
    "C8 Bid-Up never increases f": (
        "test_bidup.py",
        "test_every_bidup_update_is_the_exact_coordinate_argmin_and_f_never_increases"),
    "C9 refinement trace never increases": ("test_bidup.py", "test_refinement_trace_never_increases"),
}


def _budget(module_file: str, test_name: str) -> dict:
    """``max_examples``, ``derandomize`` and ``database`` hypothesis attached to a test."""
    spec = importlib.util.spec_from_file_location(f"_budget_{Path(module_file).stem}",
                                                  TESTS / module_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    test = getattr(module, test_name)
    assert hasattr(test, "hypothesis"), f"{module_file}::{test_name} is not a hypothesis test"
    # hypothesis keeps a decorated test's settings here (no public accessor)
    s = test._hypothesis_internal_use_settings
    return {"max_examples": s.max_examples, "derandomize": s.derandomize,
            "database": s.database is None}


@pytest.mark.parametrize("claim", sorted(REQUIRED))
def test_default_run_budget(claim):
    """Under the ci profile: >= 2000 examples, derandomized, no database."""
    if os.environ.get("GILORA_HYPOTHESIS", "ci") != "ci":
        pytest.skip("the long profile is active: the ci budget is not in force")
    assert settings.default.derandomize and settings.default.database is None
    b = _budget(*REQUIRED[claim])
    assert b["max_examples"] >= MIN_EXAMPLES, (claim, b)
    assert b["derandomize"] and b["database"], (claim, b)


_PROBE = r"""
import importlib.util, json, sys
from pathlib import Path
tests = Path(sys.argv[1])
spec = importlib.util.spec_from_file_location("conftest", tests / "conftest.py")
spec.loader.exec_module(importlib.util.module_from_spec(spec))
out = {}
for module_file, name in json.loads(sys.argv[2]):
    spec = importlib.util.spec_from_file_location("m_" + Path(module_file).stem, tests / module_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    s = getattr(module, name)._hypothesis_internal_use_settings
    out[name] = [s.max_examples, s.derandomize]
print(json.dumps(out))
"""


def test_long_switch_searches_much_longer():
    """GILORA_HYPOTHESIS=long: 20 times the examples of the default run, with random seeds."""
    assert scaled(MIN_EXAMPLES) == MIN_EXAMPLES or os.environ.get("GILORA_HYPOTHESIS") == "long"
    env = dict(os.environ, GILORA_HYPOTHESIS="long",
               PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", _PROBE, str(TESTS),
                           json.dumps(sorted(set(REQUIRED.values())))],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    long = json.loads(proc.stdout)
    for module_file, name in REQUIRED.values():
        max_examples, derandomize = long[name]
        assert max_examples >= LONG_FACTOR * MIN_EXAMPLES, (name, max_examples)
        assert not derandomize, name
