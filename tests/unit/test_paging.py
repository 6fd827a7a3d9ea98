"""paging.py: index/start/limit checked as lightningd's list commands check them.

lightningd/wait.c param_index, and lightningd/invoice.c json_listinvoices ("Can only specify
{start} with {index}", "Can only specify {limit} with {index}").
"""

from __future__ import annotations

from typing import Any

import pytest

from custommsg.core import errors
from custommsg.core.errors import CustomMsgError
from custommsg.core.records import Page
from custommsg.core.validate import U32_MAX, U64_MAX, parse_page

BOTH = ("created", "updated")

# (id, index, start, limit, indexes, page)
PAGE_OK: list[tuple[str, Any, Any, Any, tuple[str, ...], Page]] = [
    ("nothing", None, None, None, ("created",), Page("created", 0, None)),
    ("created", "created", None, None, ("created",), Page("created", 0, None)),
    ("updated-when-offered", "updated", None, None, BOTH, Page("updated", 0, None)),
    ("start-0-without-index", None, 0, None, ("created",), Page("created", 0, None)),
    ("start-with-index", "created", 5, None, ("created",), Page("created", 5, None)),
    ("limit-with-index", "created", None, 10, ("created",), Page("created", 0, 10)),
    ("limit-0", "created", None, 0, ("created",), Page("created", 0, 0)),
    ("start-and-limit", "updated", 7, 3, BOTH, Page("updated", 7, 3)),
    ("start-u64-max", "created", U64_MAX, None, ("created",), Page("created", U64_MAX, None)),
    ("limit-u32-max", "created", None, U32_MAX, ("created",), Page("created", 0, U32_MAX)),
]


@pytest.mark.parametrize(
    ("index", "start", "limit", "indexes", "page"), [c[1:] for c in PAGE_OK], ids=[c[0] for c in PAGE_OK]
)
def test_parse_page(index: Any, start: Any, limit: Any, indexes: tuple[str, ...], page: Page) -> None:
    assert parse_page(index, start, limit, indexes) == page


U64 = "should be an unsigned 64 bit integer"
U32 = "should be an unsigned 32 bit integer"

# (id, index, start, limit, indexes, exact message)
PAGE_BAD: list[tuple[str, Any, Any, Any, tuple[str, ...], str]] = [
    ("start-without-index", None, 1, None, ("created",), "Can only specify {start} with {index}"),
    ("limit-without-index", None, None, 10, ("created",), "Can only specify {limit} with {index}"),
    ("limit-0-without-index", None, None, 0, ("created",), "Can only specify {limit} with {index}"),
    ("start-checked-before-limit", None, 1, 1, ("created",), "Can only specify {start} with {index}"),
    ("updated-not-offered", "updated", None, None, ("created",), "index: should be 'created': invalid token 'updated'"),
    ("unknown-index", "deleted", None, None, BOTH,
     "index: should be 'created' or 'updated': invalid token 'deleted'"),
    ("empty-index", "", None, None, ("created",), "index: should be 'created': invalid token ''"),
    ("negative-start", "created", -1, None, ("created",), f"start: {U64}: invalid token '-1'"),
    ("start-2^64", "created", 2**64, None, ("created",), f"start: {U64}: invalid token '18446744073709551616'"),
    ("bool-start", "created", True, None, ("created",), f"start: {U64}: invalid token 'True'"),
    ("float-start", "created", 1.5, None, ("created",), f"start: {U64}: invalid token '1.5'"),
    ("integral-float-start", "created", 2.0, None, ("created",), f"start: {U64}: invalid token '2.0'"),
    ("negative-limit", "created", None, -1, ("created",), f"limit: {U32}: invalid token '-1'"),
    ("limit-2^32", "created", None, 2**32, ("created",), f"limit: {U32}: invalid token '4294967296'"),
    ("bool-limit", "created", None, False, ("created",), f"limit: {U32}: invalid token 'False'"),
    ("float-limit", "created", None, 0.5, ("created",), f"limit: {U32}: invalid token '0.5'"),
    # a bad value is reported before the missing index, as lightningd's param() runs first
    ("bad-start-without-index", None, -1, None, ("created",), f"start: {U64}: invalid token '-1'"),
    ("bad-limit-without-index", None, None, -1, ("created",), f"limit: {U32}: invalid token '-1'"),
]


@pytest.mark.parametrize(
    ("index", "start", "limit", "indexes", "message"), [c[1:] for c in PAGE_BAD], ids=[c[0] for c in PAGE_BAD]
)
def test_parse_page_refuses(index: Any, start: Any, limit: Any, indexes: tuple[str, ...], message: str) -> None:
    with pytest.raises(CustomMsgError) as caught:
        parse_page(index, start, limit, indexes)
    assert caught.value.code == errors.JSONRPC_INVALID_PARAMS == -32602
    assert caught.value.message == message
    assert caught.value.to_json() == {"code": -32602, "message": message}


def test_default_indexes_are_created_only() -> None:
    with pytest.raises(CustomMsgError) as caught:
        parse_page("updated", None, None)
    assert caught.value.code == errors.JSONRPC_INVALID_PARAMS
