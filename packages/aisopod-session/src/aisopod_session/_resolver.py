"""The path of an inbound message to its session.

Route the message to a key, find the key's current session (made if there
is none), and start a new one when the current one is stale under the reset
policy or the message is a reset trigger. Freshness is decided when a
message arrives, never by a timer. The decision is re-made inside the write
transaction that acts on it, so two processes resolving one key at the same
instant end with one current session.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal, TypeAlias

import attrs

from aisopod_session._config import SessionConfig
from aisopod_session._model import Origin, Session
from aisopod_session.keys import (
    build_session_key,
    is_cron_run_key,
    normalize_peer_id,
    resolve_identity,
)

__all__ = ["Inbound", "Resolution", "ResolutionReason", "decide", "origin_of", "route", "user_of"]

ResolutionReason: TypeAlias = Literal["new", "daily", "idle", "trigger"]


@attrs.frozen
class Inbound:
    """An inbound message, as a channel delivers it.

    Give `key` for messages that do not come from a chat (cron runs,
    webhooks, sub-agents: see `aisopod_session.keys`); otherwise the key is
    built from the channel, chat type, peer, account and thread under the
    configuration's DM scope and identity links.
    """

    channel: str | None = None
    chat_type: str = "direct"
    peer_id: str | None = None
    account_id: str | None = None
    thread_id: str | None = None
    agent_id: str | None = None
    text: str | None = None
    key: str | None = None
    label: str | None = None
    at: datetime | None = None
    """When the message arrived (default: the store's clock)."""


@attrs.frozen
class Resolution:
    """The session an inbound message goes to, and how it was chosen."""

    session: Session
    key: str
    reason: ResolutionReason | None
    """Why a new session was started (`None`: the current one was fresh)."""
    previous: Session | None
    """The session this message archived, if it started a new one over an old one."""
    text: str | None
    """The message text to pass on: after a reset trigger, what followed it."""
    trigger: str | None

    @property
    def is_new(self) -> bool:
        """Whether this message starts a session."""
        return self.reason is not None


def route(inbound: Inbound, config: SessionConfig) -> str:
    """The key an inbound message belongs to (before the store normalises it)."""
    if inbound.key is not None:
        return inbound.key
    return build_session_key(
        agent_id=inbound.agent_id,
        channel=inbound.channel,
        chat_type=inbound.chat_type,
        peer_id=inbound.peer_id,
        account_id=inbound.account_id,
        thread_id=inbound.thread_id,
        main_key=config.main_key,
        dm_scope=config.dm_scope,
        identity_links=config.identity_links,
    )


def origin_of(inbound: Inbound) -> Origin:
    """What the session made for this message records of where it came from."""
    return Origin(
        channel=inbound.channel.strip().lower() if inbound.channel else None,
        account=inbound.account_id,
        chat_type=inbound.chat_type if inbound.key is None else None,
        peer=inbound.peer_id,
        thread=inbound.thread_id,
        label=inbound.label,
    )


def user_of(inbound: Inbound, config: SessionConfig) -> str | None:
    """The user a direct chat is with: its peer, identity links applied (the
    canonical name), as keys name it. Other messages have no one user."""
    if inbound.key is not None or inbound.chat_type != "direct" or not inbound.peer_id:
        return None
    # Normalised as keys normalise peers: links or not, one user is one name.
    user = resolve_identity(inbound.peer_id, inbound.channel or "", config.identity_links)
    return normalize_peer_id(user) or None


def decide(
    current: Session | None,
    key: str,
    inbound: Inbound,
    config: SessionConfig,
    now: datetime,
    *,
    triggered: bool,
) -> ResolutionReason | None:
    """Whether the key needs a new session for this message, and why."""
    if current is None:
        return "new"
    if triggered:
        return "trigger"
    if is_cron_run_key(key):
        return None  # a run's session lives as long as the run
    policy = config.policy_for(key, inbound.channel)
    return policy.stale_reason(
        created_at=current.created_at, active_at=current.active_at, now=now, zone=config.zone
    )
