"""Session keys: OpenClaw-compatible routing addresses of conversations.

A session key names where a conversation lives, e.g. `agent:main:main`,
`agent:main:telegram:group:-100123` or `agent:ops:discord:channel:42:thread:7`.
Every key made for an agent starts with `agent:<agentId>:`. This module
normalises ids, builds keys for inbound messages under every DM scope (with
identity links), for groups, channels, threads, cron runs, webhooks and
sub-agents, and parses keys back.

A key is a name, not a record: ids may contain `:` (Matrix `@user:server`),
so the parts of a key are kept beside it (a session's origin) and never
recovered by re-parsing it.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from typing import Final, Literal, TypeAlias

import attrs

from aisopod_session._errors import InvalidSessionKey

__all__ = [
    "DEFAULT_ACCOUNT_ID",
    "DEFAULT_AGENT_ID",
    "DEFAULT_MAIN_KEY",
    "DM_SCOPES",
    "ChatType",
    "DmScope",
    "IdentityLinks",
    "KeyShape",
    "ParsedKey",
    "build_session_key",
    "chat_type_of_key",
    "cron_key",
    "hook_key",
    "is_cron_run_key",
    "key_shape",
    "main_session_key",
    "normalize_account_id",
    "normalize_agent_id",
    "normalize_channel",
    "normalize_chat_type",
    "normalize_main_key",
    "normalize_peer_id",
    "parent_key",
    "parse_session_key",
    "request_key",
    "resolve_identity",
    "subagent_depth",
    "subagent_key",
    "thread_key",
]

DEFAULT_AGENT_ID: Final = "main"
DEFAULT_MAIN_KEY: Final = "main"
DEFAULT_ACCOUNT_ID: Final = "default"

DmScope: TypeAlias = Literal["main", "per-peer", "per-channel-peer", "per-account-channel-peer"]
DM_SCOPES: Final[tuple[DmScope, ...]] = (
    "main",
    "per-peer",
    "per-channel-peer",
    "per-account-channel-peer",
)
ChatType: TypeAlias = Literal["direct", "group", "channel"]
KeyShape: TypeAlias = Literal["agent", "legacy", "malformed"]
IdentityLinks: TypeAlias = Mapping[str, Iterable[str]]
"""Canonical name -> ids (bare peer ids or `channel:peerId`) of one person."""

_VALID_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}", re.IGNORECASE)
_INVALID_RUN = re.compile(r"[^a-z0-9_-]+")
_THREAD_MARKERS: Final = (":thread:", ":topic:")


# --- normalising ids ---------------------------------------------------------------


def _normalize_id(value: str | None, default: str) -> str:
    text = (value or "").strip()
    if not text:
        return default
    if _VALID_ID.fullmatch(text):
        return text.lower()
    cleaned = _INVALID_RUN.sub("-", text.lower()).strip("-")[:64]
    return cleaned or default


def normalize_agent_id(value: str | None) -> str:
    """Agent id as used in keys: trimmed, lowercased, invalid runs -> `-`, empty -> `main`."""
    return _normalize_id(value, DEFAULT_AGENT_ID)


def normalize_account_id(value: str | None) -> str:
    """Account id as used in keys: like agent ids, empty -> `default`."""
    return _normalize_id(value, DEFAULT_ACCOUNT_ID)


def normalize_main_key(value: str | None) -> str:
    """Main key: trimmed and lowercased; empty -> `main`."""
    return (value or "").strip().lower() or DEFAULT_MAIN_KEY


def normalize_channel(value: str | None) -> str:
    """Channel name: trimmed and lowercased; empty -> `unknown`."""
    return (value or "").strip().lower() or "unknown"


def normalize_peer_id(value: str | None) -> str:
    """Peer or thread id: trimmed and lowercased (may be empty)."""
    return (value or "").strip().lower()


def normalize_chat_type(value: str) -> ChatType:
    """`direct`, `group` or `channel` (`dm` is accepted for `direct`).

    Raises:
        InvalidSessionKey: for any other chat type.
    """
    chat_type = value.strip().lower()
    if chat_type == "dm":
        return "direct"
    if chat_type in ("direct", "group", "channel"):
        return chat_type  # type: ignore[return-value]
    raise InvalidSessionKey(value, "chat type must be direct, dm, group or channel")


# --- building keys -------------------------------------------------------------------


def main_session_key(agent_id: str | None = None, main_key: str | None = None) -> str:
    """`agent:<agent>:<mainKey>`: the agent's main conversation."""
    return f"agent:{normalize_agent_id(agent_id)}:{normalize_main_key(main_key)}"


def resolve_identity(peer_id: str, channel: str, identity_links: IdentityLinks | None) -> str:
    """The canonical name linked to `peer_id` (or `channel:peer_id`), else `peer_id`.

    Both sides are compared trimmed and lowercased.
    """
    if not identity_links:
        return peer_id
    peer = normalize_peer_id(peer_id)
    scoped = f"{normalize_channel(channel)}:{peer}"
    for canonical, ids in identity_links.items():
        for linked in ids:
            candidate = linked.strip().lower()
            if candidate and candidate in (peer, scoped):
                return canonical.strip().lower() or peer
    return peer


def build_session_key(
    *,
    agent_id: str | None = None,
    channel: str | None,
    chat_type: str = "direct",
    peer_id: str | None = None,
    account_id: str | None = None,
    thread_id: str | None = None,
    main_key: str | None = None,
    dm_scope: DmScope = "main",
    identity_links: IdentityLinks | None = None,
) -> str:
    """The session key of an inbound message.

    Direct chats follow `dm_scope`; groups and channels are always isolated
    and never take the account; a thread id appends `:thread:<id>` to the
    key of the thread's parent.

    Raises:
        InvalidSessionKey: for an unknown chat type or DM scope.
    """
    agent = normalize_agent_id(agent_id)
    kind = normalize_chat_type(chat_type)
    chan = normalize_channel(channel)
    peer = normalize_peer_id(peer_id)
    if kind == "direct":
        base = _direct_key(agent, chan, account_id, peer, main_key, dm_scope, identity_links)
    else:
        base = f"agent:{agent}:{chan}:{kind}:{peer or 'unknown'}"
    return thread_key(base, thread_id) if thread_id else base


def _direct_key(
    agent: str,
    channel: str,
    account_id: str | None,
    peer: str,
    main_key: str | None,
    dm_scope: DmScope,
    identity_links: IdentityLinks | None,
) -> str:
    if dm_scope not in DM_SCOPES:
        raise InvalidSessionKey(dm_scope, f"dm scope must be one of {', '.join(DM_SCOPES)}")
    if dm_scope == "main" or not peer:
        return f"agent:{agent}:{normalize_main_key(main_key)}"
    peer = resolve_identity(peer, channel, identity_links)
    if dm_scope == "per-peer":
        return f"agent:{agent}:direct:{peer}"
    if dm_scope == "per-channel-peer":
        return f"agent:{agent}:{channel}:direct:{peer}"
    return f"agent:{agent}:{channel}:{normalize_account_id(account_id)}:direct:{peer}"


def thread_key(base_key: str, thread_id: str | None) -> str:
    """`<base key>:thread:<thread id>`; the base key itself when the thread id is empty."""
    thread = normalize_peer_id(thread_id)
    return f"{base_key}:thread:{thread}" if thread else base_key


def cron_key(agent_id: str | None, job_id: str, run_id: str | None = None) -> str:
    """`agent:<agent>:cron:<jobId>`, or one run of it: `...:run:<runId>`."""
    job = _required_part(job_id, "cron job id")
    base = f"agent:{normalize_agent_id(agent_id)}:cron:{job}"
    return f"{base}:run:{_required_part(run_id, 'cron run id')}" if run_id is not None else base


def hook_key(agent_id: str | None, hook_id: str) -> str:
    """`agent:<agent>:hook:<id>`: the session of a webhook."""
    return f"agent:{normalize_agent_id(agent_id)}:hook:{_required_part(hook_id, 'hook id')}"


def subagent_key(parent: str, subagent_id: str) -> str:
    """The key of a sub-agent spawned from `parent` (an agent id or a sub-agent's key).

    A sub-agent of an agent is `agent:<agent>:subagent:<id>`; nesting repeats
    the marker: `agent:<agent>:subagent:<a>:subagent:<b>`.
    """
    child = _required_part(subagent_id, "sub-agent id")
    parsed = parse_session_key(parent)
    if parsed is not None and parsed.rest.startswith("subagent:"):
        return f"{parent.strip().lower()}:subagent:{child}"
    agent = parsed.agent_id if parsed is not None else normalize_agent_id(parent)
    return f"agent:{agent}:subagent:{child}"


def subagent_depth(key: str) -> int:
    """How many sub-agents deep a key is: the number of `:subagent:` markers."""
    return key.count(":subagent:")


def request_key(agent_id: str | None, key: str | None) -> str:
    """A key given by a caller, made into a stored key for `agent_id`: the one rule
    for keys every entry point takes (the store's methods, imports, adapters, the
    command line).

    Surrounding whitespace (spaces, tabs, newlines) is trimmed. Without the
    `agent:` prefix the key becomes `agent:<agent>:<key lowercased>`; an empty
    one or `main` means the agent's main key; one that already starts with
    `agent:` is lowercased as is and must parse. No part of the key may be
    empty (`agent:main:`, `agent:main:telegram:direct:`, `a::b`), and no
    control character (a newline, a tab) may stand inside it.

    Raises:
        InvalidSessionKey: for a key that breaks these rules.
    """
    text = (key or "").strip()
    if any(unicodedata.category(char) == "Cc" for char in text):
        raise InvalidSessionKey(key, "a control character (a newline, a tab) inside the key")
    if text[:6].lower() == "agent:":
        lowered = text.lower()
        if parse_session_key(lowered) is None or "" in lowered.split(":"):
            raise InvalidSessionKey(key, "expected agent:<agentId>:<rest>, no part empty")
        return lowered
    if not text or text.lower() == DEFAULT_MAIN_KEY:
        return main_session_key(agent_id)
    if "" in text.split(":"):
        raise InvalidSessionKey(key, "a part of the key is empty (a leading, trailing or double :)")
    return f"agent:{normalize_agent_id(agent_id)}:{text.lower()}"


def _required_part(value: str | None, what: str) -> str:
    text = normalize_peer_id(value)
    if not text:
        raise InvalidSessionKey(value, f"{what} is empty")
    return text


# --- parsing -------------------------------------------------------------------------


@attrs.frozen
class ParsedKey:
    """An agent key split into its agent id and the rest."""

    agent_id: str
    rest: str


def parse_session_key(key: str) -> ParsedKey | None:
    """Split `agent:<agentId>:<rest>`; `None` for a legacy key or a malformed one.

    Empty parts are dropped; an agent key has at least three parts and the
    first is exactly `agent` (case matters).
    """
    parts = [part for part in key.split(":") if part]
    if len(parts) < 3 or parts[0] != "agent":
        return None
    return ParsedKey(agent_id=parts[1], rest=":".join(parts[2:]))


def key_shape(key: str) -> KeyShape:
    """`agent` for an agent key, `malformed` for one that starts with `agent:` but does
    not parse, `legacy` for anything else (an old key or an alias)."""
    if parse_session_key(key) is not None:
        return "agent"
    return "malformed" if key[:6].lower() == "agent:" else "legacy"


def parent_key(key: str) -> str | None:
    """The key of a thread's parent: what precedes the last `:thread:` or `:topic:`."""
    cut = max(key.rfind(marker) for marker in _THREAD_MARKERS)
    return key[:cut] if cut > 0 else None


def chat_type_of_key(key: str) -> Literal["direct", "group", "thread"]:
    """`thread` if the key has a thread marker, else `group` for groups and channels,
    else `direct` (the chat types reset policies are keyed by)."""
    if any(marker in key for marker in _THREAD_MARKERS):
        return "thread"
    if ":group:" in key or ":channel:" in key:
        return "group"
    return "direct"


_CRON_RUN = re.compile(r":cron:[^:]+:run:[^:]+$")


def is_cron_run_key(key: str) -> bool:
    """Whether `key` names one run of a cron job (a fresh session every run)."""
    return _CRON_RUN.search(key) is not None
