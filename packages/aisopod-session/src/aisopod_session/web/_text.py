"""Untrusted text made safe to show: invisible and direction-changing characters
become visible, then the text is HTML-escaped; search snippets become (text,
highlighted) pieces.

`html_text` is the one rule every value a page shows goes through (the
template engine applies it to each `{{ ... }}`, see `_templates`). What a
reader should see of characters that are not what they look like: C0/C1
controls (a terminal escape, a backspace), and the bidirectional overrides and
isolates that reorder text ("Trojan source").
"""

from __future__ import annotations

import html
import re

__all__ = ["HIGHLIGHT", "html_text", "shown", "snippet_pieces"]

# Every C0 control but tab, newline and carriage return; DEL and the C1 controls;
# the bidi embeddings, overrides and isolates; the line and paragraph separators.
_HIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u2028\u2029]")

# What `html_text` must change: a hidden character, or one HTML gives a meaning.
_UNSAFE = re.compile(_HIDDEN.pattern[:-1] + "&<>\"']")

HIGHLIGHT = ("\ue000", "\ue001")
"""The search markers: private-use characters, so a snippet's own text cannot
forge a highlight that escapes it (the pieces are escaped one by one)."""


def shown(text: str) -> str:
    """`text` with each hidden character written as its code point, `<U+202E>`."""
    # Every value a page shows passes here: the common case, nothing hidden,
    # returns after one scan without building a new string.
    if _HIDDEN.search(text) is None:
        return text
    return _HIDDEN.sub(lambda m: f"<U+{ord(m.group()):04X}>", text)


def html_text(text: str) -> str:
    """`text` as HTML: hidden characters shown (`shown`), then `&`, `<`, `>`, `"`
    and `'` escaped, so it is inert as element text and as a quoted attribute value."""
    # Most text has none of these: one scan, and the text is its own HTML.
    if _UNSAFE.search(text) is None:
        return text
    return html.escape(shown(text), quote=True)


def snippet_pieces(snippet: str) -> list[tuple[str, bool]]:
    """A highlighted snippet as (text, is_match) pieces, in order."""
    opening, closing = HIGHLIGHT
    pieces: list[tuple[str, bool]] = []
    for chunk in snippet.split(opening):
        match, found, rest = chunk.partition(closing)
        if found:
            pieces.append((match, True))
            pieces.append((rest, False))
        else:
            pieces.append((chunk, False))
    first = pieces[0]
    # The text before the first marker is never a match, whatever split found.
    pieces[0] = (first[0], False)
    return [piece for piece in pieces if piece[0]]
