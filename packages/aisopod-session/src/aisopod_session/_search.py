"""Full-text search queries: one small language, parsed once, run on any backend.

A query is words (all must match), "quoted phrases", prefixes (`deplo*`),
alternatives (`deploy OR release`) and exclusions (`-staging`). It is parsed
here into terms; each backend renders them for its engine (SQLite FTS5,
PostgreSQL tsquery), so no user text ever reaches an engine's own query
syntax and a malformed query is a `SearchQueryError`, never an engine error.
"""

from __future__ import annotations

import re
from datetime import datetime

import attrs

from aisopod_session._errors import SearchQueryError
from aisopod_session._model import Items

__all__ = ["Clause", "SearchHit", "SearchPage", "Term", "parse_query"]

MAX_QUERY_LENGTH = 1000
MAX_TERMS = 32

_TOKEN = re.compile(r'\s*(?:(-)?"([^"]*)("?)|(\S+))')
_WORD = re.compile(r"\w+", re.UNICODE)


@attrs.frozen
class Term:
    """One thing to look for: a word, a phrase (several words in order) or a prefix."""

    words: tuple[str, ...]
    prefix: bool = False

    @property
    def is_phrase(self) -> bool:
        """Whether the term is several words in order."""
        return len(self.words) > 1


@attrs.frozen
class Clause:
    """Terms of which one must match (`a OR b`), or, negated, none may."""

    terms: tuple[Term, ...]
    negated: bool = False


@attrs.frozen
class SearchHit:
    """One matching entry, with a highlighted snippet of its text."""

    session_id: str
    agent_id: str
    key: str | None
    seq: int
    entry_id: str
    role: str | None
    created_at: datetime
    snippet: str
    rank: float
    """Higher is better; comparable within one result list."""


@attrs.frozen
class SearchPage(Items[SearchHit]):
    """Hits, best first; iterate it, index it, `len()` it.

    `next` (also `cursor`) fetches the page after this one and `previous` the
    page before it, in the same order: pass either as `cursor=` to `search`
    (`None`: nothing further that way; `previous` is `None` on the first page).
    """

    hits: tuple[SearchHit, ...]
    cursor: str | None
    previous: str | None = None

    def _items(self) -> tuple[SearchHit, ...]:
        return self.hits

    @property
    def next(self) -> str | None:
        return self.cursor


def _words(text: str) -> tuple[str, ...]:
    return tuple(word.lower() for word in _WORD.findall(text))


def parse_query(query: object) -> tuple[Clause, ...]:
    """Parse a search query into clauses that must all hold.

    Raises:
        SearchQueryError: for an empty or over-long query, an unbalanced quote,
            a dangling OR, or a query with nothing to look for but exclusions.
    """
    if not isinstance(query, str):
        raise SearchQueryError("a search query must be a string", field="query")
    if len(query) > MAX_QUERY_LENGTH:
        raise SearchQueryError(f"longer than {MAX_QUERY_LENGTH} characters", field="query")
    if "\x00" in query:
        raise SearchQueryError("must not contain NUL characters", field="query")
    clauses: list[Clause] = []
    pending_or = False
    position = 0
    while position < len(query):
        match = _TOKEN.match(query, position)
        if match is None or match.end() == position:
            break
        position = match.end()
        negated_phrase, phrase, closed, bare = match.groups()
        if bare == "OR":
            if not clauses or clauses[-1].negated or pending_or:
                raise SearchQueryError("OR needs a term on each side", field="query")
            pending_or = True
            continue
        negated = False
        if phrase is not None:
            if not closed:
                raise SearchQueryError("a quote is not closed", field="query")
            term = Term(_words(phrase))
            negated = bool(negated_phrase)
        else:
            text = bare or ""
            if text.startswith("-") and len(text) > 1:
                negated, text = True, text[1:]
            prefix = text.endswith("*")
            term = Term(_words(text.rstrip("*")), prefix=prefix)
            if prefix and len(term.words) != 1:
                raise SearchQueryError(f"a prefix must be one word: {bare!r}", field="query")
        if not term.words:
            if pending_or:
                raise SearchQueryError("OR needs a term on each side", field="query")
            continue  # punctuation alone: nothing to look for
        if pending_or:
            if negated:
                raise SearchQueryError("an exclusion cannot be an alternative", field="query")
            last = clauses.pop()
            clauses.append(Clause((*last.terms, term)))
            pending_or = False
        else:
            clauses.append(Clause((term,), negated=negated))
    if pending_or:
        raise SearchQueryError("OR needs a term on each side", field="query")
    if not any(not clause.negated for clause in clauses):
        raise SearchQueryError("a query needs at least one word to look for", field="query")
    if sum(len(clause.terms) for clause in clauses) > MAX_TERMS:
        raise SearchQueryError(f"at most {MAX_TERMS} terms", field="query")
    return tuple(clauses)
