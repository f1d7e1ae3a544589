"""The Jinja2 environment: autoescape everywhere, and every value shown with
its hidden characters made visible (`finalize`, so no template can forget)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.templating import Jinja2Templates

from aisopod_session.web._text import shown, snippet_pieces
from aisopod_session.web._views import pretty_json

__all__ = ["templates"]


def _finalize(value: Any) -> Any:
    if isinstance(value, str):
        return shown(value)
    if value is None:
        return ""
    return value


def _when(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S")


def _path(value: str) -> str:
    """A path segment: everything but unreserved characters percent-encoded."""
    return quote(value, safe="")


def _query(values: dict[str, Any]) -> str:
    return urlencode({k: v for k, v in values.items() if v is not None and v != ""})


def templates() -> Jinja2Templates:
    """The templates of the app, in an environment of their own."""
    env = Environment(
        loader=FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        finalize=_finalize,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        when=_when, path=_path, query=_query, json=pretty_json, pieces=snippet_pieces
    )
    return Jinja2Templates(env=env)
