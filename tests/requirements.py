"""The one rule for a test that needs something a machine may lack (a PostgreSQL
server, a browser): it skips, saying why, unless its `AISOPOD_REQUIRE_*` variable is
`1` (as under `.ci/run`), where the same lack fails it."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def skip_unless_required(reason: str, *, required_by: str) -> NoReturn:
    """Skip with `reason`, or fail when the environment variable `required_by` is `1`."""
    if os.environ.get(required_by) == "1":
        pytest.fail(f"{required_by}=1 but {reason}")
    pytest.skip(reason)
