"""``kubectl nightshift ui``: start the server, print its URL, serve until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import signal
import webbrowser
from types import FrameType
from typing import TextIO

from nightshift.kubectl.session import PluginError, Session
from nightshift.kubectl.ui.guard import address_warning
from nightshift.kubectl.ui.server import UiServer

__all__ = ["cmd_ui", "initial_namespace"]


def initial_namespace(args: argparse.Namespace, session: Session) -> str | None:
    """The namespace the pages show first (None: every namespace): ``-A`` or ``-n`` when
    given; else every namespace when the user may list tasks in all of them, else the
    kubeconfig context's namespace."""
    if args.all_namespaces:
        return None
    if args.namespace is not None:
        return str(args.namespace)
    try:
        if session.in_namespace("").access("list").allowed:
            return None
    except PluginError:
        pass  # cannot tell: the context's namespace is always a fair start
    return session.namespace


class _Stop(Exception):
    """SIGTERM: stop serving the way Ctrl-C does."""


def _stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop


def cmd_ui(args: argparse.Namespace, session: Session, out: TextIO, err: TextIO) -> int:
    """Serve the web UI with the session's credentials until interrupted."""
    namespace = initial_namespace(args, session)
    user = session.whoami()
    try:
        server = UiServer(args.address, args.port, session, default_namespace=namespace, user=user)
    except OSError as error:
        problem = error.strerror or str(error)
        raise PluginError(f"cannot listen on {args.address} port {args.port}: {problem}") from None
    warning = address_warning(args.address)
    if warning:
        err.write(warning + "\n")
    shown = f'namespace "{namespace}"' if namespace else "all namespaces"
    out.write(
        f"Nightshift UI on port {server.port}, showing {shown}{f' as {user}' if user else ''}\n"
    )
    out.write(f"  {server.url}\n")
    out.write("The link carries this server's access token: do not share it. Ctrl-C stops it.\n")
    out.flush()
    if args.open:
        webbrowser.open(server.url)
    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        server.serve_forever(poll_interval=0.5)
    except (KeyboardInterrupt, _Stop):
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.server_close()
    err.write("stopped\n")
    return 0
