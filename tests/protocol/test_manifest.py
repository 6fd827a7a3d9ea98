"""getmanifest: what lightningd learns about the plugin before anything else happens."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

from .conftest import MakeLd
from .harness import PLUGIN_PATH, FakeLightningd

METHODS = {
    "custommsg-send",
    "custommsg-list",
    "custommsg-wait",
    "custommsg-delete",
    "custommsg-stats",
    "custommsg-outbox",
    "custommsg-cancel",
    "custommsg-request",
    "custommsg-lsps-call",
    "custommsg-lsps-respond",
    "custommsg-outbox-wait",
    "custommsg-peers",
    "custommsg-protocol-add",
    "custommsg-protocols",
}


USAGE = {
    "custommsg-send": "node_id [msg] [allow_even] [queue] [ttl] [ack] [name] [fields]",
    "custommsg-list": "[peer_id] [type] [index] [start] [limit] [method] [name]",
    "custommsg-wait": "nextvalue [peer_id] [type] [timeout] [method] [name]",
    "custommsg-delete": "[created_index] [up_to]",
    "custommsg-stats": "[peer_id] [type]",
    "custommsg-outbox": "[peer_id] [status] [index] [start] [limit]",
    "custommsg-cancel": "id",
    # reply_type is required (3310 without it), after msg, which name and fields may replace
    "custommsg-request": "node_id [msg] [reply_type] [reply_prefix] [timeout] [allow_even] [name] [fields]",
    "custommsg-lsps-call": "peer_id method [params] [timeout]",
    "custommsg-lsps-respond": "peer_id id [result] [error]",
    "custommsg-outbox-wait": "id [timeout]",
    "custommsg-peers": "[peer_id]",
    "custommsg-protocol-add": "path",
    "custommsg-protocols": "",
}


def test_manifest_methods(ld: FakeLightningd) -> None:
    """Every custommsg-* method is registered, and its usage lists its parameters in order."""
    assert ld.manifest is not None
    methods = {m["name"]: m for m in ld.manifest["rpcmethods"]}
    assert set(USAGE) == METHODS <= set(methods)
    for name, parameters in USAGE.items():
        assert methods[name]["usage"].split("\n")[0].rstrip() == parameters, name


def test_manifest_methods_explain_themselves(ld: FakeLightningd) -> None:
    """``lightning-cli help custommsg-X`` explains X: the usage lightningd shows carries what it does and returns.

    lightningd prints a plugin method's ``usage`` in ``help``; the description also goes
    in ``description`` for lightningd before v24.08.
    """
    assert ld.manifest is not None
    methods = {m["name"]: m for m in ld.manifest["rpcmethods"]}
    for name in METHODS:
        _, _, text = methods[name]["usage"].partition("\n")
        assert len(text.split()) >= 8, f"{name}: no help text in its usage"
        assert "return" in text.lower(), f"{name}: its help does not say what it returns"
        assert methods[name]["description"].split() == [
            word for word in text.split()
        ], f"{name}: description and usage disagree"
    # No method is named like a built-in: that segfaults this lightningd at manifest time (lightningd/plugin.c
    # plugin_rpcmethod_add: find_plugin_for_command finds no plugin for a built-in, then p->cmd).
    assert not {"sendcustommsg", "getinfo", "listpeers", "wait"} & set(methods)


def test_manifest_hooks(ld: FakeLightningd) -> None:
    """custommsg sees every type custommsg-type could select; rpc_command is filtered to sendcustommsg.

    Either no filter list (called for every forwarded type; the plugin checks the type
    itself) or integer filters covering every non-internal type. A raw ``"filters": []``
    would mean "never called" to lightningd.
    """
    assert ld.manifest is not None
    hooks = {h["name"]: h for h in ld.manifest["hooks"]}
    assert set(hooks) == {"custommsg", "rpc_command"}
    filters = hooks["custommsg"].get("filters")
    if filters is not None:
        # lightningd parses them with json_to_u64: JSON integers only (hex strings are refused).
        assert all(type(f) is int for f in filters)
        assert {32768, 65535, 32769, 7, 9, 19533} <= set(filters)
        assert not {18, 513, 16, 17, 1, 0} & set(filters)
    assert hooks["rpc_command"]["filters"] == ["sendcustommsg"]


def test_manifest_options(ld: FakeLightningd) -> None:
    """The options lightningd will accept on its command line, with their types and defaults."""
    assert ld.manifest is not None
    options = {o["name"]: o for o in ld.manifest["options"]}
    assert options["custommsg-guard"]["type"] == "bool"
    assert options["custommsg-guard"]["default"] is True
    assert options["custommsg-type"]["multi"] is True
    assert "default" not in options["custommsg-type"]
    for name in ("custommsg-db", "custommsg-inbox-max", "custommsg-peer-rate", "custommsg-peer-burst",
                 "custommsg-outbox-max"):
        assert name in options, name
    for name in ("custommsg-inbox-max", "custommsg-peer-burst", "custommsg-outbox-max"):
        assert options[name]["type"] == "int" and isinstance(options[name]["default"], int), name
    # lightningd refuses a plugin whose "int" or "bool" default does not parse as one.
    for option in options.values():
        assert option["type"] in ("string", "int", "bool", "flag", "string-conceal")
    # custommsg-db may be a PostgreSQL URL with a password: listconfigs shows "..." for it
    assert options["custommsg-db"]["type"] == "string-conceal"


def test_manifest_subscriptions_notifications(ld: FakeLightningd) -> None:
    """Subscribed to connect/disconnect/shutdown, declares custommsg_stored, and is dynamic."""
    assert ld.manifest is not None
    assert {"connect", "disconnect", "shutdown"} <= set(ld.manifest["subscriptions"])
    assert {"method": "custommsg_stored"} in ld.manifest["notifications"]
    assert ld.manifest["dynamic"] is True
    # Even types are not allowed in by this plugin (no custommessages): connectd keeps refusing them.
    assert "custommessages" not in ld.manifest


def test_getmanifest_touches_nothing(make_ld: MakeLd) -> None:
    """getmanifest may run before lightningd owns its directory (``--help``): it must create no file."""
    ld = make_ld(start=False)
    ld.launch()
    before = sorted(os.listdir(ld.lightning_dir))
    ld.call("getmanifest", {"allow-deprecated-apis": False}, prefix=None)
    assert sorted(os.listdir(ld.lightning_dir)) == before == ["lightning-rpc"]
    ld.kill()


def test_import_has_no_side_effect() -> None:
    """Importing plugin.py (importlib, not running it) prints nothing, writes no file, starts nothing."""
    with tempfile.TemporaryDirectory() as cwd:
        code = (
            "import importlib.util, sys, threading\n"
            f"spec = importlib.util.spec_from_file_location('cm_plugin_under_test', {str(PLUGIN_PATH)!r})\n"
            "module = importlib.util.module_from_spec(spec)\n"
            "spec.loader.exec_module(module)\n"
            "assert callable(module.main)\n"
            "assert threading.active_count() == 1, threading.enumerate()\n"
        )
        proc = subprocess.run(
            [sys.executable, "-B", "-c", code],
            cwd=cwd,
            capture_output=True,
            timeout=30,
            env={**os.environ, "LIGHTNINGD_PLUGIN": "1", "HOME": cwd},
        )
        assert proc.returncode == 0, proc.stderr.decode()
        assert proc.stdout == b"" and proc.stderr == b""
        assert os.listdir(cwd) == []



def test_help_texts_leave_other_plugins_names_alone(ld: FakeLightningd) -> None:
    """CLN's own test suite finds a plugin's command in ``help`` by substring (tests/test_plugin.py:
    test_rpc_passthrough looks for 'hello' in every command's usage, where lightningd puts our help
    text): with this plugin on every node, that suite must still pass."""
    assert ld.manifest is not None
    for method in ld.manifest["rpcmethods"]:
        assert "hello" not in method["usage"].lower(), method["name"]
