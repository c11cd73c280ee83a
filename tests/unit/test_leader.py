"""Leader election decisions (pure parts)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from nightshift.leader import LeaseTiming, lease_body, may_acquire

TIMING = LeaseTiming(duration=10, renew_deadline=7, retry_period=2)
NOW = datetime(2026, 11, 23, 12, 0, 0, 123456, tzinfo=UTC)


@pytest.mark.parametrize(
    ("holder", "unchanged_for", "expected"),
    [
        (None, 0, True),
        ("", 0, True),
        ("me", 0, True),
        ("other", 5, False),
        ("other", 10, False),
        ("other", 10.5, True),
    ],
)
def test_may_acquire(holder: str | None, unchanged_for: float, expected: bool) -> None:
    assert may_acquire(holder, "me", unchanged_for, TIMING) is expected


def test_renew_deadline_must_be_shorter_than_the_lease() -> None:
    with pytest.raises(ValueError, match="renew deadline"):
        LeaseTiming(duration=5, renew_deadline=7, retry_period=2)


def test_new_lease() -> None:
    body = lease_body("nightshift", "ops", "me", TIMING, now=NOW)
    assert body["spec"] == {
        "acquireTime": "2026-11-23T12:00:00.123456Z",
        "leaseTransitions": 0,
        "holderIdentity": "me",
        "leaseDurationSeconds": 10,
        "renewTime": "2026-11-23T12:00:00.123456Z",
    }
    assert "resourceVersion" not in body["metadata"]


def test_takeover_counts_a_transition_and_renewal_does_not() -> None:
    previous = {
        "metadata": {"name": "nightshift", "resourceVersion": "42"},
        "spec": {"holderIdentity": "other", "leaseTransitions": 3, "acquireTime": "x"},
    }
    taken = lease_body("nightshift", "ops", "me", TIMING, now=NOW, previous=previous)
    assert taken["spec"]["leaseTransitions"] == 4
    assert taken["spec"]["holderIdentity"] == "me"
    assert taken["metadata"]["resourceVersion"] == "42"
    renewed = lease_body("nightshift", "ops", "me", TIMING, now=NOW, previous=taken)
    assert renewed["spec"]["leaseTransitions"] == 4
    assert renewed["spec"]["acquireTime"] == taken["spec"]["acquireTime"]
