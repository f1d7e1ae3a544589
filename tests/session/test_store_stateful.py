"""The store against a plain in-memory model of it (hypothesis stateful testing)."""

from __future__ import annotations

import itertools
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from aisopod_session import ConflictError
from aisopod_shared import Message

KEYS = ("main", "telegram:direct:1", "discord:group:g", "slack:channel:c:thread:t")
_agents = itertools.count()


@attrs.define
class ModelSession:
    key: str
    status: str = "active"
    version: int = 1
    texts: list[str] = attrs.Factory(list)
    metadata: dict[str, Any] = attrs.Factory(dict)
    appends: dict[str, list[int]] = attrs.Factory(dict)


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    result = dict(target)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = value
    return result


# Any text a store can keep: NUL is refused on every backend (PostgreSQL cannot
# store it), and lone surrogates are not UTF-8.
storable = st.text(st.characters(exclude_characters="\x00", exclude_categories=["Cs"]), max_size=20)
texts = st.lists(storable.filter(bool), min_size=1, max_size=4)
metadata_patches = st.dictionaries(
    st.sampled_from(["a", "b", "c"]), st.none() | st.integers(-5, 5) | storable
)


class StoreMachine(RuleBasedStateMachine):
    """Random sequences of calls; after each, the store must agree with the model."""

    open_store: Any = None

    sessions = Bundle("sessions")

    def __init__(self) -> None:
        super().__init__()
        # Each run gets an agent of its own, so runs sharing one database
        # (a file, a PostgreSQL schema) never see each other.
        self.agent = f"m{next(_agents)}"
        self.root = type(self).open_store()
        self.store = self.root.for_agent(self.agent)
        self.model: dict[str, ModelSession] = {}
        self.bindings: dict[str, str] = {}

    def teardown(self) -> None:
        self.root.close()

    def _key(self, short: str) -> str:
        return f"agent:{self.agent}:{short}"

    @initialize(target=sessions, short=st.sampled_from(KEYS))
    def first_session(self, short: str) -> str:
        return self._get_or_create(short)

    @rule(target=sessions, short=st.sampled_from(KEYS))
    def get_or_create(self, short: str) -> str:
        return self._get_or_create(short)

    def _get_or_create(self, short: str) -> str:
        key = self._key(short)
        session = self.store.get_or_create(key)
        if key in self.bindings:
            assert session.id == self.bindings[key]
        else:
            assert session.id not in self.model
            self.model[session.id] = ModelSession(key)
            self.bindings[key] = session.id
        return str(session.id)

    @rule(target=sessions, short=st.sampled_from(KEYS))
    def reset(self, short: str) -> str:
        key = self._key(short)
        new = self.store.reset(key)
        old = self.bindings.get(key)
        if old is not None:
            self.model[old].status = "archived"
            self.model[old].version += 1
        self.model[new.id] = ModelSession(key)
        self.bindings[key] = new.id
        return str(new.id)

    @rule(
        session_id=sessions,
        batch=texts,
        idempotency_key=st.none() | st.sampled_from(["k1", "k2"]),
        version_offset=st.none() | st.sampled_from([0, 0, 1, -1]),
    )
    def append(
        self,
        session_id: str,
        batch: list[str],
        idempotency_key: str | None,
        version_offset: int | None,
    ) -> None:
        model = self.model.get(session_id)
        if model is None:
            return
        expected = None if version_offset is None else model.version + version_offset
        messages = [Message.user(text) for text in batch]
        if idempotency_key is not None and idempotency_key in model.appends:
            got = self.store.append(
                session_id, messages, idempotency_key=idempotency_key, expected_version=expected
            )
            assert [e.seq for e in got] == model.appends[idempotency_key]
            return
        if expected is not None and expected != model.version:
            with pytest.raises(ConflictError):
                self.store.append(
                    session_id, messages, idempotency_key=idempotency_key, expected_version=expected
                )
            return
        got = self.store.append(
            session_id, messages, idempotency_key=idempotency_key, expected_version=expected
        )
        first = len(model.texts) + 1
        assert [e.seq for e in got] == list(range(first, first + len(batch)))
        model.texts.extend(batch)
        model.version += 1
        if idempotency_key is not None:
            model.appends[idempotency_key] = [e.seq for e in got]

    @rule(session_id=sessions, patch=metadata_patches)
    def patch(self, session_id: str, patch: dict[str, Any]) -> None:
        model = self.model.get(session_id)
        if model is None:
            return
        got = self.store.patch(session_id, metadata=patch)
        model.metadata = _merge(model.metadata, patch)
        model.version += 1
        assert got.metadata == model.metadata

    @rule(session_id=consumes(sessions))
    def delete(self, session_id: str) -> None:
        existed = self.store.delete(session_id)
        model = self.model.pop(session_id, None)
        assert existed == (model is not None)
        if model is not None and self.bindings.get(model.key) == session_id:
            del self.bindings[model.key]

    @rule(session_id=sessions, last=st.integers(1, 6))
    def read_last(self, session_id: str, last: int) -> None:
        model = self.model.get(session_id)
        if model is None:
            return
        page = self.store.history(session_id, last=last)
        assert [e.text for e in page.entries] == model.texts[-last:]
        assert [e.seq for e in page.entries] == list(
            range(max(1, len(model.texts) - last + 1), len(model.texts) + 1)
        )

    @invariant()
    def sessions_match(self) -> None:
        listed = {s.id: s for s in self.store.list(limit=1000).sessions}
        assert set(listed) == set(self.model)
        for session_id, model in self.model.items():
            got = listed[session_id]
            assert (got.status, got.version, got.entry_count, got.message_count) == (
                model.status,
                model.version,
                len(model.texts),
                len(model.texts),
            )
            assert got.metadata == model.metadata
            assert got.leaf_seq == len(model.texts)

    @invariant()
    def bindings_match(self) -> None:
        for key, session_id in self.bindings.items():
            assert self.store.current(key).id == session_id


def test_the_store_behaves_like_its_model(open_test_store: Any) -> None:
    machine = type("Machine", (StoreMachine,), {"open_store": staticmethod(open_test_store)})
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=25,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
