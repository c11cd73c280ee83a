"""Spec parsing (pod-template parts the CRD schema passes through unchecked get a message) and
reading timestamps back from the API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from nightshift.models import SpecError, parse_spec, read_time


def spec_with_template(template: dict[str, Any]) -> dict[str, Any]:
    return {"schedule": "@daily", "jobTemplate": {"spec": {"template": template}}}


CONTAINERS = {"containers": [{"name": "main", "image": "busybox"}]}


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ({"metadata": "", "spec": CONTAINERS}, "template.metadata must be an object"),
        (
            {"metadata": {"labels": {"a": 1}}, "spec": CONTAINERS},
            "template.metadata.labels must map strings to strings",
        ),
        (
            {"metadata": {"annotations": ["x"]}, "spec": CONTAINERS},
            "template.metadata.annotations must map strings to strings",
        ),
        ({"spec": {"containers": ["main"]}}, "template.spec.containers must be a list of objects"),
        ({"spec": {"containers": {}}}, "must list at least one container"),
        ({"spec": "x"}, "must list at least one container"),
    ],
)
def test_a_malformed_pod_template_is_rejected_naming_the_part(
    template: dict[str, Any], message: str
) -> None:
    with pytest.raises(SpecError, match=message) as raised:
        parse_spec(spec_with_template(template))
    assert "spec.jobTemplate.spec" in str(raised.value)


def test_a_well_formed_pod_template_with_metadata_is_accepted() -> None:
    spec = parse_spec(
        spec_with_template({"metadata": {"labels": {"team": "a"}}, "spec": CONTAINERS})
    )
    assert spec.jobTemplate.spec.template["metadata"]["labels"] == {"team": "a"}


ZURICH_WINTER = timezone(timedelta(hours=1))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-23T10:00:00Z", datetime(2026, 11, 23, 10, tzinfo=UTC)),
        ("2026-11-23T10:00:00z", datetime(2026, 11, 23, 10, tzinfo=UTC)),
        ("2026-11-23T11:00:00+01:00", datetime(2026, 11, 23, 11, tzinfo=ZURICH_WINTER)),
        ("2026-11-23T10:00:00", datetime(2026, 11, 23, 10, tzinfo=UTC)),  # servers write UTC
        (datetime(2026, 11, 23, 10), datetime(2026, 11, 23, 10, tzinfo=UTC)),
        (datetime(2026, 11, 23, 10, tzinfo=UTC), datetime(2026, 11, 23, 10, tzinfo=UTC)),
        (None, None),
        ("", None),
        ("garbage", None),
        ("0001-01-01T00:00:00+01:00", None),  # before year 1 in UTC
        (1700000000, None),
    ],
)
def test_read_time_never_raises_on_what_the_api_holds(value: object, expected: object) -> None:
    # An aware datetime never equals a naive one, so this also says the result is aware.
    assert read_time(value) == expected
