"""Logging: the packages' loggers are silent until `enable_logging()`."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest
from loguru import logger

import aisopod_shared
from aisopod_shared import enable_logging

PACKAGES = ("aisopod_shared", "aisopod_session")


def _emit(module: str, text: str) -> None:
    """Log `text` from code whose module `__name__` is `module` (loguru filters on it)."""
    code = compile(f"logger.warning({text!r})", f"<{module}>", "exec")
    exec(code, {"__name__": module, "logger": logger})


def _heard(module: str) -> bool:
    """Whether a record logged from `module` reaches a sink right now."""
    seen: list[str] = []
    sink = logger.add(lambda message: seen.append(message.record["name"] or ""), level="TRACE")
    try:
        _emit(module, "probe")
    finally:
        logger.remove(sink)
    return bool(seen)


@pytest.fixture
def records() -> Iterator[list[tuple[str, str]]]:
    """A loguru sink collecting (module, message); restores every package's state afterwards."""
    was_heard = {name: _heard(f"{name}._probe") for name in PACKAGES}
    seen: list[tuple[str, str]] = []
    sink = logger.add(
        lambda message: seen.append((message.record["name"] or "", message.record["message"])),
        level="TRACE",
    )
    try:
        yield seen
    finally:
        logger.remove(sink)
        for name, heard in was_heard.items():
            if heard:
                logger.enable(name)
            else:
                logger.disable(name)


def test_shared_logger_is_the_loguru_logger() -> None:
    assert aisopod_shared.logger is logger


def test_aisopod_shared_records_reach_no_sink_by_default(records: list[tuple[str, str]]) -> None:
    logger.disable("aisopod_shared")  # the state import leaves, whatever ran before

    _emit("aisopod_shared._messages", "secret")
    _emit("aisopod_shared", "also secret")
    _emit("someone_else", "visible")

    assert records == [("someone_else", "visible")]


def test_enable_logging_lets_every_package_be_heard(records: list[tuple[str, str]]) -> None:
    logger.disable("aisopod_shared")
    logger.disable("aisopod_session")

    enable_logging()
    _emit("aisopod_shared._json", "shared")
    _emit("aisopod_session._store", "session")

    assert records == [("aisopod_shared._json", "shared"), ("aisopod_session._store", "session")]


def test_importing_aisopod_shared_disables_its_logger() -> None:
    """In a fresh interpreter, a sink added after the import hears nothing from the package."""
    script = "\n".join(
        [
            "import aisopod_shared",
            "from loguru import logger",
            "logger.remove()",
            "seen = []",
            "logger.add(lambda m: seen.append(m.record['name']), level='TRACE')",
            "probe = compile(\"logger.warning('x')\", '<probe>', 'exec')",
            "for module in ('aisopod_shared', 'aisopod_shared._json', 'elsewhere'):",
            "    exec(probe, {'__name__': module, 'logger': logger})",
            "print(seen)",
            "aisopod_shared.enable_logging()",
            "exec(probe, {'__name__': 'aisopod_shared', 'logger': logger})",
            "print(seen)",
        ]
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )

    assert result.stdout.splitlines() == ["['elsewhere']", "['elsewhere', 'aisopod_shared']"]
