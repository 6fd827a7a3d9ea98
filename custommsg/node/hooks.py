"""What lightningd pushes to the plugin: its two hooks and three notifications, and where each message goes.

The ``custommsg`` hook sends each message where its type says: acknowledged delivery's
hellos, envelopes and acks to ``acked`` (whatever custommsg-type says); a bLIP-50 frame
(37913) to ``lsps``; any other kept type to the inbox (``inbox.Receiver``); the rest
nowhere. Both hooks answer on every path: lightningd exits on any ``custommsg`` answer
but ``{"result": "continue"}`` (lightningd/connect_control.c: custommsg_cb), and the
guard fails closed. Before init there is no runtime: a message is let through unread,
and the guard still refuses a call that would crash the node.
"""

from __future__ import annotations

import traceback
from typing import TYPE_CHECKING, Any

from ..core import errors
from ..core.blip50 import LSPS0_MESSAGE_TYPE
from ..core.envelope import ACK_TYPES
from ..core.errors import CustomMsgError
from ..core.guard import check_native_call
from ..core.wire import MIN_MESSAGE_LEN, is_node_id_text, message_type

if TYPE_CHECKING:
    from .plugin import Node

CONTINUE = {"result": "continue"}


class Hooks:
    def __init__(self, node: Node):
        self.node = node
        self.log = node.plugin.log

    def wants_type(self, msg_type: int) -> bool:
        """Whether the custommsg hook needs to look past a message's type at all."""
        runtime = self.node.runtime
        return runtime is not None and (
            msg_type in runtime.config.types or msg_type in ACK_TYPES or msg_type in runtime.protocols.by_type
        )

    def on_custommsg(self, plugin: Any = None, peer_id: str = "", payload: str = "", **kwargs: Any) -> dict[str, str]:
        try:
            self._receive(peer_id, payload)
        except Exception:
            self.log(f"custommsg hook: {traceback.format_exc()}", level="warn")
        return CONTINUE

    def _receive(self, peer_id: str, payload_hex: str) -> None:
        runtime = self.node.runtime
        if runtime is None:
            return
        if not is_node_id_text(peer_id):
            # lightningd always names the peer (lightningd/connect_control.c: custommsg_payload_serialize);
            # a message from nobody cannot be answered, counted or stored.
            self.log(f"ignoring a custommsg hook call without a valid peer_id: {str(peer_id)[:70]!r}", level="debug")
            return
        try:
            raw = bytes.fromhex(payload_hex)
        except (TypeError, ValueError):
            raw = b""
        if len(raw) < MIN_MESSAGE_LEN:
            runtime.receiver.malformed += 1
            self.log(f"ignoring a malformed message from {peer_id}: {payload_hex[:20]!r}", level="debug")
            return
        msg_type = message_type(raw)
        if msg_type in ACK_TYPES:
            runtime.acked.receive(peer_id, raw)
        elif msg_type not in runtime.config.types and msg_type not in runtime.protocols.by_type:
            return
        elif msg_type == LSPS0_MESSAGE_TYPE:
            runtime.lsps.receive(peer_id, raw)
        else:
            runtime.receiver.receive(peer_id, raw, msg_type)

    def on_rpc_command(self, plugin: Any = None, rpc_command: Any = None, **kwargs: Any) -> dict[str, Any]:
        """The guard on native sendcustommsg (the hook is filtered to it)."""
        runtime = self.node.runtime
        # On until init has read custommsg-guard: a call that would crash the node is refused even then.
        if (runtime is not None and not runtime.config.guard) or not isinstance(rpc_command, dict):
            return CONTINUE
        try:
            refusal = check_native_call(rpc_command.get("params"))
        except Exception:
            # Fail closed: a bug here must not let a node-killing call through.
            self.log(f"sendcustommsg guard: {traceback.format_exc()}", level="broken")
            refusal = CustomMsgError(
                errors.JSONRPC_INVALID_REQUEST, "custommsg guard failed to check this call; refusing it"
            )
        if refusal is None:
            return CONTINUE
        return {"return": {"error": refusal.to_json()}}

    def custommsg_fast(self, params: dict[str, Any]) -> dict[str, str]:
        return self.on_custommsg(**params)

    def rpc_command_fast(self, params: dict[str, Any]) -> dict[str, Any]:
        return self.on_rpc_command(**params)

    def on_connect(self, plugin: Any = None, connect: Any = None, **kwargs: Any) -> None:
        # {"connect": {"id": ...}} since CLN v25.05 (CHANGELOG "Removed": the top-level fields).
        runtime = self.node.runtime
        if runtime is not None and isinstance(connect, dict) and isinstance(connect.get("id"), str):
            runtime.peer_connected(connect["id"])

    def on_disconnect(self, plugin: Any = None, disconnect: Any = None, **kwargs: Any) -> None:
        runtime = self.node.runtime
        if runtime is not None and isinstance(disconnect, dict) and isinstance(disconnect.get("id"), str):
            runtime.peer_disconnected(disconnect["id"])

    def on_shutdown(self, plugin: Any = None, **kwargs: Any) -> None:
        self.node.shutdown()
