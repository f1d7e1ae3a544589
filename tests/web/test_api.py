"""The JSON API: the pages' reads as data, paged by cursor."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import quote

from aisopod_session import Message, SessionStore, TokenUsage
from aisopod_session.cli import session_row
from aisopod_session.web._text import HIGHLIGHT
from tests.web.conftest import ClientFactory
from tests.web.hostile import Seeded


def test_sessions_and_one_session(
    store: SessionStore, seeded: Seeded, client: ClientFactory
) -> None:
    web = client()
    first = web.get("/api/sessions", params={"limit": "2"}).json()
    assert [s["id"] for s in first["sessions"]] == [seeded.ops, seeded.hostile]
    rest = web.get("/api/sessions", params={"limit": "2", "cursor": first["cursor"]}).json()
    assert [s["id"] for s in rest["sessions"]] == [seeded.chat]
    assert rest["cursor"] is None
    assert first["previous"] is None
    back = web.get("/api/sessions", params={"limit": "2", "cursor": rest["previous"]}).json()
    assert back["sessions"] == first["sessions"]
    one = web.get(f"/api/sessions/{quote(seeded.hostile, safe='')}").json()
    assert one == {
        **session_row(store.get(seeded.hostile)),
        "state": dict(store.state(seeded.hostile)),
    }


def test_sessions_in_an_updated_range(seeded: Seeded, client: ClientFactory) -> None:
    web = client()
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    every = web.get("/api/sessions", params={"updated_before": tomorrow}).json()
    assert {s["id"] for s in every["sessions"]} == {seeded.chat, seeded.hostile, seeded.ops}
    past = {"updated_after": "1999-01-01", "updated_before": "2000-01-01"}
    assert web.get("/api/sessions", params=past).json()["sessions"] == []
    scoped = client(agent="ops").get("/api/sessions", params={"updated_before": tomorrow})
    assert [s["id"] for s in scoped.json()["sessions"]] == [seeded.ops]
    page = web.get("/", params={"updated_before": tomorrow, "limit": "1"}).text
    assert f'name="updated_before" type="date" value="{tomorrow}"' in page
    assert f"updated_before={tomorrow}" in page  # kept in the next page's link


def test_forks_beside_the_fork_parent(
    store: SessionStore, seeded: Seeded, client: ClientFactory
) -> None:
    first = store.fork(seeded.chat, 3, title="first <b>try</b>")
    second = store.fork(seeded.chat)
    web = client()
    base = f"/api/sessions/{quote(seeded.chat, safe='')}"
    found = web.get(f"{base}/forks").json()["forks"]
    assert [f["id"] for f in found] == [second.id, first.id]
    assert found[1] == session_row(store.get(first.id))
    assert [f["id"] for f in web.get(f"{base}/forks", params={"limit": "1"}).json()["forks"]] == [
        second.id
    ]
    page = web.get(f"/sessions/{quote(seeded.chat, safe='')}").text
    assert (
        f'href="/sessions/{quote(first.id, safe="")}">first &lt;b&gt;try&lt;/b&gt;</a> from #3'
        in page
    )
    assert f'href="/sessions/{quote(second.id, safe="")}"' in page
    child = web.get(f"/sessions/{quote(first.id, safe='')}").text
    assert f'href="/sessions/{quote(seeded.chat, safe="")}">{seeded.chat}</a> at #3' in child
    assert client(agent="ops").get(f"{base}/forks").status_code == 404


def test_entries_page_back_and_forward(
    store: SessionStore, seeded: Seeded, client: ClientFactory
) -> None:
    web = client()
    base = f"/api/sessions/{quote(seeded.chat, safe='')}"
    last = web.get(f"{base}/entries", params={"view": "log", "limit": "10"}).json()
    assert [e["seq"] for e in last["entries"]] == list(range(107, 117))
    earlier = web.get(
        f"{base}/entries", params={"view": "log", "limit": "10", "before": last["cursor"]}
    ).json()
    assert [e["seq"] for e in earlier["entries"]] == list(range(97, 107))
    forward = web.get(f"{base}/entries", params={"after": "114"}).json()
    assert [e["seq"] for e in forward["entries"]] == [115, 116]
    assert forward["entries"][0]["payload"]["message"]["content"][0]["text"] == "deployed version 7"
    path = web.get(f"{base}/entries").json()
    assert path["view"] == "path"
    assert 112 not in [e["seq"] for e in path["entries"]]  # the abandoned entry
    branches = web.get(f"{base}/branches").json()["branches"]
    assert [(b["leaf_seq"], b["active"]) for b in branches] == [(112, False), (116, True)]
    store.update_state(seeded.chat, {"step": 2})
    assert web.get(f"{base}/state").json() == {"at": None, "state": {"step": 2}}


def test_search_and_usage(store: SessionStore, seeded: Seeded, client: ClientFactory) -> None:
    reply = Message.assistant("priced", usage=TokenUsage(input=100, output=20, cost=0.25))
    store.append(seeded.ops, reply)
    web = client()
    found = web.get("/api/search", params={"q": "deploy", "agent": "main"}).json()
    assert found["highlight"] == list(HIGHLIGHT)
    assert {h["session_id"] for h in found["hits"]} == {seeded.chat}
    assert all(HIGHLIGHT[0] in h["snippet"] for h in found["hits"])
    assert web.get("/api/search").status_code == 400
    usage = web.get("/api/usage").json()
    assert {a["agent_id"] for a in usage["agents"]} == {"main", "ops"}
    today = store.clock.now().date().isoformat()
    assert usage["daily"] == [{"agent": "ops", "day": today, "tokens": 120, "cost": 0.25}]
    forked = store.fork(seeded.ops)  # its copy of the priced reply is not counted again
    assert web.get("/api/usage").json()["daily"] == usage["daily"]
    assert client(agent="main").get("/api/usage").json()["daily"] == []
    store.delete(forked.id)
    assert usage["largest"][0]["id"] == seeded.ops
    one = web.get("/api/usage", params={"agent": "main"}).json()
    assert [a["agent_id"] for a in one["agents"]] == ["main"]
    assert seeded.ops not in {s["id"] for s in one["largest"]}
    assert "<td>ops</td>" not in web.get("/usage", params={"agent": "main"}).text
    chart = web.get("/usage").text
    assert f"<title>ops · {today} · 120 tokens · 0.2500</title>" in chart
