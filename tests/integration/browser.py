"""A headless Chromium (Debian's package) driven over the Chrome DevTools Protocol.

The protocol is JSON over a websocket, and the Kubernetes client already depends on
websocket-client, so this needs no browser-automation package and no downloaded browser: a few
calls (navigate, evaluate, screenshot) and the console's errors are all the UI tests use.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import websocket

from support.wait import poll

CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
# Headless, with nothing of its own reaching the network (the machine reaches only registries).
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--mute-audio",
    "--password-store=basic",
    "--force-device-scale-factor=1",
    "--window-size=1400,900",
    "--remote-debugging-port=0",
)


class BrowserError(Exception):
    """The browser did not start, or a protocol call failed."""


def find_chromium() -> str | None:
    """The Chromium binary, or None."""
    for candidate in (os.environ.get("CHROMIUM"), *CANDIDATES):
        if candidate and Path(candidate).exists():
            return candidate
    return shutil.which("chromium")


class Chromium:
    """A Chromium process with a fresh profile; stop() ends it and removes the profile."""

    def __init__(self, binary: str, *, zone: str = "UTC", log: Path | None = None) -> None:
        self.profile = Path(tempfile.mkdtemp(prefix="nightshift-chromium-"))
        self.log_path = log or self.profile / "chromium.log"
        env = {**os.environ, "TZ": zone}
        with self.log_path.open("wb") as out:
            self.proc = subprocess.Popen(
                [binary, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        self.port = self._devtools_port()

    def _devtools_port(self, timeout: float = 30) -> int:
        marker = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BrowserError(f"chromium exited:\n{self.log_path.read_text()[-3000:]}")
            if marker.exists():
                text = marker.read_text().split()
                if text:
                    return int(text[0])
            time.sleep(0.1)
        raise BrowserError("chromium did not open its DevTools port")

    def new_page(self) -> Page:
        """A new tab, with console errors being collected."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/json/new?about:blank", method="PUT"
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            target = json.loads(response.read())
        return Page(self, target["id"], target["webSocketDebuggerUrl"])

    def close_target(self, target: str) -> None:
        with contextlib.suppress(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{self.port}/json/close/{target}", timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        shutil.rmtree(self.profile, ignore_errors=True)


class Page:
    """One tab: navigate, evaluate JavaScript, take screenshots, and collect console errors."""

    def __init__(self, browser: Chromium, target: str, ws_url: str) -> None:
        self.browser = browser
        self.target = target
        # Chromium refuses DevTools websockets that send an Origin it was not told to allow.
        self.ws = websocket.create_connection(ws_url, timeout=30, suppress_origin=True)
        self.ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self.expected: list[str] = []  # parts of errors a test provokes on purpose
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable")

    # --- protocol

    def _record(self, message: dict[str, Any]) -> None:
        method = message.get("method")
        params = message.get("params") or {}
        self.events.append(message)
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            args = params.get("args") or []
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in args)
            self.errors.append(f"console.{params['type']}: {text}")
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails") or {}
            exception = details.get("exception") or {}
            self.errors.append(f"exception: {exception.get('description') or details.get('text')}")
        elif method == "Log.entryAdded":
            entry = params.get("entry") or {}
            if entry.get("level") == "error":
                self.errors.append(
                    f"{entry.get('source')}: {entry.get('text')} {entry.get('url', '')}"
                )

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        """Call ``method`` and return its result (events that arrive meanwhile are recorded)."""
        number = next(self.ids)
        self.ws.send(json.dumps({"id": number, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == number:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result") or {}
                return result
            self._record(message)

    # --- what the tests use

    def navigate(self, url: str, *, timeout: float = 30) -> None:
        """Open ``url`` and wait until the document has loaded."""
        self.send("Page.navigate", url=url)
        self.wait_for("document.readyState === 'complete'", timeout=timeout, what=f"load {url}")

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression (promises awaited)."""
        result = self.send(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression}: {result['exceptionDetails']}")
        return (result.get("result") or {}).get("value")

    def wait_for(
        self,
        expression: str,
        *,
        timeout: float = 30,
        what: str | None = None,
        interval: float = 0.2,
    ) -> Any:
        """Poll a JavaScript expression until it is truthy; its value."""
        return poll(
            lambda: self.evaluate(expression),
            timeout=timeout,
            what=what or expression,
            interval=interval,
        )

    def click(self, selector: str) -> None:
        """Click the element ``selector`` names (it must exist)."""
        found = self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            " if (!e) return false; e.click(); return true; })()"
        )
        if not found:
            raise AssertionError(f"nothing matches {selector}")

    def set_zone(self, zone: str) -> None:
        """Make this tab's JavaScript believe it runs in ``zone``."""
        self.send("Emulation.setTimezoneOverride", timezoneId=zone)

    def screenshot(self, path: Path, *, full_page: bool = True) -> None:
        """A PNG of the page (the whole page when ``full_page``)."""
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            metrics = self.send("Page.getLayoutMetrics")
            size = metrics.get("cssContentSize") or metrics["contentSize"]
            params["clip"] = {
                "x": 0,
                "y": 0,
                "width": min(size["width"], 1400),
                "height": min(size["height"], 4000),
                "scale": 1,
            }
            params["captureBeyondViewport"] = True
        data = self.send("Page.captureScreenshot", **params)["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))

    def drain(self, seconds: float = 0.3) -> None:
        """Record events that arrived without a call (console errors after the last one)."""
        self.ws.settimeout(seconds)
        try:
            while True:
                self._record(json.loads(self.ws.recv()))
        except websocket.WebSocketTimeoutException:
            pass
        finally:
            self.ws.settimeout(30)

    def unexpected_errors(self) -> list[str]:
        """The console errors no entry of ``expected`` accounts for."""
        return [e for e in self.errors if not any(part in e for part in self.expected)]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.ws.close()
        self.browser.close_target(self.target)
