#!/usr/bin/env python3
"""Gather the operator image's whole root file system into one directory (the final stage copies
it onto ``scratch``): the virtual environment, the Python it runs on, and nothing else.

Runs in the Dockerfile's builder stage with the base image's python3, as root:

    python3 rootfs.py VENV ROOT

What goes in: VENV as it is; the interpreter VENV/bin/python resolves to (every symlink on the
way); its standard library without site-packages/dist-packages (pip, setuptools and the base
image's other packages live there), ensurepip (a bundled pip), the test suites, IDLE and tkinter;
the shared libraries that the interpreter and every extension module load (``ldd``), plus
libgcc_s, which glibc loads at run time to unwind a thread that exits; an ld.so.cache for them
(``ldconfig -r``); the CA bundle (SSL_CERT_FILE points at it); /etc/passwd and /etc/group naming
the image's user; an empty /tmp. No shell, no coreutils, no package manager, no pip: what the
image runs is ``nightshift`` (a script whose ``#!`` names VENV's python), and ``python``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

# Standard-library parts an operator never imports (and ensurepip carries a pip wheel).
LEFT_OUT = {
    "site-packages", "dist-packages", "ensurepip", "test", "idlelib", "tkinter", "turtledemo",
    "lib2to3", "pydoc_data", "__phello__",
}  # fmt: skip
# Loaded by glibc with dlopen (never in ldd's output): pthread_exit and pthread_cancel unwind
# with it, and abort without it.
DLOPENED = ("libgcc_s.so.1",)
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
USER = ("nightshift", 10001)


def copy_path(path: Path, root: Path) -> None:
    """Copy PATH to the same place under ROOT: a symlink as a symlink (and what it points to),
    a file with its mode, a directory's parents as directories."""
    target = root / path.relative_to("/")
    if target.exists() or target.is_symlink():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink():
        link = os.readlink(path)
        os.symlink(link, target)
        copy_path(Path(os.path.normpath(path.parent / link)), root)
    elif path.is_dir():
        target.mkdir(parents=True)  # a directory a symlink names (/lib64 -> usr/lib64): its
        # contents come one by one, as far as they are needed
    else:
        shutil.copy2(path, target)


def copy_chain(path: Path, root: Path) -> None:
    """Copy PATH, following its parent directories' symlinks too (/lib -> usr/lib)."""
    for parent in reversed(path.parents):
        if parent.is_symlink():
            copy_path(parent, root)
    copy_path(path, root)


def shared_libraries(binaries: list[Path]) -> set[Path]:
    """Every library ``ldd`` says the BINARIES load (the dynamic loader included)."""
    found: set[Path] = set()
    for binary in binaries:
        result = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=False)
        for line in result.stdout.splitlines():
            match = re.search(r"(?:=>\s*)?(/\S+)\s+\(0x", line)
            if match:
                found.add(Path(match.group(1)))
    return found


def main() -> int:
    venv, root = Path(sys.argv[1]), Path(sys.argv[2])
    root.mkdir(parents=True)
    shutil.copytree(venv, root / venv.relative_to("/"), symlinks=True)

    # The interpreter: VENV/bin/python -> ... -> /usr/bin/python3.11 (or /usr/local/bin/...).
    link = venv / "bin" / "python"
    while link.is_symlink():
        link = Path(os.path.normpath(link.parent / os.readlink(link)))
        if venv not in link.parents:
            copy_chain(link, root)
    interpreter = link

    stdlib = Path(sysconfig.get_paths()["stdlib"])
    dynload = Path(str(sysconfig.get_config_var("DESTSHARED")))
    shutil.copytree(
        stdlib,
        root / stdlib.relative_to("/"),
        symlinks=True,
        ignore=lambda directory, names: [n for n in names if n in LEFT_OUT],
    )
    if not (root / dynload.relative_to("/")).exists():
        shutil.copytree(dynload, root / dynload.relative_to("/"), symlinks=True)

    binaries = [interpreter]
    for tree in (root / dynload.relative_to("/"), root / venv.relative_to("/")):
        binaries += [p for p in tree.rglob("*.so*") if p.is_file() and not p.is_symlink()]
    libraries = shared_libraries(binaries)
    libc = next(p for p in libraries if p.name == "libc.so.6")
    libraries |= {libc.parent / name for name in DLOPENED if (libc.parent / name).exists()}
    for library in sorted(libraries):
        copy_chain(library, root)
    # The loader looks in its default directories and in ld.so.cache (the official python image
    # keeps libpython in /usr/local/lib, found only through the cache).
    directories = sorted({str(p.parent) for p in libraries})
    (root / "etc").mkdir(exist_ok=True)
    (root / "etc" / "ld.so.conf").write_text("\n".join(directories) + "\n")
    subprocess.run(["ldconfig", "-r", str(root)], check=True)

    bundle = root / CA_BUNDLE.relative_to("/")
    bundle.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(CA_BUNDLE.resolve(), bundle)
    name, uid = USER
    (root / "etc" / "passwd").write_text(
        f"root:x:0:0:root:/root:/sbin/nologin\n{name}:x:{uid}:{uid}::/nonexistent:/sbin/nologin\n"
    )
    (root / "etc" / "group").write_text(f"root:x:0:\n{name}:x:{uid}:\n")
    (root / "tmp").mkdir(mode=0o1777)
    os.chmod(root / "tmp", 0o1777)  # noqa: S103 - /tmp is sticky and world-writable
    return 0


if __name__ == "__main__":
    sys.exit(main())
