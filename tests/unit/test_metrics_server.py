"""The secure metrics endpoint's decisions, against a fake API server (the real one:
tests/integration/test_surfaces.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest

from nightshift.api import ApiError
from nightshift.metrics_server import CACHE_SIZE, Authorizer

USERS = {
    "scraper-token": {"username": "system:serviceaccount:monitoring:prometheus", "groups": ["a"]},
    "stranger-token": {"username": "system:serviceaccount:team:app", "groups": ["b"]},
}
ALLOWED = {"system:serviceaccount:monitoring:prometheus"}


class FakeReviews:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.down = False

    async def review_token(self, token: str) -> dict[str, Any]:
        self.calls.append(("token", token))
        if self.down:
            raise ApiError("no answer", status=503, transient=True)
        user = USERS.get(token)
        return {"authenticated": True, "user": user} if user else {"authenticated": False}

    async def review_access(
        self, user: Mapping[str, Any], *, non_resource_attributes: Mapping[str, str]
    ) -> tuple[bool, str]:
        self.calls.append(("access", (user["username"], dict(non_resource_attributes))))
        allowed = user["username"] in ALLOWED
        return allowed, "" if allowed else "no RBAC policy matched"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def check(authorizer: Authorizer, header: str | None) -> tuple[int, str]:
    return asyncio.run(authorizer.check(header))


@pytest.mark.parametrize(
    ("header", "status", "why"),
    [
        (None, 401, "a bearer token is required"),
        ("Basic dXNlcjpwYXNz", 401, "a bearer token is required"),
        ("Bearer ", 401, "a bearer token is required"),
        ("Bearer made-up", 401, "the token was not accepted"),
        (
            "Bearer stranger-token",
            403,
            'user "system:serviceaccount:team:app" may not get /metrics: no RBAC policy matched',
        ),
        ("Bearer scraper-token", 200, ""),
        ("bearer scraper-token", 200, ""),
    ],
)
def test_who_may_read_the_metrics(header: str | None, status: int, why: str) -> None:
    api = FakeReviews()
    assert check(Authorizer(api), header) == (status, why)
    if header is None or header.strip() in ("Basic dXNlcjpwYXNz", "Bearer"):
        assert api.calls == []  # nothing to ask the API server about
    if status in (200, 403):
        # The access review is for exactly what controller-runtime's filter asks.
        assert (
            "access",
            (USERS[header.split()[1]]["username"], {"path": "/metrics", "verb": "get"}),
        ) in api.calls  # type: ignore[union-attr]


def test_answers_are_cached_by_token_for_a_while() -> None:
    api, clock = FakeReviews(), Clock()
    authorizer = Authorizer(api, clock)
    assert check(authorizer, "Bearer scraper-token")[0] == 200
    assert check(authorizer, "Bearer stranger-token")[0] == 403
    reviews = len(api.calls)
    clock.now = 9
    assert check(authorizer, "Bearer scraper-token")[0] == 200
    assert check(authorizer, "Bearer stranger-token")[0] == 403
    assert len(api.calls) == reviews  # both from the cache
    clock.now = 11  # a refusal is remembered for 10 s, a grant for 60 s
    check(authorizer, "Bearer stranger-token")
    check(authorizer, "Bearer scraper-token")
    assert [c[1] for c in api.calls[reviews:] if c[0] == "token"] == ["stranger-token"]
    clock.now = 61
    check(authorizer, "Bearer scraper-token")
    assert api.calls[-2] == ("token", "scraper-token")


def test_the_cache_is_bounded_and_an_outage_is_not_remembered() -> None:
    api = FakeReviews()
    authorizer = Authorizer(api)
    for i in range(CACHE_SIZE + 50):
        assert check(authorizer, f"Bearer flood-{i}")[0] == 401
    assert len(authorizer._answers) == CACHE_SIZE
    api.down = True
    assert check(authorizer, "Bearer scraper-token") == (503, "the API server did not answer")
    api.down = False
    assert check(authorizer, "Bearer scraper-token")[0] == 200
