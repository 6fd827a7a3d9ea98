"""JSON as lightningd reads it: one reader for values a peer sends, one writer for everything we write.

Sans I/O. lightningd parses every line a plugin writes with jsmn in strict mode
(common/json_parse_simple.h: ``#define JSMN_STRICT 1``), whose primitives start with
``-``, a digit, ``t``, ``f`` or ``n``: a ``NaN`` or ``Infinity`` fails the parse, and
lightningd kills the plugin (common/jsonrpc_io.c: "Failed to parse RPC JSON response").
Python's ``json`` reads ``1e400`` as ``inf`` and writes it back as ``Infinity``, and
a string with a lone surrogate cannot be written as UTF-8 at all. So a value from a
peer is checked at the door, once, by :func:`loads`, and every value we write goes
through :func:`dumps`, which cannot produce either.

What :func:`loads` accepts is RFC 8259 JSON within these bounds, the same on every
Python (they do not move with the interpreter's recursion or digit limits):

* no ``NaN``, ``Infinity`` or ``-Infinity`` (RFC 8259, section 6: "Numeric values that
  cannot be represented in the grammar below (such as Infinity and NaN) are not
  permitted");
* a number with a fraction or an exponent is finite as an IEEE 754 double (RFC 8259,
  section 6: such numbers "can introduce interoperability problems"; ``1e400`` is
  refused, not rounded to infinity);
* an integer has at most :data:`MAX_INT_DIGITS` digits (Python's default limit for
  reading one, so a Python plugin that subscribes to what we emit can read it; a longer
  one costs quadratic time to convert);
* no lone surrogate: a ``\\ud800`` escape names no character (RFC 8259, section 8.2:
  such a string has "unpredictable" behaviour), and cannot be written as UTF-8;
* arrays and objects nest at most :data:`MAX_JSON_DEPTH` deep, the outermost counting
  as 1: a value this deep is read and written again far below Python's recursion limit.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any

MAX_JSON_DEPTH = 100
JSON_WHITESPACE = " \t\n\r"  # RFC 8259, section 2: "ws"
MAX_INT_DIGITS = 4300

_SURROGATE = re.compile("[\ud800-\udfff]")


class JsonRefused(ValueError):
    """A value outside the rules above; ``reason`` is one of the short strings below."""

    def __init__(self, reason: str, **data: Any):
        super().__init__(reason)
        self.reason = reason
        self.data = data


def _no_constant(name: str) -> Any:
    raise JsonRefused("not json", constant=name)


def _bounded_int(digits: str) -> int:
    if len(digits) - digits.startswith("-") > MAX_INT_DIGITS:
        raise JsonRefused("number out of range", digits=len(digits))
    return int(digits)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise JsonRefused("number out of range", number=text[:40])
    return value


def decoder(object_pairs_hook: Callable[[list[tuple[str, Any]]], Any] | None = None) -> json.JSONDecoder:
    """A decoder that refuses constants, non-finite and overlong numbers; pair it with :func:`check`."""
    return json.JSONDecoder(
        object_pairs_hook=object_pairs_hook,
        parse_constant=_no_constant,
        parse_int=_bounded_int,
        parse_float=_finite_float,
    )


def check(value: Any) -> None:
    """Refuse nesting beyond MAX_JSON_DEPTH and lone surrogates in a decoded value; iterative, so
    any depth is checked without recursion."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                raise JsonRefused("lone surrogate")
        elif isinstance(item, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise JsonRefused("nested too deeply", max=MAX_JSON_DEPTH)
            if isinstance(item, dict):
                stack.extend((key, depth) for key in item)
                stack.extend((member, depth + 1) for member in item.values())
            else:
                stack.extend((member, depth + 1) for member in item)


_DECODER = decoder()


def raw_loads(text: str, start: int = 0, reader: json.JSONDecoder = _DECODER) -> tuple[Any, int]:
    """The JSON value at ``text[start:]`` under the rules above, and where it ends; :class:`JsonRefused`
    otherwise (its ``reason`` says which rule)."""
    try:
        value, end = reader.raw_decode(text, start)
    except JsonRefused:
        raise
    except RecursionError:  # deeper than the interpreter can read: far beyond MAX_JSON_DEPTH
        raise JsonRefused("nested too deeply", max=MAX_JSON_DEPTH) from None
    except ValueError:  # JSONDecodeError
        raise JsonRefused("not json") from None
    check(value)
    return value, end


def loads(text: str, reader: json.JSONDecoder = _DECODER) -> Any:
    """``text`` as one JSON value under the rules above (whitespace around it allowed), or :class:`JsonRefused`."""
    start = len(text) - len(text.lstrip(JSON_WHITESPACE))
    value, end = raw_loads(text, start, reader)
    if text[end:].strip(JSON_WHITESPACE):
        raise JsonRefused("not json")
    return value


def dumps(value: Any) -> bytes:
    """``value`` as compact UTF-8 JSON that lightningd's parser reads; ValueError (NaN, infinity, a
    lone surrogate), TypeError (not a JSON type) or RecursionError otherwise, never bad output.

    Characters are written as themselves, not escaped (bLIP-50: "characters that can be
    embedded into a JSON string without escapes MUST be encoded directly").
    """
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")
