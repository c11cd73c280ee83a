"""Who may use the UI's server: the access token, its cookie, the CSRF token and the Host check.

The server acts with the user's own Kubernetes credentials, so anything that can talk to it can act
as the user. Four checks keep that to the user's own browser:

- **Host**: a request must name the address the server listens on. A web page whose DNS name is
  re-pointed at 127.0.0.1 (DNS rebinding) sends its own name, so it is refused.
- **Access token**: the printed URL carries a random token; the first visit trades it for an
  HttpOnly, SameSite=Strict cookie. Other local users (loopback is shared by everyone on the
  machine) and other browsers' pages do not have it.
- **CSRF token**: every POST carries a second random token that only our own pages hold, in a
  header, and an Origin (when the browser sends one) that is ours.
- **Loopback**: the server listens on 127.0.0.1 unless ``--address`` says otherwise, with a
  warning.

Everything here is pure: the tokens are made once per process and compared in constant time.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie

__all__ = [
    "CSRF_HEADER",
    "TOKEN_PARAMETER",
    "Guard",
    "address_warning",
    "is_loopback",
    "url_host",
]

CSRF_HEADER = "X-CSRF-Token"
TOKEN_PARAMETER = "token"  # noqa: S105 - the name of the query parameter


def is_loopback(address: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``: only this machine can connect."""
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def address_warning(address: str) -> str | None:
    """What to tell the user who binds the UI somewhere other than loopback, or None."""
    if is_loopback(address):
        return None
    return (
        f"warning: serving on {address}, not only on this machine: whoever can reach it and "
        "holds the printed URL acts with your Kubernetes credentials"
    )


def url_host(address: str, port: int) -> str:
    """``address:port`` as it goes in a URL (IPv6 in brackets; 0.0.0.0 and :: as 127.0.0.1)."""
    if address in ("0.0.0.0", ""):  # noqa: S104 - naming it, not binding it
        address = "127.0.0.1"
    elif address == "::":
        address = "::1"
    if ":" in address:
        return f"[{address}]:{port}"
    return f"{address}:{port}"


@dataclass(frozen=True, slots=True)
class Guard:
    """The tokens and the Host names of one server process."""

    access_token: str
    csrf_token: str
    port: int
    hosts: frozenset[str]

    @classmethod
    def create(cls, address: str, port: int) -> Guard:
        """Fresh tokens for a server bound to ``address:port``."""
        hosts = {f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", url_host(address, port)}
        return cls(secrets.token_urlsafe(24), secrets.token_urlsafe(24), port, frozenset(hosts))

    @property
    def cookie_name(self) -> str:
        """Cookies are shared by every port of a host: the name carries ours."""
        return f"nightshift-ui-{self.port}"

    def host_allowed(self, host: str | None, *, any_host: bool = False) -> bool:
        """Is the Host header one of ours? (``any_host``: bound to every address, so a name
        other users type cannot be known; the access token still applies.)"""
        if host is None:
            return False
        return any_host or host.lower() in self.hosts

    def origin_allowed(self, origin: str | None, host: str | None) -> bool:
        """A POST's Origin, when the browser sends one, must be this server itself."""
        if origin is None:
            return True
        return host is not None and origin.lower() == f"http://{host.lower()}"

    def token_valid(self, token: str | None) -> bool:
        """The access token of the printed URL."""
        return token is not None and hmac.compare_digest(token, self.access_token)

    def cookie_valid(self, cookie_header: str | None) -> bool:
        """Does the Cookie header carry our access cookie?"""
        if not cookie_header:
            return False
        try:
            jar = SimpleCookie(cookie_header)
        except CookieError:
            return False
        morsel = jar.get(self.cookie_name)
        return morsel is not None and self.token_valid(morsel.value)

    def csrf_valid(self, sent: str | None) -> bool:
        """Is ``sent`` (a POST's CSRF header) the token our pages hold?"""
        return sent is not None and hmac.compare_digest(sent, self.csrf_token)

    def set_cookie(self) -> str:
        """The Set-Cookie value that grants the browser access for this process's lifetime."""
        return (
            f"{self.cookie_name}={self.access_token}; Path=/; HttpOnly; SameSite=Strict; "
            "Max-Age=86400"
        )
