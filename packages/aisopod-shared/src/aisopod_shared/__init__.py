"""What every aisopod package shares.

Messages and their parts, token usage, the one JSON converter (cattrs on
orjson), the `AisopodError` root of every error the packages raise, a clock
that tests can replace, and logging that stays silent until an application
turns it on.
"""

from aisopod_shared._clock import (
    Clock,
    ManualClock,
    SystemClock,
    from_micros,
    now_micros,
    to_micros,
)
from aisopod_shared._errors import AisopodError, InvalidInput
from aisopod_shared._json import JSONObject, converter, dumps, loads, structure
from aisopod_shared._logging import enable_logging, logger
from aisopod_shared._messages import (
    ROLES,
    Content,
    ImagePart,
    Message,
    Part,
    TextPart,
    ThinkingPart,
    ToolCallPart,
    ToolResultPart,
    UnknownPart,
    content_text,
)
from aisopod_shared._usage import TokenUsage


def __getattr__(name: str) -> str:
    # Read when asked for, not at import (importlib.metadata is slow to load).
    if name == "__version__":
        from importlib.metadata import version

        return version("aisopod-shared")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "__version__",
    # messages
    "ROLES",
    "Message",
    "Content",
    "Part",
    "TextPart",
    "ImagePart",
    "ThinkingPart",
    "ToolCallPart",
    "ToolResultPart",
    "UnknownPart",
    "content_text",
    # usage
    "TokenUsage",
    # errors
    "AisopodError",
    "InvalidInput",
    # JSON
    "JSONObject",
    "converter",
    "dumps",
    "loads",
    "structure",
    # clock
    "Clock",
    "SystemClock",
    "ManualClock",
    "now_micros",
    "to_micros",
    "from_micros",
    # logging
    "logger",
    "enable_logging",
]
