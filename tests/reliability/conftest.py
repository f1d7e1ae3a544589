"""The reliability suite runs on the conformance suite's databases.

Its property-based tests take their settings from the `reliability` Hypothesis
profile, registered here once: `--soak` raises its example count tenfold, so
no test module states an example count of its own that the option would miss.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings

from tests.session.conftest import (  # noqa: F401  (fixtures, found by name)
    clock_fixture,
    database_url_fixture,
    open_test_store_fixture,
    shared_database_url_fixture,
    store_fixture,
)

PROFILE = "reliability"
"""The Hypothesis profile of the suite's property-based tests (`settings.get_profile`)."""

EXAMPLES = 60
"""Examples per property-based test; each one runs on every backend and API."""

SOAK_FACTOR = 10
"""How many times more examples `--soak` runs."""


def _register(max_examples: int) -> None:
    settings.register_profile(
        PROFILE,
        max_examples=max_examples,
        # Examples that touch a database take what the database takes.
        deadline=None,
        # The store fixture is made once per test and shared by its examples,
        # on purpose: a database per example would be most of the run.
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


_register(EXAMPLES)


def pytest_configure(config: pytest.Config) -> None:
    # Runs before this folder's modules are imported, so their decorators
    # already read the soak profile.
    if config.getoption("--soak"):
        _register(EXAMPLES * SOAK_FACTOR)


@pytest.fixture(name="soak")
def soak_fixture(request: pytest.FixtureRequest) -> bool:
    """Whether to run long (`--soak`)."""
    return bool(request.config.getoption("--soak"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/reliability/" in str(item.fspath):
            item.add_marker(pytest.mark.reliability)
