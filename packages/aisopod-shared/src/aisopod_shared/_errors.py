"""The root of every error aisopod packages raise."""

from __future__ import annotations


class AisopodError(Exception):
    """Raised for every failure an aisopod package reports on purpose.

    Catch this to handle anything aisopod raises; driver and library errors
    are wrapped in a subclass and chained (`raise ... from err`), never leaked.
    """


class InvalidInput(AisopodError, ValueError):
    """Raised when a value given by the caller is malformed; nothing was changed.

    Attributes:
        field: the name of the offending field or argument, when there is one.
        reason: what is wrong with it, in a few words.
    """

    def __init__(self, reason: str, *, field: str | None = None) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}" if field else reason)
