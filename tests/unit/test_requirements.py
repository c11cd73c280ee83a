"""hack/requirements.py --check: the hashed requirements match pyproject.toml and constraints.txt,
and a drift of either is caught offline (``make verify``)."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def requirements(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The script, working on a copy of the repository's three inputs."""
    spec = importlib.util.spec_from_file_location("requirements", REPO / "hack/requirements.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    shutil.copytree(REPO / "requirements", tmp_path / "requirements")
    for name in ("pyproject.toml", "constraints.txt"):
        shutil.copy(REPO / name, tmp_path / name)
    monkeypatch.setattr(module, "REPO", tmp_path)
    monkeypatch.setattr(module, "OUT", tmp_path / "requirements")
    monkeypatch.setattr(module, "PYPROJECT", tmp_path / "pyproject.toml")
    monkeypatch.setattr(module, "CONSTRAINTS", tmp_path / "constraints.txt")
    return module


def test_the_checked_in_files_match(
    requirements: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    assert requirements.check() == 0, capsys.readouterr().out
    runtime = (REPO / "requirements/runtime.txt").read_text()
    assert "kopf==" in runtime
    assert "pytest" not in runtime  # the image gets no dev tools
    assert "setuptools" not in runtime
    assert "nightshift @" not in (REPO / "requirements/dev.txt").read_text()


def test_a_changed_pin_or_dependency_or_a_missing_hash_is_caught(
    requirements: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    constraints = requirements.CONSTRAINTS
    original = constraints.read_text()
    constraints.write_text(original.replace("croniter==7.0.0", "croniter==7.0.1"))
    assert requirements.check() == 1
    out = capsys.readouterr().out
    assert "runtime.txt was made from other inputs" in out
    assert "runtime.txt: croniter==7.0.0, constraints.txt: 7.0.1" in out

    constraints.write_text(original)
    runtime = requirements.OUT / "runtime.txt"
    text = runtime.read_text()
    start = text.index("croniter==7.0.0")
    end = text.index("    # via", start)
    runtime.write_text(text[:start] + "croniter==7.0.0\n" + text[end:])
    assert requirements.check() == 1
    assert "runtime.txt: croniter==7.0.0 has no hash" in capsys.readouterr().out

    runtime.write_text(text)
    pyproject = requirements.PYPROJECT
    pyproject.write_text(pyproject.read_text().replace('"croniter>=6",', '"croniter>=6", "rich",'))
    assert requirements.check() == 1
    assert "runtime.txt: lacks rich" in capsys.readouterr().out
