"""Typed protocols through the real plugin process: a spec registered by option, folder or RPC,
messages sent by name and fields, received and listed as fields.

Node roles: the fake lightningd is the node under test; PEER_A and PEER_B are connected peers whose
messages arrive through the custommsg hook, and whose sends are recorded in ``ld.sent``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz import fuzz

from .conftest import OFFLINE_PEER, PEER_A, PEER_B, MakeLd
from .harness import FakeLightningd, wait_for
from .peerproto import app_sent_to

REPO = Path(__file__).resolve().parents[2]
SWAP_CSV = REPO / "doc" / "examples" / "swap.csv"
SWAP_ID = "5a" * 32
POINT = "02" + "22" * 32
REQUEST_FIELDS = {
    "swap_id": SWAP_ID,
    "asset": "btc",
    "scid": "103x1x0",
    "amount_sat": 100000,
    "pubkey": POINT,
    "tlvs": {"premium_limit": {"ppm": 5000}, "label": {"text": "rebalance"}},
}
# swap_request (42101 = a475) with REQUEST_FIELDS, byte by byte
REQUEST_WIRE = (
    "a475" + SWAP_ID + "0003" "627463" "0000670000010000" "00000000000186a0" + POINT
    + "01021388" "0309" + b"rebalance".hex()
)
RESPONSE_FIELDS = {
    "swap_id": SWAP_ID,
    "accepted": 1,
    "premium_sat": 120,
    "pubkey": "03" + "33" * 32,
    "hints": [{"scid": "1x2x3", "fee_ppm": 10}],
    "tlvs": {"expiry": {"blocks": 144}},
}
RESPONSE_WIRE = (
    "a477" + SWAP_ID + "01" "0000000000000078" "03" + "33" * 32 + "01" "0000010000020003" "0000000a" "010190"
)
EVEN_CSV = "msgtype,even_ping,32800\nmsgdata,even_ping,n,u16,\n"


def swap_node(make_ld: MakeLd, tmp_path: Path, **options: Any) -> FakeLightningd:
    shutil.copy(SWAP_CSV, tmp_path / "swap.csv")
    return make_ld({"custommsg-protocol": "swap.csv", **options}, lightning_dir=str(tmp_path))


def test_listed_with_name_type_and_fields(make_ld: MakeLd, tmp_path: Path) -> None:
    ld = swap_node(make_ld, tmp_path)
    listed = ld.call("custommsg-protocols")
    assert listed["even_types"] == []
    (spec,) = listed["protocols"]
    assert spec["source"] == str(tmp_path / "swap.csv") and spec["from_folder"] is False
    assert [(m["name"], m["type"]) for m in spec["messages"]] == [("swap_request", 42101), ("swap_response", 42103)]
    assert spec["messages"][0]["fields"][1] == {"name": "asset_len", "type": "u16", "count_of": ["asset"]}


def test_send_by_name_and_fields_sends_these_bytes(make_ld: MakeLd, tmp_path: Path) -> None:
    ld = swap_node(make_ld, tmp_path)
    result = ld.call("custommsg-send", {"node_id": PEER_A, "name": "swap_request", "fields": REQUEST_FIELDS})
    assert result == {"status": "sent", "peer_id": PEER_A, "type": 42101, "length": len(REQUEST_WIRE) // 2}
    assert app_sent_to(ld, PEER_A) == [REQUEST_WIRE]


def test_received_entries_carry_fields_and_filter_by_name(make_ld: MakeLd, tmp_path: Path) -> None:
    ld = swap_node(make_ld, tmp_path)
    # given a wait for a swap_response, parked before anything arrives
    waiting = ld.start_call("custommsg-wait", {"nextvalue": 1, "name": "swap_response"})
    # when a request, an unregistered message and a response arrive
    for peer, payload in ((PEER_B, REQUEST_WIRE), (PEER_B, "8001" "6869"), (PEER_A, RESPONSE_WIRE)):
        assert ld.custommsg(peer, payload) == {"result": "continue"}
    # then the wait gets the response, with its fields, and so does the notification
    response = waiting.result()
    assert (response["created_index"], response["name"], response["fields"]) == (3, "swap_response", RESPONSE_FIELDS)
    stored = ld.wait_notification("custommsg_stored", lambda n: n["params"]["custommsg_stored"]["created_index"] == 1)
    assert stored["params"]["custommsg_stored"]["fields"] == REQUEST_FIELDS
    # and the inbox lists each by name; the unregistered one has neither name nor fields
    assert [m["created_index"] for m in ld.call("custommsg-list", {"name": "swap_request"})["messages"]] == [1]
    plain = ld.call("custommsg-list", {"type": 32769})["messages"][0]
    assert "name" not in plain and "fields" not in plain and plain["text"] == "hi"
    # and the fields read back are sent again unchanged
    again = stored["params"]["custommsg_stored"]["fields"]
    ld.call("custommsg-send", {"node_id": PEER_A, "name": "swap_request", "fields": again})
    assert app_sent_to(ld, PEER_A) == [REQUEST_WIRE]


def test_a_peer_that_does_not_follow_the_spec_is_stored_with_the_reason(make_ld: MakeLd, tmp_path: Path) -> None:
    ld = swap_node(make_ld, tmp_path)
    bad = {
        RESPONSE_WIRE + "010190": "not in strictly ascending order",  # record 1 twice
        RESPONSE_WIRE + "0400": "unknown even record 4",
        RESPONSE_WIRE[:80]: "premium_sat: u64 needs 8 bytes",
        RESPONSE_WIRE.replace("01" "0000010000020003", "ff" "0000010000020003"): "255 elements of at least 12 bytes",
    }
    for payload in bad:
        assert ld.custommsg(PEER_A, payload) == {"result": "continue"}
    listed = ld.call("custommsg-list", {"name": "swap_response"})["messages"]
    assert [(m["payload"], "fields" in m) for m in listed] == [(p, False) for p in bad]
    for entry, reason in zip(listed, bad.values(), strict=True):
        assert reason in entry["decode_error"], entry["decode_error"]
    # an unknown odd record is kept, by its number
    ld.custommsg(PEER_A, RESPONSE_WIRE + "0501ff")
    last = ld.call("custommsg-list", {"name": "swap_response"})["messages"][-1]
    assert last["fields"]["tlvs"] == {"expiry": {"blocks": 144}, "5": "ff"}


def test_send_refusals_name_the_field(make_ld: MakeLd, tmp_path: Path) -> None:
    ld = swap_node(make_ld, tmp_path)
    cases: list[tuple[dict[str, Any], int, dict[str, Any]]] = [
        ({"name": "nope", "fields": {}}, 3374, {"name": "nope"}),
        ({"name": "swap_request", "fields": {**REQUEST_FIELDS, "amount_sat": -1}}, 3375,
         {"name": "swap_request", "field": "amount_sat"}),
        ({"name": "swap_request", "fields": {**REQUEST_FIELDS, "tlvs": {"premium_limit": {"ppm": 2**32}}}}, 3375,
         {"name": "swap_request", "field": "tlvs.premium_limit.ppm"}),
        ({"name": "swap_request", "fields": {k: v for k, v in REQUEST_FIELDS.items() if k != "scid"}}, 3375,
         {"name": "swap_request", "field": "scid", "reason": "missing"}),
        ({"name": "swap_request", "fields": {**REQUEST_FIELDS, "asset_len": 3}}, 3375,
         {"name": "swap_request", "field": "asset_len"}),
        ({"name": "swap_request", "msg": "8001"}, 3310, {"param": "msg"}),
        ({"fields": {}}, 3310, {"param": "fields"}),
        ({}, 3310, {"param": "msg"}),
    ]
    for params, code, data in cases:
        error = ld.call_error("custommsg-send", {"node_id": PEER_A, **params})
        assert error.code == code, (params, error.message)
        assert data.items() <= error.data.items(), (params, error.data)
    assert app_sent_to(ld, PEER_A) == []


def test_queued_by_name_for_an_offline_peer(make_ld: MakeLd, tmp_path: Path) -> None:
    ld = swap_node(make_ld, tmp_path)
    queued = ld.call("custommsg-send", {"node_id": OFFLINE_PEER, "name": "swap_request", "fields": REQUEST_FIELDS,
                                        "queue": True, "ttl": 60})
    assert queued["status"] == "queued" and queued["type"] == 42101
    ld.connect_peer(OFFLINE_PEER)
    wait_for(lambda: app_sent_to(ld, OFFLINE_PEER) == [REQUEST_WIRE])


def test_request_and_reply_in_fields(make_ld: MakeLd, tmp_path: Path) -> None:
    ld = swap_node(make_ld, tmp_path)
    pending = ld.start_call("custommsg-request", {
        "node_id": PEER_A, "name": "swap_request", "fields": REQUEST_FIELDS, "reply_type": "swap_response",
    })
    wait_for(lambda: app_sent_to(ld, PEER_A) == [REQUEST_WIRE])
    ld.custommsg(PEER_A, RESPONSE_WIRE)
    result = pending.result()
    missing = ld.call_error("custommsg-request", {"node_id": PEER_A, "name": "swap_request", "fields": REQUEST_FIELDS})
    assert (missing.code, missing.data) == (3310, {"param": "reply_type"})
    assert result["request"]["type"] == 42101
    assert (result["reply"]["name"], result["reply"]["fields"]) == ("swap_response", RESPONSE_FIELDS)


def test_registered_types_are_kept_whatever_custommsg_type_says(make_ld: MakeLd, tmp_path: Path) -> None:
    ld = swap_node(make_ld, tmp_path, **{"custommsg-type": "40000"})
    ld.custommsg(PEER_A, RESPONSE_WIRE)
    ld.custommsg(PEER_A, "8001")  # neither custommsg-type nor registered
    assert [m["type"] for m in ld.call("custommsg-list")["messages"]] == [42103]


def test_even_types_from_the_folder_reach_the_manifest(make_ld: MakeLd, tmp_path: Path) -> None:
    # given a spec with an even type in <network dir>/custommsg/protocols/
    folder = tmp_path / "custommsg" / "protocols"
    folder.mkdir(parents=True)
    (folder / "even.csv").write_text(EVEN_CSV)
    ld = make_ld(lightning_dir=str(tmp_path))
    # then lightningd is told of it in the manifest, before init
    assert ld.manifest is not None and ld.manifest["custommessages"] == [32800]
    listed = ld.call("custommsg-protocols")
    assert listed["even_types"] == [32800] and listed["protocols"][0]["from_folder"] is True
    # and it is sent without allow_even
    ld.call("custommsg-send", {"node_id": PEER_A, "name": "even_ping", "fields": {"n": 7}})
    assert app_sent_to(ld, PEER_A) == ["8020" "0007"]


def test_no_folder_no_custommessages(make_ld: MakeLd) -> None:
    ld = make_ld()
    assert ld.manifest is not None and "custommessages" not in ld.manifest


def test_an_even_type_by_option_disables_the_plugin_naming_the_folder(make_ld: MakeLd, tmp_path: Path) -> None:
    (tmp_path / "even.csv").write_text(EVEN_CSV)
    ld = make_ld(start=False, lightning_dir=str(tmp_path))
    result = ld.start({"custommsg-protocol": "even.csv"}, expect_disable=True)
    assert "even.csv:1: even_ping: type 32800 is even" in result["disable"]
    assert "custommsg/protocols/" in result["disable"]


def test_a_bad_spec_disables_the_plugin_with_its_line(make_ld: MakeLd, tmp_path: Path) -> None:
    (tmp_path / "bad.csv").write_text("msgtype,t,32769\nmsgdata,t,v,u17,\n")
    ld = make_ld(start=False, lightning_dir=str(tmp_path))
    result = ld.start({"custommsg-protocol": "bad.csv"}, expect_disable=True)
    assert result["disable"] == f"{tmp_path / 'bad.csv'}:2: Unknown type u17"


def test_a_bad_folder_disables_the_plugin(make_ld: MakeLd, tmp_path: Path) -> None:
    folder = tmp_path / "custommsg" / "protocols"
    folder.mkdir(parents=True)
    (folder / "ping.csv").write_text("msgtype,myping,18\n")
    ld = make_ld(start=False, lightning_dir=str(tmp_path))
    ld.launch()
    assert "custommessages" not in ld.getmanifest()
    result = ld.init(expect_disable=True)
    assert "myping: type 18 is Core Lightning's ping" in result["disable"]


def test_protocol_add_checks_warns_and_registers(make_ld: MakeLd, tmp_path: Path) -> None:
    ld = swap_node(make_ld, tmp_path)
    (tmp_path / "peerswap.csv").write_text("msgtype,swap_in_request,42069\nmsgdata,swap_in_request,amount,u64,\n")
    (tmp_path / "even.csv").write_text(EVEN_CSV)
    (tmp_path / "taken.csv").write_text("msgtype,other,42101\n")
    (tmp_path / "broken.csv").write_text("msgtype,x,32769\nmsgdata,x,v,tu64,\n")
    # refused: each with its code and line
    for path, code, line in (("even.csv", 3373, 1), ("taken.csv", 3372, 1), ("broken.csv", 3370, 2),
                             ("missing.csv", 3370, None)):
        error = ld.call_error("custommsg-protocol-add", {"path": path})
        assert (error.code, error.data["line"]) == (code, line), error.message
    assert ld.call_error("custommsg-protocol-add", {"path": 5}).code == 3310
    # registered, with a warning: PeerSwap's type
    added = ld.call("custommsg-protocol-add", {"path": "peerswap.csv"})
    assert added["warnings"] == [f"{tmp_path / 'peerswap.csv'}: swap_in_request uses type 42069, which is PeerSwap's"]
    ld.wait_log("which is PeerSwap's")
    assert [e["level"] for e in ld.logs if "PeerSwap" in str(e.get("message"))] == ["warn"]
    # and spoken at once
    ld.custommsg(PEER_B, "a455" "0000000000000009")
    assert ld.call("custommsg-list", {"name": "swap_in_request"})["messages"][0]["fields"] == {"amount": 9}
    assert len(ld.call("custommsg-protocols")["protocols"]) == 2


def test_fields_survive_a_restart(make_ld: MakeLd, tmp_path: Path) -> None:
    ld = swap_node(make_ld, tmp_path)
    ld.custommsg(PEER_A, RESPONSE_WIRE)
    ld.restart({"custommsg-protocol": "swap.csv"})
    assert ld.call("custommsg-list", {"name": "swap_response"})["messages"][0]["fields"] == RESPONSE_FIELDS
    assert os.path.exists(tmp_path / "custommsg" / "custommsg.sqlite3")


def test_fuzz_hostile_bytes_of_a_registered_type(make_ld: MakeLd, tmp_path: Path) -> None:
    ld = swap_node(make_ld, tmp_path)
    seen: list[int] = []

    @fuzz(40)
    @given(st.sampled_from(["a475", "a477"]), st.binary(max_size=400))
    def hostile(prefix: str, body: bytes) -> None:
        assert ld.custommsg(PEER_A, prefix + body.hex()) == {"result": "continue"}
        entry = ld.call("custommsg-list", {"index": "created", "start": len(seen) + 1})["messages"][0]
        seen.append(entry["created_index"])
        assert ("fields" in entry) != ("decode_error" in entry)

    hostile()
    assert ld.running()
