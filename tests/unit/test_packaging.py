"""The ways in agree: pyproject.toml (pip), requirements.txt and custommsg.py (reckless), plugin.py."""

from __future__ import annotations

import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    tomllib = None

import pytest

REPO = Path(__file__).resolve().parents[2]


def _requirements() -> list[str]:
    lines = (REPO / "requirements.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


@pytest.mark.skipif(tomllib is None, reason="tomllib is Python 3.11 and later")
def test_requirements_txt_is_pyprojects_dependencies() -> None:
    assert tomllib is not None
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert _requirements() == project["dependencies"]


@pytest.mark.skipif(tomllib is None, reason="tomllib is Python 3.11 and later")
def test_pip_executable_and_manual_pages_are_declared() -> None:
    assert tomllib is not None
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert pyproject["project"]["scripts"] == {"custommsg": "custommsg.__main__:main"}
    assert pyproject["project"]["license"] == "MIT" and (REPO / "LICENSE").exists()
    assert pyproject["tool"]["setuptools"]["data-files"] == {"share/man/man7": ["doc/man/*.7"]}


def test_reckless_entry_runs_the_package_main() -> None:
    # reckless finds <name>.py beside requirements.txt in a folder named <name> (tools/reckless:
    # py_entry_guesses), then replaces it with a wrapper running runpy.run_module("custommsg").
    text = (REPO / "custommsg.py").read_text()
    assert "from custommsg.__main__ import main" in text
    assert (REPO / "custommsg.py").stat().st_mode & 0o111, "custommsg.py is not executable"
