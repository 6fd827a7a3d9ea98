"""The README and the docs cannot drift from the code, the schemas or each other.

The README's method table lists every method and links its manual page; its error-code table
lists every code a schema lists; the per-method headings ("### `custommsg-send` *node_id* ...",
in doc/methods.md) list each schema's parameters in order; and every relative link in
README.md, doc/*.md and bench/README.md points to a file that exists, and its #anchor to a
heading of that file.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from custommsg.node.plugin import METHODS
from tests.schema_check import schema_of

REPO = Path(__file__).resolve().parents[2]
README_PATH = REPO / "README.md"
README = README_PATH.read_text()
DOCS = [README_PATH, *sorted((REPO / "doc").glob("*.md")), REPO / "bench" / "README.md"]

FENCE = re.compile(r"^```.*?^```[^\n]*$", re.M | re.S)
# [text](target): an inline link, outside code; the target has no spaces.
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _prose(text: str) -> str:
    """The text without fenced code blocks and inline code, where brackets are not links."""
    return re.sub(r"`[^`\n]*`", "", FENCE.sub("", text))


def _section(text: str, heading: str) -> str:
    return text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation and markup dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    """The #anchors GitHub gives the headings of a markdown file (a repeated one gets -1, -2...)."""
    seen: dict[str, int] = {}
    anchors = set()
    for m in re.finditer(r"^#{1,6} (.+)$", FENCE.sub("", path.read_text()), re.M):
        slug = _slug(m[1])
        anchors.add(f"{slug}-{seen[slug]}" if slug in seen else slug)
        seen[slug] = seen.get(slug, 0) + 1
    return anchors


def _links() -> list[tuple[Path, str]]:
    return [(doc, m[1]) for doc in DOCS for m in LINK.finditer(_prose(doc.read_text()))]


def _relative(target: str) -> bool:
    return not re.match(r"[a-z][a-z0-9+.-]*:", target)


# "### `custommsg-send` *node_id* *msg* [*allow_even*] ...": the heading of each method's section.
HEADING = re.compile(r"^### `(custommsg-[a-z-]+)`(.*)$", re.M)
HEADINGS = [(m[1], m[2]) for doc in DOCS for m in HEADING.finditer(doc.read_text())]


def test_the_readme_links_the_long_references() -> None:
    linked = {target for doc, target in _links() if doc == README_PATH}
    assert linked >= {"doc/methods.md", "doc/acked-delivery.md", "doc/lsps.md", "doc/design.md", "bench/README.md"}


def _id(value: Path | str) -> str:
    return str(value.relative_to(REPO)) if isinstance(value, Path) else value


@pytest.mark.parametrize(("doc", "target"), _links(), ids=_id)
def test_every_relative_link_points_to_a_file_and_a_heading_that_exist(doc: Path, target: str) -> None:
    if not _relative(target):
        return
    path, _, anchor = target.partition("#")
    file = (doc.parent / path).resolve() if path else doc
    assert file.exists(), f"{doc.relative_to(REPO)} links {target}: no such file"
    if anchor:
        assert anchor in _anchors(file), f"{doc.relative_to(REPO)} links {target}: no such heading"


def test_the_readme_has_a_table_of_contents_of_its_own_sections() -> None:
    contents = re.findall(r"^- \[[^\]]+\]\(#([^)]+)\)$", _section(README, "Contents"), re.M)
    sections = [_slug(h) for h in re.findall(r"^## (.+)$", FENCE.sub("", README), re.M)]
    assert contents == [s for s in sections if s != "contents"]


def _method_table() -> dict[str, str]:
    """Method name to the manual page its row links, from the README's table of methods."""
    rows = re.finditer(r"^\| \[`(custommsg-[a-z-]+)`\]\(([^)]+)\) \|", _section(README, "Methods"), re.M)
    return {m[1]: m[2] for m in rows}


def test_the_method_table_lists_every_method_once() -> None:
    rows = re.findall(r"^\| \[`(custommsg-[a-z-]+)`\]", _section(README, "Methods"), re.M)
    assert sorted(rows) == sorted(METHODS)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_each_row_links_its_manual_page(method: str) -> None:
    assert _method_table()[method] == f"doc/man/lightning-{method}.7"
    assert (REPO / _method_table()[method]).is_file()


def test_every_method_has_one_section_and_the_readme_none() -> None:
    assert sorted(name for name, _ in HEADINGS) == sorted(METHODS)
    assert not re.search(r"^### `custommsg-", README, re.M)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_heading_lists_the_schemas_parameters_in_order(method: str) -> None:
    request = schema_of(method)["request"]
    expected = [name if name in request["required"] else f"[{name}]" for name in request["properties"]]
    listed = [word.replace("*", "") for word in dict(HEADINGS)[method].split()]
    assert listed == expected


def _readme_codes() -> set[int]:
    return {int(m[1]) for m in re.finditer(r"^\| (-?\d+) \|", _section(README, "Error codes"), re.M)}


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_code_a_schema_lists_is_in_the_readmes_table(method: str) -> None:
    codes = {int(m[1]) for line in schema_of(method)["errors"] if (m := re.match(r"- (-?\d+): ", line))}
    assert codes - _readme_codes() == set()
