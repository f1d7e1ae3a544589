"""The one escaping rule: every value a template outputs passes `_finalize`,
which shows hidden characters and escapes HTML, once; a rendered fragment
(`Html`) is output as it is, and nothing else is."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from jinja2 import Environment

from aisopod_session.web._templates import Html, templates
from aisopod_session.web._text import html_text

TEMPLATES = Path(__file__).parents[2] / "packages/aisopod-session/src/aisopod_session/web/templates"


@pytest.fixture
def env() -> Environment:
    return templates().env


@pytest.mark.parametrize(
    ("text", "html"),
    [
        ("plain words", "plain words"),
        ("<script>x</script>", "&lt;script&gt;x&lt;/script&gt;"),
        ("a & b", "a &amp; b"),
        ("\"quoted\" and 'single'", "&quot;quoted&quot; and &#x27;single&#x27;"),
        ("invoice\u202egnp.exe", "invoice&lt;U+202E&gt;gnp.exe"),
        ("bell\x07 nul\x00", "bell&lt;U+0007&gt; nul&lt;U+0000&gt;"),
        ("tab\tnewline\n", "tab\tnewline\n"),
    ],
)
def test_text_is_shown_then_escaped(text: str, html: str) -> None:
    assert html_text(text) == html


class Talks:
    """An object that is neither text nor a number: shown as its text."""

    def __str__(self) -> str:
        return "<b onclick=x>\u2066"


class Label(str):
    """A str subclass (an enum's value, say) is text like any other."""

    __slots__ = ()


@pytest.mark.parametrize(
    ("value", "html"),
    [
        ("<i>", "&lt;i&gt;"),
        (Label("<i>"), "&lt;i&gt;"),
        (Talks(), "&lt;b onclick=x&gt;&lt;U+2066&gt;"),
        (7, "7"),
        (0.5, "0.5"),
        (True, "True"),
        (None, ""),
        ([1, "<x>"], "[1, &#x27;&lt;x&gt;&#x27;]"),
        (Html("<em>rendered</em>"), "<em>rendered</em>"),
    ],
)
def test_every_output_passes_the_rule_once(env: Environment, value: object, html: str) -> None:
    assert env.from_string("{{ v }}").render(v=value) == html


def test_filters_and_expressions_are_escaped_too(env: Environment) -> None:
    rendered = env.from_string(
        "{{ a ~ b }}|{{ a|upper }}|{{ [a, b]|join(',') }}|{{ {'q': a}|query }}|{{ when|when }}"
    ).render(a="<a>", b="\u202e", when=datetime(2026, 11, 29, 22, 0, 27, 123456, tzinfo=UTC))
    assert rendered == (
        "&lt;a&gt;&lt;U+202E&gt;|&lt;A&gt;|&lt;a&gt;,&lt;U+202E&gt;|q=%3Ca%3E|2026-11-29 22:00:27"
    )


def test_no_template_marks_a_value_safe() -> None:
    """`Html` comes only from rendering one of these templates: no template may
    bypass `_finalize` with `|safe`, a `{% set %}` block or `{% autoescape %}`."""
    for path in TEMPLATES.glob("*.html"):
        source = path.read_text()
        for bypass in ("|safe", "| safe", "{% autoescape", "Markup", "endset"):
            assert bypass not in source, (path.name, bypass)
