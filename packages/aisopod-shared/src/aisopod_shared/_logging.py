"""Logging for a library: silent unless the application asks for it.

Following loguru's advice for libraries, aisopod packages disable their own
loggers on import and never add a sink; an application (the CLI, a gateway)
calls `enable_logging()` to hear them. Logs name ids, counts and timings,
never message contents or credentials.
"""

from __future__ import annotations

from loguru import logger

__all__ = ["enable_logging", "logger"]

_PACKAGES = ("aisopod_shared", "aisopod_session")


def enable_logging() -> None:
    """Let the aisopod packages' log records reach loguru's sinks."""
    for name in _PACKAGES:
        logger.enable(name)


logger.disable("aisopod_shared")
