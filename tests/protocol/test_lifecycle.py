"""Starting and stopping: init's checks, the ways lightningd ends a plugin, and how lightningd starts the file."""

from __future__ import annotations

import os
import sqlite3
import stat
import sys
import time

import pytest

from .conftest import PEER_A, MakeLd
from .harness import PLUGIN_PATH, FakeLightningd, wait_for
from .peerproto import app_sent


@pytest.mark.parametrize("version", ["v25.09", "v24.11.2", "v0.12.1"])
def test_old_lightningd_disables(make_ld: MakeLd, version: str) -> None:
    """A lightningd older than v25.12 (no hook filters) makes the plugin disable itself, saying why."""
    ld = make_ld(start=False, version=version)
    result = ld.start(expect_disable=True)
    assert "v25.12" in result["disable"] and version in result["disable"]


@pytest.mark.parametrize("version", ["v25.12", "v25.12rc1", "v26.06-258-g090f4b0e6", "090f4b0e6-modded"])
def test_new_or_unknown_version_starts(make_ld: MakeLd, version: str) -> None:
    """v25.12 and later start, and so does a version string that names no release (a source build)."""
    ld = make_ld(start=False, version=version)
    assert ld.start() is None
    assert ld.call("custommsg-list") == {"messages": []}


def test_init_logs_configuration(make_ld: MakeLd) -> None:
    """init logs one line naming the inbox file, the types and the guard state."""
    ld = make_ld(options={"custommsg-type": ["40000-40999", "50001"], "custommsg-guard": False})
    (line,) = ld.log_lines("custommsg ")
    assert os.path.join(ld.lightning_dir, "custommsg", "custommsg.sqlite3") in line
    assert "40000-40999,50001" in line and "guard off" in line


def test_dynamic_start(make_ld: MakeLd) -> None:
    """``plugin start`` at runtime: init with startup=false works the same, and sees peers already connected."""
    ld = make_ld(start=False)
    ld.launch()
    ld.getmanifest(allow_deprecated_apis=True)
    assert ld.init(startup=False) is None
    # allow-deprecated-apis=true: pyln adds the old "payload" copy to notifications; they still work.
    ld.connect_peer(PEER_A)
    assert ld.call("custommsg-send", {"node_id": PEER_A, "msg": "8001"}, timeout=3)["status"] == "sent"


def test_pre_v25_05_connect_notification_is_ignored(ld: FakeLightningd) -> None:
    """Before v25.05 connect's fields were at the top of params; no supported lightningd sends that.

    The plugin ignores such a notification (it does not count the peer as connected), and
    stays up: a send to that peer still works, by asking lightningd about it first.
    """
    peer = "03f006a18d5653c4edf5391ff23a61f03ff83d237e880ee61187fa9f379a028e0a"
    ld.peers[peer] = {"connected": True}
    ld.notify("connect", {"id": peer, "direction": "out", "address": {"type": "ipv4", "address": "1.2.3.4",
                                                                       "port": 9735}})
    calls = len(ld.listpeers_calls)
    assert ld.call("custommsg-send", {"node_id": peer, "msg": "8001"}, timeout=3)["status"] == "sent"
    assert ld.listpeers_calls[calls:] == [peer]


def test_shutdown_exits_promptly(ld: FakeLightningd) -> None:
    """The shutdown notification ends the process with code 0, well within lightningd's grace period."""
    ld.custommsg(PEER_A, "8001aa")
    started = time.monotonic()
    assert ld.stop() == 0
    assert time.monotonic() - started < 2


def test_stdin_closed_exits(ld: FakeLightningd) -> None:
    """If lightningd dies (stdin reaches EOF) the plugin exits by itself instead of lingering."""
    ld.call("custommsg-stats")  # init is over
    ld.start_call("custommsg-wait", {"nextvalue": 1})
    assert ld.close_stdin(timeout=5) == 0


def test_unknown_method_params(ld: FakeLightningd) -> None:
    """A missing or misspelt parameter is an error answer (pyln's binding), and the plugin goes on serving."""
    ld.allowed_logs.append("Traceback")  # pyln logs the binding error's traceback itself
    for method, params in (("custommsg-send", {"node_id": PEER_A}),
                           ("custommsg-send", {"node_id": PEER_A, "mgs": "8001"}),
                           ("custommsg-send", [PEER_A, "8001", False, False, None, False, "extra"]),
                           ("custommsg-wait", {}),
                           ("custommsg-cancel", {})):
        err = ld.call_error(method, params)
        assert isinstance(err.code, int) and err.message
    assert ld.call("custommsg-send", {"node_id": PEER_A, "msg": "8001"}, timeout=3)["status"] == "sent"


def test_newer_schema_disables(make_ld: MakeLd) -> None:
    """A database written by a newer custommsg (higher user_version) is not touched: init disables, saying so."""
    ld = make_ld(start=False)
    path = os.path.join(ld.lightning_dir, "custommsg", "custommsg.sqlite3")
    os.makedirs(os.path.dirname(path))
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 99")
    db.commit()
    db.close()
    result = ld.start(expect_disable=True)
    assert "upgrade the plugin" in result["disable"]
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 99
    db.close()


def test_corrupt_database_disables(make_ld: MakeLd) -> None:
    """A file that is not an SQLite database disables the plugin at init instead of crashing it."""
    ld = make_ld(start=False)
    path = os.path.join(ld.lightning_dir, "junk.sqlite3")
    with open(path, "wb") as f:
        f.write(b"this is not a database" * 100)
    result = ld.start({"custommsg-db": path}, expect_disable=True)
    assert "cannot open the custommsg database" in result["disable"]


PLUGIN_VENV = PLUGIN_PATH.parent / ".venv"


@pytest.mark.skipif(
    not ((PLUGIN_VENV / "bin" / "python3").exists() and os.path.realpath(sys.prefix) == os.path.realpath(PLUGIN_VENV)),
    reason="needs the project's .venv beside plugin.py (make install), and the tests running in it",
)
def test_started_as_lightningd_does(make_ld: MakeLd) -> None:
    """lightningd executes plugin.py itself (shebang, system python3 first on PATH): it moves into the venv."""
    assert os.stat(PLUGIN_PATH).st_mode & stat.S_IXUSR
    ld = make_ld(start=False)
    ld.launch(argv=[str(PLUGIN_PATH)], env={"PATH": "/usr/bin:/bin", "PYTHONPATH": ""})
    ld.getmanifest()
    assert ld.init() is None
    assert ld.call("custommsg-send", {"node_id": PEER_A, "msg": "8001"}, timeout=3)["status"] == "sent"
    wait_for(lambda: app_sent(ld), timeout=3)


def test_survives_unparsable_input(ld: FakeLightningd) -> None:
    """A request it cannot parse does not end the plugin (which would also drop the sendcustommsg guard)."""
    ld.allowed_logs.append("cannot handle a request")
    ld.allow_log_errors = True  # the plugin logs the parse error's traceback at warn
    unreadable = ld.start_call_raw("custommsg-list", "{nonsense")
    ld.write_raw('["not", "an", "object"]')
    assert unreadable.error(3).code == -32600  # its head was readable: the caller is not left waiting
    assert ld.call("custommsg-list", timeout=3) == {"messages": []}
    assert ld.rpc_command({"node_id": PEER_A, "msg": "zz"})["return"]["error"]["code"] == 3302


DEEP = "[" * 5000 + "]" * 5000  # valid JSON to lightningd (jsmn has no depth limit), past Python's


def test_request_nested_too_deeply_is_answered(ld: FakeLightningd) -> None:
    """Each kind of call still gets its answer: a method -32600, the guard a refusal, the hook continue."""
    ld.allowed_logs.append("cannot handle a request")
    ld.allow_log_errors = True
    params = f'{{"peer_id": "{PEER_A}", "method": "x", "params": {{"a": {DEEP}}}}}'
    call = ld.start_call_raw("custommsg-lsps-call", params)
    error = call.error(10)
    assert (error.code, error.message) == (-32600, "custommsg-lsps-call: request nested too deeply")
    guard = ld.rpc_command(None, params_json=f'{{"node_id": "{PEER_A}", "msg": {DEEP}}}')
    assert guard["return"]["error"]["code"] == -32600
    deep_hook = ld.start_call_raw("custommsg", f'{{"payload": "8001aa", "peer_id": "{PEER_A}", "x": {DEEP}}}',
                                  "cln:custommsg#deep2")
    assert deep_hook.result(10) == {"result": "continue"}
    assert ld.call("custommsg-stats")["waiting"] == 0
