"""The fake lightningd itself: it must be as strict as the real one, or the other tests prove nothing."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

from .conftest import PEER_A, MakeLd
from .harness import FakeLightningd, wait_for

DEADLOCK_PLUGIN = Path(__file__).parent / "plugins" / "deadlock.py"


def test_reproduces_sendcustommsg_deadlock(make_ld: MakeLd) -> None:
    """A plugin calling sendcustommsg from its main loop while it holds the rpc_command hook hangs, as in CLN."""
    ld = make_ld(start=False, plugin_path=DEADLOCK_PLUGIN)
    ld.start()
    call = ld.start_call("send-sync", {"node_id": PEER_A, "msg": "8001"})
    # lightningd has the call and runs the hook first; then a true hang check: a hook answer
    # takes about a millisecond, so 0.2 s without one (and without the send) is a hang.
    wait_for(lambda: [m for _, m, _ in ld.rpc.requests if m == "sendcustommsg"], timeout=3)
    time.sleep(0.2)
    assert not call.done()  # the hook call to the plugin's stdin is never read
    assert ld.sent == [] and ld.rpc_command_answers == []
    ld.kill()
    assert call.error(timeout=2).code == -4


def test_rpc_socket_like_lightningd(ld: FakeLightningd) -> None:
    """Many requests on one connection, sent back to back, each answered and terminated by a blank line."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(ld.rpc.path)
    sock.sendall(b"".join(
        json.dumps({"jsonrpc": "2.0", "id": i, "method": m, "params": p}).encode()
        for i, (m, p) in enumerate([("getinfo", {}), ("listpeers", {"id": PEER_A}), ("nosuch", {})])
    ))
    buffer = b""
    while buffer.count(b"\n\n") < 3:
        chunk = sock.recv(65536)
        assert chunk
        buffer += chunk
    sock.close()
    replies = [json.loads(part) for part in buffer.split(b"\n\n") if part.strip()]
    assert [r["id"] for r in replies] == [0, 1, 2]
    assert replies[0]["result"]["version"].startswith("v26.06")
    assert replies[1]["result"]["peers"] == [{"id": PEER_A, "connected": True, "num_channels": 0, "features": ""}]
    assert replies[2]["error"]["code"] == -32601


def test_fake_flags_node_killing_messages(make_ld: MakeLd) -> None:
    """With the guard off, a bad sendcustommsg reaches lightningd: the fake records that the node would have died."""
    ld = make_ld(options={"custommsg-guard": False})
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(ld.rpc.path)
    sock.sendall(json.dumps({"jsonrpc": "2.0", "id": "x", "method": "sendcustommsg",
                             "params": {"node_id": PEER_A, "msg": "zz"}}).encode())
    reply = b""
    while b"\n\n" not in reply:
        reply += sock.recv(65536)
    sock.close()
    assert json.loads(reply)["result"]["status"] == "Message sent to connectd for delivery"
    assert len(ld.fatal) == 1
    ld.fatal.clear()  # expected here


def test_flags_non_continue_custommsg_answer(make_ld: MakeLd) -> None:
    """A custommsg hook answer other than {"result": "continue"} is reported at teardown (lightningd would exit)."""
    ld = make_ld(start=False, plugin_path=Path(__file__).parent / "plugins" / "bad_hook.py")
    ld.start()
    assert ld.custommsg(PEER_A, "8001") is None
    assert any("custommsg hook answered None" in p for p in ld.problems())
    ld.custommsg_answers.clear()  # expected here
