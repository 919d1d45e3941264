"""A payload's ``<script>`` never runs in the HTML report: checked in headless Chromium over the DevTools protocol.

The page is opened in Chromium driven through ``--remote-debugging-pipe``
(JSON messages on file descriptors 3 and 4, no extra package): any
``alert()`` shows up as a ``Page.javascriptDialogOpening`` event, and the
DOM is inspected after the page loaded.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "migration_kit"))
import redact_app  # noqa: E402
from redact_app import XSS, leaks  # noqa: E402


CSP_META = '<meta http-equiv="Content-Security-Policy"'


class Page:
    """One page loaded in headless Chromium: the dialogs it opened and JavaScript evaluated in it."""

    def __init__(self, exe: str, path: Path, timeout: float = 60.0) -> None:
        self._profile = tempfile.TemporaryDirectory()
        to_chrome_r, self._out = os.pipe()
        self._in, from_chrome_w = os.pipe()

        def fds() -> None:  # Chromium reads commands on fd 3 and writes replies to fd 4
            os.dup2(to_chrome_r, 3)
            os.dup2(from_chrome_w, 4)

        self._proc = subprocess.Popen(
            [exe, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={self._profile.name}", "about:blank"],
            pass_fds=(3, 4), preexec_fn=fds, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buf = b""
        self._id = 0
        self.timeout = timeout
        self.events: list[dict[str, Any]] = []
        target = self._call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self._session = self._call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        self._call("Page.enable", session=True)
        self._call("Page.navigate", {"url": path.resolve().as_uri()}, session=True)
        while not any(e["method"] == "Page.loadEventFired" for e in self.events):
            self._next()
            for e in self.events:  # a dialog blocks the load until it is answered
                if e["method"] == "Page.javascriptDialogOpening" and not e.get("answered"):
                    e["answered"] = True
                    self._send("Page.handleJavaScriptDialog", {"accept": True}, session=True)

    @property
    def dialogs(self) -> list[str]:
        """The messages of every alert, confirm or prompt the page opened."""
        return [f"{e['params']['type']}: {e['params']['message']}" for e in self.events if e["method"] == "Page.javascriptDialogOpening"]

    def evaluate(self, expression: str) -> Any:
        reply = self._call("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session=True)
        return reply["result"].get("value")

    def close(self) -> None:
        try:
            self._send("Browser.close", {})
            self._proc.wait(10)
        except Exception:  # noqa: BLE001 - it is going away either way
            self._proc.kill()
        os.close(self._out)
        os.close(self._in)
        self._profile.cleanup()

    def _send(self, method: str, params: dict[str, Any], *, session: bool = False) -> int:
        self._id += 1
        message: dict[str, Any] = {"id": self._id, "method": method, "params": params}
        if session:
            message["sessionId"] = self._session
        os.write(self._out, json.dumps(message).encode() + b"\0")
        return self._id

    def _call(self, method: str, params: dict[str, Any] | None = None, *, session: bool = False) -> dict[str, Any]:
        wanted = self._send(method, params or {}, session=session)
        while True:
            message = self._next()
            if message.get("id") == wanted:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]

    def _next(self) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._in], [], [], left)[0]:
                raise TimeoutError(f"chromium did not answer within {self.timeout:.0f} s")
            chunk = os.read(self._in, 1 << 16)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self._buf += chunk
        raw, _, self._buf = self._buf.partition(b"\0")
        message = json.loads(raw)
        if "method" in message:
            self.events.append(message)
        return message


@pytest.fixture
def load(browser):
    pages: list[Page] = []

    def open_page(path: Path) -> Page:
        pages.append(Page(browser.exe, path))
        return pages[-1]

    yield open_page
    for page in pages:
        page.close()


INJECTED = (
    "[document.querySelectorAll('script').length, !!document.getElementById('xss-img'),"
    " !!document.getElementById('xss-b'), document.querySelectorAll('img,iframe,object,embed').length]"
)


@pytest.fixture(scope="module")
def report_page(tmp_path_factory) -> Path:
    """The HTML report of a replay whose payloads carry a card number, an e-mail address and a script."""
    m = redact_app.migration()
    report = m.replay([redact_app.payment(i) for i in range(1, 4)])
    assert any(XSS in str(g.example.get("legacy")) for g in report.groups)  # the script is in the report's data
    page = tmp_path_factory.mktemp("xss") / "report.html"
    report.write_html(page)
    return page


def test_the_probe_sees_an_alert_and_an_injected_element_on_an_unescaped_page(tmp_path, load):
    page = tmp_path / "unescaped.html"
    page.write_text(f"<!doctype html><html><body><p>{XSS}</p></body></html>", encoding="utf-8")
    opened = load(page)
    assert opened.dialogs == ["alert: 1", "alert: 2"]
    assert opened.evaluate(INJECTED) == [1, True, True, 1]


def test_a_payload_script_in_the_report_opens_no_dialog_and_injects_no_element(report_page, load):
    page = load(report_page)
    assert page.dialogs == []
    assert page.evaluate(INJECTED) == [0, False, False, 0]
    shown = page.evaluate("document.body.innerText")
    assert "<script>alert(1)</script>" in shown  # shown as text, where a person can read it
    assert leaks(shown) == [] and "[redacted:" in shown  # the card number and e-mail address masked


def test_escaping_alone_keeps_the_script_inert_without_the_content_security_policy(report_page, tmp_path, load):
    html = report_page.read_text(encoding="utf-8")
    assert CSP_META in html and "script-src" not in html and "default-src 'none'" in html
    bare = tmp_path / "no-csp.html"
    bare.write_text("\n".join(line for line in html.splitlines() if CSP_META not in line), encoding="utf-8")
    page = load(bare)
    assert page.dialogs == []
    assert page.evaluate(INJECTED) == [0, False, False, 0]
