"""Generate the CustomResourceDefinitions (ScheduledTask, Calendar, Backfill) from the pydantic
models."""

from __future__ import annotations

import copy
from typing import Any

import yaml

from nightshift.models import (
    BACKFILL_KIND,
    BACKFILL_PLURAL,
    CALENDAR_KIND,
    CALENDAR_PLURAL,
    GROUP,
    KIND,
    PLURAL,
    VERSION,
    BackfillSpec,
    BackfillStatus,
    CalendarSpec,
    TaskSpec,
    TaskStatus,
)

__all__ = ["KINDS", "crd_file", "crd_manifest", "crd_yaml", "openapi_schema"]

# JSON-Schema keywords that pydantic emits but a structural CRD schema must not carry.
_DROP = {"title", "$defs", "additionalProperties_false", "examples"}
_KEEP_VALUE_KEYS = {
    "type",
    "description",
    "format",
    "enum",
    "default",
    "pattern",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "nullable",
    "x-kubernetes-validations",
    "x-kubernetes-preserve-unknown-fields",
}


def _resolve(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, dict) and "$ref" in node:
        target = copy.deepcopy(defs[node["$ref"].rsplit("/", 1)[1]])
        extra = {k: v for k, v in node.items() if k != "$ref"}
        target.update(extra)
        return _resolve(target, defs)
    return node


def _convert(node: Any, defs: dict[str, Any]) -> dict[str, Any]:
    """Turn one pydantic JSON-Schema node into a structural OpenAPI v3 node."""
    node = _resolve(node, defs)
    # Optional[X] arrives as anyOf [X, null]: the field is simply not required.
    if "anyOf" in node:
        options = [o for o in node["anyOf"] if o.get("type") != "null"]
        if len(options) != 1:
            raise ValueError(f"cannot express union in a structural schema: {node}")
        merged = {k: v for k, v in node.items() if k != "anyOf"}
        inner = _resolve(options[0], defs)
        merged = {**inner, **merged}
        node = merged
    if "allOf" in node and len(node["allOf"]) == 1:
        inner = _resolve(node["allOf"][0], defs)
        node = {**inner, **{k: v for k, v in node.items() if k != "allOf"}}
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _KEEP_VALUE_KEYS:
            out[key] = value
    if node.get("default") is None:
        out.pop("default", None)
    if "const" in node:
        out["enum"] = [node["const"]]
    if "description" in out:
        out["description"] = " ".join(str(out["description"]).split())
    kind = node.get("type")
    if kind == "object" or "properties" in node:
        out["type"] = "object"
        props = node.get("properties", {})
        if props:
            out["properties"] = {name: _convert(sub, defs) for name, sub in props.items()}
        required = [r for r in node.get("required", []) if r in props]
        if required:
            out["required"] = required
        additional = node.get("additionalProperties")
        if isinstance(additional, dict):
            out["additionalProperties"] = _convert(additional, defs)
        if "maxProperties" in node:
            out["maxProperties"] = node["maxProperties"]
    elif kind == "array":
        out["items"] = _convert(node.get("items", {}), defs)
    if kind == "integer":
        out["format"] = out.get("format", "int64")
    if kind == "number":
        out["format"] = out.get("format", "double")
    return out


def _rename_bounds(node: Any, parent_type: str | None = None) -> None:
    """pydantic writes max_length of dicts/lists as maxItems/maxLength; fix per type."""
    if not isinstance(node, dict):
        return
    kind = node.get("type")
    if kind == "object":
        if "maxItems" in node:
            node["maxProperties"] = node.pop("maxItems")
        if "maxLength" in node:
            node["maxProperties"] = node.pop("maxLength")
    for value in node.values():
        if isinstance(value, dict):
            _rename_bounds(value, kind)


_ORDER = [
    "description",
    "type",
    "format",
    "enum",
    "default",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "nullable",
    "items",
    "properties",
    "additionalProperties",
    "required",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-validations",
]


def _canonical(node: dict[str, Any]) -> dict[str, Any]:
    """Stable key order, and object defaults reduced to {} so nested defaults apply instead."""
    out: dict[str, Any] = {}
    for key in sorted(node, key=lambda k: (_ORDER.index(k) if k in _ORDER else len(_ORDER), k)):
        value = node[key]
        if key == "default" and isinstance(value, dict):
            value = {}
        elif key == "properties":
            value = {name: _canonical(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            value = _canonical(value)
        out[key] = value
    return out


def _model_schema(model: type[Any]) -> dict[str, Any]:
    raw = model.model_json_schema(mode="serialization", by_alias=True)
    defs = raw.get("$defs", {})
    converted = _convert(raw, defs)
    _rename_bounds(converted)
    return _canonical(converted)


def openapi_schema() -> dict[str, Any]:
    """The structural openAPIV3Schema for the whole object."""
    spec = _model_schema(TaskSpec)
    spec["description"] = " ".join((TaskSpec.__doc__ or "").split())
    status = _model_schema(TaskStatus)
    status["description"] = " ".join((TaskStatus.__doc__ or "").split())
    return {
        "type": "object",
        "description": "A ScheduledTask runs a Job on a schedule (cron, interval or one-shot), "
        "exactly once per slot, with retries and a readable history.",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
    }


_PRINTER_COLUMNS = [
    {"name": "Schedule", "type": "string", "jsonPath": ".status.schedule"},
    {"name": "Suspend", "type": "boolean", "jsonPath": ".spec.suspend"},
    {"name": "Active", "type": "integer", "jsonPath": ".status.activeCount"},
    {"name": "Last", "type": "date", "jsonPath": ".status.lastScheduleTime"},
    {"name": "Next", "type": "string", "jsonPath": ".status.nextScheduleTime"},
    {"name": "Result", "type": "string", "jsonPath": ".status.lastResult"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def crd_manifest(kind: str = KIND) -> dict[str, Any]:
    """The CustomResourceDefinition object of ``kind`` (one of KINDS)."""
    if kind == CALENDAR_KIND:
        return _calendar_crd()
    if kind == BACKFILL_KIND:
        return _backfill_crd()
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{PLURAL}.{GROUP}",
            "labels": {"app.kubernetes.io/name": "nightshift"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": KIND.lower(),
                "shortNames": ["stask"],
                "categories": ["nightshift"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": _PRINTER_COLUMNS,
                    "schema": {"openAPIV3Schema": openapi_schema()},
                }
            ],
        },
    }


def _crd(
    *,
    kind: str,
    plural: str,
    description: str,
    spec: dict[str, Any],
    status: dict[str, Any] | None,
    columns: list[dict[str, Any]],
    spec_rules: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "metadata": {"type": "object"},
        "spec": spec,
    }
    if spec_rules:
        spec["x-kubernetes-validations"] = [*spec.get("x-kubernetes-validations", []), *spec_rules]
    if status is not None:
        properties["status"] = status
    version: dict[str, Any] = {"name": VERSION, "served": True, "storage": True}
    if status is not None:
        version["subresources"] = {"status": {}}
    version["additionalPrinterColumns"] = columns
    version["schema"] = {
        "openAPIV3Schema": {
            "type": "object",
            "description": description,
            "required": ["spec"],
            "properties": properties,
        }
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{plural}.{GROUP}",
            "labels": {"app.kubernetes.io/name": "nightshift"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "categories": ["nightshift"],
            },
            "versions": [version],
        },
    }


def _described(model: type[Any]) -> dict[str, Any]:
    schema = _model_schema(model)
    schema["description"] = " ".join((model.__doc__ or "").split())
    return schema


def _calendar_crd() -> dict[str, Any]:
    return _crd(
        kind=CALENDAR_KIND,
        plural=CALENDAR_PLURAL,
        description="A Calendar lists days, ranges of days and cron expressions whose slots "
        "the ScheduledTasks that reference it (spec.calendarRef) skip.",
        spec=_described(CalendarSpec),
        status=None,
        columns=[
            {"name": "Time Zone", "type": "string", "jsonPath": ".spec.timeZone"},
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        ],
    )


def _backfill_crd() -> dict[str, Any]:
    return _crd(
        kind=BACKFILL_KIND,
        plural=BACKFILL_PLURAL,
        description="A Backfill runs the slots in a range of a ScheduledTask's past that its "
        "schedule did not run (or runs them again), as the task's own runs, exactly once.",
        spec=_described(BackfillSpec),
        status=_described(BackfillStatus),
        columns=[
            {"name": "Task", "type": "string", "jsonPath": ".spec.taskRef.name"},
            {"name": "Reprocess", "type": "string", "jsonPath": ".spec.reprocess"},
            {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
            {"name": "Progress", "type": "string", "jsonPath": ".status.progress"},
            {"name": "Running", "type": "integer", "jsonPath": ".status.running"},
            {"name": "Failed", "type": "integer", "jsonPath": ".status.failed"},
            {"name": "From", "type": "string", "jsonPath": ".spec.from", "priority": 1},
            {"name": "To", "type": "string", "jsonPath": ".spec.to", "priority": 1},
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        ],
    )


# kind -> the file `make generate` writes it to, in crds/ and in the chart.
KINDS = {
    KIND: f"{PLURAL}.{GROUP}.yaml",
    CALENDAR_KIND: f"{CALENDAR_PLURAL}.{GROUP}.yaml",
    BACKFILL_KIND: f"{BACKFILL_PLURAL}.{GROUP}.yaml",
}


def crd_file(kind: str) -> str:
    """The file name of ``kind``'s CRD in crds/ (``calendars.nightshift.dev.yaml``)."""
    return KINDS[kind]


class _Dumper(yaml.SafeDumper):
    pass


def _str_presenter(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
    if "\n" in data:
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", data)


_Dumper.add_representer(str, _str_presenter)


def crd_yaml(kind: str = KIND) -> str:
    """The CRD of ``kind`` as the YAML document checked in at crds/<plural>.nightshift.dev.yaml."""
    command = "nightshift crd" if kind == KIND else f"nightshift crd {kind}"
    header = (
        f"# Generated by `{command}` from operator/nightshift/models.py. Do not edit:\n"
        "# change the models and run `make generate`.\n"
    )
    body = yaml.dump(crd_manifest(kind), Dumper=_Dumper, sort_keys=False, width=100)
    return header + "---\n" + body
