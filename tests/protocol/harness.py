"""A fake lightningd that runs ``plugin.py`` as a real subprocess and speaks CLN's plugin protocol to it.

What lightningd does, and this module copies (CLN v26.06-258, the source files named below):

* It starts the plugin with pipes for stdin/stdout, ``LIGHTNINGD_PLUGIN=1`` and
  ``LIGHTNINGD_VERSION`` in the environment and the network directory as working
  directory (lightningd/plugin.c, lightningd/options.c).
* Every JSON object it writes to the plugin ends with ``"\\n\\n"`` (pyln-client reads
  stdin line by line and splits on blank lines). Its own requests have ids like
  ``cln:getmanifest#0``; a hook called while a command runs gets
  ``<command id>/cln:rpc_command#N`` (jsonrpc_request_start_, lightningd/jsonrpc.c).
* ``getmanifest`` carries ``{"allow-deprecated-apis": bool}``; ``init`` carries the
  plugin's options (only those set or with a default) and ``configuration`` with
  ``lightning-dir``, ``rpc-file``, ``startup``, ``network`` and ``feature_set``
  (plugin_populate_init_request). ``{"disable": reason}`` in the answer makes
  lightningd SIGKILL the plugin (plugin_kill).
* Notifications: ``{"jsonrpc":"2.0","method":T,"params":{T:{...}}}``, sent only to a
  plugin that subscribed to T and finished init (plugin_single_notify). At shutdown a
  subscriber gets ``shutdown`` (``{"shutdown":{}}``) and 30 s to exit; any other plugin
  is killed at once (shutdown_plugins).
* The JSON-RPC socket ``<lightning-dir>/lightning-rpc`` serves any number of requests
  per connection and ends each answer with ``"\\n\\n"``. ``sendcustommsg`` first runs
  the ``rpc_command`` hook of every plugin that registered it, over that plugin's
  stdin, and only then executes (parse_request -> plugin_hook_call_rpc_command). So a
  plugin that called ``sendcustommsg`` from its main loop would hang here exactly as
  it hangs under lightningd.
* ``sendcustommsg`` checks, in lightningd's order: node id, ``msg`` present, type not
  internal, peer known, peer connected (lightningd/connect_control.c). It does *not*
  check hex or length; a message that would reach connectd empty or truncated (which
  aborts connectd and the node: connectd/multiplex.c next_msg_for_peer) is recorded in :attr:`fatal` so the
  test fails at teardown. Like lightningd it reads ``msg`` from the raw JSON token
  (escapes included) and forwards the raw tokens to the hook (:class:`RawStr`).
* It kills a plugin whose log notification has no string ``message`` or an unknown
  ``level``, drops notifications to topics the manifest did not declare, and
  ``fatal()``s on any custommsg hook answer but ``{"result": "continue"}``: all of
  these are reported by :meth:`FakeLightningd.problems` at teardown.

Every successful ``custommsg-*`` answer and every ``custommsg_*`` notification is validated against
its JSON schema in ``doc/schemas`` (``tests/schema_check``); a mismatch is reported at teardown.

lightningd reads what a plugin writes with jsmn in strict mode (common/json_parse_simple.h:
``#define JSMN_STRICT 1``), where a value that is not a string, object or array must start with
``-``, a digit, ``t``, ``f`` or ``n``: ``NaN`` or ``Infinity`` fails the parse and lightningd kills
the plugin. ``-Infinity`` and a lone surrogate (a ``\\ud800`` escape, which names no character: RFC
8259, section 8.2) get through jsmn but are no JSON for the strict readers lightningd hands them on
to. Python's json reads all of them; here each one in what the plugin writes on stdout is reported at
teardown.

Nothing here imports the plugin's own code: the expectations are independent of it.
"""

from __future__ import annotations

import codecs
import itertools
import json
import json.scanner
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.fuzz import strings_in
from tests.schema_check import problems as schema_problems
from tests.schema_check import schema_path

REPO_ROOT = Path(__file__).resolve().parents[2]
# CUSTOMMSG_PLUGIN=/elsewhere/plugin.py runs the tier against another copy (an older commit, say).
PLUGIN_PATH = Path(os.environ.get("CUSTOMMSG_PLUGIN") or REPO_ROOT / "plugin.py")

CLN_VERSION = "v26.06-258-g090f4b0e6"
OWN_ID = "02eec7245d6b7d2ccb30380bfbe2a3648cd7a942653f5aa340edcea1f283686619"

# wire/peer_wire.csv minus peer_storage (7) and peer_storage_retrieval (9): the types
# lightningd refuses to send and never hands to the custommsg hook (wire/peer_wire.c peer_wire_is_internal).
INTERNAL_TYPES = {
    0: "WIRE_PROTOCOL_BATCH_ELEMENT", 1: "WIRE_WARNING", 2: "WIRE_STFU", 16: "WIRE_INIT", 17: "WIRE_ERROR",
    18: "WIRE_PING", 19: "WIRE_PONG", 32: "WIRE_OPEN_CHANNEL", 33: "WIRE_ACCEPT_CHANNEL",
    34: "WIRE_FUNDING_CREATED", 35: "WIRE_FUNDING_SIGNED", 36: "WIRE_CHANNEL_READY", 38: "WIRE_SHUTDOWN",
    39: "WIRE_CLOSING_SIGNED", 40: "WIRE_CLOSING_COMPLETE", 41: "WIRE_CLOSING_SIG", 64: "WIRE_OPEN_CHANNEL2",
    65: "WIRE_ACCEPT_CHANNEL2", 66: "WIRE_TX_ADD_INPUT", 67: "WIRE_TX_ADD_OUTPUT", 68: "WIRE_TX_REMOVE_INPUT",
    69: "WIRE_TX_REMOVE_OUTPUT", 70: "WIRE_TX_COMPLETE", 71: "WIRE_TX_SIGNATURES", 72: "WIRE_TX_INIT_RBF",
    73: "WIRE_TX_ACK_RBF", 74: "WIRE_TX_ABORT", 77: "WIRE_SPLICE_LOCKED", 80: "WIRE_SPLICE_INIT",
    81: "WIRE_SPLICE_ACK", 127: "WIRE_START_BATCH", 128: "WIRE_UPDATE_ADD_HTLC", 130: "WIRE_UPDATE_FULFILL_HTLC",
    131: "WIRE_UPDATE_FAIL_HTLC", 132: "WIRE_COMMITMENT_SIGNED", 133: "WIRE_REVOKE_AND_ACK",
    134: "WIRE_UPDATE_FEE", 135: "WIRE_UPDATE_FAIL_MALFORMED_HTLC", 136: "WIRE_CHANNEL_REESTABLISH",
    137: "WIRE_UPDATE_BLOCKHEIGHT", 256: "WIRE_CHANNEL_ANNOUNCEMENT", 257: "WIRE_NODE_ANNOUNCEMENT",
    258: "WIRE_CHANNEL_UPDATE", 259: "WIRE_ANNOUNCEMENT_SIGNATURES", 261: "WIRE_QUERY_SHORT_CHANNEL_IDS",
    262: "WIRE_REPLY_SHORT_CHANNEL_IDS_END", 263: "WIRE_QUERY_CHANNEL_RANGE", 264: "WIRE_REPLY_CHANNEL_RANGE",
    265: "WIRE_GOSSIP_TIMESTAMP_FILTER", 513: "WIRE_ONION_MESSAGE",
}

# init's configuration.feature_set: lightningd's keys (common/features.c feature_place_names),
# with representative hex values (the plugin does not use them).
FEATURE_SET = {
    "init": "08a0880a8a59a1",
    "node": "88a0880a8a59a1",
    "channel": "",
    "invoice": "02000002024100",
    "bolt12_offer": "",
    "bolt12_invreq": "",
    "bolt12_invoice": "",
    "channel_type": "",
}

# What lightningd's plugin_log_handle accepts (log_level_parse, minus "io").
LOG_LEVELS = {"trace", "debug", "info", "unusual", "broken", "warn", "error"}

JSONRPC2_INVALID_REQUEST = -32600
JSONRPC2_METHOD_NOT_FOUND = -32601
JSONRPC2_INVALID_PARAMS = -32602

_NODE_ID = re.compile(r"^0[23][0-9a-fA-F]{64}$")
_HEX = re.compile(r"^[0-9a-fA-F]*$")

DEFAULT_TIMEOUT = 10.0


class RawStr(str):
    """A JSON string value that remembers how it was written (``raw``, quotes and escapes included).

    lightningd keeps the raw token: it forwards it unchanged to the rpc_command hook
    (json_add_tok) and hex-decodes ``msg`` from its raw characters, escapes and all.
    """

    raw: str


class _RawStringDecoder(json.JSONDecoder):
    def __init__(self) -> None:
        super().__init__()
        plain = self.parse_string

        def parse_string(text: str, end: int, strict: bool) -> tuple[str, int]:
            value, new_end = plain(text, end, strict)
            marked = RawStr(value)
            marked.raw = text[end - 1 : new_end]
            return marked, new_end

        self.parse_string = parse_string  # type: ignore[assignment]
        self.scan_once = json.scanner.py_make_scanner(self)  # the C scanner ignores parse_string


def dumps_raw(value: Any) -> str:
    """JSON text for ``value``, writing each :class:`RawStr` exactly as it was received."""
    if isinstance(value, RawStr):
        return value.raw
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)}: {dumps_raw(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(dumps_raw(v) for v in value) + "]"
    return json.dumps(value)


_SURROGATE = re.compile("[\ud800-\udfff]")  # what json makes of a lone surrogate escape (a pair is one character)


def _has_lone_surrogate(value: Any) -> bool:
    """Whether a string (or key) in ``value`` holds a surrogate code point; iterative, for any depth."""
    return any(_SURROGATE.search(text) for text in strings_in(value))


class ProtocolError(AssertionError):
    """The plugin broke the protocol (bad JSON, an unexpected message, it died)."""


class PluginCallError(Exception):
    """The plugin answered a request with a JSON-RPC error."""

    def __init__(self, method: str, error: dict[str, Any]):
        super().__init__(f"{method}: {error.get('code')} {error.get('message')}")
        self.method = method
        self.error = error

    @property
    def code(self) -> Any:
        return self.error.get("code")

    @property
    def message(self) -> str:
        return str(self.error.get("message", ""))

    @property
    def data(self) -> Any:
        return self.error.get("data")


def wait_for(predicate: Callable[[], Any], timeout: float = DEFAULT_TIMEOUT, interval: float = 0.01) -> Any:
    """Poll ``predicate`` until it is truthy; return its value or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {getattr(predicate, '__name__', predicate)}")
        time.sleep(interval)


class PendingCall:
    """A request sent to the plugin whose answer has not necessarily arrived."""

    def __init__(self, method: str, request_id: str):
        self.method = method
        self.id = request_id
        self.response: dict[str, Any] | None = None
        self._event = threading.Event()
        self.sent_at = time.monotonic()
        self.answered_at: float | None = None

    def _resolve(self, response: dict[str, Any]) -> None:
        self.response = response
        self.answered_at = time.monotonic()
        self._event.set()

    def done(self) -> bool:
        return self._event.is_set()

    def wait_response(self, timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
        if not self._event.wait(timeout):
            raise AssertionError(f"no answer to {self.method} (id {self.id}) within {timeout}s")
        assert self.response is not None
        return self.response

    def result(self, timeout: float = DEFAULT_TIMEOUT) -> Any:
        """The call's result; raises :class:`PluginCallError` for an error answer."""
        response = self.wait_response(timeout)
        if "error" in response:
            raise PluginCallError(self.method, response["error"])
        return response["result"]

    def error(self, timeout: float = DEFAULT_TIMEOUT) -> PluginCallError:
        """The call's error; fails if it succeeded."""
        response = self.wait_response(timeout)
        if "error" not in response:
            raise AssertionError(f"{self.method} succeeded, expected an error: {response.get('result')!r}")
        return PluginCallError(self.method, response["error"])


def node_error(code: int, message: str) -> dict[str, Any]:
    return {"code": code, "message": message}


class RpcServer:
    """lightningd's JSON-RPC unix socket, served by threads."""

    def __init__(self, ld: FakeLightningd, path: str):
        self.ld = ld
        self.path = path
        self._sock: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stopping = False
        self.connections = 0  # accepted, ever
        self.requests: list[tuple[int, str, Any]] = []  # (connection number, method, params)

    def start(self) -> None:
        if os.path.exists(self.path):
            os.unlink(self.path)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(self.path)
        self._sock.listen(64)
        self._stopping = False
        threading.Thread(target=self._accept_loop, args=(self._sock,), name="fake-rpc-accept", daemon=True).start()

    def stop(self) -> None:
        self._stopping = True
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._sock.close()
            self._sock = None
        self.drop_connections()
        if os.path.exists(self.path):
            os.unlink(self.path)

    def drop_connections(self) -> None:
        """Close every open client connection, as a restarting lightningd would."""
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()

    def _accept_loop(self, sock: socket.socket) -> None:
        while not self._stopping:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                number = self.connections
                self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn, number), name=f"fake-rpc-{number}", daemon=True).start()

    def _serve(self, conn: socket.socket, number: int) -> None:
        decoder = _RawStringDecoder()
        utf8 = codecs.getincrementaldecoder("utf-8")()  # a character may be split across reads
        buffer = ""
        try:
            while True:
                chunk = conn.recv(1 << 16)
                if not chunk:
                    return
                buffer += utf8.decode(chunk)
                while True:
                    buffer = buffer.lstrip()
                    if not buffer:
                        break
                    try:
                        request, end = decoder.raw_decode(buffer)
                    except json.JSONDecodeError:
                        break  # incomplete: read more
                    buffer = buffer[end:]
                    answer = self._handle(number, request)
                    if answer is None:  # told to hang up without answering
                        conn.close()
                        return
                    conn.sendall((json.dumps(answer) + "\n\n").encode())
        except OSError:
            return
        finally:
            with self._lock:
                if conn in self._conns:
                    self._conns.remove(conn)

    def _handle(self, number: int, request: dict[str, Any]) -> dict[str, Any] | None:
        request_id = request.get("id")
        method = request.get("method")
        params = request.get("params", {})
        self.requests.append((number, str(method), params))
        try:
            outcome = self.ld.handle_rpc(str(method), params, request)
        except Exception as exc:  # a harness bug: make it visible
            self.ld.harness_errors.append(f"RPC {method}: {exc!r}")
            outcome = ("error", node_error(-1, f"fake lightningd failed: {exc!r}"))
        if outcome is None:
            return None
        kind, value = outcome
        return {"jsonrpc": "2.0", "id": request_id, kind: value}


class FakeLightningd:
    """One fake node: its RPC socket, its peers, and (at most) one running plugin process."""

    def __init__(
        self,
        lightning_dir: str | None = None,
        own_id: str = OWN_ID,
        version: str = CLN_VERSION,
        peers: dict[str, dict[str, Any]] | None = None,
        plugin_path: Path | str = PLUGIN_PATH,
        wallet: str | None = None,
    ):
        self.plugin_path = str(plugin_path)
        self.wallet = wallet  # lightningd's --wallet, as listconfigs shows it (None: the default, not listed)
        self.own_dir = lightning_dir is None
        self.lightning_dir = lightning_dir or tempfile.mkdtemp(prefix="cmproto-")
        self.own_id = own_id
        self.version = version
        # {peer id: {"connected": bool}}; what listpeers and sendcustommsg see.
        self.peers: dict[str, dict[str, Any]] = dict(peers or {})
        self.sent: list[tuple[str, str]] = []  # (node_id, msg hex) handed to "connectd", in order
        self.fatal: list[str] = []  # what would have brought the real node down
        self.harness_errors: list[str] = []
        self.rpc_command_answers: list[dict[str, Any]] = []  # every rpc_command hook answer
        self.custommsg_answers: list[Any] = []  # every custommsg hook answer (result or error), recorded on arrival
        self.schema_mismatches: list[str] = []  # answers and notifications outside their schema
        self.listpeers_calls: list[Any] = []
        # (caller's request, hook answer) for each sendcustommsg that ran our rpc_command hook
        self.send_hooks: list[tuple[dict[str, Any], Any]] = []
        # Set to an unset Event to hold sendcustommsg calls until it is set.
        self.send_gate: threading.Event | None = None
        self.send_gate_left: int | None = None  # how many more calls the gate catches (None: all)
        self.sends_waiting = 0
        # Hang up on the next N sendcustommsg requests without answering them.
        self.hangup_sendcustommsg = 0
        # msg hex -> error lightningd answers for it instead of sending (after the hook ran).
        self.refuse: dict[str, dict[str, Any]] = {}
        self.rpc = RpcServer(self, os.path.join(self.lightning_dir, "lightning-rpc"))
        self.rpc.start()

        self.proc: subprocess.Popen[bytes] | None = None
        self._ids = itertools.count()
        self._write_lock = threading.Lock()
        self._cond = threading.Condition()
        self._pending: dict[str, PendingCall] = {}
        self.logs: list[dict[str, Any]] = []
        self.notifications: list[dict[str, Any]] = []
        self.unexpected: list[Any] = []
        self.refused: list[str] = []  # what the plugin wrote that is no JSON to lightningd or its readers
        self.stderr = b""
        self.manifest: dict[str, Any] | None = None
        self.init_result: Any = None
        self.exits: list[tuple[int | None, bool]] = []  # (returncode, shutdown was sent first)
        self._shutdown_sent = False
        self._init_done = False
        self._reaped: set[int] = set()
        self.allow_log_errors = False  # tracebacks / "broken" logs are failures unless allowed
        self.allowed_logs: list[str] = []  # ... or unless they contain one of these

    # -- the plugin process ----------------------------------------------------

    def launch(self, argv: list[str] | None = None, env: dict[str, str] | None = None) -> None:
        assert self.proc is None or self.proc.poll() is not None, "a plugin is already running"
        environ = dict(os.environ)
        environ.update({"LIGHTNINGD_PLUGIN": "1", "LIGHTNINGD_VERSION": self.version})
        environ.update(env or {})
        self.proc = subprocess.Popen(
            argv or [sys.executable, self.plugin_path],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=self.lightning_dir,
            env=environ,
        )
        self._shutdown_sent = False
        self._init_done = False
        threading.Thread(target=self._read_stdout, args=(self.proc,), name="fake-ld-stdout", daemon=True).start()
        threading.Thread(target=self._read_stderr, args=(self.proc,), name="fake-ld-stderr", daemon=True).start()

    def start(
        self,
        options: dict[str, Any] | None = None,
        startup: bool = True,
        expect_disable: bool = False,
        allow_deprecated_apis: bool = False,
    ) -> Any:
        """Launch the plugin, then getmanifest and init as lightningd does; returns init's result."""
        self.launch()
        self.getmanifest(allow_deprecated_apis)
        return self.init(options, startup, expect_disable)

    def getmanifest(self, allow_deprecated_apis: bool = False) -> dict[str, Any]:
        self.manifest = self.call("getmanifest", {"allow-deprecated-apis": allow_deprecated_apis}, prefix=None)
        assert isinstance(self.manifest, dict)
        return self.manifest

    def init(self, options: dict[str, Any] | None = None, startup: bool = True, expect_disable: bool = False) -> Any:
        """Send init; a plugin that disables itself is killed, as lightningd does (plugin_kill)."""
        result = self.call("init", self.init_params(options, startup), prefix=None)
        self.init_result = result
        if isinstance(result, dict) and "disable" in result:
            assert expect_disable, f"the plugin disabled itself: {result['disable']}"
            self.kill()
        else:
            assert not expect_disable, f"expected the plugin to disable itself, init answered {result!r}"
            self._init_done = True
        return result

    def subscribed(self, topic: str) -> bool:
        subscriptions = (self.manifest or {}).get("subscriptions", [])
        return topic in subscriptions or "*" in subscriptions

    def init_params(self, options: dict[str, Any] | None = None, startup: bool = True) -> dict[str, Any]:
        """init's params: each option as lightningd would pass it (defaults unless overridden)."""
        assert self.manifest is not None
        values: dict[str, Any] = {}
        for option in self.manifest["options"]:
            if "default" in option:
                values[option["name"]] = [option["default"]] if option.get("multi") else option["default"]
        for name, value in (options or {}).items():
            declared = next((o for o in self.manifest["options"] if o["name"] == name), None)
            assert declared is not None, f"the plugin declares no option {name}"
            if declared.get("multi") and not isinstance(value, list):
                value = [value]
            values[name] = value
        return {
            "options": values,
            "configuration": {
                "lightning-dir": self.lightning_dir,
                "rpc-file": "lightning-rpc",
                "startup": startup,
                "network": "regtest",
                "feature_set": dict(FEATURE_SET),
            },
        }

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 5.0) -> int | None:
        """End the plugin as lightningd's shutdown does; returns its exit code.

        A plugin subscribed to ``shutdown`` gets the notification and ``timeout`` seconds
        (lightningd: 30) to exit before it is killed; any other is killed at once.
        """
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            self._shutdown_sent = True
            if self._init_done and self.subscribed("shutdown"):
                # shutdown_plugins: only a subscriber that finished init is told, and given 30 s.
                self.notify("shutdown", {"shutdown": {}})
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            else:
                proc.kill()  # everyone else is freed (killed) at once
                proc.wait()
        self._reap(proc)
        return proc.returncode

    def close_stdin(self, timeout: float = 5.0) -> int | None:
        """lightningd died: the plugin's stdin reaches EOF. Returns the exit code (None if it did not exit)."""
        proc = self.proc
        assert proc is not None and proc.stdin is not None
        self._shutdown_sent = True  # we ended it
        with self._write_lock:
            proc.stdin.close()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        self._reap(proc)
        return proc.returncode

    def kill(self) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            self._shutdown_sent = True  # we ended it: not a crash
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        self._reap(proc)

    def _reap(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.pid in self._reaped:
            return
        self._reaped.add(proc.pid)
        try:
            if proc.stdin is not None:
                proc.stdin.close()
        except (OSError, ValueError):
            pass
        # stdout and stderr are closed by their reader threads at EOF: closing them here could
        # hand their descriptor numbers to the next process's pipes while a read is pending.
        self.exits.append((proc.returncode, self._shutdown_sent))
        with self._cond:
            for pending in list(self._pending.values()):
                pending._resolve({"error": {"code": -4, "message": "Plugin terminated before replying to RPC call."}})
            self._pending.clear()
            self._cond.notify_all()

    def restart(self, options: dict[str, Any] | None = None) -> Any:
        code = self.stop()
        assert code == 0, f"plugin exited with {code} at shutdown"
        return self.start(options)

    # -- reading the plugin's stdout ------------------------------------------

    def _read_stdout(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        constants: list[str] = []

        def constant(name: str) -> float:
            constants.append(name)
            return float(name)  # read on, as Python's json does; reported below

        decoder = json.JSONDecoder(parse_constant=constant)
        utf8 = codecs.getincrementaldecoder("utf-8")()
        text = ""
        fd = proc.stdout.fileno()
        while True:
            try:
                chunk = os.read(fd, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                break
            try:
                text += utf8.decode(chunk)
            except UnicodeDecodeError as exc:
                self.unexpected.append(("not UTF-8", repr(exc)))
                utf8.reset()
                continue
            while True:
                text = text.lstrip()
                if not text:
                    break
                constants.clear()
                try:
                    obj, end = decoder.raw_decode(text)
                except json.JSONDecodeError:
                    if len(text) > 1 and not text.startswith(("{", "[")):
                        self.unexpected.append(("not JSON", text[:200]))
                        text = text[text.find("{") :] if "{" in text else ""
                        continue
                    break
                except RecursionError:  # too deep for this thread's stack: skip to the object's end
                    if "\n\n" not in text:
                        break
                    self.unexpected.append(("too deep to read", text[:200]))
                    text = text[text.find("\n\n") :]
                    continue
                if constants or _has_lone_surrogate(obj):
                    why = f"the constant {constants[0]}" if constants else "a lone surrogate"
                    self.refused.append(f"{why} in {text[:end][:200]!r}")
                text = text[end:]
                self._route(obj)
        proc.stdout.close()
        if text.strip():
            self.unexpected.append(("trailing output", text[:200]))
        # The plugin is gone: nobody will answer what is still pending (lightningd: error -4).
        with self._cond:
            if proc is self.proc:
                for pending in list(self._pending.values()):
                    pending._resolve(
                        {"error": {"code": -4, "message": "Plugin terminated before replying to RPC call."}}
                    )
                self._pending.clear()
            self._cond.notify_all()

    def _read_stderr(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stderr is not None
        for chunk in iter(lambda: proc.stderr.read1(1 << 16), b""):  # type: ignore[union-attr]
            self.stderr += chunk
        proc.stderr.close()

    def _route(self, obj: Any) -> None:
        if not isinstance(obj, dict):
            self.unexpected.append(obj)
            return
        if "id" in obj and ("result" in obj or "error" in obj):
            with self._cond:
                pending = self._pending.pop(str(obj["id"]), None)
                if pending is None:
                    self.unexpected.append(("answer to nothing", obj))
                else:
                    if pending.method == "custommsg":  # lightningd fatal()s on anything but continue
                        self.custommsg_answers.append(obj.get("result", {"error": obj.get("error")}))
                    elif "result" in obj:
                        self._check_schema(pending.method, obj["result"])
                    pending._resolve(obj)
                self._cond.notify_all()
            return
        if "method" in obj and "id" not in obj:
            with self._cond:
                if obj["method"] == "log":
                    self.logs.append(obj.get("params", {}))
                else:
                    self.notifications.append(obj)
                    # pyln-client sends the payload both under the topic's name (what
                    # lightningd's notification schemas describe) and, for old readers, flat.
                    params = obj.get("params")
                    self._check_schema(obj["method"], params.get(obj["method"]) if isinstance(params, dict) else params)
                self._cond.notify_all()
            return
        # pyln makes its calls over the RPC socket: a request on stdout is a protocol error.
        self.unexpected.append(obj)

    def _check_schema(self, name: Any, response: Any) -> None:
        """Validate a method's result or a notification's payload, if ``name`` has a schema."""
        if not isinstance(name, str) or not name.startswith("custommsg") or schema_path(name) is None:
            return
        for problem in schema_problems(name, "response", response):
            self.schema_mismatches.append(f"{name} answered outside its schema: {problem}"[:300])

    # -- talking to the plugin --------------------------------------------------

    def _write(self, obj: dict[str, Any]) -> None:
        self.write_raw(json.dumps(obj))

    def write_raw(self, text: str) -> None:
        """Write ``text`` and the blank line that ends every message lightningd sends."""
        proc = self.proc
        if proc is None or proc.stdin is None or proc.poll() is not None:
            raise ProtocolError(f"plugin is not running (exit code {proc.returncode if proc else None})")
        data = (text + "\n\n").encode()
        with self._write_lock:
            try:
                proc.stdin.write(data)
                proc.stdin.flush()
            except (BrokenPipeError, ValueError) as exc:
                raise ProtocolError(f"plugin closed its stdin: {exc}") from exc

    def start_call(self, method: str, params: Any = None, prefix: str | None = "cli") -> PendingCall:
        """Send a request to the plugin now; wait for the answer later."""
        n = next(self._ids)
        request_id = f"cln:{method}#{n}" if prefix is None else f"{prefix}:{method}#{n}/cln:{method}#{n}"
        return self.send_request(method, params, request_id)

    def send_request(self, method: str, params: Any, request_id: str) -> PendingCall:
        """A request with an id of the caller's choosing (hooks use lightningd's own id forms)."""
        return self.start_call_raw(method, json.dumps({} if params is None else params), request_id)

    def start_call_raw(self, method: str, params_json: str, request_id: str | None = None) -> PendingCall:
        """Send a request whose params are given as JSON text (for what Python's json would not write)."""
        if request_id is None:
            n = next(self._ids)
            request_id = f"cli:{method}#{n}/cln:{method}#{n}"
        pending = PendingCall(method, request_id)
        with self._cond:
            self._pending[request_id] = pending
        head = json.dumps({"jsonrpc": "2.0", "id": request_id, "method": method})[:-1]
        self.write_raw(f'{head}, "params": {params_json}}}')
        return pending

    def call(
        self, method: str, params: Any = None, timeout: float = DEFAULT_TIMEOUT, prefix: str | None = "cli"
    ) -> Any:
        """Send a request and wait for its result; raises :class:`PluginCallError` on an error answer."""
        return self.start_call(method, params, prefix).result(timeout)

    def call_error(self, method: str, params: Any = None, timeout: float = DEFAULT_TIMEOUT) -> PluginCallError:
        """Send a request that must fail; returns the error."""
        return self.start_call(method, params).error(timeout)

    def notify(self, method: str, params: Any, force: bool = False) -> None:
        """A notification; like lightningd, only to a plugin that subscribed and finished init (unless forced)."""
        if not force and not (self._init_done and self.subscribed(method)):
            return
        self._write({"jsonrpc": "2.0", "method": method, "params": params})

    # hooks, as lightningd calls them

    def start_custommsg(self, peer_id: str, payload: str) -> PendingCall:
        n = next(self._ids)
        return self.send_request("custommsg", {"payload": payload, "peer_id": peer_id}, f"cln:custommsg#{n}")

    def custommsg_round(self, messages: list[tuple[str, str]]) -> list[PendingCall]:
        """Hook calls for several (peer, payload) written at once, as lightningd writes the calls for
        messages from several peers that came while the plugin was busy: the plugin reads them in one go."""
        calls, text = [], []
        with self._cond:
            for peer_id, payload in messages:
                request_id = f"cln:custommsg#{next(self._ids)}"
                calls.append(PendingCall("custommsg", request_id))
                self._pending[request_id] = calls[-1]
                text.append(json.dumps({"jsonrpc": "2.0", "id": request_id, "method": "custommsg",
                                        "params": {"payload": payload, "peer_id": peer_id}}))
        self.write_raw("\n\n".join(text))
        return calls

    def custommsg(self, peer_id: str, payload: str, timeout: float = DEFAULT_TIMEOUT) -> Any:
        """A message from ``peer_id`` arrives: the custommsg hook; returns (and records) its answer."""
        pending = self.start_custommsg(peer_id, payload)
        response = pending.wait_response(timeout)
        return response.get("result", {"error": response.get("error")})

    def rpc_command(self, params: Any, method: str = "sendcustommsg", caller_id: str = "cli:sendcustommsg#1",
                    timeout: float = DEFAULT_TIMEOUT, params_json: str | None = None) -> Any:
        """The rpc_command hook, as lightningd calls it for a caller's request.

        ``params_json`` gives the caller's params as raw JSON text (escapes, huge numbers);
        :class:`RawStr` values in ``params`` are forwarded as they were written.
        """
        request: dict[str, Any] = {"jsonrpc": "2.0", "id": caller_id, "method": method}
        text = dumps_raw(request)[:-1]
        if params_json is not None:
            text += f", \"params\": {params_json}"
        elif params is not None:
            text += f", \"params\": {dumps_raw(params)}"
        n = next(self._ids)
        pending = self.start_call_raw("rpc_command", f'{{"rpc_command": {text}}}}}', f"{caller_id}/cln:rpc_command#{n}")
        response = pending.wait_response(timeout)
        answer = response.get("result", {"error": response.get("error")})
        self.rpc_command_answers.append(answer)
        return answer

    # peers, as connectd reports them

    def connect_peer(self, peer_id: str, notify: bool = True) -> None:
        self.peers[peer_id] = {"connected": True}
        if notify:
            self.notify(
                "connect",
                {"connect": {"id": peer_id, "direction": "in",
                             "address": {"type": "ipv4", "address": "127.0.0.1", "port": 9735}}},
            )

    def disconnect_peer(self, peer_id: str, notify: bool = True, forget: bool = False) -> None:
        if forget:
            self.peers.pop(peer_id, None)
        else:
            self.peers[peer_id] = {"connected": False}
        if notify:
            self.notify("disconnect", {"disconnect": {"id": peer_id}})

    def hold_sends(self, count: int | None = None) -> threading.Event:
        """Hold the next ``count`` sendcustommsg calls (all, if None) in lightningd until the Event is set."""
        gate = threading.Event()
        with self._cond:
            self.send_gate = gate
            self.send_gate_left = count
        return gate

    # observing

    def notified(self, topic: str) -> list[dict[str, Any]]:
        """The objects custommsg's ``topic`` notifications carried so far (each named after the topic in its
        params), in order."""
        with self._cond:
            return [n["params"][topic] for n in self.notifications if n.get("method") == topic]

    def wait_notification(self, method: str, predicate: Callable[[dict[str, Any]], bool] = lambda n: True,
                          timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for n in self.notifications:
                    if n.get("method") == method and predicate(n):
                        return n
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {method} notification within {timeout}s")
                self._cond.wait(left)

    def log_lines(self, contains: str = "") -> list[str]:
        with self._cond:
            return [str(entry.get("message", "")) for entry in self.logs if contains in str(entry.get("message", ""))]

    def wait_log(self, contains: str, timeout: float = DEFAULT_TIMEOUT) -> str:
        return wait_for(lambda: (self.log_lines(contains) or [None])[0], timeout)

    def sent_to(self, peer_id: str) -> list[str]:
        return [msg for node, msg in self.sent if node == peer_id]

    # -- the JSON-RPC socket ------------------------------------------------------

    def handle_rpc(self, method: str, params: Any, request: dict[str, Any]) -> tuple[str, Any] | None:
        if method == "getinfo":
            return "result", {
                "id": self.own_id,
                "alias": "FAKELIGHTNINGD",
                "color": "02eec7",
                "num_peers": sum(1 for p in self.peers.values() if p.get("connected")),
                "num_pending_channels": 0,
                "num_active_channels": 0,
                "num_inactive_channels": 0,
                "address": [],
                "binding": [],
                "version": self.version,
                "blockheight": 101,
                "network": "regtest",
                "fees_collected_msat": 0,
                "lightning-dir": self.lightning_dir,
                "our_features": {"init": FEATURE_SET["init"], "node": FEATURE_SET["node"],
                                 "channel": "", "invoice": FEATURE_SET["invoice"]},
            }
        if method == "listpeers":
            wanted = params.get("id") if isinstance(params, dict) else (params[0] if params else None)
            self.listpeers_calls.append(wanted)
            return "result", {
                "peers": [
                    {"id": pid, "connected": bool(info.get("connected")), "num_channels": 0, "features": ""}
                    for pid, info in self.peers.items()
                    if wanted is None or pid == wanted
                ]
            }
        if method == "listconfigs":
            # lightningd lists an option it has a value for; the default wallet (a SQLite file) it does not.
            configs = {} if self.wallet is None else {"wallet": {"value_str": self.wallet, "source": "cmdline"}}
            return "result", {"configs": configs}
        if method == "sendcustommsg":
            return self._sendcustommsg(params, request)
        return "error", node_error(JSONRPC2_METHOD_NOT_FOUND, f"Unknown command '{method}'")

    def _sendcustommsg(self, params: Any, request: dict[str, Any]) -> tuple[str, Any] | None:
        with self._cond:
            gate = self.send_gate
            if gate is not None and self.send_gate_left is not None:
                if self.send_gate_left <= 0:
                    gate = None
                else:
                    self.send_gate_left -= 1
            if gate is not None:
                self.sends_waiting += 1
                self._cond.notify_all()
        if gate is not None:
            gate.wait(DEFAULT_TIMEOUT)
            with self._cond:
                self.sends_waiting -= 1
        if self.hangup_sendcustommsg > 0:
            self.hangup_sendcustommsg -= 1
            return None
        # lightningd runs the rpc_command hook chain before the command itself.
        if self.manifest and any(h["name"] == "rpc_command" for h in self.manifest["hooks"]) and self.running():
            hook = next(h for h in self.manifest["hooks"] if h["name"] == "rpc_command")
            if "filters" not in hook or "sendcustommsg" in hook["filters"]:
                answer = self.rpc_command(params, caller_id=str(request.get("id")))
                self.send_hooks.append((request, answer))
                if answer == {"result": "continue"}:
                    pass
                elif isinstance(answer, dict) and (answer.get("error") or {}).get("code") == -4:
                    pass  # the plugin died mid-call: lightningd goes on with the next hook, then the command
                elif isinstance(answer, dict) and isinstance(answer.get("return"), dict):
                    ret = answer["return"]
                    if "error" in ret:
                        return "error", ret["error"]
                    return "result", ret.get("result")
                else:
                    self.harness_errors.append(f"Bad response to 'rpc_command' hook: {answer!r}")
        # lightningd's own checks (connect_control.c json_sendcustommsg), in its order.
        if isinstance(params, list):
            params = dict(zip(("node_id", "msg"), params, strict=False))
        if not isinstance(params, dict):
            return "error", node_error(JSONRPC2_INVALID_PARAMS, "Expected array or object for params")
        node_id, msg = params.get("node_id"), params.get("msg")
        if node_id is None:
            return "error", node_error(JSONRPC2_INVALID_PARAMS, "missing required parameter: node_id")
        raw_id = node_id.raw[1:-1] if isinstance(node_id, RawStr) else node_id  # parsed from the raw token
        if not isinstance(raw_id, str) or not _NODE_ID.match(raw_id):
            return "error", node_error(
                JSONRPC2_INVALID_PARAMS, f"node_id: should be a node id: invalid token '{raw_id}'"
            )
        if msg is None:
            return "error", node_error(JSONRPC2_INVALID_PARAMS, "missing required parameter: msg")
        if isinstance(msg, RawStr):
            text: str | None = msg.raw[1:-1]  # lightningd hex-decodes the raw token
        else:
            text = str(msg) if isinstance(msg, int) and not isinstance(msg, bool) else None
        if text is None or not _HEX.match(text) or len(text) % 2 or not text or len(text) // 2 >= 65536:
            # param_bin_from_hex lets it through; connectd then gets an empty or truncated message.
            shown = msg.raw if isinstance(msg, RawStr) else repr(msg)
            self.fatal.append(f"sendcustommsg with msg {shown[:40]} ({len(shown)} chars) reached lightningd")
            blob = b""
        else:
            blob = bytes.fromhex(text)
        msg_type = int.from_bytes(blob[:2], "big") if len(blob) >= 2 else -1
        if msg_type in INTERNAL_TYPES:
            return "error", node_error(
                JSONRPC2_INVALID_REQUEST,
                f"Cannot send messages of type {msg_type} ({INTERNAL_TYPES[msg_type]}). It is not possible to send "
                "messages that have a type managed internally since that might cause issues with the internal "
                "state tracking.",
            )
        if blob.hex() in self.refuse:
            return "error", self.refuse[blob.hex()]
        peer = self.peers.get(node_id.lower())
        if peer is None or node_id.lower() == self.own_id:
            return "error", node_error(JSONRPC2_INVALID_REQUEST, f"No such peer: {node_id}")
        if not peer.get("connected"):
            return "error", node_error(JSONRPC2_INVALID_REQUEST, "Peer is not connected")
        with self._cond:
            self.sent.append((node_id.lower(), blob.hex()))
            self._cond.notify_all()
        return "result", {"status": "Message sent to connectd for delivery"}

    # -- teardown -------------------------------------------------------------------

    def problems(self) -> list[str]:
        """Everything that went wrong that the test did not ask for."""
        found: list[str] = []
        for code, asked in self.exits:
            if not asked:
                found.append(f"the plugin exited by itself with code {code}")
            elif code not in (0, -signal.SIGKILL):
                found.append(f"the plugin exited with code {code} after shutdown")
        for answer in self.custommsg_answers:
            if answer != {"result": "continue"}:
                found.append(f"the custommsg hook answered {answer!r}: lightningd would fatal()")
        found += [f"would crash the node: {f}" for f in self.fatal]
        found += self.schema_mismatches
        found += [f"fake lightningd: {e}" for e in self.harness_errors]
        found += [f"unexpected output from the plugin: {u!r}"[:300] for u in self.unexpected]
        found += [f"lightningd would refuse this JSON: {r}"[:300] for r in self.refused]
        declared = {n["method"] for n in (self.manifest or {}).get("notifications", [])}
        for note in self.notifications:
            if note.get("method") not in declared:
                # lightningd: "Plugin attempted to send a notification to topic ... it hasn't declared"
                found.append(f"notification to undeclared topic {note.get('method')!r}")
            if not isinstance(note.get("params"), dict):
                found.append(f"notification without params object: {note!r}"[:200])
        for entry in self.logs:
            # plugin_log_handle: anything else makes lightningd kill the plugin.
            if not isinstance(entry.get("message"), str):
                found.append(f"log notification without a string message: {entry!r}"[:200])
            if "level" in entry and entry["level"] not in LOG_LEVELS:
                found.append(f"log level {entry['level']!r} would make lightningd kill the plugin")
        if not self.allow_log_errors:
            for entry in self.logs:
                message = str(entry.get("message", ""))
                if any(allowed in message for allowed in self.allowed_logs):
                    continue
                if "Traceback" in message or entry.get("level") in ("broken", "error"):
                    found.append(f"plugin logged {entry.get('level')}: {message[:200]}")
        if self.stderr.strip():
            found.append(f"plugin wrote to stderr: {self.stderr[-500:]!r}")
        return found

    def close(self) -> list[str]:
        """Stop the plugin and the RPC server; return :meth:`problems`."""
        try:
            if self.proc is not None:
                self.stop()
            self.rpc.stop()
            return self.problems()
        finally:
            if self.own_dir:
                shutil.rmtree(self.lightning_dir, ignore_errors=True)
