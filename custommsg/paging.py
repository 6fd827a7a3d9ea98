"""lightningd's pagination conventions for list commands, checked the same way.

``index`` names the ordering (``created``, or ``updated`` where entries change),
``start`` is an inclusive lower bound on that index (entries are 1-based), and
``limit`` caps the count. As in ``listforwards`` (lightningd/forwards.c), ``start``
and ``limit`` need ``index``, and the errors are JSON-RPC's -32602.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import JSONRPC_INVALID_PARAMS, CustomMsgError

U32_MAX = 2**32 - 1
U64_MAX = 2**64 - 1


@dataclass(frozen=True)
class Page:
    index: str  # "created" or "updated"
    start: int
    limit: int | None


def bad_param(name: str, value: Any, why: str) -> CustomMsgError:
    # The text of lightningd's command_fail_badparam: "{name}: {why}: invalid token '{tok}'".
    return CustomMsgError(JSONRPC_INVALID_PARAMS, f"{name}: {why}: invalid token '{value}'")


def parse_uint(name: str, value: Any, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum:
        bits = 32 if maximum == U32_MAX else 64
        raise bad_param(name, value, f"should be an unsigned {bits} bit integer")
    return value


def parse_page(
    index: Any, start: Any, limit: Any, indexes: tuple[str, ...] = ("created",)
) -> Page:
    if index is not None and index not in indexes:
        raise bad_param("index", index, "should be " + " or ".join(repr(i) for i in indexes))
    start_value = 0 if start is None else parse_uint("start", start, U64_MAX)
    limit_value = None if limit is None else parse_uint("limit", limit, U32_MAX)
    if start_value != 0 and index is None:
        raise CustomMsgError(JSONRPC_INVALID_PARAMS, "Can only specify {start} with {index}")
    if limit_value is not None and index is None:
        raise CustomMsgError(JSONRPC_INVALID_PARAMS, "Can only specify {limit} with {index}")
    return Page(index or "created", start_value, limit_value)
