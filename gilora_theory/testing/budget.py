"""Example budgets for property tests, scaled by the ``GILORA_HYPOTHESIS`` profile."""
import os

__all__ = ["scaled"]


def scaled(n: int) -> int:
    """``n`` examples under the default ``ci`` profile, ``20 n`` under ``long``."""
    return n * (20 if os.environ.get("GILORA_HYPOTHESIS", "ci") == "long" else 1)
