"""Session keys: the examples of spec/session-keys.md, and properties of keys."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aisopod_session import InvalidSessionKey
from aisopod_session.keys import (
    DmScope,
    build_session_key,
    chat_type_of_key,
    cron_key,
    hook_key,
    is_cron_run_key,
    key_shape,
    normalize_account_id,
    normalize_agent_id,
    normalize_channel,
    normalize_main_key,
    parent_key,
    parse_session_key,
    request_key,
    subagent_depth,
    subagent_key,
    thread_key,
)

# --- the spec's examples ---------------------------------------------------------------


def test_main_scope_direct_uses_the_agents_main_key() -> None:
    assert build_session_key(agent_id="Main", channel="telegram", chat_type="direct") == (
        "agent:main:main"
    )


def test_main_key_is_trimmed_and_lowercased() -> None:
    key = build_session_key(agent_id="main", main_key=" Home ", channel="x", peer_id="1")
    assert key == "agent:main:home"


def test_per_channel_peer_direct() -> None:
    key = build_session_key(
        channel="telegram", chat_type="direct", peer_id="123", dm_scope="per-channel-peer"
    )
    assert key == "agent:main:telegram:direct:123"


def test_per_account_channel_peer_uses_the_default_account() -> None:
    key = build_session_key(
        channel="WhatsApp",
        account_id="",
        chat_type="direct",
        peer_id="+15551234",
        dm_scope="per-account-channel-peer",
    )
    assert key == "agent:main:whatsapp:default:direct:+15551234"


def test_identity_link_replaces_the_peer_with_its_canonical_name() -> None:
    key = build_session_key(
        channel="discord",
        chat_type="direct",
        peer_id="987",
        dm_scope="per-peer",
        identity_links={"alice": ["discord:987"]},
    )
    assert key == "agent:main:direct:alice"


def test_groups_are_isolated_and_lowercased() -> None:
    assert build_session_key(channel="Discord", chat_type="group", peer_id="G1") == (
        "agent:main:discord:group:g1"
    )


def test_thread_key_hangs_from_its_channel() -> None:
    key = build_session_key(channel="slack", chat_type="channel", peer_id="C0ABC", thread_id="T7")
    assert key == "agent:main:slack:channel:c0abc:thread:t7"


def test_agent_id_with_invalid_characters_is_cleaned() -> None:
    assert build_session_key(agent_id="My Agent!", channel="x") == "agent:my-agent:main"


def test_parent_of_a_thread_key() -> None:
    assert (
        parent_key("agent:main:slack:channel:c0abc:thread:t7") == "agent:main:slack:channel:c0abc"
    )


# --- normalising -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("", "main"),
        ("   ", "main"),
        (None, "main"),
        ("Ops", "ops"),
        ("a_b-c", "a_b-c"),
        ("--x--", "x"),
        ("!!!", "main"),
        ("a" * 70, "a" * 64),
        ("héllo wörld", "h-llo-w-rld"),
    ],
)
def test_agent_ids_normalise(raw: str | None, expected: str) -> None:
    assert normalize_agent_id(raw) == expected


def test_account_ids_default_to_default() -> None:
    assert normalize_account_id("  ") == "default"
    assert normalize_account_id("Work Phone") == "work-phone"


def test_channels_and_main_keys_have_defaults() -> None:
    assert normalize_channel(" ") == "unknown"
    assert normalize_main_key("") == "main"


def test_empty_peer_in_a_direct_chat_falls_back_to_the_main_key() -> None:
    scopes: tuple[DmScope, ...] = ("per-peer", "per-channel-peer", "per-account-channel-peer")
    for scope in scopes:
        key = build_session_key(channel="telegram", peer_id=" ", dm_scope=scope)
        assert key == "agent:main:main"


def test_empty_peer_in_a_group_becomes_unknown() -> None:
    assert build_session_key(channel="discord", chat_type="group") == (
        "agent:main:discord:group:unknown"
    )


def test_dm_is_an_alias_of_direct() -> None:
    key = build_session_key(channel="t", chat_type="dm", peer_id="5", dm_scope="per-peer")
    assert key == "agent:main:direct:5"


def test_groups_never_take_the_account() -> None:
    key = build_session_key(channel="slack", chat_type="channel", peer_id="C1", account_id="work")
    assert key == "agent:main:slack:channel:c1"


def test_identity_links_match_bare_ids_case_insensitively() -> None:
    links = {"Bob": [" TELEGRAM:42 ", "7"]}
    assert build_session_key(
        channel="Telegram", peer_id="42", dm_scope="per-channel-peer", identity_links=links
    ) == ("agent:main:telegram:direct:bob")
    assert build_session_key(
        channel="signal", peer_id="7", dm_scope="per-peer", identity_links=links
    ) == ("agent:main:direct:bob")


def test_identity_links_are_not_consulted_with_scope_main() -> None:
    key = build_session_key(
        channel="discord", peer_id="987", dm_scope="main", identity_links={"a": ["987"]}
    )
    assert key == "agent:main:main"


def test_unknown_chat_type_and_scope_are_rejected() -> None:
    with pytest.raises(InvalidSessionKey):
        build_session_key(channel="x", chat_type="broadcast")
    with pytest.raises(InvalidSessionKey):
        build_session_key(channel="x", peer_id="1", dm_scope="per-planet")  # type: ignore[arg-type]


# --- other keys ------------------------------------------------------------------------


def test_cron_hook_and_subagent_keys() -> None:
    assert cron_key("Main", "Daily") == "agent:main:cron:daily"
    run = cron_key("main", "daily", "r1")
    assert run == "agent:main:cron:daily:run:r1"
    assert is_cron_run_key(run)
    assert not is_cron_run_key("agent:main:cron:daily")
    assert hook_key("ops", "GitHub") == "agent:ops:hook:github"
    child = subagent_key("ops", "a1")
    assert child == "agent:ops:subagent:a1"
    grandchild = subagent_key(child, "b2")
    assert grandchild == "agent:ops:subagent:a1:subagent:b2"
    assert subagent_depth(grandchild) == 2
    assert subagent_depth("agent:main:main") == 0


def test_request_keys() -> None:
    assert request_key("ops", "Chat-42") == "agent:ops:chat-42"
    assert request_key("ops", "") == "agent:ops:main"
    assert request_key("ops", "MAIN") == "agent:ops:main"
    assert request_key("ops", "Agent:Main:X") == "agent:main:x"
    with pytest.raises(InvalidSessionKey):
        request_key("ops", "agent:only")


def test_thread_markers_old_and_new() -> None:
    assert parent_key("agent:main:telegram:group:1:topic:9") == "agent:main:telegram:group:1"
    assert parent_key("agent:main:main") is None
    assert thread_key("agent:main:x:group:1", " ") == "agent:main:x:group:1"
    assert chat_type_of_key("agent:main:telegram:group:1:topic:9") == "thread"
    assert chat_type_of_key("agent:main:slack:channel:c1") == "group"
    assert chat_type_of_key("agent:main:telegram:direct:1") == "direct"


def test_parsing() -> None:
    parsed = parse_session_key("agent:ops::discord:channel:42")
    assert parsed is not None
    assert (parsed.agent_id, parsed.rest) == ("ops", "discord:channel:42")
    assert parse_session_key("Agent:ops:x") is None
    assert key_shape("Agent:ops:x") == "malformed"
    assert key_shape("agent:ops") == "malformed"
    assert key_shape("telegram:123") == "legacy"
    assert key_shape("agent:ops:main") == "agent"


def test_matrix_ids_with_colons_stay_in_the_key() -> None:
    key = build_session_key(
        channel="matrix", peer_id="@Alice:example.org", dm_scope="per-channel-peer"
    )
    assert key == "agent:main:matrix:direct:@alice:example.org"


# --- properties ------------------------------------------------------------------------

ids = st.text(max_size=80)


@given(ids)
def test_normalising_agent_ids_is_idempotent(raw: str) -> None:
    once = normalize_agent_id(raw)
    assert normalize_agent_id(once) == once


@given(ids)
def test_normalising_account_ids_is_idempotent(raw: str) -> None:
    once = normalize_account_id(raw)
    assert normalize_account_id(once) == once


@given(ids)
def test_normalising_main_keys_is_idempotent(raw: str) -> None:
    once = normalize_main_key(raw)
    assert normalize_main_key(once) == once


@given(
    agent=ids,
    channel=ids,
    chat_type=st.sampled_from(["direct", "dm", "group", "channel"]),
    peer=ids,
    account=ids,
    thread=st.none() | ids,
    scope=st.sampled_from(["main", "per-peer", "per-channel-peer", "per-account-channel-peer"]),
)
def test_a_built_key_parses_back_to_its_agent_id(
    agent: str,
    channel: str,
    chat_type: str,
    peer: str,
    account: str,
    thread: str | None,
    scope: str,
) -> None:
    key = build_session_key(
        agent_id=agent,
        channel=channel,
        chat_type=chat_type,
        peer_id=peer,
        account_id=account,
        thread_id=thread,
        dm_scope=scope,  # type: ignore[arg-type]
    )
    parsed = parse_session_key(key)
    assert parsed is not None
    assert parsed.agent_id == normalize_agent_id(agent)
    assert key.startswith(f"agent:{parsed.agent_id}:")
