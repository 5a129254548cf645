"""The benchmark script (``benchmarks/bench.py``, not library code) imported as a module."""
import importlib.util
import pathlib
import sys

_PATH = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "bench.py"


def load():
    """``benchmarks/bench.py`` as the module ``gilora_bench`` (loaded once)."""
    if "gilora_bench" not in sys.modules:
        spec = importlib.util.spec_from_file_location("gilora_bench", _PATH)
        module = importlib.util.module_from_spec(spec)
        sys.modules["gilora_bench"] = module
        spec.loader.exec_module(module)
    return sys.modules["gilora_bench"]
