"""What every aisopod package shares.

Messages and their parts, token usage, the one JSON converter (cattrs on
orjson), the `AisopodError` root of every error the packages raise, a clock
that tests can replace, and logging that stays silent until an application
turns it on.
"""

from importlib.metadata import version as _version

__version__ = _version("aisopod-shared")

__all__ = ["__version__"]
