"""The hostile-input fuzz of issue 14, shared by its two tiers: hypothesis profiles, what a hostile
peer sends (strategies), and an independent judge of strict JSON.

Both ``tests/unit/test_hostile_input.py`` and ``tests/protocol/test_hostile_input.py`` take their
settings from :func:`fuzz`, which reads the profile once, here:

* ``CUSTOMMSG_FUZZ`` unset (or ``ci``): the default, sized so both tiers together take about a
  minute and a half on a 2-core machine (unit ~30 s, protocol ~60 s);
* ``CUSTOMMSG_FUZZ=long``: :data:`LONG_FACTOR` times as many examples, for a run by hand
  (``CUSTOMMSG_FUZZ=long pytest tests/unit/test_hostile_input.py tests/protocol/test_hostile_input.py``).

Examples are random on every run (``derandomize=False``). No example database is kept
(``database=None``): nothing is written into the repository. A failure prints its smallest
falsifying example and a ``@reproduce_failure`` blob; one hypothesis cannot replay (the protocol
tier's plugin keeps state across examples) also prints its seed, for ``--hypothesis-seed``.

The judge, :func:`strict_loads`, is written from the rules of issue 14, not from the plugin's code: a
bLIP-50 body is accepted only if it is RFC 8259 JSON with no NaN or Infinity, every number with a
fraction or exponent finite as an IEEE double, integers of at most 4300 digits, no lone surrogate,
no duplicate key, and at most MAX_JSON_DEPTH levels of arrays and objects (the outermost is level 1).
"""

from __future__ import annotations

import json
import math
import os
import re
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

PROFILES = ("ci", "long")
LONG_FACTOR = 20
PROFILE = os.environ.get("CUSTOMMSG_FUZZ") or "ci"
if PROFILE not in PROFILES:
    raise ValueError(f"CUSTOMMSG_FUZZ={PROFILE!r}: use one of {', '.join(PROFILES)}")

for _name in PROFILES:
    settings.register_profile(
        f"custommsg-{_name}",
        database=None,
        deadline=None,
        derandomize=False,
        print_blob=True,
        # The protocol tier reuses one plugin across a test's examples (the function-scoped fixture),
        # whose examples are slow and large on purpose.
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def fuzz(examples: int) -> settings:
    """The settings of one fuzz test: ``examples`` examples by default, LONG_FACTOR times as many when long."""
    scale = LONG_FACTOR if PROFILE == "long" else 1
    return settings(settings.get_profile(f"custommsg-{PROFILE}"), max_examples=examples * scale)


# -- the rules of issue 14 --------------------------------------------------------------

MAX_JSON_DEPTH = 100  # the top-level object is level 1
MAX_INT_DIGITS = 4300
LSPS0_MESSAGE_TYPE = 37913
MAX_BODY_LEN = 65533  # bLIP-50: "BOLT8 messages are limited to payloads of 65533 bytes"
JSON_WS = " \t\n\r"  # RFC 8259's whitespace; bLIP-50 allows it around the object
_SURROGATE = re.compile("[\ud800-\udfff]")


class NotStrict(ValueError):
    """Not strict JSON under the rules above."""


def json_depth(text: str) -> int:
    """The deepest nesting of arrays and objects in ``text`` (brackets inside strings do not count),
    counted without parsing, so any depth is measured."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def _refuse_constant(name: str) -> Any:
    raise NotStrict(f"the constant {name}")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise NotStrict(f"{text[:30]} is no finite double")
    return value


def _bounded(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise NotStrict(f"an integer of {len(text.lstrip('-'))} digits")
    return int(text)


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value = dict(pairs)
    if len(value) != len(pairs):
        raise NotStrict("a duplicate key")
    return value


_JUDGE = json.JSONDecoder(
    object_pairs_hook=_unique, parse_constant=_refuse_constant, parse_float=_finite, parse_int=_bounded
)


def strings_in(value: Any) -> list[str]:
    """Every string in a JSON value, keys included; iterative, so any depth is walked."""
    found: list[str] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            found.append(item)
        elif isinstance(item, dict):
            found += item
            stack += item.values()
        elif isinstance(item, list):
            stack += item
    return found


def strict_loads(body: bytes) -> Any:
    """The one JSON value ``body`` holds (JSON whitespace around it allowed), or ValueError: NotStrict,
    UnicodeDecodeError, or JSONDecodeError."""
    text = body.decode("utf-8")
    if (depth := json_depth(text)) > MAX_JSON_DEPTH:
        raise NotStrict(f"nested {depth} deep")
    value, end = _JUDGE.raw_decode(text, len(text) - len(text.lstrip(JSON_WS)))
    if text[end:].strip(JSON_WS):
        raise NotStrict("trailing data")
    if any(_SURROGATE.search(s) for s in strings_in(value)):
        raise NotStrict("a lone surrogate")
    return value


def why_not_strict(body: bytes) -> str | None:
    """None if ``body`` is strict JSON, else why not."""
    try:
        strict_loads(body)
    except ValueError as exc:
        return f"{type(exc).__name__}: {exc}"[:200]
    return None


def strictly_encoded(value: Any) -> Any:
    """``value`` written by a strict encoder and read back by a strict parser (what lightningd reads);
    fails (ValueError, RecursionError...) if it cannot be."""
    raw = json.dumps(value, allow_nan=False, ensure_ascii=False).encode("utf-8")
    return json.loads(raw, parse_constant=_refuse_constant)


# -- what a hostile peer sends: bLIP-50 bodies ------------------------------------------------

T = TypeVar("T")


def weighted(*choices: tuple[int, st.SearchStrategy[T]]) -> st.SearchStrategy[T]:
    """One of ``choices``, each drawn as often as its weight says (shrinking towards the first)."""
    table = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.sampled_from(table).flatmap(lambda strategy: strategy)


EXTREME_NUMBERS = (
    "1e400", "-1e400", "1e-400", "-1e-400", "1E309", "1E+309", "1e308", "-0", "-0.0", "0e0", "0E-0",
    "1.7976931348623157e308", "1.7976931348623159e308", "-1.7976931348623159e308", "4.9e-324", "2e-324",
    "0." + "3" * 2000, "1" * 309 + ".0", "1" * 400 + "e-300", "123456789012345678901234567890",
    "9" * MAX_INT_DIGITS, "-" + "9" * MAX_INT_DIGITS, "9" * (MAX_INT_DIGITS + 1), "-" + "9" * (MAX_INT_DIGITS + 1),
    "1" + "0" * 20000,
)
NOT_NUMBERS = ("NaN", "Infinity", "-Infinity", "-NaN", "+1", "01", ".5", "1.", "0x10", "1e", "inf", "nan")
ODD_CHARACTERS = (
    "\u202e", "\u202d", "\u2066", "\u2069", "\u200b", "\u200d", "\u200e", "\ufeff", "\u2028", "\u2029",
    "\U0001f600", "\U0010ffff", "\U000e0001", "\x7f", "\x85", "\u00a0", "\ufffd", "\ufffe", "<", "\u00e9",
    "\u0301", "\x1b[31m",
)
ODD_ESCAPES = (  # valid JSON escapes; the surrogate ones are not strict
    r"\ud800", r"\udfff", r"\udc00\ud800", r"\ud83d\ude00", r"\ud83d", r"x\ude00", r"\u0000", r"\u001b[2J",
    r"\"", r"\\", r"\/", r"\b\f\n\r\t", r"\uFEFF", r"\u202E", r"\u0061", r"\uDBFF\uDFFF",
)
BAD_ESCAPES = (r"\x41", r"\u12", r"\U0001F600", "\\", r"\a")  # no JSON
RAW_CONTROL = ("\x00", "\x01", "\n", "\t", "\x1f")  # not allowed unescaped inside a JSON string
KEYS = ('"a"', '"a"', '"b"', r'"\u0061"', '"jsonrpc"', '"id"', '"__proto__"', '""', r'"\ud800"')
INVALID_UTF8 = (b"\xff", b"\xfe", b"\x80", b"\xc0\x80", b"\xc1\xbf", b"\xed\xa0\x80", b"\xed\xbf\xbf",
                b"\xf4\x90\x80\x80", b"\xf8\x88\x80\x80\x80", b"\xe2\x82", b"\xf0\x9f\x98")
NOT_JSON_WS = "\f\v\u00a0\u2028\u3000\ufeff\x00"
TRAILERS = ("{}", "x", "\x00", "]", " {}", "//", "0", '"')


def json_numbers() -> st.SearchStrategy[str]:
    """Number literals: extreme ones, ordinary ones, ones near the bounds, and a few that are no JSON."""
    numbers = st.one_of(
        st.sampled_from(EXTREME_NUMBERS),
        st.integers().map(str),
        st.floats(allow_nan=False, allow_infinity=False).map(repr),
        st.builds(lambda sign, n: sign + "9" * n, st.sampled_from(("", "-")), st.integers(4290, 4310)),
        st.builds(lambda m, e, mark: f"{m}{mark}{e}", st.integers(-99, 99), st.integers(-500, 500),
                  st.sampled_from(("e", "E", "e+"))),
        st.builds(lambda i, frac: f"{i}.{frac}", st.integers(-5, 5), st.text("0123456789", min_size=1, max_size=3000)),
    )
    return weighted((8, numbers), (1, st.sampled_from(NOT_NUMBERS)))


def json_strings() -> st.SearchStrategy[str]:
    """String literals with odd characters and escapes (lone surrogates, NUL), rarely broken ones."""
    piece = weighted(
        (2, st.sampled_from(ODD_CHARACTERS)),
        (3, st.sampled_from(ODD_ESCAPES)),
        (1, st.text(max_size=6).map(lambda s: json.dumps(s, ensure_ascii=False)[1:-1])),
        (1, st.text(max_size=6).map(lambda s: json.dumps(s)[1:-1])),
        (1, st.one_of(st.sampled_from(BAD_ESCAPES), st.sampled_from(RAW_CONTROL))),
    )
    return st.lists(piece, max_size=5).map(lambda pieces: '"' + "".join(pieces) + '"')


def json_texts(max_leaves: int = 10) -> st.SearchStrategy[str]:
    """JSON-ish value texts: scalars above in arrays and objects (keys repeat, sometimes through an escape)."""
    scalars = weighted(
        (3, json_numbers()), (3, json_strings()), (2, st.sampled_from(("true", "false", "null"))),
        (1, st.sampled_from(("True", "nul", "undefined", ""))),
    )
    keys = st.one_of(st.sampled_from(KEYS), json_strings())

    def containers(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        return st.one_of(
            st.lists(children, max_size=4).map(lambda xs: "[" + ",".join(xs) + "]"),
            st.lists(st.tuples(keys, children), max_size=4).map(
                lambda kvs: "{" + ",".join(f"{k}:{v}" for k, v in kvs) + "}"),
        )

    return st.recursive(scalars, containers, max_leaves=max_leaves)


def nested(depth: int, inner: str = "0", pattern: tuple[str, ...] = ("[",)) -> str:
    """``inner`` inside ``depth`` arrays and objects, opened in turn by ``pattern``'s openers
    (``[``, or an object's text up to a value, like ``{"a":``)."""
    opens = [pattern[i % len(pattern)] for i in range(depth)]
    return "".join(opens) + inner + "".join("]" if o[0] == "[" else "}" for o in reversed(opens))


OPENERS = ("[", '{"a":', '{"a":1,"b":', "[0,")


def deep_texts() -> st.SearchStrategy[str]:
    """Values nested around MAX_JSON_DEPTH (counted from the value's own top) and far beyond; wide ones too."""
    depths = st.one_of(st.integers(1, 4), st.integers(95, 105), st.sampled_from((500, 975, 980, 983, 995, 1000, 5000)))
    deep = st.builds(nested, depths, st.one_of(st.just("0"), json_texts(3)),
                     st.lists(st.sampled_from(OPENERS), min_size=1, max_size=3).map(tuple))
    wide = st.builds(lambda n, item: "[" + ",".join([item] * n) + "]", st.integers(0, 6000),
                     st.sampled_from(("0", "[]", "{}", '"x"', "[[[0]]]", '{"a":1,"a":2}', "1e400", r'"\ud800"')))
    unbalanced = st.builds(lambda n, closer: "[" * n + closer * (n - 1), st.integers(1, 1200), st.sampled_from("]}"))
    return weighted((4, deep), (2, wide), (1, unbalanced))


# Where a hostile value goes in a frame. The first five take any value (its depth there is its own
# plus 1 or 2); the others need a string, an object or an integer there.
FRAME_TEMPLATES = (
    '{"jsonrpc":"2.0","id":"x","method":"m","params":{"p":VALUE}}',
    '{"jsonrpc":"2.0","method":"m","params":{"p":VALUE}}',
    '{"jsonrpc":"2.0","id":"x","result":VALUE}',
    '{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"m","data":VALUE}}',
    '{"jsonrpc":"2.0","id":"x","error":{"code":-32602,"message":"m","data":{"unrecognized":["a"],"d":VALUE}}}',
)
PICKY_TEMPLATES = (
    '{"jsonrpc":"2.0","id":"x","error":{"code":-32602,"message":VALUE}}',
    '{"jsonrpc":"2.0","id":"x","method":"m","params":VALUE}',
    '{"jsonrpc":"2.0","id":VALUE,"method":"m"}',
    '{"jsonrpc":"2.0","id":"x","error":{"code":VALUE,"message":"m"}}',
    '{"jsonrpc":"2.0","method":VALUE}',
    '{"jsonrpc":"2.0","jsonrpc":"2.0","id":"x","result":VALUE}',
    '{"jsonrpc":"2.0","id":"x","result":0,VALUE:1}',
    "VALUE",
)


def _insert(body: bytes, where: int, what: bytes) -> bytes:
    at = where % (len(body) + 1)
    return body[:at] + what + body[at:]


def hostile_blip50_bodies() -> st.SearchStrategy[bytes]:
    """Bodies (what follows the type 37913) that a hostile peer might send: frames holding extreme
    numbers, deep or wide values, odd strings, duplicate keys, whitespace and trailing data around
    them, invalid UTF-8 inside, cut short; well-formed frames; random bytes."""
    values = weighted((3, json_texts()), (2, deep_texts()), (2, json_numbers()), (2, json_strings()))
    templates = weighted((3, st.sampled_from(FRAME_TEMPLATES)), (1, st.sampled_from(PICKY_TEMPLATES)))
    texts = st.builds(lambda template, value: template.replace("VALUE", value), templates, values)
    around = weighted((5, st.text(JSON_WS, max_size=3)), (1, st.text(JSON_WS + NOT_JSON_WS, max_size=2)))
    trailing = weighted((8, st.just("")), (1, st.sampled_from(TRAILERS)))
    framed = st.builds(lambda lead, text, trail, tail: (lead + text + trail + tail).encode("utf-8"),
                       around, texts, around, trailing)
    return weighted(
        (8, framed),
        (1, st.builds(_insert, framed, st.integers(0, 1 << 16), st.sampled_from(INVALID_UTF8))),
        (1, st.builds(lambda body, cut: body[: cut % (len(body) + 1)], framed, st.integers(0, 1 << 16))),
        (2, well_formed_bodies()),
        (1, st.binary(max_size=300)),
    )


def json_values() -> st.SearchStrategy[Any]:
    """Python values JSON can hold (finite floats, text without surrogates), a few levels deep."""
    scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
                        st.text(max_size=10))

    def containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        return st.one_of(st.lists(children, max_size=4), st.dictionaries(st.text(max_size=4), children, max_size=4))

    return st.recursive(scalars, containers, max_leaves=12)


def well_formed_bodies() -> st.SearchStrategy[bytes]:
    """Frames a well-behaved peer sends, written as Python's json writes them."""
    ids = st.text(min_size=1, max_size=20)
    methods = st.text(min_size=1, max_size=20)
    params = st.dictionaries(st.text(max_size=5), json_values(), max_size=4)
    frames = st.one_of(
        st.builds(lambda i, m, p: {"jsonrpc": "2.0", "id": i, "method": m, "params": p}, ids, methods, params),
        st.builds(lambda m, p: {"jsonrpc": "2.0", "method": m, "params": p}, methods, params),
        st.builds(lambda i, r: {"jsonrpc": "2.0", "id": i, "result": r}, ids, json_values()),
        st.builds(lambda i, c, m, d: {"jsonrpc": "2.0", "id": i, "error": {"code": c, "message": m, "data": d}},
                  st.one_of(st.none(), ids), st.integers(-(2**63), 2**63), st.text(max_size=20), json_values()),
    )
    return st.builds(lambda frame, ascii_only: json.dumps(frame, ensure_ascii=ascii_only).encode("utf-8"),
                     frames, st.booleans())


# -- what a hostile peer sends: acknowledged delivery's hello, envelope and ack -------------

HELLO, ENVELOPE, ACK, ENVELOPE_MORE = 47431, 47433, 47435, 47437
U64_EDGES = (0, 1, 2, 255, 256, 2**32 - 1, 2**32, 2**63 - 1, 2**63, 2**64 - 2, 2**64 - 1)


def u64s() -> st.SearchStrategy[int]:
    return st.one_of(st.sampled_from(U64_EDGES), st.integers(0, 2**64 - 1))


def _u(value: int, size: int) -> bytes:
    return value.to_bytes(size, "big")


def _filler(n: int) -> bytes:
    return bytes(i * 7 % 251 for i in range(n))


def hostile_ack_messages() -> st.SearchStrategy[bytes]:
    """Whole messages (``u16 type || body``) of the four types, with every length and field value:
    hellos of any version and flags, envelopes (both types) with any stream and seq and inner lengths
    from none to one over the limit, acks of any length; cut short or with bytes added."""
    type_ = st.sampled_from((HELLO, ENVELOPE, ACK, ENVELOPE_MORE))
    hello = st.builds(lambda v, f, extra: _u(HELLO, 2) + _u(v, 2) + _u(f, 1) + extra,
                      st.one_of(st.sampled_from((0, 1, 2, 255, 65535)), st.integers(0, 65535)),
                      st.integers(0, 255), st.binary(max_size=8))
    inner_len = st.one_of(st.integers(0, 8), st.sampled_from((65513, 65514, 65515, 65516, 65517, 65518)))
    envelope = st.builds(lambda kind, s, q, inner: _u(kind, 2) + _u(s, 8) + _u(q, 8) + inner,
                         st.sampled_from((ENVELOPE, ENVELOPE_MORE)), u64s(), u64s(),
                         st.builds(lambda t, n: _u(t, 2)[:n] + _filler(n - 2), st.integers(0, 65535), inner_len))
    ack = st.builds(lambda s, q: _u(ACK, 2) + _u(s, 8) + _u(q, 8), u64s(), u64s())
    any_body = st.builds(lambda t, body: _u(t, 2) + body, type_, st.one_of(st.binary(max_size=40),
                                                                         st.integers(0, 65534).map(_filler)))
    whole = st.one_of(hello, envelope, ack, any_body)
    cut = st.builds(lambda raw, n: raw[: n % (len(raw) + 1)], whole, st.integers(0, 1 << 17))
    longer = st.builds(lambda raw, extra: raw + extra, whole, st.binary(min_size=1, max_size=4))
    return st.one_of(whole, cut, longer,
                     st.sampled_from((b"", b"\xb9", b"\xb9\x47", b"\xb9\x49", b"\xb9\x4b", b"\xb9\x4d")))


def hostile_messages() -> st.SearchStrategy[bytes]:
    """Any message a peer might send: random types and bytes, and the two families above."""
    return st.one_of(
        st.builds(lambda t, body: _u(t, 2) + body, st.integers(0, 65535), st.binary(max_size=200)),
        st.builds(lambda t, body: _u(t, 2) + body, st.integers(32768, 65535), st.binary(max_size=200)),
        hostile_blip50_bodies().map(lambda body: _u(LSPS0_MESSAGE_TYPE, 2) + body),
        hostile_ack_messages(),
        st.binary(max_size=1),
    )
