"""The README's RPC reference and doc/schemas cannot drift apart: headings, parameters, error codes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from custommsg.methods import METHODS
from tests.schema_check import schema_of

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()
# "### `custommsg-send` *node_id* *msg* [*allow_even*] ...": the heading of each method's section.
HEADINGS = {m[1]: m[2] for m in re.finditer(r"^### `(custommsg-[a-z-]+)`(.*)$", README, re.M)}


def test_every_method_has_a_section() -> None:
    assert sorted(HEADINGS) == sorted(METHODS)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_heading_lists_the_schemas_parameters_in_order(method: str) -> None:
    request = schema_of(method)["request"]
    expected = [name if name in request["required"] else f"[{name}]" for name in request["properties"]]
    listed = [word.replace("*", "") for word in HEADINGS[method].split()]
    assert listed == expected


def _readme_codes() -> set[int]:
    section = README.split("\n## Error codes\n", 1)[1].split("\n## ", 1)[0]
    return {int(m[1]) for m in re.finditer(r"^\| (-?\d+) \|", section, re.M)}


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_code_a_schema_lists_is_in_the_readmes_table(method: str) -> None:
    codes = {int(m[1]) for line in schema_of(method)["errors"] if (m := re.match(r"- (-?\d+): ", line))}
    assert codes - _readme_codes() == set()
