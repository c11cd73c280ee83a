"""Spec parsing: pod-template parts the CRD schema passes through unchecked get a message."""

from __future__ import annotations

from typing import Any

import pytest

from nightshift.models import SpecError, parse_spec


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
