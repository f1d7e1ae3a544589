"""Sessions for the web tests: an ordinary conversation (tool calls, a long
history, a compaction, a rewound branch), one full of hostile text in every
field, and another agent's secret; and an auditor of the HTML served."""

from __future__ import annotations

import base64
from html.parser import HTMLParser

import attrs

from aisopod_session import KeepLastTurns, Message, Origin, SessionStore
from aisopod_shared import ImagePart, TextPart, ThinkingPart, ToolCallPart

PWN = "window.pwned=1;document.title='pwned'"
"""What every hostile snippet tries to run."""

SVG_WITH_SCRIPT = (
    f'<svg xmlns="http://www.w3.org/2000/svg" onload="{PWN}"><script>{PWN}</script></svg>'
)

HOSTILE_TEXTS = (
    f"<script>{PWN}</script>",
    f'<a href="javascript:{PWN}">click me</a>',
    f'<img src=x onerror="{PWN}">',
    SVG_WITH_SCRIPT,
    f"</pre></textarea>\"'><script>{PWN}</script>",
    "{{ 7 * 7 }} {% raw %}",
)
LONG_LINE = "A" * 100_000
CONTROL = "bell\x07 esc\x1b[31m del\x7f csi\x9b end"
RTL = "invoice\u202egnp.exe and \u2066isolated\u2069"
PNG = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c63000100000500010d0a2db40000000049454e44ae426082"
    )
).decode()

HOSTILE_KEY = f"agent:main:web:<script>{PWN}</script>"
OPS_SECRET = "launchcodes"


@attrs.frozen
class Seeded:
    """The ids of the seeded sessions."""

    chat: str
    """main: 120 entries, a tool call and its result at the end, a compaction, a branch."""
    hostile: str
    """main: hostile text in the title, key, metadata, origin, state and every part."""
    ops: str
    """ops: holds the word `OPS_SECRET`."""


def seed(store: SessionStore) -> Seeded:
    chat = store.get_or_create("agent:main:telegram:direct:42", title="Release chat")
    store.append(
        chat.id,
        [
            m
            for i in range(55)
            for m in (
                Message.user(f"question {i} about the release"),
                Message.assistant(f"answer {i}"),
            )
        ],
    )
    store.compact(chat.id, KeepLastTurns(2), lambda dropped: "summary of the early questions")
    leaf = store.get(chat.id).leaf_seq
    store.append(chat.id, Message.user("a thought I take back"))
    store.rewind(chat.id, leaf)
    store.append(
        chat.id,
        [
            Message.user("please deploy the release"),
            Message.assistant(
                "deploying", tool_calls=[ToolCallPart("call-1", "shell", {"cmd": "deploy --prod"})]
            ),
            Message.tool_result("call-1", "deployed version 7", tool_name="shell"),
            Message.assistant("The release is out."),
        ],
    )

    hostile = store.get_or_create(
        HOSTILE_KEY,
        title=HOSTILE_TEXTS[0],
        metadata={HOSTILE_TEXTS[2]: HOSTILE_TEXTS[1], "svg": SVG_WITH_SCRIPT},
        origin=Origin(channel="web", label=HOSTILE_TEXTS[3]),
    )
    store.append(
        hostile.id,
        [
            Message.system(HOSTILE_TEXTS[4]),
            *(Message.user(text) for text in HOSTILE_TEXTS),
            Message.user(LONG_LINE),
            Message.user(CONTROL),
            Message.user(RTL),
            Message.user(
                [
                    TextPart("images:"),
                    ImagePart(base64.b64encode(SVG_WITH_SCRIPT.encode()).decode(), "image/svg+xml"),
                    ImagePart(PNG, f'image/png" onerror="{PWN}'),
                    ImagePart(PNG, "image/png"),
                ]
            ),
            Message.assistant(
                [ThinkingPart(HOSTILE_TEXTS[0])],
                tool_calls=[ToolCallPart("call<1>", HOSTILE_TEXTS[2], {"html": HOSTILE_TEXTS[3]})],
            ),
            Message.tool_result("call<1>", HOSTILE_TEXTS[1], tool_name=HOSTILE_TEXTS[0]),
        ],
        state={HOSTILE_TEXTS[0]: HOSTILE_TEXTS[2]},
    )
    store.compact(hostile.id, KeepLastTurns(1), lambda dropped: HOSTILE_TEXTS[0])

    ops = store.get_or_create("agent:ops:main", title="ops only")
    store.append(ops.id, [Message.user(f"the {OPS_SECRET} are 0000"), Message.assistant("noted")])
    return Seeded(chat.id, hostile.id, ops.id)


ALLOWED_TAGS = frozenset(
    [
        "html",
        "head",
        "meta",
        "title",
        "link",
        "script",
        "body",
        "header",
        "nav",
        "main",
        "a",
        "span",
        "h1",
        "h2",
        "h3",
        "p",
        "div",
        "section",
        "article",
        "time",
        "details",
        "summary",
        "pre",
        "code",
        "img",
        "form",
        "label",
        "input",
        "select",
        "option",
        "button",
        "table",
        "thead",
        "tbody",
        "tr",
        "th",
        "td",
        "aside",
        "dl",
        "dt",
        "dd",
        "ol",
        "ul",
        "li",
        "strong",
        "mark",
        "svg",
        "line",
        "text",
        "rect",
        "br",
    ]
)
SAFE_IMAGE = (
    "data:image/png;base64,",
    "data:image/jpeg;base64,",
    "data:image/gif;base64,",
    "data:image/webp;base64,",
)


class _Audit(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag not in ALLOWED_TAGS:
            self.problems.append(f"unexpected element <{tag}>")
        for name, value in attrs:
            if name.startswith("on") or name in ("style", "srcdoc", "formaction"):
                self.problems.append(f"<{tag} {name}=...>")
            if value is not None and value.strip().lower().startswith(("javascript:", "vbscript:")):
                self.problems.append(f"<{tag} {name}={value[:40]!r}>")
        if tag == "script" and values.get("src") != "/static/live.js":
            self.problems.append(f"<script> not ours: {values}")
        if tag == "img" and not (values.get("src") or "").startswith(SAFE_IMAGE):
            self.problems.append(f"<img src={(values.get('src') or '')[:40]!r}>")
        if tag == "link" and values.get("href") != "/static/app.css":
            self.problems.append(f"<link> not ours: {values}")

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def audit(html: str) -> tuple[list[str], str]:
    """What in a page could run or load something not ours, and the page's text."""
    parser = _Audit()
    parser.feed(html)
    parser.close()
    return parser.problems, "".join(parser.text)
