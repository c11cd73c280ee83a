"""A self-signed serving certificate (its own CA) made with openssl, for a webhook on 127.0.0.1."""

from __future__ import annotations

import subprocess
from pathlib import Path


def self_signed(
    directory: Path,
    *,
    name: str = "webhook",
    days: int = 2,
    alt_names: str = "IP:127.0.0.1",
) -> tuple[Path, Path]:
    """``directory/name.crt`` and ``.key`` for CN 127.0.0.1 (RSA 2048), made unless the
    certificate is there already; ``alt_names`` is its subjectAltName."""
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    if not cert.exists():
        subprocess.run(
            [
                "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", str(days),
                "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
                "-addext", f"subjectAltName={alt_names}",
            ],
            check=True,
            capture_output=True,
        )  # fmt: skip
    return cert, key
