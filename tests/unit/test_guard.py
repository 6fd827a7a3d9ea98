"""guard.py: the verdict on a native ``sendcustommsg`` call seen by the rpc_command hook.

The guard refuses exactly what would crash lightningd or be silently truncated
(common/json_param.c param_bin_from_hex lets bad hex through as an empty message; the
u16 msg_len of connectd_custommsg_out in connectd/connectd_wire.csv truncates a long one;
connectd/multiplex.c next_msg_for_peer aborts on an empty one), and lets everything else
through to lightningd's own checks. ``params`` arrive as an object (pyln, ``lightning-cli -k``)
or as a positional array (plain ``lightning-cli sendcustommsg ID HEX``); both are tested.
"""

from __future__ import annotations

from typing import Any

import pytest

from custommsg.core import errors
from custommsg.core.guard import check_native_call

PEER = "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"
_MISSING = object()


def as_dict(node_id: Any, msg: Any) -> dict[str, Any]:
    params = {}
    if node_id is not _MISSING:
        params["node_id"] = node_id
    if msg is not _MISSING:
        params["msg"] = msg
    return params


def as_list(node_id: Any, msg: Any) -> list[Any]:
    if node_id is _MISSING:
        return []
    return [node_id] if msg is _MISSING else [node_id, msg]


FORMS = pytest.mark.parametrize("form", [as_dict, as_list], ids=["dict", "list"])

# (id, node_id, msg, code, data that must be in refusal.data)
REFUSED: list[tuple[str, Any, Any, int, dict[str, Any]]] = [
    ("empty-msg", PEER, "", errors.MSG_TOO_SHORT, {"length": 0}),
    ("1-byte", PEER, "01", errors.MSG_TOO_SHORT, {"length": 1}),
    ("odd-length", PEER, "abc", errors.MSG_NOT_HEX, {"reason": "odd length"}),
    ("not-hex", PEER, "zz", errors.MSG_NOT_HEX, {"reason": "not hex"}),
    ("0x-prefix", PEER, "0x8001", errors.MSG_NOT_HEX, {"reason": "not hex"}),
    ("65536-bytes", PEER, "00" * 65536, errors.MSG_TOO_LONG, {"length": 65536}),
    ("70000-bytes", PEER, "00" * 70000, errors.MSG_TOO_LONG, {"length": 70000}),
    ("float-msg", PEER, 1.5, errors.MSG_NOT_HEX, {"reason": "not a string"}),
    ("null-msg", PEER, None, errors.MSG_NOT_HEX, {"reason": "not a string"}),
    ("bool-msg", PEER, True, errors.MSG_NOT_HEX, {"reason": "not a string"}),
    ("negative-int-msg", PEER, -8001, errors.MSG_NOT_HEX, {"reason": "not hex"}),
    ("odd-digit-int-msg", PEER, 800, errors.MSG_NOT_HEX, {"reason": "odd length"}),
    ("bad-node-id", "02" + "zz" * 32, "8001", errors.INVALID_NODE_ID, {"reason": "not 33 bytes of hex"}),
    ("short-node-id", "02", "8001", errors.INVALID_NODE_ID, {"reason": "not 33 bytes of hex"}),
    ("node-id-prefix-04", "04" + PEER[2:], "8001", errors.INVALID_NODE_ID, {"reason": "prefix"}),
    ("node-id-null", None, "8001", errors.INVALID_NODE_ID, {"reason": "not a string"}),
    ("bad-node-id-msg-missing", "02", _MISSING, errors.INVALID_NODE_ID, {}),
]


@FORMS
@pytest.mark.parametrize(
    ("node_id", "msg", "code", "data"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED]
)
def test_guard_refuses(form: Any, node_id: Any, msg: Any, code: int, data: dict) -> None:
    # given a call lightningd would crash on, truncate, or reject; when checked; then refused
    refusal = check_native_call(form(node_id, msg))
    assert refusal is not None
    assert refusal.code == code
    assert data.items() <= refusal.data.items()
    assert refusal.data["refused_by"] == "custommsg guard"
    assert refusal.to_json()["data"]["refused_by"] == "custommsg guard"


def test_guard_refuses_bad_msg_when_node_id_is_missing() -> None:
    # a dict can omit node_id and still carry msg
    refusal = check_native_call({"msg": ""})
    assert refusal is not None and refusal.code == errors.MSG_TOO_SHORT


# (id, node_id, msg) that the guard lets through to lightningd
ALLOWED: list[tuple[str, Any, Any]] = [
    ("odd-custom", PEER, "800168656c6c6f"),
    ("2-bytes", PEER, "8001"),
    ("65535-bytes", PEER, "8001" + "00" * 65533),
    ("even-custom", PEER, "8000"),  # native sendcustommsg allows even types since v23.11
    ("internal-ping", PEER, "0012"),  # lightningd refuses it itself, without harm
    ("internal-type-0", PEER, "0000"),
    ("peer-storage", PEER, "0007cafe"),  # chanbackup's own call
    ("commando", PEER, "4c4d00"),
    ("upper-case-hex", PEER, "8001ABCD"),
    ("upper-case-node-id", PEER.upper(), "8001"),
    ("int-msg", PEER, 80010001),  # lightning-cli's digits-only hex, sent as a JSON number
    ("msg-missing", PEER, _MISSING),  # lightningd reports the missing parameter
    ("both-missing", _MISSING, _MISSING),
]


@FORMS
@pytest.mark.parametrize(("node_id", "msg"), [c[1:] for c in ALLOWED], ids=[c[0] for c in ALLOWED])
def test_guard_lets_through(form: Any, node_id: Any, msg: Any) -> None:
    assert check_native_call(form(node_id, msg)) is None


@pytest.mark.parametrize(
    "params",
    [None, "8001", 42, {}, [], {"other": "x"}],
    ids=["none", "string", "int", "empty-dict", "empty-list", "unknown-key"],
)
def test_guard_leaves_odd_params_to_lightningd(params: Any) -> None:
    assert check_native_call(params) is None


def test_guard_ignores_extra_positional_params() -> None:
    # lightningd complains about the extra parameter itself
    assert check_native_call([PEER, "8001", "extra"]) is None


def test_guard_refusal_keeps_the_original_data() -> None:
    refusal = check_native_call({"node_id": PEER, "msg": "abc"})
    assert refusal is not None
    assert refusal.data == {"reason": "odd length", "digits": 3, "refused_by": "custommsg guard"}


def test_guard_refusals_do_not_leak_between_calls() -> None:
    first = check_native_call({"node_id": PEER, "msg": "01"})
    second = check_native_call({"node_id": PEER, "msg": "01"})
    assert first is not None and second is not None and first is not second
    assert second.data == {"length": 1, "min": 2, "refused_by": "custommsg guard"}
