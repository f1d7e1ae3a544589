"""The guards: agent scoping on every route, the access token off loopback,
the Host check on loopback, CSRF and --allow-writes for every write."""

from __future__ import annotations

import re
from urllib.parse import quote

import pytest

from aisopod_session import SessionNotFound, SessionStore
from aisopod_session.web._security import is_loopback
from tests.web.conftest import ClientFactory
from tests.web.hostile import OPS_SECRET, Seeded, audit


def _routes(session_id: str) -> list[str]:
    sid = quote(session_id, safe="")
    return [
        f"/sessions/{sid}",
        f"/sessions/{sid}?view=log",
        f"/sessions/{sid}/entries?after=0",
        f"/sessions/{sid}/transcript.jsonl",
        f"/api/sessions/{sid}",
        f"/api/sessions/{sid}/entries",
        f"/api/sessions/{sid}/state",
        f"/api/sessions/{sid}/branches",
    ]


def test_a_scoped_server_answers_another_agents_session_as_missing(
    seeded: Seeded, client: ClientFactory
) -> None:
    main = client(agent="main")
    for route in _routes(seeded.ops):
        response = main.get(route)
        assert response.status_code == 404, route
        assert OPS_SECRET not in response.text
        missing = main.get(route.replace(quote(seeded.ops, safe=""), "no-such-id"))
        assert (missing.status_code, missing.text) == (404, response.text)
    for route in (
        "/",
        "/api/sessions",
        "/search?q=0000",
        "/api/search?q=0000",
        "/usage",
        "/api/usage",
    ):
        response = main.get(route)
        assert response.status_code == 200, route
        assert OPS_SECRET not in response.text
        assert seeded.ops not in response.text
        assert "ops only" not in response.text
    assert main.get("/api/search", params={"q": "launchcodes", "agent": "ops"}).status_code == 404
    assert main.get("/api/sessions", params={"agent": "ops"}).status_code == 404
    # The ops server sees its own.
    assert OPS_SECRET in client(agent="ops").get(_routes(seeded.ops)[0]).text


def test_off_loopback_every_request_needs_the_token(seeded: Seeded, client: ClientFactory) -> None:
    web = client(token="s3cret", hosts=None)
    for route in ("/", "/api/sessions", "/static/app.css", _routes(seeded.chat)[0]):
        assert web.get(route).status_code == 401, route
        assert web.get(route, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert web.get(route, headers={"Authorization": "Bearer s3cret"}).status_code == 200
    # The printed address: the token once in the query, then a cookie.
    opened = web.get("/?token=s3cret&agent=main")
    assert opened.status_code == 303
    assert opened.headers["location"] == "/?agent=main"
    assert "HttpOnly" in opened.headers["set-cookie"]
    assert "SameSite=strict" in opened.headers["set-cookie"]
    assert web.get("/api/sessions").status_code == 200  # the cookie now carries it
    web.cookies.clear()
    assert web.get("/?token=wrong").status_code == 401


def test_a_loopback_server_refuses_other_host_names(client: ClientFactory) -> None:
    web = client()
    assert web.get("/", headers={"Host": "127.0.0.1:8765"}).status_code == 200
    assert web.get("/", headers={"Host": "localhost"}).status_code == 200
    # A site whose name resolves to 127.0.0.1 (DNS rebinding) gets nothing.
    assert web.get("/api/sessions", headers={"Host": "evil.example:8765"}).status_code == 421


def _csrf(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found is not None
    return found.group(1)


def test_writes_need_the_csrf_token_and_the_same_origin(
    store: SessionStore, seeded: Seeded, client: ClientFactory
) -> None:
    web = client(allow_writes=True)
    sid = quote(seeded.chat, safe="")
    confirm = web.get(f"/sessions/{sid}/do/delete")
    assert confirm.status_code == 200
    token = _csrf(confirm.text)
    assert web.post(f"/sessions/{sid}/do/delete").status_code == 403
    too_big = {"csrf": token, "pad": "x" * 20_000}
    assert web.post(f"/sessions/{sid}/do/delete", data=too_big).status_code == 413
    assert web.post(f"/sessions/{sid}/do/delete", data={"csrf": "forged"}).status_code == 403
    cross_site = web.post(
        f"/sessions/{sid}/do/delete",
        data={"csrf": token},
        headers={"Origin": "http://evil.example"},
    )
    assert cross_site.status_code == 403
    assert store.get(seeded.chat).entry_count == 116  # nothing was written
    done = web.post(
        f"/sessions/{sid}/do/delete", data={"csrf": token}, headers={"Origin": "http://127.0.0.1"}
    )
    assert (done.status_code, done.headers["location"]) == (303, "/")
    with pytest.raises(SessionNotFound):
        store.get(seeded.chat)


def test_a_read_only_server_refuses_every_write(
    store: SessionStore, seeded: Seeded, client: ClientFactory
) -> None:
    writable = client(allow_writes=True)
    token = _csrf(writable.get(f"/sessions/{quote(seeded.chat, safe='')}/do/rewind").text)
    web = client(allow_writes=False, csrf=token)
    sid = quote(seeded.chat, safe="")
    page = web.get(f"/sessions/{sid}")
    assert "/do/" not in page.text
    assert 'name="csrf"' not in page.text
    before = store.get(seeded.chat)
    for action in ("reset", "compact", "rewind", "fork", "archive", "delete"):
        assert web.get(f"/sessions/{sid}/do/{action}").status_code == 403
        refused = web.post(f"/sessions/{sid}/do/{action}", data={"csrf": token, "seq": "3"})
        assert refused.status_code == 403
    assert store.get(seeded.chat) == before
    assert len(store.list(limit=10)) == 3


def test_each_write_action_does_what_it_confirms(
    store: SessionStore, seeded: Seeded, client: ClientFactory
) -> None:
    web = client(allow_writes=True)
    sid = quote(seeded.chat, safe="")
    token = _csrf(web.get(f"/sessions/{sid}/do/rewind").text)

    def do(action: str, **form: str) -> str:
        response = web.post(f"/sessions/{sid}/do/{action}", data={"csrf": token, **form})
        assert response.status_code == 303, audit(response.text)[1]
        return str(response.headers["location"])

    assert web.post(f"/sessions/{sid}/do/rewind", data={"csrf": token}).status_code == 400
    assert do("rewind", seq="100") == f"/sessions/{sid}"
    assert store.get(seeded.chat).leaf_seq == 100
    fork_page = do("fork", seq="50")
    fork = store.get(fork_page.rsplit("/", 1)[1])
    assert fork.fork_parent is not None
    assert fork.fork_parent.seq == 50
    compactions = store.get(seeded.chat).compaction_count
    do("compact", turns="2")
    assert store.get(seeded.chat).compaction_count == compactions + 1
    new_page = do("reset")
    assert store.get(seeded.chat).status == "archived"
    current = store.current("agent:main:telegram:direct:42")
    assert current is not None
    assert current.id == new_page.rsplit("/", 1)[1]
    assert web.get(f"/sessions/{sid}/do/explode").status_code == 404


def test_archive_is_offered_for_a_session_no_key_points_at(
    store: SessionStore, seeded: Seeded, client: ClientFactory
) -> None:
    web = client(allow_writes=True)
    sid = quote(seeded.chat, safe="")
    token = _csrf(web.get(f"/sessions/{sid}/do/archive").text)
    assert f"/sessions/{sid}/do/archive" not in web.get(f"/sessions/{sid}").text
    before = store.get(seeded.chat)
    refused = web.post(f"/sessions/{sid}/do/archive", data={"csrf": token})
    assert refused.status_code == 400
    assert "reset the key" in audit(refused.text)[1]
    assert store.get(seeded.chat) == before
    fork = quote(store.fork(seeded.chat).id, safe="")
    assert f"/sessions/{fork}/do/archive" in web.get(f"/sessions/{fork}").text
    done = web.post(f"/sessions/{fork}/do/archive", data={"csrf": token})
    assert done.status_code == 303
    assert done.headers["location"] == f"/sessions/{fork}"
    assert store.get(done.headers["location"].rsplit("/", 1)[1]).status == "archived"
    assert f"/sessions/{fork}/do/archive" not in web.get(f"/sessions/{fork}").text


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("192.168.1.5", False),
        ("::", False),
        ("example.org", False),
    ],
)
def test_which_hosts_are_this_machine_only(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_an_ipv6_loopback_host_header_is_answered(client: ClientFactory) -> None:
    web = client()
    assert web.get("/api/sessions", headers={"Host": "[::1]:8765"}).status_code == 200
    assert web.get("/api/sessions", headers={"Host": "[::2]:8765"}).status_code == 421
