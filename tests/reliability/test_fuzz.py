"""Whatever comes from outside — transcripts, keys, queries, metadata — is answered
with a result or a typed error, a rejected input changes nothing, and an answer
is the right one: a patch reads back as RFC 7396 says, a search hit matches."""

from __future__ import annotations

import itertools
import json
import math
import re
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aisopod_session import AisopodError, InvalidInput, NewEntry, SearchQueryError
from aisopod_session._search import Clause, Term, parse_query
from aisopod_session.transfer import import_transcript
from aisopod_shared import Message
from tests.reliability.conftest import PROFILE
from tests.session.snapshot import snapshot

FUZZ = settings.get_profile(PROFILE)
_files = itertools.count()
_sessions = itertools.count()

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


# --- search -----------------------------------------------------------------------

CORPUS: dict[str, tuple[tuple[str, str], ...]] = {
    "agent:main:fuzz:a": (
        ("user", "Déjà vu: the deploy to staging failed, again!"),
        ("assistant", "Let me check the deployment logs (production) — café first?"),
        ("tool", "ERROR: disk quota exceeded on staging; retry in 42 seconds."),
    ),
    "agent:main:fuzz:b": (
        ("user", "Café au lait, s'il vous plaît. Très bien!"),
        ("assistant", 'Ordering coffee for the trip to Lisbon & Porto: "naïve" plan?'),
        ("note", "remember the deploy freeze on Friday (über-important)"),
    ),
    "agent:ops:fuzz": (
        ("user", "deploy the ops dashboard; ÉCOLE, Noël, façade, jalapeño..."),
        ("assistant", "L'été à Genève: résumé, rôle, piñata, Zürich — deploy v2 at 9."),
    ),
}
"""What the search tests search, by key: (role, text) with accents, capitals,
apostrophes, hyphens, brackets, quotes and digits."""

# Letters whose folding every backend agrees on: ASCII, and accented letters that
# SQLite's remove_diacritics and PostgreSQL's unaccent both take to their base
# letter. Beyond them (ß, ø, ligatures, other scripts) the engines fold
# differently, and a term holding such a letter is not judged.
_FOLDABLE = frozenset(
    "abcdefghijklmnopqrstuvwxyz0123456789àâäáçéèêëíìîïñóòôöúùûü"
    "ABCDEFGHIJKLMNOPQRSTUVWXYZÀÂÄÁÇÉÈÊËÍÌÎÏÑÓÒÔÖÚÙÛÜ"
)


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).lower()


def _tokens(text: str) -> list[str]:
    """The words of a corpus text as every backend indexes them: case and accents
    folded, split at whatever is not a letter or a digit."""
    return re.findall(r"[a-z0-9]+", _fold(text))


def _term_found(term: Term, tokens: list[str]) -> bool | None:
    """Whether a term occurs in a text's tokens: a word as a token, a prefix as the
    start of one, a phrase as tokens in a row. `None` when the backends may
    disagree: a character outside `_FOLDABLE`, such as `ß` (only PostgreSQL's
    unaccent folds it) or `_` (the query parser keeps it in a word, the engines
    split there: SQLite then reads a phrase, PostgreSQL both halves anywhere)."""
    if not all(set(word) <= _FOLDABLE for word in term.words):
        return None
    wanted = [_fold(word) for word in term.words]
    if term.prefix:
        return any(token.startswith(wanted[0]) for token in tokens)
    width = len(wanted)
    return any(tokens[i : i + width] == wanted for i in range(len(tokens) - width + 1))


def _may_match(clauses: tuple[Clause, ...], tokens: list[str]) -> bool:
    """False when the text certainly does not match the query: a clause to look
    for has no term that can be in it, or an excluded term is in it."""
    for clause in clauses:
        found = [_term_found(term, tokens) for term in clause.terms]
        if clause.negated and True in found:
            return False
        if not clause.negated and all(f is False for f in found):
            return False
    return True


def _all_judged(clauses: tuple[Clause, ...]) -> bool:
    return all(_term_found(term, []) is not None for c in clauses for term in c.terms)


def _entry(role: str, text: str) -> Message | NewEntry:
    if role == "tool":
        return Message.tool_result("c1", text)
    if role == "note":
        return NewEntry.custom_message("note", text)
    return Message.user(text) if role == "user" else Message.assistant(text)


@pytest.fixture(name="corpus")
def corpus_fixture(store: Any) -> dict[tuple[str, int], str]:
    """`CORPUS` in the store, once per test (the examples only read it): each
    entry's text as the store reads it back, by (session id, seq)."""
    texts = {}
    for key, entries in CORPUS.items():
        session = store.get_or_create(key)
        store.append(session.id, [_entry(role, text) for role, text in entries])
        for entry in store.history(session.id).entries:
            texts[session.id, entry.seq] = entry.text
    assert len(texts) == sum(len(entries) for entries in CORPUS.values())
    return texts


_TEXTS = [text for entries in CORPUS.values() for _, text in entries]
_WORDS = sorted({word for text in _TEXTS for word in re.findall(r"\w+", text)})
_PHRASES = sorted(
    {
        '"' + " ".join(words[i : i + width]) + '"'
        for words in (re.findall(r"\w+", text) for text in _TEXTS)
        for width in (2, 3)
        for i in range(len(words) - width + 1)
    }
)
_spellings: list[Callable[[str], str]] = [str, str.upper, str.lower, str.title, _fold]
word = st.builds(lambda w, spell: spell(w), st.sampled_from(_WORDS), st.sampled_from(_spellings))
query_parts = st.one_of(
    word,
    st.builds(lambda w, n: w[:n] + "*", word, st.integers(1, 4)),
    st.sampled_from(_PHRASES),
    (word | st.sampled_from(_PHRASES)).map(lambda part: "-" + part),
    st.sampled_from(["OR", "or", "-", "*", '"', "!!!", "(", "-*", "--", "é*", "a_b"]),
    st.text(max_size=12),
)
# Mostly the corpus's own words, so that searches find something to check.
queries = st.lists(query_parts, min_size=1, max_size=4).map(" ".join) | st.text(max_size=60)


@FUZZ
@given(query=queries)
def test_any_search_query_is_answered_or_refused_cleanly(
    store: Any, corpus: dict[tuple[str, int], str], query: str
) -> None:
    """A query is refused with a SearchQueryError, or every hit matches it; on
    SQLite, whose matching is fully documented, every match is a hit."""
    try:
        page = store.search(query, limit=100)
    except SearchQueryError:
        return
    clauses = parse_query(query)
    found = [(hit.session_id, hit.seq) for hit in page.hits]
    assert len(set(found)) == len(found), "an entry is hit twice"
    for hit in found:
        assert _may_match(clauses, _tokens(corpus[hit])), f"{corpus[hit]!r} is no match"
    # PostgreSQL folds accents only with `unaccent`, and its parser gives the
    # parts of a hyphenated word positions of their own (a phrase across one is
    # missed): only SQLite is held to finding every match.
    if store.url.startswith("sqlite") and _all_judged(clauses):
        expected = {key for key, text in corpus.items() if _may_match(clauses, _tokens(text))}
        assert set(found) == expected


# --- metadata -----------------------------------------------------------------------

# PostgreSQL cannot store NUL in text: what must be stored leaves it out.
storable_text = st.characters(codec="utf-8", exclude_characters="\x00")
# Few key spellings, so that a patch often lands on keys its target already has.
common_keys = st.sampled_from(["a", "b", "ü", ""])
storable_keys = common_keys | st.text(storable_text, max_size=8)
storable_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(storable_text, max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(storable_keys, inner, max_size=3),
    max_leaves=10,
)
any_keys = common_keys | st.text(max_size=8)
any_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(any_keys, inner, max_size=3),
    max_leaves=10,
)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396, section 2, as written there."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for name, value in patch.items():
        if value is None:
            result.pop(name, None)
        else:
            result[name] = merge_patch(result.get(name), value)
    return result


def same_json(a: Any, b: Any) -> bool:
    """Equal as JSON numbers are (IEEE doubles): PostgreSQL keeps numbers as
    decimals, so a float may read back as the integer its shortest decimal spells
    (1.1529215046068472e18 as 1152921504606847200), which Python's == tells apart."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b if isinstance(a, int) and isinstance(b, int) else float(a) == float(b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(map(same_json, a, b))
    return type(a) is type(b) and bool(a == b)


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [*value, *(leaf for item in value.values() for leaf in _leaves(item))]
    if isinstance(value, list):
        return [leaf for item in value for leaf in _leaves(item)]
    return [value]


def _fate(patch: Any) -> Literal["applied", "refused", "either"]:
    """What the store must do with a patch. Metadata is a JSON object, so a patch
    that is not one (RFC 7396 would replace the whole document) is refused;
    so is a value JSON cannot carry (NaN, an infinity, an integer beyond 64 bits).
    NUL in text is the backend's call: SQLite stores it, PostgreSQL cannot."""
    if not isinstance(patch, dict):
        return "refused"
    leaves = _leaves(patch)
    for leaf in leaves:
        if isinstance(leaf, float) and not math.isfinite(leaf):
            return "refused"
        if isinstance(leaf, int) and not isinstance(leaf, bool) and not -(2**63) <= leaf < 2**64:
            return "refused"
    if any(isinstance(leaf, str) and "\x00" in leaf for leaf in leaves):
        return "either"
    return "applied"


@FUZZ
@given(
    prior=st.dictionaries(storable_keys, storable_values, max_size=4),
    # Mostly objects, the patches that can apply; the rest is refused whole.
    patch=st.dictionaries(any_keys, any_values, max_size=4) | any_values,
)
def test_any_metadata_patch_is_applied_or_refused_cleanly(
    store: Any, prior: dict[str, Any], patch: Any
) -> None:
    """A patch is refused with a typed error and changes nothing, or the metadata
    reads back as the RFC 7396 merge of the patch into what was there."""
    session = store.get_or_create(f"agent:main:meta-{next(_sessions)}")
    try:
        store.patch(session.id, metadata=prior)
        before = store.get(session.id).metadata
        assert same_json(before, merge_patch({}, prior))
        state = snapshot(store)
        if patch is None:
            # `metadata=None` is the keyword's default, "leave the metadata alone",
            # not RFC 7396's null document.
            store.patch(session.id, metadata=None)
            assert same_json(store.get(session.id).metadata, before)
            return
        fate = _fate(patch)
        if fate == "refused":
            with pytest.raises(InvalidInput):
                store.patch(session.id, metadata=patch)
            assert snapshot(store) == state
            return
        try:
            store.patch(session.id, metadata=patch)
        except InvalidInput:
            if fate == "applied":
                raise
            assert snapshot(store) == state
            return
        assert same_json(store.get(session.id).metadata, merge_patch(before, patch))
    finally:
        store.delete(session.id)
