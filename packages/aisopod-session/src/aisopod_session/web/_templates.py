"""The Jinja2 environment: every value a template outputs goes through one
function, `_finalize`, which makes it safe HTML (`html_text`), so no template
can forget to escape or to show hidden characters."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from starlette.templating import Jinja2Templates

from aisopod_session.web._text import html_text, snippet_pieces
from aisopod_session.web._views import pretty_json

__all__ = ["Html", "templates"]


class Html(str):
    """Text that is HTML already: a fragment one of these templates rendered
    (every value in it escaped by `_finalize`), output as it is."""

    __slots__ = ()

    def __html__(self) -> str:
        return self


def _finalize(value: Any) -> Any:
    """A `{{ ... }}` value as the HTML the page gets.

    This is the escaping: the environment's autoescape is off because this hook
    does the same job in one step (autoescape would escape what this returns a
    second time, and costs a `Markup` per value; a page of 50 entries outputs
    about 600). Text is `html_text`; numbers are digits; a value that declares
    itself HTML (`__html__`, what the `e` and `tojson` filters return) is kept;
    anything else is shown as its text, escaped. There is no `|safe` in these
    templates and none may be added.
    """
    if value.__class__ is str:
        return html_text(value)
    if value is None:
        return ""
    if isinstance(value, int | float):
        return value
    if hasattr(value, "__html__"):
        return value.__html__()
    return html_text(str(value))


def _when(value: datetime) -> str:
    """`2026-11-29 22:00:27`: the time as stored (UTC), to the second."""
    # isoformat, cut before any offset, is a third of strftime's time, and a
    # page shows one per entry.
    return value.isoformat(" ", "seconds")[:19]


def _cost(value: float) -> str:
    """A cost in dollars to four places (the `format` filter, at a fraction of its time)."""
    return f"{value:.4f}"


_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]*")


def _path(value: str) -> str:
    """A path segment: everything but unreserved characters percent-encoded."""
    # Session ids are usually unreserved already: one match instead of quote's walk.
    return value if _UNRESERVED.fullmatch(value) else quote(value, safe="")


def _query(values: dict[str, Any]) -> str:
    return urlencode({k: v for k, v in values.items() if v is not None and v != ""})


def templates() -> Jinja2Templates:
    """The templates of the app, in an environment of their own."""
    env = Environment(
        loader=FileSystemLoader(Path(__file__).parent / "templates"),
        # The templates ship with the package and never change under a running
        # server: no stat of the file on every page (and fragment) rendered.
        auto_reload=False,
        # Off because `_finalize` escapes every output itself (see there).
        autoescape=False,
        undefined=StrictUndefined,
        finalize=_finalize,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        when=_when, cost=_cost, path=_path, query=_query, json=pretty_json, pieces=snippet_pieces
    )
    return Jinja2Templates(env=env)
