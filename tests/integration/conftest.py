"""Integration tier: real lightningd nodes through pyln-testing.

lightningd is found on PATH, or through $LIGHTNINGD (a path to the binary). The
bitcoind stand-in is ../shared/chainstub beside the repository, or $CHAINSTUB_DIR;
a real bitcoind on PATH also works. Without lightningd every test here is skipped,
with that reason.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
PLUGIN = REPO / "plugin.py"
TEST_PLUGINS = Path(__file__).resolve().parent / "plugins"


def _prepend_path(directory: str | os.PathLike[str]) -> None:
    os.environ["PATH"] = f"{directory}{os.pathsep}{os.environ.get('PATH', '')}"


def _setup_environment() -> str | None:
    """Put what pyln-testing runs on PATH; return why the tier cannot run, if it cannot."""
    if os.environ.get("LIGHTNINGD"):
        _prepend_path(Path(os.environ["LIGHTNINGD"]).resolve().parent)
    lightningd = shutil.which("lightningd")
    if lightningd is None:
        return "lightningd not found: put it on PATH or set LIGHTNINGD=/path/to/lightningd (see README)"
    cli = Path(lightningd).resolve().parent.parent / "cli"
    if (cli / "lightning-cli").exists():
        _prepend_path(cli)
    chainstub = Path(os.environ.get("CHAINSTUB_DIR", REPO.parent / "shared" / "chainstub"))
    if (chainstub / "bitcoind").exists():
        _prepend_path(chainstub)
    elif shutil.which("bitcoind") is None:
        return "no bitcoind: set CHAINSTUB_DIR to shared/chainstub or put bitcoind on PATH"
    # Python plugins start with `#!/usr/bin/env python3`: make that this interpreter,
    # the one that has pyln-client.
    _prepend_path(Path(sys.executable).parent)
    os.environ.setdefault("RUST", "0")  # builds without cln-grpc reject --grpc-port
    return None


SKIP_REASON = _setup_environment()

# pyln-testing parses the nodes' saved plugin traffic at teardown; one test sends a
# 131072-digit JSON number, past Python's default limit for reading integers.
if hasattr(sys, "set_int_max_str_digits"):
    sys.set_int_max_str_digits(0)

if SKIP_REASON is None:
    from pyln.testing.fixtures import *  # noqa: E402,F401,F403

    @pytest.fixture(autouse=True)
    def jsonschemas() -> dict[str, Any]:
        """pyln-testing's fixture of the same name, from this repository's doc/schemas wherever pytest
        runs: every custommsg-* call's dict parameters and result are validated against its schema."""
        from pyln.testing.fixtures import _load_schema

        schemas = REPO / "doc" / "schemas"
        return {path.stem: _load_schema(str(path)) for path in sorted(schemas.glob("custommsg-*.json"))}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).resolve().parent
    for item in items:
        if here in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.integration)
            if SKIP_REASON is not None:
                item.add_marker(pytest.mark.skip(reason=SKIP_REASON))


def plugin_rss_kib(node, plugins: set[str] | None = None) -> int:
    """Resident memory of the custommsg plugin process that ``node``'s lightningd started: the child
    whose command line names one of ``plugins`` (default: this checkout's plugin.py, as given and real)."""
    names = plugins or {str(PLUGIN), os.path.realpath(PLUGIN)}
    parent = str(node.daemon.proc.pid)
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/status") as f:
                status = f.read()
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().decode(errors="replace").split("\0")
        except OSError:
            continue
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        if fields.get("PPid", "").strip() == parent and names.intersection(cmdline):
            return int(fields["VmRSS"].split()[0])
    raise LookupError("custommsg plugin process not found")
