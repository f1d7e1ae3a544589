"""Options and fixtures for the whole suite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from throwaway_postgres import ThrowawayPostgres

from tests.postgres import own_server, suite_dsn


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--soak",
        action="store_true",
        default=False,
        help="run the reliability suite longer (more kills, longer mixed loads, more examples)",
    )


@pytest.fixture(name="postgres_dsn", scope="session")
def postgres_dsn_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The suite's PostgreSQL server (started on first use when no DSN is given)."""
    with suite_dsn(tmp_path_factory.mktemp("postgres")) as dsn:
        yield dsn


@pytest.fixture(name="own_postgres")
def own_postgres_fixture(tmp_path: Path) -> Iterator[ThrowawayPostgres]:
    """A PostgreSQL server of the test's own, to stop, kill and restart."""
    with own_server(tmp_path / "postgres") as server:
        yield server
