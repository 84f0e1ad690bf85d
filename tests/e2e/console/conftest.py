"""The console in a real browser: Debian's chromium, headless, driven by Selenium through Debian's
chromium-driver (scripts/test.sh installs both; nothing is downloaded at run time).

`console` is one Lifeline per module (the five services, the simulators and `lifeline console`,
on the shared test clock); `browser` is one Chromium per module, 1280×800. After every test the
browser's console must hold no error: a script that threw, a refused inline script or style, an
asset that did not load. A page the console answers with an error status on purpose (a form shown
again with 422, a service down with 503) is what the test asserts, not an error of the page.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import BACKEND
from tests.e2e.conftest import running_lifeline
from tests.harness import Lifeline, wait_for

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
AXE = Path.home() / ".cache" / "lifeline" / "npm" / "node_modules" / "axe-core" / "axe.min.js"  # scripts/test.sh
# Where screenshots go: CONSOLE_SCREENSHOTS=docs/console refreshes the ones the docs show.
SCREENSHOTS = os.environ.get("CONSOLE_SCREENSHOTS")
DESKTOP = (1280, 800)
PHONE = (390, 844)

if BACKEND == "real":
    # The console speaks only HTTP to the services: its browser tests say nothing more against
    # real Kafka and PostgreSQL than in the embedded pass, where they run.
    pytest.skip("console browser tests run in the embedded pass", allow_module_level=True)


@pytest.fixture(scope="module")
def console(infra) -> Iterator[Lifeline]:
    with running_lifeline(infra, extra_env={"LIFELINE_TEST_CLOCK": "1"}) as system:
        system.start("console")
        yield system


class Browser:
    """The WebDriver with what the tests need: a page by path, form filling, screenshots, the
    browser console's errors and an accessibility scan."""

    def __init__(self, driver: Any, base_url: str, shots: Path):
        self.driver = driver
        self.base_url = base_url
        self.shots = shots
        self.taken: list[Path] = []

    # --- pages ---------------------------------------------------------------------------
    def open(self, path: str) -> None:
        self.driver.get(self.base_url + path)

    @property
    def path(self) -> str:
        return self.driver.current_url.removeprefix(self.base_url)

    def text(self, css: str = "main") -> str:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, css).text

    def find(self, css: str) -> Any:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, css)

    def find_all(self, css: str) -> list[Any]:
        from selenium.webdriver.common.by import By

        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def fill(self, within: str = "", /, **fields: str) -> None:
        """Type into the fields named so (form field names; '.' allowed), replacing what is there;
        in the form `within` where several forms name the same fields."""
        from selenium.webdriver.support.ui import Select

        for name, value in fields.items():
            element = self.find(f'{within} [name="{name}"]'.strip())
            if element.tag_name == "select":
                Select(element).select_by_value(value)
            else:
                element.clear()
                element.send_keys(value)

    def submit(self, css: str = "main form button[type=submit]") -> None:
        """Click and wait for the page the form leads to (the next step must not race it)."""
        from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
        from selenium.webdriver.support.ui import WebDriverWait

        page = self.find("html")
        self.find(css).click()

        def replaced(driver: Any) -> bool:
            try:
                page.is_enabled()
            except StaleElementReferenceException:
                return True
            except WebDriverException as exc:
                # Asked while the document is swapped, Chromium may say the node "does not belong
                # to the document" instead of stale: the old page is gone all the same.
                return "does not belong to the document" in str(exc)
            return False

        WebDriverWait(self.driver, 30).until(replaced, message=f"the page after {css}")

    def sign_in(self, role: str, region: str = "370502", user_id: str = "") -> None:
        """Signed in, the session cookie set before the next page is asked for."""
        self.driver.delete_cookie("lifeline_console")
        self.open("/signin")
        self.fill(role=role, region=region, user_id=user_id)
        self.submit()
        self.until(lambda d: d.get_cookie("lifeline_console"), what="the session cookie")

    def until(self, condition: Any, timeout: float = 60, what: str = "the page") -> Any:
        """Wait in the page itself (no reload) for `condition(driver)`: the live part of a page is
        replaced while it is read."""
        from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
        from selenium.webdriver.support.ui import WebDriverWait

        return WebDriverWait(self.driver, timeout, poll_frequency=0.2,
                             ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)
                             ).until(condition, message=what)

    def field_error(self, name: str) -> str:
        """The message shown next to the field `name` ('' when none)."""
        box = self.driver.find_element("id", f"e-{name}")
        return box.text if box.is_displayed() else ""

    def value(self, name: str, within: str = "") -> str:
        """What the field `name` holds now (in the form `within`, where several forms name it)."""
        return self.find(f'{within} [name="{name}"]'.strip()).get_attribute("value")

    # --- evidence ------------------------------------------------------------------------
    def _viewport(self, size: tuple[int, int], height: int | None = None) -> None:
        # Device metrics, not the window: a headless window has a minimum width above a phone's.
        width, h = size
        self.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": width, "height": height or h, "deviceScaleFactor": 1, "mobile": size != DESKTOP})

    def page_width(self, size: tuple[int, int]) -> int:
        """How wide the page lays out at `size`: more than the screen means sideways scrolling."""
        self._viewport(size)
        try:
            return int(self.driver.execute_script("return document.documentElement.scrollWidth"))
        finally:
            self.driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})

    def shot(self, name: str, size: tuple[int, int] = DESKTOP) -> Path:
        """A screenshot of the whole page at `size` (the width; the height grows to the page)."""
        self._viewport(size)
        full = int(self.driver.execute_script("return document.documentElement.scrollHeight"))
        self._viewport(size, max(size[1], min(full, 4000)))
        path = self.shots / f"{name}.png"
        try:
            self.driver.save_screenshot(str(path))
        finally:
            self.driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        self.taken.append(path)
        return path

    def console_errors(self) -> list[str]:
        """The browser console's errors since the last call, but a page's own status on purpose."""
        errors = []
        for entry in self.driver.get_log("browser"):
            if entry.get("level") != "SEVERE":
                continue
            message = entry.get("message", "")
            url = message.split(" ", 1)[0]
            if (url.startswith(self.base_url) and "/static/" not in url
                    and re.search(r"Failed to load resource: the server responded with a status of "
                                  r"(4\d\d|503)", message)):
                continue
            errors.append(message)
        return errors

    def axe(self) -> list[dict[str, Any]]:
        """axe-core's WCAG 2 A/AA violations on the page shown."""
        self.driver.execute_script(AXE.read_text(encoding="utf-8"))
        result = self.driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa']}})"
            ".then(r => done(JSON.stringify(r.violations))).catch(e => done(JSON.stringify([{id: 'axe-error', help: String(e), nodes: []}])));")
        return json.loads(result)

    def unlabelled_fields(self) -> list[str]:
        """Form fields a person using a screen reader could not name: no <label for>, no
        aria-label, no aria-labelledby."""
        return self.driver.execute_script("""
            const out = [];
            for (const el of document.querySelectorAll('input, select, textarea')) {
              if (el.type === 'hidden' || el.type === 'submit' || el.type === 'button') continue;
              const byFor = el.id && document.querySelector('label[for="' + CSS.escape(el.id) + '"]');
              const wrapped = el.closest('label');
              if (!byFor && !wrapped && !el.getAttribute('aria-label') && !el.getAttribute('aria-labelledby'))
                out.push(el.outerHTML.slice(0, 120));
            }
            return out;""")

    def accessible(self) -> None:
        """Every field labelled, and no axe-core WCAG 2 A/AA violation."""
        assert not self.unlabelled_fields(), self.unlabelled_fields()
        assert AXE.exists(), f"axe-core missing at {AXE}: scripts/test.sh installs it from npm"
        violations = self.axe()
        assert not violations, "\n".join(
            f"{v['id']}: {v.get('help')} ({len(v.get('nodes', []))} nodes: "
            f"{[n.get('target') for n in v.get('nodes', [])[:3]]})" for v in violations)


# --- what several screens' tests read from the services ---------------------------------------
def read_api(console: Lifeline, service: str, path: str, role: str, region: str, user: str | None = None, /,
             **params: Any) -> Any:
    """GET `path?params` of `service` as `role` of `region` (200 asserted): what a page should
    show, or that nothing changed, read from the service itself."""
    with console.client(service, role, region, user=user) as c:
        r = c.get(path, params=params)
    assert r.status_code == 200, r.text
    return r.json()


def yuan(fen: int) -> str:
    """Fen as a Chinese page writes money: 206000 → "2,060.00 元" (written here, not taken from
    the console, so that the test checks the console's own formatting)."""
    return f"{fen // 100:,}.{fen % 100:02d} 元"


def object_on_board(console: Lifeline, case_id: str, notice: dict[str, Any], text: str) -> None:
    """An objection to the case's public notice posted on the village's board (anyone may, no
    sign-in), then raised on the case by verification."""
    def posted() -> bool:
        r = httpx.post(f"{console.url('notify')}/v1/boards/{notice['village_code']}/objections",
                       json={"public_notice_id": notice["public_notice_id"], "text": text}, timeout=10)
        return r.status_code in (200, 201)

    wait_for(posted, what="the notice on the board takes an objection")
    wait_for(lambda: console.verification(case_id)["objections"], what="verification raises the objection")


@pytest.fixture(scope="module")
def browser(console: Lifeline) -> Iterator[Browser]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={DESKTOP[0]},{DESKTOP[1]}", "--lang=zh-CN", "--hide-scrollbars",
                "--force-device-scale-factor=1"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    shots = Path(SCREENSHOTS) if SCREENSHOTS else Path(tempfile.mkdtemp(prefix="lifeline-console-shots-"))
    shots.mkdir(parents=True, exist_ok=True)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(60)
    try:
        yield Browser(driver, console.url("console"), shots)
    finally:
        driver.quit()


@pytest.fixture(autouse=True)
def no_console_errors(request):
    """After each test that used the browser: nothing in its console but what the test meant."""
    yield
    if "browser" in request.fixturenames:
        errors = request.getfixturevalue("browser").console_errors()
        assert not errors, "browser console errors:\n" + "\n".join(errors)
