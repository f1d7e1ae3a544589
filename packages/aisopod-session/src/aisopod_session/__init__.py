"""Session management, state tracking and session lifecycle for conversations.

`aisopod_session` creates, persists, restores, searches, compacts, forks and
retires the conversation sessions of aisopod agents, on an embedded SQLite
file by default or on a shared PostgreSQL database.
"""

from importlib.metadata import version as _version

__version__ = _version("aisopod-session")

__all__ = ["__version__"]
