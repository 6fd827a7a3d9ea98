"""The rpc_command hook on native sendcustommsg, called as lightningd calls it for any client.

lightningd does not check that ``msg`` is hex nor its length, and an empty, invalid or
65536-byte message aborts connectd and the node (connectd/multiplex.c next_msg_for_peer). The guard refuses
exactly those (and invalid node ids), and lets everything else through for lightningd
to judge, whether ``params`` is an object (pyln, ``-k``) or an array (lightning-cli).
"""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest

from .conftest import PEER_A, UNKNOWN_PEER, MakeLd
from .harness import OWN_ID, FakeLightningd
from .peerproto import app_send_hooks, app_sent

REFUSED = [
    # (node_id, msg, error code)
    (PEER_A, "", 3303),
    (PEER_A, "01", 3303),
    (PEER_A, "abc", 3302),
    (PEER_A, "zz", 3302),
    (PEER_A, "8001" + "00" * 65534, 3304),
    (PEER_A, "00" * 65536 * 2, 3304),  # wraps to exactly 0 bytes on the u16 length
    (PEER_A, 1.5, 3302),
    (PEER_A, 7, 3302),  # lightning-cli sends digits as a JSON number: "7" is one hex digit
    (PEER_A, True, 3302),
    (PEER_A, None, 3302),
    ("nonsense", "8001", 3300),
    ("02" + "00" * 32, "8001", 3300),
]
REFUSED_IDS = ["empty", "one-byte", "odd", "zz", "65536", "131072", "float", "int-odd", "bool", "null",
               "bad-id", "off-curve-id"]

ALLOWED = [
    # (params as an object); lightningd itself answers these
    {"node_id": PEER_A, "msg": "8001aabb"},
    {"node_id": PEER_A, "msg": "8000aabb"},  # even: native behaviour (allowed since v23.11)
    {"node_id": PEER_A, "msg": "0012"},  # internal: lightningd refuses it itself
    {"node_id": PEER_A, "msg": "0007" + "00" * 10},  # peer_storage, as chanbackup sends it
    {"node_id": PEER_A, "msg": "4c4f" + "00" * 8 + "7b7d"},  # commando
    {"node_id": UNKNOWN_PEER, "msg": "8001"},  # lightningd says "No such peer"
    {"node_id": OWN_ID, "msg": "8001"},
    {"node_id": PEER_A, "msg": "8001" + "ff" * 65533},  # the 65535-byte maximum
    {"node_id": PEER_A, "msg": "8001ABCD"},  # lightningd's hex_decode takes upper case
    {"node_id": PEER_A, "msg": 8001},  # lightning-cli's JSON number: lightningd reads its digits as hex
    {"node_id": PEER_A},  # missing msg: lightningd reports it
    {"msg": "8001"},  # missing node_id
    {},
]
ALLOWED_IDS = ["odd-type", "even-type", "internal", "peer-storage", "commando", "unknown-peer", "own-id",
               "max-length", "upper-case", "json-number", "no-msg", "no-node-id", "no-params"]


def as_array(params: dict[str, Any]) -> list[Any]:
    """The positional form lightning-cli sends; stops at the first missing parameter."""
    out: list[Any] = []
    for name in ("node_id", "msg"):
        if name not in params:
            break
        out.append(params[name])
    return out


@pytest.mark.parametrize("form", ["object", "array"])
@pytest.mark.parametrize(("node_id", "msg", "code"), REFUSED, ids=REFUSED_IDS)
def test_guard_refuses(shared_ld: FakeLightningd, form: str, node_id: Any, msg: Any, code: int) -> None:
    """A call that would crash or mislead lightningd gets {"return": {"error": {code, message}}}."""
    params: Any = {"node_id": node_id, "msg": msg} if form == "object" else [node_id, msg]
    answer = shared_ld.rpc_command(params)
    assert set(answer) == {"return"}
    error = answer["return"]["error"]
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"]
    assert error["data"]["refused_by"] == "custommsg guard"


@pytest.mark.parametrize("form", ["object", "array"])
@pytest.mark.parametrize("params", ALLOWED, ids=ALLOWED_IDS)
def test_guard_continues(shared_ld: FakeLightningd, form: str, params: dict[str, Any]) -> None:
    """A well-formed call, or one lightningd will refuse properly by itself, continues."""
    answer = shared_ld.rpc_command(params if form == "object" else as_array(params))
    assert answer == {"result": "continue"}


def test_guard_without_params(ld: FakeLightningd) -> None:
    """A request with no params member at all, or params null, continues (lightningd reports it)."""
    assert ld.rpc_command(None) == {"result": "continue"}
    answer = ld.send_request(
        "rpc_command",
        {"rpc_command": {"jsonrpc": "2.0", "id": "x", "method": "sendcustommsg", "params": None}},
        "x/cln:rpc_command#99",
    ).result()
    assert answer == {"result": "continue"}


def test_guard_other_plugins_calls(ld: FakeLightningd) -> None:
    """chanbackup's and commando's own calls (ids like .../chanbackup:sendcustommsg#3) are let through."""
    for caller, msg in (("cln:connect#5/chanbackup:sendcustommsg#3", "0007" + "ab" * 40),
                        ("cln:custommsg#7/commando:sendcustommsg#12", "594d" + "00" * 8 + "7b7d")):
        assert ld.rpc_command({"node_id": PEER_A, "msg": msg}, caller_id=caller) == {"result": "continue"}


def raw_request(path: str, request: bytes) -> dict[str, Any]:
    """One request written on lightningd's socket exactly as given; its answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(path)
        sock.sendall(request)
        buffer = b""
        while b"\n\n" not in buffer:
            chunk = sock.recv(65536)
            assert chunk, "the connection closed before an answer"
            buffer += chunk
    return json.loads(buffer.split(b"\n\n")[0])


def test_guard_refusal_reaches_caller(ld: FakeLightningd) -> None:
    """End to end: a client's bad sendcustommsg comes back with the guard's error and never reaches connectd."""
    request = b'{"jsonrpc":"2.0","id":"cli:sendcustommsg#9","method":"sendcustommsg","params":["'
    reply = raw_request(ld.rpc.path, request + PEER_A.encode() + b'","zz"]}')
    assert reply["id"] == "cli:sendcustommsg#9"
    assert reply["error"]["code"] == 3302
    assert app_sent(ld) == [] and ld.fatal == []


@pytest.mark.parametrize("form", ["object", "array"])
def test_guard_disabled(make_ld: MakeLd, form: str) -> None:
    """With custommsg-guard=false every call continues, however broken."""
    ld = make_ld(options={"custommsg-guard": False})
    for node_id, msg, _code in REFUSED:
        params: Any = {"node_id": node_id, "msg": msg} if form == "object" else [node_id, msg]
        assert ld.rpc_command(params) == {"result": "continue"}
    for params in ALLOWED:
        assert ld.rpc_command(params if form == "object" else as_array(params)) == {"result": "continue"}


def test_guard_does_not_block_plugin_sends(ld: FakeLightningd) -> None:
    """The plugin's own sends pass through its guard (the hook sees them and continues)."""
    ld.call("custommsg-send", {"node_id": PEER_A, "msg": "8001"}, timeout=3)
    (request, answer), = app_send_hooks(ld)
    assert request["id"].startswith("custommsg:sendcustommsg#")
    assert answer == {"result": "continue"}


def test_guard_huge_json_number(shared_ld: FakeLightningd) -> None:
    """lightning-cli sends digits-only hex as a JSON number: 131072 digits (65536 bytes) is refused, not fatal.

    Python refuses to parse integers over 4300 digits by default; a plugin that did not
    lift that limit would fail to read the request at all and die.
    """
    ld = shared_ld
    digits = "1" * 131072
    hook = ld.start_call_raw(
        "rpc_command",
        '{"rpc_command": {"jsonrpc": "2.0", "id": "cli:sendcustommsg#77", "method": "sendcustommsg", '
        f'"params": ["{PEER_A}", {digits}]}}}}',
        "cli:sendcustommsg#77/cln:rpc_command#77",
    )
    answer = hook.result(timeout=5)
    assert answer["return"]["error"]["code"] == 3304
    err = ld.start_call_raw("custommsg-send", f'{{"node_id": "{PEER_A}", "msg": {digits}}}').error(timeout=5)
    assert err.code == 3304
    assert ld.running()


ESCAPED = [
    # (params as raw JSON text, error code): valid-looking once decoded, invalid hex to lightningd
    (f'{{"node_id": "{PEER_A}", "msg": "\\u0038001"}}', 3302),
    (f'["{PEER_A}", "8001\\u0061\\u0061"]', 3302),
    (f'{{"node_id": "\\u0030{PEER_A[1:]}", "msg": "8001"}}', 3300),
]


@pytest.mark.parametrize(("params_json", "code"), ESCAPED, ids=["msg-object", "msg-array", "node-id"])
def test_guard_refuses_json_escapes(shared_ld: FakeLightningd, params_json: str, code: int) -> None:
    """lightningd hex-decodes msg from the raw JSON token: a msg written with escapes is invalid hex to it."""
    answer = shared_ld.rpc_command(None, params_json=params_json)
    assert answer["return"]["error"]["code"] == code, answer


def test_escaped_msg_end_to_end(ld: FakeLightningd) -> None:
    """A client's sendcustommsg with an escaped msg is refused by the guard and never reaches connectd."""
    request = ('{"jsonrpc":"2.0","id":"cli:sendcustommsg#5","method":"sendcustommsg",'
               f'"params":{{"node_id":"{PEER_A}","msg":"\\u0038001aa"}}}}')
    reply = raw_request(ld.rpc.path, request.encode())
    assert reply["error"]["code"] == 3302
    assert app_sent(ld) == [] and ld.fatal == []
