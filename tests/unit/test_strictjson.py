"""strictjson: what a peer's JSON may hold, and the one writer of everything lightningd reads."""

from __future__ import annotations

import io
import json
import math
from typing import Any

import pytest

from custommsg.core import strictjson
from custommsg.core.records import JsonRpcTag, StoredMessage
from custommsg.core.strictjson import MAX_JSON_DEPTH, JsonRefused
from custommsg.node.seam import SeamPlugin


def nested(depth: int) -> str:
    """An array ``depth`` levels deep: the outermost is level 1."""
    return "[" * depth + "]" * depth


ACCEPTED: list[tuple[str, str, Any]] = [
    ("object", '{"a":1}', {"a": 1}),
    ("largest-double", "1.7976931348623157e308", 1.7976931348623157e308),
    ("underflow-is-zero", "1e-400", 0.0),
    ("minus-zero", "-0.0", -0.0),
    ("int-4300-digits", "9" * 4300, int("9" * 4300)),
    ("negative-int-4300-digits", "-" + "9" * 4300, -int("9" * 4300)),
    ("depth-100", nested(MAX_JSON_DEPTH), json.loads(nested(MAX_JSON_DEPTH))),
    ("surrogate-pair", '"\\ud83d\\ude00"', "\U0001f600"),
    ("escaped-nul", '"\\u0000"', "\x00"),
    ("json-whitespace-around", ' \t{"a":1}\r\n', {"a": 1}),
]

REFUSED: list[tuple[str, str, str]] = [
    ("1e400", '{"sat":1e400}', "number out of range"),
    ("minus-1e400", "-1e400", "number out of range"),
    ("1E309", "[1E309]", "number out of range"),
    ("NaN", "NaN", "not json"),
    ("Infinity", '{"a":Infinity}', "not json"),
    ("minus-Infinity", "-Infinity", "not json"),
    ("int-4301-digits", "1" + "0" * 4300, "number out of range"),
    ("depth-101", nested(MAX_JSON_DEPTH + 1), "nested too deeply"),
    ("depth-101-objects", '{"a":' * 101 + "1" + "}" * 101, "nested too deeply"),
    ("depth-980", nested(980), "nested too deeply"),
    ("depth-100000", nested(100_000), "nested too deeply"),
    ("lone-high-surrogate", '"\\ud800"', "lone surrogate"),
    ("lone-low-surrogate-key", '{"\\udc00":1}', "lone surrogate"),
    ("reversed-pair", '"\\ude00\\ud83d"', "lone surrogate"),
    ("trailing-data", "{} {}", "not json"),
    ("not-json", "{'a':1}", "not json"),
    ("nbsp-is-not-json-whitespace", "\u00a0{}", "not json"),
]


@pytest.mark.parametrize(("text", "value"), [c[1:] for c in ACCEPTED], ids=[c[0] for c in ACCEPTED])
def test_loads_accepts(text: str, value: Any) -> None:
    assert strictjson.loads(text) == value
    assert strictjson.loads(strictjson.dumps(strictjson.loads(text)).decode()) == value  # and it writes back


@pytest.mark.parametrize(("text", "reason"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_loads_refuses(text: str, reason: str) -> None:
    with pytest.raises(JsonRefused) as caught:
        strictjson.loads(text)
    assert caught.value.reason == reason


def test_depth_bound_holds_whatever_the_interpreter_stack() -> None:
    # Checked without recursion: the same answer however deep the caller already is.
    def at_depth(frames: int) -> str:
        if frames:
            return at_depth(frames - 1)
        try:
            strictjson.loads(nested(MAX_JSON_DEPTH))
        except JsonRefused as exc:
            return exc.reason
        return "ok"

    assert at_depth(0) == at_depth(700) == "ok"


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan, {"a": [math.inf]}, "\ud800", {"\udfff": 1}, b"x"])
def test_dumps_cannot_write_what_lightningd_refuses(value: Any) -> None:
    with pytest.raises((ValueError, TypeError)):
        strictjson.dumps(value)


def test_dumps_writes_characters_directly_and_compactly() -> None:
    assert strictjson.dumps({"a": "é\u2028", "b": [1, 2.5]}) == '{"a":"é\u2028","b":[1,2.5]}'.encode()


class Captured(io.TextIOWrapper):
    def __init__(self) -> None:
        super().__init__(io.BytesIO(), encoding="utf-8")


def written(obj: Any) -> list[Any]:
    """What the plugin's one writer puts on lightningd's pipe for ``obj``, read by a strict parser."""
    plugin = SeamPlugin(autopatch=False)
    plugin.stdout = Captured()
    plugin._write_locked(obj)
    raw = plugin.stdout.buffer.getvalue()  # type: ignore[attr-defined]
    assert raw.endswith(b"\n\n")

    def refuse(name: str) -> Any:
        raise AssertionError(f"lightningd would refuse {name}")

    return [json.loads(line, parse_constant=refuse) for line in raw.decode("utf-8").split("\n\n") if line]


def test_writer_writes_json_as_it_is() -> None:
    assert written({"jsonrpc": "2.0", "id": 7, "result": {"text": "é"}}) == [
        {"jsonrpc": "2.0", "id": 7, "result": {"text": "é"}}]


@pytest.mark.parametrize("bad", [math.inf, math.nan, "\ud800"])
def test_writer_turns_an_unwritable_answer_into_an_error(bad: Any) -> None:
    (line,) = written({"jsonrpc": "2.0", "id": "cli:x#1", "result": {"sat": bad}})
    assert line["id"] == "cli:x#1" and line["error"]["code"] == -32603 and "result" not in line


def test_writer_turns_an_unwritable_notification_into_a_log_line() -> None:
    (line,) = written({"jsonrpc": "2.0", "method": "custommsg_stored", "params": {"json": {"sat": math.inf}}})
    assert line["method"] == "log" and line["params"]["level"] == "broken"
    assert "custommsg_stored" in line["params"]["message"]


@pytest.mark.parametrize("body", [b'{"jsonrpc":"2.0","id":"big","method":"m","params":{"sat":1e400}}',
                                  b'{"jsonrpc":"2.0","id":"a","result":' + nested(990).encode() + b"}"])
def test_a_row_an_earlier_version_stored_still_lists(body: bytes) -> None:
    # given a bLIP-50 row stored before these rules; when listed: every field but "json", all writable
    row = StoredMessage(1, "02" + "11" * 32, 37913, b"\x94\x19" + body, 1.0, JsonRpcTag("request", "m", "big"))
    entry = row.to_json()
    assert "json" not in entry and entry["kind"] == "request" and entry["text"] == body.decode()
    assert strictjson.loads(strictjson.dumps(entry).decode()) == entry
