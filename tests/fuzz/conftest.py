"""Hypothesis profiles of the fuzz tests.

    python -m pytest tests/fuzz                              # "ci": 75 examples per test, derandomized (stable)
    python -m pytest tests/fuzz --hypothesis-profile=long    # 2000 random examples per test, failures remembered

NOTE: pass tests/fuzz on the command line with --hypothesis-profile: hypothesis loads the profile before pytest
reads the conftest files of directories it was not given, and these profiles are registered here.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings

_COMMON = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large]}
settings.register_profile("ci", max_examples=75, derandomize=True, database=None, print_blob=True, **_COMMON)
settings.register_profile("long", max_examples=2000, print_blob=True, **_COMMON)


def pytest_configure(config: pytest.Config) -> None:
    if not config.getoption("hypothesis_profile", None):
        settings.load_profile("ci")
