"""What several unit-test files share: node ids (the generator point G, 2G and 3G), a clock, and
what a send function was handed."""

from __future__ import annotations

from custommsg.core.envelope import Envelope
from custommsg.core.records import OutboxEntry
from custommsg.outbox.machine import envelope_of

A = "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"
B = "02c6047f9441ed7d6d3045406e95c07cd85c778e4b8cef3ca7abac09b95c709ee5"
C = "02f9308a019258c31049344f85f89d5229b531c845836f99b08601f113bce036f9"


class Clock:
    """A clock the test moves by hand: injected wherever the core reads the time."""

    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def handed_over(item: OutboxEntry | Envelope | bytes) -> bytes:
    """What a send function was given, as the bytes lightningd would get: an outbox entry as its
    message (an acknowledged one as its envelope), an envelope serialized."""
    if isinstance(item, OutboxEntry):
        return envelope_of(item).serialize() if item.ack else item.payload
    if isinstance(item, Envelope):
        return item.serialize()
    return item
