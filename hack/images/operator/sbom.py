#!/usr/bin/env python3
"""Write the operator image's software bill of materials (CycloneDX 1.5 JSON) from what is in its
root file system: the Python packages of the virtual environment (their installed metadata) and
the Debian packages that own the other files (dpkg's database of the builder, whose files they
are); a file no package owns is the interpreter's own build (the official python image builds
CPython from source), listed as CPython.

Runs in the Dockerfile's builder stage, after rootfs.py:

    python3 sbom.py ROOT VENV OUTPUT

OUTPUT is written inside ROOT too (the image carries its SBOM); hack/build-images.sh copies it
next to the image's archive.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import re
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def python_components(venv: Path) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """The venv's distributions as components, and nightshift itself (the image's subject)."""
    site = next(venv.glob("lib/python3*/site-packages"))
    components: list[dict[str, Any]] = []
    subject = None
    for dist in sorted(
        importlib.metadata.distributions(path=[str(site)]), key=lambda d: normalize(d.name)
    ):
        name, version = normalize(dist.metadata["Name"]), dist.version
        component: dict[str, Any] = {
            "type": "library",
            "bom-ref": f"pkg:pypi/{name}@{version}",
            "name": name,
            "version": version,
            "purl": f"pkg:pypi/{name}@{version}",
        }
        expression = dist.metadata.get("License-Expression")
        license_name = dist.metadata.get("License")
        if expression:
            component["licenses"] = [{"expression": expression}]
        elif license_name and len(license_name) < 100 and "\n" not in license_name:
            component["licenses"] = [{"license": {"name": license_name}}]
        if name == "nightshift":
            subject = component
        else:
            components.append(component)
    return components, subject


def dpkg_files() -> dict[str, str]:
    """Every file dpkg installed -> its package, from /var/lib/dpkg/info/*.list, under both
    names a merged /usr gives it (/lib/x and /usr/lib/x)."""
    found: dict[str, str] = {}
    for listing in Path("/var/lib/dpkg/info").glob("*.list"):
        package = listing.name.removesuffix(".list")
        for line in listing.read_text(encoding="utf-8", errors="replace").splitlines():
            found.setdefault(line, package)
            if line.startswith("/usr/"):
                found.setdefault(line.removeprefix("/usr"), package)
            else:
                found.setdefault("/usr" + line, package)
    return found


def owners(root: Path, skip: Path) -> tuple[dict[str, set[str]], list[str]]:
    """Debian package -> files of ROOT it owns; and the files no package owns."""
    installed = dpkg_files()
    owned: dict[str, set[str]] = {}
    unowned: list[str] = []
    for directory, _, files in os.walk(root):
        for file in files:
            path = "/" + str((Path(directory) / file).relative_to(root))
            if Path(path).is_relative_to(skip) or path in GENERATED:
                continue
            # A byte-code cache belongs to the package of its source file.
            source = re.sub(r"/__pycache__/([^/]+?)\.[^./]+\.pyc$", r"/\1.py", path)
            package = installed.get(path) or installed.get(source) or MADE_BY.get(path)
            if package is None:
                real = os.path.realpath(path)
                package = installed.get(real)
            if package:
                owned.setdefault(package, set()).add(path)
            else:
                unowned.append(path)
    return owned, unowned


# Files a package's maintainer script makes (so dpkg lists none of them).
MADE_BY = {"/etc/ssl/certs/ca-certificates.crt": "ca-certificates"}
# Files rootfs.py writes itself (and this SBOM): no package owns them.
GENERATED = {"/etc/passwd", "/etc/group", "/etc/ld.so.conf", "/etc/ld.so.cache"}


def debian_components(owned: dict[str, set[str]]) -> list[dict[str, Any]]:
    components = []
    distro = ""
    with open("/etc/os-release", encoding="utf-8") as release:
        for line in release:
            if line.startswith("VERSION_ID="):
                distro = "debian-" + line.split("=", 1)[1].strip().strip('"')
    for package in sorted(owned):
        query = subprocess.run(
            ["dpkg-query", "--show", "--showformat=${Version} ${Architecture} ${source:Package}",
             package],
            capture_output=True, text=True, check=True,
        ).stdout.split()  # fmt: skip
        version, arch, source = query[0], query[1], query[2]
        name = package.split(":")[0]
        purl = f"pkg:deb/debian/{name}@{version}?arch={arch}"
        if distro:
            purl += f"&distro={distro}"
        component: dict[str, Any] = {
            "type": "library",
            "bom-ref": purl,
            "name": name,
            "version": version,
            "purl": purl,
            "properties": [{"name": "nightshift:files", "value": str(len(owned[package]))}],
        }
        if source != name:
            component["properties"].append({"name": "debian:source", "value": source})
        components.append(component)
    return components


def main() -> int:
    root, venv, output = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    python, subject = python_components(root / venv.relative_to("/"))
    owned, unowned = owners(root, venv)
    components = debian_components(owned) + python
    if unowned:
        version = platform.python_version()
        components.append(
            {
                "type": "application",
                "bom-ref": f"pkg:generic/cpython@{version}",
                "name": "cpython",
                "version": version,
                "purl": f"pkg:generic/cpython@{version}",
                "description": "built from source in the base image (owned by no package)",
                "properties": [{"name": "nightshift:files", "value": str(len(unowned))}],
            }
        )
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    now = datetime.fromtimestamp(int(epoch), UTC) if epoch else datetime.now(UTC)
    bom = {
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": f"urn:uuid:{uuid.uuid4()}",
        "version": 1,
        "metadata": {
            "timestamp": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "tools": {"components": [{"type": "application", "name": "nightshift-image-sbom"}]},
            "component": {
                "type": "container",
                "bom-ref": "nightshift-operator-image",
                "name": "nightshift-operator",
                "version": subject["version"] if subject else "unknown",
            },
        },
        "components": ([subject] if subject else []) + components,
    }
    output = root / output.relative_to("/")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(bom, indent=2) + "\n")
    print(
        f"sbom: {len(python) + (1 if subject else 0)} Python packages, {len(owned)} Debian "
        f"packages, {len(unowned)} files of no package -> {output}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
