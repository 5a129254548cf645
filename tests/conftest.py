"""Test configuration: deterministic hypothesis profiles.

``GILORA_HYPOTHESIS=ci`` (default): derandomized, no example database, no deadline.
``GILORA_HYPOTHESIS=long``: 20x the examples, random seeds, for long searches.
Tests that need a larger budget than hypothesis' default ask for it with
``settings(max_examples=scaled(N))``.
"""
import os

from hypothesis import HealthCheck, settings

_PROFILE = os.environ.get("GILORA_HYPOTHESIS", "ci")
settings.register_profile("ci", derandomize=True, database=None, deadline=None,
                          print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("long", derandomize=False, deadline=None, max_examples=2000,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile(_PROFILE)
