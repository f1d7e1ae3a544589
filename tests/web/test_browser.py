"""The web UI in a real browser: Debian's headless Chromium, driven through
chromium-driver, against the real `aisopod-session serve` process.

One server and one browser for the module (a few seconds in all). Without
Chromium the tests skip and say why, unless AISOPOD_REQUIRE_BROWSER=1 (as
under .ci/run), where a missing browser fails them. Screenshots of each page
land in the test's temporary folder.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import attrs
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from aisopod_session import Message, open_store
from tests.requirements import skip_unless_required
from tests.web.hostile import HOSTILE_TEXTS, Seeded, seed
from tests.web.serve_process import serving

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WAIT = 15.0


def _browser_or_skip() -> None:
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not Path(path).exists()]
    if not missing:
        return
    reason = (
        f"no headless browser: {', '.join(missing)} missing"
        " (apt-get install chromium chromium-driver)"
    )
    skip_unless_required(reason, required_by="AISOPOD_REQUIRE_BROWSER")


@attrs.frozen
class Served:
    url: str
    db: str
    seeded: Seeded
    shots: Path

    def page(self, session_id: str, query: str = "") -> str:
        return f"{self.url}sessions/{quote(session_id, safe='')}{query}"


@pytest.fixture(name="served", scope="module")
def served_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """`aisopod-session serve` on a seeded SQLite store, until the module ends."""
    _browser_or_skip()
    folder = tmp_path_factory.mktemp("browser")
    db = f"sqlite:///{folder / 'sessions.db'}"
    with open_store(db) as store:
        seeded = seed(store)
    with serving(db, "--port", "0") as line:
        url = line.rsplit(" at ", 1)[1].strip()
        assert url.startswith("http://127.0.0.1:")
        yield Served(url, db, seeded, folder)


@pytest.fixture(name="browser", scope="module")
def browser_fixture(served: Served) -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,900"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.implicitly_wait(0)
    try:
        driver.get(served.url)  # the server listens before it prints its address
        assert "Sessions" in driver.page_source
        yield driver
    finally:
        driver.quit()


def _wait(driver: WebDriver, condition: Callable[[WebDriver], object]) -> None:
    WebDriverWait(driver, WAIT).until(condition)


def _nothing_ran(driver: WebDriver) -> None:
    pwned = driver.execute_script("return window.pwned === undefined")
    assert pwned is True
    assert driver.title != "pwned"


def test_hostile_sessions_run_nothing(browser: WebDriver, served: Served) -> None:
    driver = browser
    hostile = served.seeded.hostile
    for name, address in (
        ("session", served.page(hostile)),
        ("log", served.page(hostile, "?view=log")),
        ("list", served.url),
        ("search", f"{served.url}search?q=click"),
        ("usage", f"{served.url}usage"),
    ):
        driver.get(address)
        _wait(driver, lambda d: d.execute_script("return document.readyState") == "complete")
        _nothing_ran(driver)
        driver.save_screenshot(str(served.shots / f"hostile-{name}.png"))
    driver.get(served.page(hostile, "?view=log"))
    assert driver.title.startswith(HOSTILE_TEXTS[0])
    body = driver.find_element(By.TAG_NAME, "body").text
    assert HOSTILE_TEXTS[1] in body  # the link is text, not a link
    links = [a.get_attribute("href") or "" for a in driver.find_elements(By.TAG_NAME, "a")]
    assert not any(link.startswith("javascript:") for link in links)
    # Expanding the hostile tool call shows its arguments and result as text, still inert.
    for summary in driver.find_elements(By.CSS_SELECTOR, "details.tool summary"):
        summary.click()
    _nothing_ran(driver)


def test_list_filter_search_and_a_conversation(browser: WebDriver, served: Served) -> None:
    driver = browser
    driver.get(served.url)
    field = driver.find_element(By.NAME, "agent")
    field.send_keys("ops")
    field.submit()
    _wait(driver, lambda d: "agent=ops" in d.current_url)
    rows = driver.find_elements(By.CSS_SELECTOR, "table.sessions tbody tr")
    assert [r.find_element(By.TAG_NAME, "a").text for r in rows] == ["ops only"]
    driver.save_screenshot(str(served.shots / "list.png"))

    driver.get(f"{served.url}search?q=deploy")
    driver.save_screenshot(str(served.shots / "search.png"))
    driver.find_element(By.CSS_SELECTOR, "ol.hits a").click()
    _wait(driver, lambda d: "/sessions/" in d.current_url)

    driver.get(served.page(served.seeded.chat))
    body = driver.find_element(By.TAG_NAME, "body").text
    assert "The release is out." in body
    tool = driver.find_element(By.CSS_SELECTOR, "details.tool")
    assert not tool.find_element(By.CSS_SELECTOR, ".result").is_displayed()
    tool.find_element(By.TAG_NAME, "summary").click()
    assert "deployed version 7" in tool.find_element(By.CSS_SELECTOR, ".result").text
    driver.save_screenshot(str(served.shots / "session.png"))
    driver.find_element(By.CSS_SELECTOR, "a.earlier").click()
    _wait(driver, lambda d: "before=" in d.current_url)
    assert "answer 30" in driver.find_element(By.TAG_NAME, "body").text


def test_the_session_page_shows_a_new_entry_live(browser: WebDriver, served: Served) -> None:
    driver = browser
    driver.get(served.page(served.seeded.chat))
    _wait(driver, lambda d: d.find_element(By.ID, "live"))
    with open_store(served.db) as store:
        store.append(served.seeded.chat, Message.user("arrived while you watched"))
    _wait(driver, lambda d: "arrived while you watched" in d.find_element(By.ID, "entries").text)
    driver.save_screenshot(str(served.shots / "live.png"))
    _nothing_ran(driver)
