"""What lightningd pushes to the plugin: its two hooks and three notifications.

Each handler is a few lines into the service. Both hooks answer on every path:
lightningd exits on any ``custommsg`` answer but ``{"result": "continue"}``
(lightningd/connect_control.c: custommsg_cb), and the guard fails closed.
"""

from __future__ import annotations

import traceback
from typing import Any

from . import errors
from .ack import ACK_TYPES
from .errors import CustomMsgError
from .guard import check_native_call
from .service import CustomMsgService

CONTINUE = {"result": "continue"}


class Events:
    def __init__(self, service: CustomMsgService):
        self.service = service
        self.log = service.plugin.log

    def wants_type(self, msg_type: int) -> bool:
        """Whether the custommsg hook needs to look past a message's type at all."""
        receiver = self.service.receiver
        return receiver is not None and (msg_type in receiver.types or msg_type in ACK_TYPES)

    def on_custommsg(self, plugin: Any = None, peer_id: str = "", payload: str = "", **kwargs: Any) -> dict[str, str]:
        try:
            receiver = self.service.receiver
            if receiver is not None:
                receiver.receive(peer_id, payload)
        except Exception:
            self.log(f"custommsg hook: {traceback.format_exc()}", level="warn")
        return CONTINUE

    def on_rpc_command(self, plugin: Any = None, rpc_command: Any = None, **kwargs: Any) -> dict[str, Any]:
        """The guard on native sendcustommsg (the hook is filtered to it)."""
        service = self.service
        # On until init has read custommsg-guard: a call that would crash the node is refused even then.
        if (service.ready and not service.config.guard) or not isinstance(rpc_command, dict):
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
        if isinstance(connect, dict) and isinstance(connect.get("id"), str):
            self.service.peer_connected(connect["id"])

    def on_disconnect(self, plugin: Any = None, disconnect: Any = None, **kwargs: Any) -> None:
        if isinstance(disconnect, dict) and isinstance(disconnect.get("id"), str):
            self.service.peer_disconnected(disconnect["id"])

    def on_shutdown(self, plugin: Any = None, **kwargs: Any) -> None:
        self.service.shutdown()
