"""doc/man: the manual pages ``lightning-cli help custommsg-X`` opens, made from doc/schemas by ``make man``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from custommsg.node.plugin import METHODS

REPO = Path(__file__).resolve().parents[2]
TOOL = REPO / "tools" / "schema2man.py"


def test_the_pages_are_what_the_schemas_make() -> None:
    checked = subprocess.run([sys.executable, str(TOOL), "--check", "doc/schemas", "doc/man"], cwd=REPO,
                             capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr


def test_the_check_notices_a_stale_page(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(TOOL), str(REPO / "doc/schemas"), str(tmp_path)], check=True)
    page = tmp_path / "lightning-custommsg-send.7"
    page.write_text(page.read_text().replace("node_id", "peer"))
    checked = subprocess.run([sys.executable, str(TOOL), "--check", str(REPO / "doc/schemas"), str(tmp_path)],
                             capture_output=True, text=True)
    assert checked.returncode == 1 and "lightning-custommsg-send.7: out of date" in checked.stderr


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_has_a_page_named_as_lightning_cli_asks(method: str) -> None:
    # lightning-cli help X runs `man lightning-X` (cli/lightning-cli.c: try_exec_man).
    text = (REPO / "doc" / "man" / f"lightning-{method}.7").read_text()
    assert text.startswith(f'.TH "LIGHTNING-{method.upper()}" "7"')
    assert f"\\fB{method}\\fR" in text  # the synopsis
    for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "RETURN VALUE", "ERRORS"):
        assert f".SH {section}\n" in text, section
