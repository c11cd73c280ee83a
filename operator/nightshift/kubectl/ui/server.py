"""The UI's web server: the checks of ``guard``, one API read per page, the actions, live updates.

It is the standard library's threading HTTP server: one thread per connection, which suits a
server that one person's browser talks to and whose every request waits on the API server anyway.
Each request is made with the user's own credentials through the plugin's session, so the API
server's RBAC decides what the page shows and what an action may do. Live updates are
server-sent events: each stream runs watches on the API server (tasks; on a task page also its
Events) in threads of its own, and tells the page to fetch its content again when one fires.
"""

from __future__ import annotations

import contextlib
import json
import queue
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

from nightshift.kubectl.commands import log_source, request_run, set_suspend, utc_now
from nightshift.kubectl.render import terminal_safe
from nightshift.kubectl.session import PluginError, Session, WatchExpired, unreachable
from nightshift.kubectl.ui.chart import TimelineEntry
from nightshift.kubectl.ui.frame import Frame, Problem, error_content, page
from nightshift.kubectl.ui.guard import TOKEN_PARAMETER, Guard, url_host
from nightshift.kubectl.ui.html import Html, escape
from nightshift.kubectl.ui.pages import (
    LogView,
    TaskPage,
    overview_content,
    overview_controls,
    task_content,
    task_controls,
    timeline_content,
    timeline_controls,
)
from nightshift.kubectl.ui.query import (
    Filter,
    QueryError,
    ZoneChoice,
    link,
    read_filter,
    read_span,
    read_zone,
)
from nightshift.kubectl.ui.timeline import MAX_MARKS
from nightshift.kubectl.ui.views import TaskView, event_rows, task_view

__all__ = ["UiServer"]

ZONE_COOKIE = "nightshift-tz"
PART_HEADER = "X-Nightshift-Part"
STATIC = {
    "ui.css": "text/css; charset=utf-8",
    "ui.js": "text/javascript; charset=utf-8",
    "icon.svg": "image/svg+xml",
}
# Scripts and styles only from this server, no inline script, nothing framed, nothing sent
# elsewhere: the page holds a CSRF token and shows what the user's credentials can read.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
LOG_LINES = 200  # of the last run's log on the task page
PING_SECONDS = 15.0  # a comment on an idle stream, so a closed tab is noticed
MAX_BODY = 64 * 1024
TASK_FIRES = 10
RETRY_SECONDS = 5.0  # between attempts to watch again when the API server cannot be reached


@dataclass(frozen=True, slots=True)
class Reply:
    """An HTTP answer: status, content type, body and extra headers."""

    status: int
    body: bytes
    content_type: str = "text/html; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = ()


def _problem_from(error: PluginError) -> Problem:
    return Problem(str(error), error.status)


def _http_status(problem: Problem | None) -> int:
    if problem is None:
        return HTTPStatus.OK
    if problem.status is not None and 400 <= problem.status < 600:
        return problem.status
    return HTTPStatus.BAD_GATEWAY  # the API server could not be reached or answered oddly


class UiServer(ThreadingHTTPServer):
    """``kubectl nightshift ui``'s server: bound to ``address:port`` (port 0: any free one)."""

    daemon_threads = True  # a live-update stream must not keep the process from exiting
    allow_reuse_address = False  # two UIs must not share a port

    def __init__(
        self,
        address: str,
        port: int,
        session: Session,
        *,
        default_namespace: str | None,
        user: str | None = None,
        now: Callable[[], datetime] = utc_now,
    ) -> None:
        family_v6 = ":" in address
        if family_v6:
            import socket  # noqa: PLC0415

            self.address_family = socket.AF_INET6
        super().__init__((address, port), _Handler)
        self.address = address
        self.session = session
        self.default_namespace = default_namespace
        self.user = user
        self.now = now
        self.guard = Guard.create(address, self.port)
        self.any_host = address in ("0.0.0.0", "::", "")  # noqa: S104
        self.stopping = threading.Event()

    @property
    def port(self) -> int:
        """The port it listens on (the one the OS chose for port 0)."""
        return int(self.socket.getsockname()[1])

    @property
    def url(self) -> str:
        """The URL to open: it carries the access token, which the first visit trades for a
        cookie."""
        host = url_host(self.address, self.port)
        return f"http://{host}/?{urlencode({TOKEN_PARAMETER: self.guard.access_token})}"

    def server_close(self) -> None:
        """Stop the live-update streams, then close the socket."""
        self.stopping.set()
        super().server_close()


class _Handler(BaseHTTPRequestHandler):
    server: UiServer
    server_version = "kubectl-nightshift-ui"
    sys_version = ""

    # --- plumbing ---------------------------------------------------------------------------------

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the terminal is for the URL and real problems (see log_error)."""

    def log_error(self, format: str, *args: Any) -> None:
        # The request line is the client's text: no control sequence of it reaches the terminal.
        sys.stderr.write(terminal_safe(f"ui: {format % args}") + "\n")

    def _send(self, reply: Reply) -> None:
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        for name, value in SECURITY_HEADERS.items():
            self.send_header(name, value)
        for name, value in reply.headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(reply.body)

    def _text(self, status: int, message: str) -> Reply:
        body = f"<!doctype html><title>{int(status)}</title><p>{escape(message)}</p>\n"
        return Reply(status, body.encode())

    def _json(self, status: int, data: dict[str, Any]) -> Reply:
        return Reply(status, json.dumps(data).encode(), "application/json")

    def _cookie(self, name: str) -> str | None:
        header = self.headers.get("Cookie")
        if not header:
            return None
        try:
            morsel = SimpleCookie(header).get(name)
        except CookieError:
            return None
        return unquote(morsel.value) if morsel is not None else None

    def _admitted(self, query: dict[str, list[str]], path: str) -> bool:
        """Host, then access token or cookie; answers the request itself when it is refused."""
        guard = self.server.guard
        if not guard.host_allowed(self.headers.get("Host"), any_host=self.server.any_host):
            self._send(
                self._text(
                    HTTPStatus.FORBIDDEN,
                    "This server answers only to the address kubectl nightshift ui printed.",
                )
            )
            return False
        token = query.get(TOKEN_PARAMETER)
        if token is not None and self.command == "GET":
            if not guard.token_valid(token[-1]):
                self._send(self._text(HTTPStatus.FORBIDDEN, "This link's token is not valid."))
                return False
            # Trade the token for a cookie and drop it from the address bar (and history).
            rest = {k: v for k, v in query.items() if k != TOKEN_PARAMETER}
            target = path + (f"?{urlencode(rest, doseq=True)}" if rest else "")
            self._send(
                Reply(
                    HTTPStatus.SEE_OTHER,
                    b"",
                    headers=(("Location", target), ("Set-Cookie", guard.set_cookie())),
                )
            )
            return False
        if not guard.cookie_valid(self.headers.get("Cookie")):
            self._send(
                self._text(
                    HTTPStatus.UNAUTHORIZED,
                    "Open the link that kubectl nightshift ui printed: it carries this "
                    "server's access token.",
                )
            )
            return False
        return True

    def _handle(self, answer: Callable[[], Reply | None]) -> None:
        try:
            reply = answer()
        except (BrokenPipeError, ConnectionResetError):
            return
        except Exception:  # a bug: say so in the terminal, not in detail on the page
            sys.stderr.write(terminal_safe(traceback.format_exc()))
            reply = self._text(HTTPStatus.INTERNAL_SERVER_ERROR, "Internal error (see terminal).")
        if reply is not None:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self._send(reply)

    # --- routes -----------------------------------------------------------------------------------

    def do_GET(self) -> None:
        """Pages, the live-update stream and the static files."""
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        if not self._admitted(query, url.path):
            return
        parts = [unquote(p) for p in url.path.split("/") if p]
        self._handle(lambda: self._get(parts, query))

    def do_POST(self) -> None:
        """The actions: run now, suspend, resume."""
        url = urlsplit(self.path)
        if not self._admitted({}, url.path):
            return
        guard = self.server.guard
        if not guard.csrf_valid(self.headers.get("X-CSRF-Token")) or not guard.origin_allowed(
            self.headers.get("Origin"), self.headers.get("Host")
        ):
            self._send(
                self._json(
                    HTTPStatus.FORBIDDEN,
                    {"error": "missing or wrong CSRF token: reload the page and try again"},
                )
            )
            return
        parts = [unquote(p) for p in url.path.split("/") if p]
        self._handle(lambda: self._post(parts))

    def _get(self, parts: list[str], query: dict[str, list[str]]) -> Reply | None:
        if parts == ["favicon.ico"]:
            parts = ["static", "icon.svg"]
        if len(parts) == 2 and parts[0] == "static" and parts[1] in STATIC:
            data = resources.files(__package__).joinpath("static", parts[1]).read_bytes()
            return Reply(HTTPStatus.OK, data, STATIC[parts[1]])
        try:
            if parts == []:
                return self._overview(query)
            if parts == ["timeline"]:
                return self._timeline(query)
            if len(parts) == 3 and parts[0] == "tasks":
                return self._task(parts[1], parts[2], query)
            if parts == ["events"]:
                self._stream(query)
                return None
        except QueryError as error:
            return self._text(HTTPStatus.BAD_REQUEST, str(error))
        return self._text(HTTPStatus.NOT_FOUND, "There is no such page.")

    def _post(self, parts: list[str]) -> Reply:
        if len(parts) != 4 or parts[0] != "tasks" or parts[3] not in ("run", "suspend", "resume"):
            return self._json(HTTPStatus.NOT_FOUND, {"error": "no such action"})
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            return self._json(HTTPStatus.BAD_REQUEST, {"error": "bad Content-Length"})
        if not 0 <= length <= MAX_BODY:
            return self._json(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": "request too large"})
        form = parse_qs(self.rfile.read(length).decode("utf-8", "replace")) if length else {}
        namespace, name, action = parts[1], parts[2], parts[3]
        session = self.server.session.in_namespace(namespace)
        try:
            message = unreachable(lambda: self._act(session, name, action, form))
        except PluginError as error:
            return self._json(_http_status(_problem_from(error)), {"error": str(error)})
        return self._json(HTTPStatus.OK, {"message": message})

    def _act(self, session: Session, name: str, action: str, form: dict[str, list[str]]) -> str:
        key = f"{session.namespace}/{name}"
        if action == "run":
            request = request_run(session, name, self.server.now())
            text = f"Run requested for {key}: run {request.run}, first attempt Job {request.job}."
            if request.replaced:
                text += f" It replaces the request {request.replaced}, not taken yet."
            return text
        if action == "suspend":
            reason = (form.get("reason") or [""])[-1].strip() or None
            already = set_suspend(session, name, True, reason)
            return f"{key} was already suspended." if already else f"Suspended {key}."
        was = set_suspend(session, name, False, None)
        return f"Resumed {key}." if was else f"{key} was not suspended."

    # --- pages ------------------------------------------------------------------------------------

    def _zone(self, query: dict[str, list[str]], default: str = "browser") -> ZoneChoice:
        return read_zone(query, self._cookie(ZONE_COOKIE), default)

    def _frame(self, title: str, nav: str, events: str, flt: Filter, zone: ZoneChoice) -> Frame:
        server = self.server
        return Frame(title, server.guard.csrf_token, events, zone, server.user, nav, flt)

    def _render(
        self, frame: Frame, controls: Html | None, content: Html, problem: Problem | None
    ) -> Reply:
        status = _http_status(problem)
        if self.headers.get(PART_HEADER) == "content":
            return Reply(status, content.encode())
        return Reply(status, page(frame, controls, content).encode())

    def _list(self, flt: Filter) -> tuple[list[dict[str, Any]], Problem | None]:
        session = self.server.session
        try:
            if flt.namespace is None:
                items = unreachable(
                    lambda: session.list_tasks(all_namespaces=True, label_selector=flt.labels)
                )
            else:
                scoped = session.in_namespace(flt.namespace)
                items = unreachable(
                    lambda: scoped.list_tasks(all_namespaces=False, label_selector=flt.labels)
                )
        except PluginError as error:
            return [], _problem_from(error)
        items.sort(
            key=lambda o: (
                (o.get("metadata") or {}).get("namespace") or "",
                (o.get("metadata") or {}).get("name") or "",
            )
        )
        return items, None

    def _overview(self, query: dict[str, list[str]]) -> Reply:
        flt = read_filter(query, self.server.default_namespace)
        zone = self._zone(query)
        items, problem = self._list(flt)
        now = self.server.now()
        views = [task_view(obj, now) for obj in items]
        frame = self._frame("Tasks", "overview", link("/events", flt.params()), flt, zone)
        content = overview_content(views, problem, flt, zone)
        return self._render(frame, overview_controls(flt, zone), content, problem)

    def _timeline(self, query: dict[str, list[str]]) -> Reply:
        flt = read_filter(query, self.server.default_namespace)
        zone = self._zone(query)
        span = read_span(query)
        items, problem = self._list(flt)
        now = self.server.now()
        window = span.window(now)
        entries = []
        for obj in items:
            view = task_view(obj, now, fires=0)
            entries.append(TimelineEntry(view, view.fire_times(now, MAX_MARKS + 1, window.end)))
        zones = sorted({e.view.zone.key for e in entries if e.view.zone is not None})
        frame = self._frame("Timeline", "timeline", link("/events", flt.params()), flt, zone)
        content = timeline_content(entries, problem, window, now, zone.zone())
        return self._render(frame, timeline_controls(flt, span, zone, zones), content, problem)

    def _task(self, namespace: str, name: str, query: dict[str, list[str]]) -> Reply:
        flt = read_filter(query, self.server.default_namespace)
        zone = self._zone(query)
        span = read_span(query)
        session = self.server.session.in_namespace(namespace)
        events_url = link("/events", {"task": f"{namespace}/{name}"})
        frame = self._frame(f"{namespace}/{name}", "task", events_url, flt, zone)
        try:
            obj = unreachable(lambda: session.get_task(name))
        except PluginError as error:
            problem = _problem_from(error)
            return self._render(frame, None, error_content(problem), problem)
        now = self.server.now()
        view = task_view(obj, now, fires=TASK_FIRES)
        window = span.window(now)
        detail = TaskPage(
            view=view,
            events=self._events(session, name),
            log=self._log(session, obj, view),
            may_patch=None,
            patch_reason="",
            window=window,
            fires=view.fire_times(now, MAX_MARKS + 1, window.end),
        )
        try:
            access = unreachable(lambda: session.access("patch", name))
            detail = replace(detail, may_patch=access.allowed, patch_reason=access.reason)
        except PluginError as error:
            sys.stderr.write(terminal_safe(f"ui: cannot ask whether patch is allowed: {error}\n"))
        content = task_content(detail, now, zone)
        return self._render(frame, task_controls(flt, zone, view), content, None)

    def _events(self, session: Session, name: str) -> list[Any] | Problem:
        try:
            return event_rows(unreachable(lambda: session.task_events(name)))
        except PluginError as error:
            return _problem_from(error)

    def _log(self, session: Session, obj: dict[str, Any], view: TaskView) -> LogView:
        status = view.status
        if not (status.get("runs") or status.get("active")):
            return LogView(None, None, None)
        source = None
        try:
            found = unreachable(lambda: log_source(session, obj, view.name))
            source = found.describe()
            text = unreachable(
                lambda: session.pod_log(found.pod, found.container, tail_lines=LOG_LINES)
            )
        except PluginError as error:
            return LogView(source, None, _problem_from(error))
        return LogView(source, text, None)

    # --- live updates -----------------------------------------------------------------------------

    def _stream(self, query: dict[str, list[str]]) -> None:
        """A server-sent event stream: ``change`` when a watched object changes, ``problem``
        (and the end) when a watch is refused. The page fetches its content on ``change``."""
        server = self.server
        sources: list[Callable[[threading.Event], Iterator[str]]] = []
        task = (query.get("task") or [""])[-1]
        if task:
            namespace, _, name = task.partition("/")
            scoped = server.session.in_namespace(namespace)
            sources.append(lambda stop: scoped.changes("tasks", stop, name=name))
            sources.append(lambda stop: scoped.changes("events", stop, name=name))
        else:
            flt = read_filter(query, server.default_namespace)
            if flt.namespace is None:
                every = server.session
                sources.append(
                    lambda stop: every.changes(
                        "tasks", stop, all_namespaces=True, label_selector=flt.labels
                    )
                )
            else:
                one = server.session.in_namespace(flt.namespace)
                sources.append(lambda stop: one.changes("tasks", stop, label_selector=flt.labels))
        inbox: queue.Queue[tuple[str, str]] = queue.Queue()
        stop = threading.Event()
        for source in sources:
            threading.Thread(target=_pump, args=(source, stop, inbox), daemon=True).start()
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        for header, value in SECURITY_HEADERS.items():
            self.send_header(header, value)
        self.end_headers()
        try:
            self.wfile.write(b"retry: 3000\n\n")
            self.wfile.flush()
            while not server.stopping.is_set():
                try:
                    kind, data = inbox.get(timeout=PING_SECONDS)
                except queue.Empty:
                    self.wfile.write(b": ping\n\n")
                    self.wfile.flush()
                    continue
                line = " ".join(data.split())
                self.wfile.write(f"event: {kind}\ndata: {line}\n\n".encode())
                self.wfile.flush()
                if kind == "problem":
                    break
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            stop.set()


def _pump(
    source: Callable[[threading.Event], Iterator[str]],
    stop: threading.Event,
    inbox: queue.Queue[tuple[str, str]],
) -> None:
    """Run one watch until ``stop``, putting its changes (and a refusal) into ``inbox``."""
    while not stop.is_set():
        try:
            for change in source(stop):
                if change:
                    inbox.put(("change", change))
                if stop.is_set():
                    return
        except WatchExpired:
            inbox.put(("change", "resync"))  # what changed meanwhile is unknown: refresh
        except PluginError as error:
            if error.status is not None:  # the API server refused: say so, and stop
                inbox.put(("problem", str(error)))
                return
            # Not reachable (a laptop waking up, say): try again, then refresh.
            stop.wait(RETRY_SECONDS)
            inbox.put(("change", "reconnected"))
