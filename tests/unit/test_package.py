"""Packaging facts a user depends on."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from nightshift.crd import crd_manifest


def test_import_operator_is_the_standard_library() -> None:
    # operator/ is the source root, never a package: it must not shadow the stdlib module.
    result = subprocess.run(
        [sys.executable, "-c", "import operator, nightshift; print(operator.__file__)"],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    path = result.stdout.strip()
    assert "site-packages" not in path
    assert path.endswith("/operator.py")
    assert Path(path).parent == Path(subprocess.__file__).parent


def test_console_scripts_exist() -> None:
    bin_dir = Path(sys.executable).parent
    for script in ("nightshift", "kubectl-nightshift"):
        assert (bin_dir / script).exists(), script


def _walk(node: dict, path: str, problems: list[str]) -> None:  # type: ignore[type-arg]
    kind = node.get("type")
    if "anyOf" in node or "oneOf" in node or "$ref" in node:
        problems.append(f"{path}: not structural")
    if kind == "string" and "maxLength" not in node and "enum" not in node:
        problems.append(f"{path}: string without maxLength")
    if kind == "array":
        if "maxItems" not in node:
            problems.append(f"{path}: array without maxItems")
        _walk(node["items"], path + "[]", problems)
    for name, sub in (node.get("properties") or {}).items():
        _walk(sub, f"{path}.{name}", problems)
    if isinstance(node.get("additionalProperties"), dict):
        _walk(node["additionalProperties"], path + "{}", problems)


def test_crd_schema_is_structural_and_bounded() -> None:
    schema = crd_manifest()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    problems: list[str] = []
    for part in ("spec", "status"):
        _walk(schema["properties"][part], part, problems)
    assert problems == []
    assert yaml.safe_dump(crd_manifest())


def test_crd_names_and_columns() -> None:
    crd = crd_manifest()
    names = crd["spec"]["names"]
    assert names["shortNames"] == ["stask"]
    assert names["categories"] == ["nightshift"]
    columns = [c["name"] for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]]
    assert columns == ["Schedule", "Suspend", "Active", "Last", "Next", "Result", "Age"]
    assert crd["spec"]["versions"][0]["subresources"] == {"status": {}}
