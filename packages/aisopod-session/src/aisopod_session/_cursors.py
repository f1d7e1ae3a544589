"""Page cursors: the one argument (`cursor=`) that fetches the page beside another.

Each kind of call has a cursor form of its own, and refuses the others':

- `history` and `path`: `before:SEQ` / `after:SEQ`, the entries before or after a seq.
- `list`: `UPDATED.SID`, the sessions after (older than) the one with that keyset,
  and `before:UPDATED.SID`, the sessions before it. The bare form is the one lists
  always gave, so a cursor kept from before lists had a `previous` still works.
- `search`: `N`, the hits from the N-th on (hits are ranked, so they have no keyset).
"""

from __future__ import annotations

from typing import Literal

from aisopod_session._errors import InvalidInput

__all__ = [
    "PageSide",
    "SessionKey",
    "list_cursor",
    "page_cursor",
    "read_list_cursor",
    "read_page_cursor",
    "read_search_cursor",
    "search_cursor",
]

PageSide = Literal["before", "after"]

SessionKey = tuple[int, int]
"""Where a session stands in a list: its `updated_at` in microseconds, then its sid."""

# Every number in a cursor fits a signed 64-bit column, on every backend.
_MAX_DIGITS = 18
_BEFORE = "before:"


def _number(text: str) -> int | None:
    if text.isascii() and text.isdigit() and len(text) <= _MAX_DIGITS:
        return int(text)
    return None


def page_cursor(side: PageSide, seq: int) -> str:
    """A history cursor: the entries `before` or `after` a seq (`before:120`)."""
    return f"{side}:{seq}"


def read_page_cursor(cursor: object) -> tuple[PageSide, int]:
    """The side and seq of a `page_cursor`.

    Raises:
        InvalidInput: for anything else.
    """
    side, _, digits = cursor.partition(":") if isinstance(cursor, str) else ("", "", "")
    seq = _number(digits)
    if side not in ("before", "after") or seq is None:
        raise InvalidInput(
            "not a page cursor (a page's `next` or `previous`: before:SEQ or after:SEQ)",
            field="cursor",
        )
    return ("before" if side == "before" else "after"), seq


def list_cursor(side: PageSide, key: SessionKey) -> str:
    """A list cursor: the sessions `after` a keyset in list order (older), or `before` it."""
    body = f"{key[0]}.{key[1]}"
    return body if side == "after" else _BEFORE + body


def read_list_cursor(cursor: object) -> tuple[PageSide, SessionKey]:
    """The side and keyset of a `list_cursor`.

    Raises:
        InvalidInput: for anything else.
    """
    text = cursor if isinstance(cursor, str) else ""
    side: PageSide = "before" if text.startswith(_BEFORE) else "after"
    updated, dot, sid = text.removeprefix(_BEFORE).partition(".")
    key = (_number(updated), _number(sid))
    if not dot or key[0] is None or key[1] is None:
        raise InvalidInput(
            "not a list cursor (a session page's `next` or `previous`)", field="cursor"
        )
    return side, (key[0], key[1])


def search_cursor(offset: int) -> str:
    """A search cursor: the hits from the `offset`-th on."""
    return str(offset)


def read_search_cursor(cursor: object) -> int:
    """The offset of a `search_cursor`.

    Raises:
        InvalidInput: for anything else.
    """
    offset = _number(cursor) if isinstance(cursor, str) else None
    if offset is None:
        raise InvalidInput(
            "not a search cursor (a search page's `next` or `previous`)", field="cursor"
        )
    return offset
