"""Whatever comes from outside — transcripts, keys, queries, metadata — is answered
with a result or a typed error, and a rejected input changes nothing."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aisopod_session import AisopodError
from aisopod_session.transcripts import import_transcript
from tests.session.snapshot import snapshot

FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
_files = itertools.count()

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
entry_like = st.fixed_dictionaries(
    {"type": st.sampled_from(["message", "compaction", "custom", "label", "zz"])},
    optional={
        "id": st.text(max_size=10),
        "parentId": st.none() | st.text(max_size=10),
        "timestamp": st.text(max_size=30),
        "message": json_values,
        "firstKeptEntryId": st.text(max_size=10),
        "firstKeptEntryIndex": st.integers(-3, 30),
    },
)
header = st.fixed_dictionaries(
    {"type": st.just("session"), "id": st.text(min_size=1, max_size=40)},
    optional={
        "version": st.sampled_from([1, 2, 3, 4, "3", None]),
        "timestamp": st.text(max_size=30),
    },
)
lines = st.one_of(
    # Python's json writes what orjson refuses (huge integers, NaN): fuzz for it too.
    entry_like.map(lambda d: json.dumps(d, allow_nan=True)),
    st.text(max_size=40),
    st.just('{"type": "message", "id": "x"'),
)


def _dumps(value: Any) -> str:
    return json.dumps(value, allow_nan=True)


@FUZZ
@given(first=header.map(_dumps) | st.text(max_size=60), rest=st.lists(lines, max_size=8))
def test_any_transcript_file_is_imported_or_refused_cleanly(
    store: Any, tmp_path: Path, first: str, rest: list[str]
) -> None:
    path = tmp_path / f"fuzz-{next(_files)}.jsonl"
    path.write_text("\n".join([first, *rest]), encoding="utf-8", errors="surrogatepass")
    before = snapshot(store.sync if hasattr(store, "sync") else store)
    target = store.sync if hasattr(store, "sync") else store
    try:
        result = import_transcript(target, path, key="agent:main:fuzz")
    except AisopodError:
        assert snapshot(target) == before
        return
    except UnicodeDecodeError:
        raise AssertionError("a bad encoding must be a TranscriptError") from None
    assert result.session.entry_count == result.entries
    target.delete(result.session.id)


@FUZZ
@given(
    key=st.text(max_size=80)
    | st.builds(lambda a, b: f"agent:{a}:{b}", st.text(max_size=10), st.text(max_size=10))
)
def test_any_session_key_is_used_or_refused_cleanly(store: Any, key: str) -> None:
    before = snapshot(store)
    try:
        session = store.get_or_create(key)
    except AisopodError:
        assert snapshot(store) == before
        return
    assert session.key is not None
    assert session.key.startswith("agent:")
    assert store.current(key).id == session.id


@FUZZ
@given(query=st.text(max_size=60))
def test_any_search_query_is_answered_or_refused_cleanly(store: Any, query: str) -> None:
    try:
        store.search(query)
    except AisopodError:
        pass


@FUZZ
@given(patch=json_values)
def test_any_metadata_patch_is_applied_or_refused_cleanly(store: Any, patch: Any) -> None:
    session = store.get_or_create("agent:main:meta")
    before = snapshot(store)
    try:
        store.patch(session.id, metadata=patch)
    except AisopodError:
        assert snapshot(store) == before
