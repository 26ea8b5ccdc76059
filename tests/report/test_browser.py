"""The report in a real browser: headless Chromium driven over the DevTools protocol (stdlib only).

Chromium is started with `--remote-debugging-pipe`: it reads NUL-terminated JSON commands on fd 3 and
writes replies and events on fd 4. The page is opened from disk; the test collects console messages,
exceptions, log entries, dialogs and every request, then inspects the DOM with Runtime.evaluate (which
page CSP does not restrict) and saves a full-page screenshot under tmp_path.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from synthvlm.report.build import build_report
from tests.report.helpers import HOSTILE, LONG_ID, make_run
from tests.report.test_reference_gap import make_reference, make_selected_run

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
]
CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser")) if p), None)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="headless Chromium is not installed (`make setup-browser`: apt-get install -y chromium)",
)

# Puts the two pipe ends on fds 3 and 4 (where Chromium expects them) and becomes Chromium.
_TRAMPOLINE = (
    "import os, sys; os.dup2(int(sys.argv[1]), 3); os.dup2(int(sys.argv[2]), 4); "
    "os.execv(sys.argv[3], sys.argv[3:])"
)

INSPECT = """JSON.stringify({
  images: Array.from(document.images).map(
    i => ({src: i.getAttribute("src"), done: i.complete, width: i.naturalWidth})),
  scripts: document.querySelectorAll("script").length,
  captions: Array.from(document.querySelectorAll(".caption")).map(e => e.textContent),
  xss: typeof window.__xss !== "undefined",
  overflowing: Array.from(document.querySelectorAll(".card"))
    .filter(c => c.scrollWidth > c.clientWidth).map(c => c.querySelector(".key").textContent),
})"""


class Chromium:
    """A headless Chromium with one page, driven over --remote-debugging-pipe."""

    def __init__(self, profile: Path) -> None:
        low_to_child, self._out = os.pipe()
        self._in, low_from_child = os.pipe()
        # Move the child's ends above 4 so that placing them on fds 3 and 4 cannot clobber one with the other.
        to_child, from_child = (
            fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (low_to_child, low_from_child)
        )
        os.close(low_to_child)
        os.close(low_from_child)
        command = [
            sys.executable,
            "-c",
            _TRAMPOLINE,
            str(to_child),
            str(from_child),
            CHROMIUM,
            *FLAGS,
            f"--user-data-dir={profile}",
            "--remote-debugging-pipe",
            "--window-size=1280,900",
            "about:blank",
        ]
        self.proc = subprocess.Popen(
            command, pass_fds=(to_child, from_child), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        os.close(to_child)
        os.close(from_child)
        self._buffer = b""
        self._id = 0
        self.events: list[dict[str, Any]] = []
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable", session=True)

    def _message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("Chromium did not answer in time")
            if select.select([self._in], [], [], left)[0]:
                chunk = os.read(self._in, 1 << 20)
                if not chunk:
                    raise RuntimeError("Chromium closed its DevTools pipe")
                self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(message)

    def call(
        self, method: str, params: dict[str, Any] | None = None, *, session: bool = False, timeout: float = 30
    ) -> dict[str, Any]:
        self._id += 1
        message: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = self.session
        os.write(self._out, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._message(deadline)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)

    def open(self, path: Path, *, timeout: float = 30) -> None:
        """Navigate to a file and wait for its load event (all images fetched)."""
        self.events.clear()
        self.call("Page.navigate", {"url": path.resolve().as_uri()}, session=True)
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == "Page.loadEventFired" for e in self.events):
            self.events.append(self._message(deadline))

    def evaluate(self, expression: str) -> Any:
        result = self.call(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True}, session=True
        )
        return json.loads(result["result"]["value"])

    def problems(self) -> list[str]:
        """Console errors, uncaught exceptions, error log entries (failed loads, CSP) and dialogs so far."""
        found = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
                found.append(f"console.{params['type']}: {[a.get('value') for a in params['args']]}")
            elif method == "Runtime.exceptionThrown":
                found.append(f"exception: {params['exceptionDetails'].get('text')}")
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                found.append(f"log: {params['entry']['text']}")
            elif method == "Page.javascriptDialogOpening":
                found.append(f"dialog: {params['message']}")
        return found

    def requests(self) -> list[str]:
        return [
            e["params"]["request"]["url"]
            for e in self.events
            if e.get("method") == "Network.requestWillBeSent"
        ]

    def screenshot(self, path: Path) -> tuple[int, int]:
        """Full-page PNG; returns its CSS size."""
        size = self.call("Page.getLayoutMetrics", session=True)["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
        shot = self.call(
            "Page.captureScreenshot",
            {"format": "png", "captureBeyondViewport": True, "clip": clip},
            session=True,
        )
        path.write_bytes(base64.b64decode(shot["data"]))
        return int(size["width"]), int(size["height"])

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=10)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._out)
        os.close(self._in)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory):
    chromium = Chromium(tmp_path_factory.mktemp("profile"))  # a fresh --user-data-dir
    yield chromium
    chromium.close()


def test_report_renders_cleanly(browser, tmp_path):
    run = make_run(tmp_path / "run")
    report = build_report(run, out=tmp_path / "site" / "report.html", grid=3, thumb_size=48)
    browser.open(report)
    assert browser.problems() == []
    site = (tmp_path / "site").resolve().as_uri()
    requests = browser.requests()
    assert all(url.startswith(site + "/") for url in requests), requests  # nothing from the network
    page = browser.evaluate(INSPECT)
    assert len(page["images"]) == 5 + 4 + 12  # caption statistics, score plots, four grids of three
    assert [im for im in page["images"] if not im["done"] or im["width"] == 0] == []
    assert {im["width"] for im in page["images"]} == {500, 48}
    assert page["scripts"] == 0 and not page["xss"]
    assert page["captions"].count(HOSTILE) == 1  # shown as text, exactly as written
    assert page["overflowing"] == []  # the 67-character id wraps inside its card
    heights = browser.evaluate(
        "JSON.stringify(Array.from(document.querySelectorAll('.key'))"
        ".map(e => [e.textContent.length, e.getBoundingClientRect().height]))"
    )
    short = {h for n, h in heights if n < 10}
    line = short.pop()
    assert not short and [h >= 2 * line for n, h in heights if n > 60] == [True]  # wrapped onto lines
    shot = tmp_path / "report.png"
    width, height = browser.screenshot(shot)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and width >= 1200 and height > 2000


def test_report_with_a_reference_renders_cleanly(browser, tmp_path):
    """The gap section (table and both embedding maps) loads like the rest: no errors, every image drawn."""
    run = make_selected_run(tmp_path / "run")
    coco, images = make_reference(tmp_path / "reference")
    site = tmp_path / "site"
    report = build_report(
        run, out=site / "report.html", reference=coco, reference_images=images, grid=3, thumb_size=48
    )
    browser.open(report)
    assert browser.problems() == []
    assert all(url.startswith(site.resolve().as_uri() + "/") for url in browser.requests())
    page = browser.evaluate(INSPECT)
    # Caption statistics, score plots, gap maps, four grids of three (only ranks 9 and 10 below the cut).
    assert len(page["images"]) == 5 + 4 + 2 + 3 + 3 + 2 + 3
    assert [im for im in page["images"] if not im["done"] or im["width"] == 0] == []
    maps = [im["src"] for im in page["images"] if "gap_map" in im["src"]]
    assert maps == ["report_assets/gap_map_image.png", "report_assets/gap_map_text.png"]
    assert {im["width"] for im in page["images"]} == {500, 48}
    assert page["scripts"] == 0 and not page["xss"] and page["overflowing"] == []
    rows = browser.evaluate(
        "JSON.stringify(Array.from(document.querySelectorAll('#gap-table tr'))"
        ".map(r => Array.from(r.cells).map(c => c.textContent)))"
    )
    assert [r[:3] for r in rows] == [
        ["side", "n reference", "n selected"],
        ["image", "7", "8"],
        ["text", "9", "8"],
    ]
    shot = tmp_path / "report.png"
    assert browser.screenshot(shot)[0] >= 1200 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_checks_catch_a_broken_page(browser, tmp_path):
    """The same checks on a page with a missing image and an executed script do report both."""
    page = tmp_path / "broken.html"
    page.write_text(
        '<!DOCTYPE html><img src="missing.png"><div class="caption">x</div>'
        f'<div class="card" style="width: 200px"><div class="key">{LONG_ID}</div></div>'
        '<script>window.__xss = 1; console.error("boom")</script>',
        encoding="utf-8",
    )
    browser.open(page)
    problems = browser.problems()
    assert any("boom" in p for p in problems) and any(
        "missing.png" in p or "ERR_FILE_NOT_FOUND" in p for p in problems
    )
    state = browser.evaluate(INSPECT)
    assert state["images"] == [{"src": "missing.png", "done": True, "width": 0}]
    assert state["scripts"] == 1 and state["xss"]
    assert state["overflowing"] == [LONG_ID]  # an id without the report's wrapping rule sticks out
