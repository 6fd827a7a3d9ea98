"""What the protocol tier's tests share about acknowledged delivery's own messages.

The plugin's own messages (types 47431, 47433, 47435, 47437: hello, envelope, ack, envelope
with more in flight) go to peers along with what applications send: a test that looks at
what an application sent reads ``app_sent``/``app_sent_to``, which leave those out;
``acked_sent_to`` decodes them.
"""

from __future__ import annotations

from typing import Any

from .harness import FakeLightningd

HELLO, ENVELOPE, ACK, ENVELOPE_MORE = "b947", "b949", "b94b", "b94d"  # 47431, 47433, 47435, 47437
PROTOCOL = (HELLO, ENVELOPE, ACK, ENVELOPE_MORE)


def app_sent(ld: FakeLightningd) -> list[tuple[str, str]]:
    """ld.sent without acknowledged delivery's hellos, envelopes and acks."""
    return [(peer, msg) for peer, msg in ld.sent if msg[:4] not in PROTOCOL]


def app_sent_to(ld: FakeLightningd, peer: str) -> list[str]:
    return [msg for msg in ld.sent_to(peer) if msg[:4] not in PROTOCOL]


def acked_sent_to(ld: FakeLightningd, peer: str) -> list[dict[str, Any]]:
    """The hellos, envelopes and acks sent to ``peer``, decoded, in order."""
    decoded: list[dict[str, Any]] = []
    for msg in ld.sent_to(peer):
        kind, body = msg[:4], bytes.fromhex(msg[4:])
        if kind == HELLO:
            decoded.append({"hello": int.from_bytes(body[:2], "big"), "reply": bool(body[2] & 1)})
        elif kind in (ENVELOPE, ACK, ENVELOPE_MORE):
            value = {"stream": int.from_bytes(body[:8], "big"), "seq": int.from_bytes(body[8:16], "big")}
            if kind != ACK:
                value["inner"] = body[16:].hex()
            if kind == ENVELOPE_MORE:
                value["more"] = True
            decoded.append({"ack" if kind == ACK else "envelope": value})
    return decoded


def app_send_hooks(ld: FakeLightningd) -> list[tuple[dict[str, Any], Any]]:
    """ld.send_hooks without those of acknowledged delivery's messages."""

    def msg(request: dict[str, Any]) -> str:
        params = request.get("params")
        value = params.get("msg") if isinstance(params, dict) else params[1] if isinstance(params, list) else ""
        return str(value)

    return [(request, answer) for request, answer in ld.send_hooks if msg(request)[:4] not in PROTOCOL]
