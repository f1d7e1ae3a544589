"""The reliability suite runs on the conformance suite's databases."""

from __future__ import annotations

import pytest

from tests.session.conftest import (  # noqa: F401  (fixtures, found by name)
    clock_fixture,
    database_url_fixture,
    open_test_store_fixture,
    shared_database_url_fixture,
    store_fixture,
)


@pytest.fixture(name="soak")
def soak_fixture(request: pytest.FixtureRequest) -> bool:
    """Whether to run long (`--soak`)."""
    return bool(request.config.getoption("--soak"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/reliability/" in str(item.fspath):
            item.add_marker(pytest.mark.reliability)
