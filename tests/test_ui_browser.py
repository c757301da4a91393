"""The connection page in a real browser: Debian's headless chromium, driven by Selenium,
against a real `callrail-sync serve` subprocess (its simulator, worker and receiver).

One serve and one browser for the module; each step saves a screenshot under the test's tmp
output folder (`--basetemp`), the path printed at the end. Without chromium and its driver the
tests are skipped with the line that says how to install them (`./dev test` installs them
when it runs as root).
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from api_shim.auth import DEV_SECRET, issue_token
from api_shim.routes.ui import UI_PATH
from simulator.control import SimControl
from tests.test_serve import Serve, clean_env

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
INSTALL = "apt-get install -y chromium chromium-driver (as root; ./dev test does it when root)"
OTHER_OWNER = "65a0b1c2d3e4f5a6b7c8d9e0"  # a DashClicks account with no CallRail key

if not (Path(CHROMIUM).exists() and Path(DRIVER).exists()):
    pytest.skip(f"browser tests skipped: no chromium; install: {INSTALL}", allow_module_level=True)

from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.remote.webelement import WebElement  # noqa: E402

pytestmark = pytest.mark.slow


class Page:
    """The browser on the page, and the folder its screenshots go to."""

    def __init__(self, driver: WebDriver, shots: Path) -> None:
        self.driver, self.shots, self.taken = driver, shots, 0

    def shot(self, name: str) -> Path:
        self.taken += 1
        path = self.shots / f"{self.taken:02d}-{name}.png"
        self.driver.save_screenshot(str(path))
        return path

    def find(self, css: str) -> WebElement:
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def all(self, css: str) -> list[WebElement]:
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def text(self, css: str) -> str:
        return self.find(css).text

    def until(self, check: Callable[[], Any], timeout: float = 45.0, what: str = "") -> Any:
        """The first truthy value of `check` (DOM rewrites are retried), or fail with a shot."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                found = check()
            except (StaleElementReferenceException, IndexError):
                found = None
            if found:
                return found
            time.sleep(0.1)
        shot = self.shot("timeout")
        try:
            last = check()
        except Exception as exc:  # what it saw last, for the message
            last = exc
        pytest.fail(f"timed out waiting for {what or check}: {last!r} (screenshot {shot})")

    def click(self, css: str) -> None:
        """Click it, found again if the page rewrote it between the find and the click (the
        status table is redrawn as job events come: a stale element failed one run in ~6)."""
        self.until(lambda: self.find(css).click() or True, what=f"a click on {css}")


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    running = Serve(tmp_path_factory.mktemp("ui-serve") / "run", clean_env()).start()
    yield running
    if running.proc and running.proc.poll() is None:
        running.stop()


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Page]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(arg)
    options.add_argument("--window-size=1280,1400")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    shots = tmp_path_factory.mktemp("ui-screenshots")
    try:
        yield Page(driver, shots)
    finally:
        print(f"\nscreenshots of the connection page: {shots}")
        driver.quit()


def simulator_url(serve: Serve) -> str:
    found = re.search(r"built-in simulator (\S+)/v3", serve.printed)
    assert found, serve.printed
    return found.group(1)


def test_the_banner_links_the_page_with_the_token_in_the_fragment(serve: Serve) -> None:
    token = serve.line("token: ")
    assert serve.line("connection page: ") == f"{serve.base}{UI_PATH}#token={token}"


def test_connection_page_in_a_browser(serve: Serve, page: Page) -> None:
    d = page.driver
    link = serve.line("connection page: ")

    # Signed in by the banner's link: the token leaves the URL for sessionStorage.
    d.get(link)
    page.until(lambda: page.find("#app").is_displayed(), what="the signed-in page")
    assert "token" not in d.current_url
    assert (
        d.execute_script("return sessionStorage.getItem('callrail-ui-token')")
        == link.split("#token=")[1]
    )
    page.until(lambda: page.text("#stream-state") == "live", what="the event stream")
    page.until(lambda: page.all(".status-table tbody tr"), what="the status rows")
    page.shot("signed-in")

    # Accounts (serve syncs the demo's at start; a first visit may wait for that job).
    rows = page.until(lambda: page.all("#accounts-table tbody tr"), what="accounts")
    assert len(rows) == 3, [r.text for r in rows]

    # The first row's cells and button, found afresh on each try: a job event redraws the table.
    def first_row(css: str) -> WebElement:
        return page.all("#accounts-table tbody tr")[0].find_element(By.CSS_SELECTOR, css)

    first_name, account_id = page.until(
        lambda: (first_row("th").text, first_row("td").text), what="the first account"
    )
    page.until(lambda: first_row("button").click() or True, what="a click on its button")
    page.until(
        lambda: len(page.all("#companies-table tbody tr[data-company]")) == 10,
        what="a page of companies",
    )
    assert page.text("#companies-title") == f"Companies of {first_name}"
    listed = serve.get(f"/v1/e/callrail/companies?account_id={account_id}").json()["data"]
    assert page.text("#companies-note").startswith(f"{listed['total_records']} companies")
    assert page.text("#companies-page") == f"Page 1 of {listed['total_pages']}"
    page.shot("companies")

    # Paging, and disabled companies shown or not (the snapshot has both).
    page.click("#companies-next")
    page.until(lambda: page.text("#companies-page").startswith("Page 2 of"), what="page 2")
    page.click("#companies-prev")
    page.until(lambda: page.text("#companies-page").startswith("Page 1 of"), what="page 1")
    page.click("#company-disabled")
    every = serve.get(f"/v1/e/callrail/companies?account_id={account_id}&disabled=true").json()
    shown = every["data"]["total_records"]
    assert shown > listed["total_records"]
    page.until(
        lambda: page.text("#companies-note").startswith(f"{shown} companies"), what="disabled"
    )
    page.click("#company-disabled")
    page.until(
        lambda: page.text("#companies-note").startswith(f"{listed['total_records']} companies"),
        what="disabled hidden again",
    )

    # Sort by name, descending: the header says so and the rows are in that order.
    page.click("button.sort[data-sort='name']")  # name was the sort: now -name
    page.until(
        lambda: (
            page.find("button.sort[data-sort='name']")
            .find_element(By.XPATH, "..")
            .get_attribute("aria-sort")
            == "descending"
        ),
        what="descending sort",
    )

    def names() -> list[str]:
        return [r.text for r in page.all("#companies-table tbody tr[data-company] th")]

    page.until(lambda: names() == sorted(names(), key=str.lower, reverse=True), what="order")
    page.shot("sorted-by-name-descending")

    # Search by a word of a name seen on the page (case-insensitive), from the keyboard.
    word = names()[0].split()[0]
    box = page.find("#company-search")
    box.send_keys(word.lower(), Keys.ENTER)
    page.until(
        lambda: names() and all(word.lower() in n.lower() for n in names()),
        what=f"only companies matching {word!r}",
    )
    assert "companies" in page.text("#companies-note")
    page.shot("search")
    box.clear()
    box.send_keys(Keys.ENTER)
    page.until(lambda: len(names()) == 10, what="the full listing again")

    # A refresh from CallRail: its progress bar, fed by the event stream, reaches the end.
    known = {li.get_attribute("data-job") for li in page.all("#jobs li")}
    page.click("#companies-refresh")
    job_id = page.until(
        lambda: [
            j for li in page.all("#jobs li") if (j := li.get_attribute("data-job")) not in known
        ],
        what="the refresh's job",
    )[0]
    card = f"#jobs li[data-job='{job_id}']"
    assert "sync companies" in page.text(card)
    page.until(lambda: page.find(card).get_attribute("data-status") == "succeeded", what="its end")
    bar = page.find(f"{card} progress")
    value, top = float(bar.get_attribute("value")), float(bar.get_attribute("max"))
    assert value == top > 0
    assert "180 records" in page.text(card)
    page.until(lambda: len(names()) == 10, what="the companies after the refresh")
    d.execute_script("window.scrollTo(0, 0)")
    page.shot("refresh-done")  # docs/ui-connection-page.png is one of these

    # A company's webhooks: list, then create ours (the URL left empty) and see it listed.
    company_id = page.until(
        lambda: page.all("#companies-table tbody tr[data-company]")[0].get_attribute(
            "data-company"
        ),
        what="the first company",
    )
    page.click(f"#companies-table tbody tr[data-company='{company_id}'] button")
    page.until(lambda: "no webhook" in page.text("#webhooks-note"), what="an empty list")
    page.click("#webhook-form button[type='submit']")
    item = page.until(lambda: page.all("#webhooks-list li"), what="the new webhook")[0]
    assert f"/calls/{company_id}" in item.text or company_id in item.text, item.text
    page.shot("webhook-created")

    # A call placed in the simulator arrives by webhook and shows up live.
    sim = simulator_url(serve)
    # Its post-call delivery too, half a second later.
    fields = SimControl(sim).place_call(company_id, post_call_delay=0.5)
    who = fields.get("customer_name") or fields.get("customer_phone_number")
    item = page.until(lambda: page.all("#calls li"), timeout=60, what="the call, live")[0]
    assert who and who in item.text, (who, item.text)
    d.execute_script("document.getElementById('calls-title').scrollIntoView()")
    page.shot("call-arrived")

    # The chart of calls per day and per source, from GET /records/calls/summary.
    page.until(lambda: "calls ·" in page.text("#chart-note"), what="the calls summary")
    # The call, once its post-call delivery is stored, is in the calls stream and its summary.
    page.until(lambda: page.text("#chart-note").startswith("1 calls"), what="the call counted")
    page.until(lambda: page.all("#chart-day svg rect") and page.all("#chart-source svg rect"))
    d.execute_script("document.getElementById('chart-title').scrollIntoView()")
    page.shot("chart")

    # On a phone: one column, nothing wider than the screen.
    phone = {"width": 360, "height": 800, "deviceScaleFactor": 1, "mobile": True}
    d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", phone)
    d.execute_script("window.scrollTo(0, 0)")
    wide = (
        "return [...document.querySelectorAll('body *')].filter(e => {"
        " const r = e.getBoundingClientRect(); if (r.right <= 361) return false;"
        " for (let p = e.parentElement; p; p = p.parentElement)"
        "   if (getComputedStyle(p).overflowX !== 'visible') return false;"
        " return true; }).map(e => e.tagName + '#' + e.id + '.' + e.className)"
    )
    page.until(lambda: not d.execute_script(wide), what="nothing wider than 360 px")
    assert d.execute_script("return document.documentElement.scrollWidth") <= 360
    page.shot("phone-360px")
    d.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})

    # Keyboard: the controls are reached with Tab (buttons and fields, nothing else).
    d.execute_script("document.activeElement.blur(); window.scrollTo(0, 0)")
    reached = set()
    for _ in range(90):
        ActionChains(d).send_keys(Keys.TAB).perform()
        active = d.switch_to.active_element
        reached.add(active.text or active.get_attribute("id") or active.tag_name)
    assert {"Sync now", "Pause syncs", "Companies", "Webhooks"} <= reached, reached

    # Pause an account's syncs from the keyboard, see it paused, resume it.
    paused = ".status-table tr[data-kind='companies'] .state-paused"
    page.find("button[aria-label^='Pause the syncs of']").send_keys(Keys.ENTER)
    page.until(lambda: page.all(paused), what="the account paused")
    page.shot("paused")
    page.find("button[aria-label^='Resume the syncs of']").send_keys(Keys.ENTER)
    page.until(lambda: not page.all(paused), what="the account resumed")

    # Signed in as a DashClicks account without a CallRail key: the service's message.
    page.click("#sign-out")
    page.until(lambda: page.find("#sign-in").is_displayed(), what="the sign-in form")
    page.find("#token-input").send_keys(issue_token(OTHER_OWNER, DEV_SECRET))
    page.click("#sign-in-form button[type='submit']")
    alert = page.until(lambda: page.find("#alert").is_displayed() and page.find("#alert"))
    assert "api key" in alert.text.lower(), alert.text
    page.shot("no-api-key")

    # No script error on the way (the 4xx answers the page asked for are the service's).
    errors = [e["message"] for e in d.get_log("browser") if e["level"] == "SEVERE"]
    assert not [e for e in errors if "Failed to load resource" not in e], errors


def test_the_page_survives_a_dropped_stream(serve: Serve, page: Page) -> None:
    """When its event stream drops, the page opens a new one with a fresh ticket (the old one
    may have expired), and job events flow again. The drop is the browser's: the EventSource
    the page holds reports an error and closes, as when a proxy or the network cuts it."""
    d = page.driver
    keep = "window.__sources = []; const ES = window.EventSource; window.EventSource ="
    keep += " function (u, o) { const s = new ES(u, o); window.__sources.push(s); return s; };"
    d.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": keep})
    d.get("about:blank")  # a new document (a link differing only in its fragment is not one)
    d.get(serve.line("connection page: "))
    page.until(lambda: page.text("#stream-state") == "live", what="the event stream")
    first = d.execute_script("return window.__sources[0].url")
    d.execute_script(
        "const s = window.__sources[0]; s.close(); s.dispatchEvent(new Event('error'))"
    )
    page.until(lambda: page.text("#stream-state") == "live", what="the stream back")
    urls = d.execute_script("return window.__sources.map(s => s.url)")
    assert len(urls) == 2 and urls[1] != first, urls  # a new stream, with a new ticket
    page.click(".status-table tbody tr[data-kind='accounts'] button")  # Sync now
    page.until(
        lambda: page.all("#jobs li[data-status='succeeded']"), what="a job event after the drop"
    )
