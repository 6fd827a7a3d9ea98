"""Acknowledged delivery's in-memory rules, sans I/O: who speaks it, what is in flight, how often hellos
and acks go.

The wire format and the receiver's rule are ``core.envelope``'s; :mod:`acked.delivery` runs
these against the clock and the database. Each class here is given the time; none reads it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..core.envelope import HELLO_TIMEOUT, RETRANSMIT_AFTER

Support = Literal["yes", "no", "unknown"]

# Peers whose hellos PeerSupport remembers. Every peer that connects has an entry while connected;
# past the bound the disconnected ones go, the longest known first. (HelloPacer and InFlight hold
# entries for connected peers only: disconnected() forgets them.)
MAX_KNOWN_PEERS = 10_000


@dataclass
class _Link:
    since: float | None = None  # connected since; None: not connected
    asked: float | None = None  # when we said hello (reply=0) on this connection; None: not yet
    hello_now: bool = False  # a hello came on this connection
    batch: bool = False  # and it said the peer reads 47437
    version: int | None = None  # of the last hello ever received; None: never
    reported: bool = False  # due_unsupported() named it on this connection


class PeerSupport:
    """Which peers speak the protocol, from their hellos and from how long ago we asked.

    We say hello to a peer only when we have acknowledged messages for it (or in answer to its own
    hello): a peer that never asked hears nothing from us, and so has no reason to say hello either.
    status(): "yes" once a hello came on this connection, or, if it has not, when one came on an
    earlier one and we did not ask HELLO_TIMEOUT ago or more; "no" once we asked HELLO_TIMEOUT ago or
    more on this connection without a hello; "unknown" otherwise. The connect event and a peer's
    first message race: a hello from a peer not connected starts its connection, and connected()
    on a connected peer changes nothing.
    """

    def __init__(self, hello_timeout: float = HELLO_TIMEOUT, max_peers: int = MAX_KNOWN_PEERS):
        self.hello_timeout = hello_timeout
        self.max_peers = max_peers
        self.forgotten = 0  # disconnected peers forgotten past max_peers
        self._links: dict[str, _Link] = {}

    def connected(self, peer: str, now: float) -> None:
        link = self._links.get(peer)
        if link is None:
            if len(self._links) >= self.max_peers:
                self._forget_disconnected()
            link = self._links[peer] = _Link()
        if link.since is None:  # disconnected() cleared the rest
            link.since = now

    def _forget_disconnected(self) -> None:
        """Make room: the disconnected peers seen longest ago go first (what is lost is the version of their
        last hello, so each is "unknown" until it says hello again). Connected peers always stay."""
        for peer in [p for p, link in self._links.items() if link.since is None]:
            if len(self._links) < self.max_peers:
                return
            del self._links[peer]
            self.forgotten += 1

    def __len__(self) -> int:
        return len(self._links)

    def disconnected(self, peer: str) -> None:
        if (link := self._links.get(peer)) is not None:
            link.since, link.asked, link.hello_now, link.batch, link.reported = None, None, False, False, False

    def ask(self, peer: str, now: float) -> bool:
        """We have acknowledged messages for the peer: True if our hello must go now (the first time on
        this connection, if it is connected and has not said hello already)."""
        link = self._links.get(peer)
        if link is None or link.since is None or link.asked is not None or link.hello_now:
            return False  # not connected (its connection will ask), asked already, or no need
        link.asked = now
        return True

    def hello(self, peer: str, version: int, now: float, batch: bool = False) -> None:
        self.connected(peer, now)
        link = self._links[peer]
        link.hello_now, link.version, link.batch = True, version, batch

    def batches(self, peer: str) -> bool:
        """Its hello on this connection said it reads 47437 (envelopes with more in flight)."""
        return peer in self._links and self._links[peer].batch

    def status(self, peer: str, now: float) -> Support:
        link = self._links.get(peer, _Link())
        if link.hello_now:
            return "yes"
        if link.since is None:
            return "unknown"
        if link.asked is not None and now - link.asked >= self.hello_timeout:
            return "no"
        return "unknown" if link.version is None else "yes"

    def peers(self) -> list[str]:
        """Every peer seen connected or saying hello."""
        return list(self._links)

    def ready(self, peer: str) -> bool:
        """A hello came on this connection: the time to send its unacknowledged entries."""
        return peer in self._links and self._links[peer].hello_now

    def version(self, peer: str) -> int | None:
        return self._links[peer].version if peer in self._links else None

    def due_unsupported(self, now: float) -> list[str]:
        """The peers whose status has become "no", each named once per connection; sorted."""
        due = sorted(p for p, link in self._links.items() if not link.reported and self.status(p, now) == "no")
        for peer in due:
            self._links[peer].reported = True
        return due


class InFlight:
    """Per peer, the in-flight (sent, unacknowledged) seqs of our stream and when each was last sent. The
    caller drops acks for another stream. Lost on a restart or reset(): the database entries stay pending.
    """

    def __init__(self, retransmit_after: float = RETRANSMIT_AFTER):
        self.retransmit_after = retransmit_after
        self._in_flight: dict[str, dict[int, float]] = {}
        self._highest: dict[str, int] = {}

    def sent(self, peer: str, seq: int, now: float) -> None:
        self._in_flight.setdefault(peer, {})[seq] = now
        self._highest[peer] = max(seq, self.highest_sent(peer))

    def acked(self, peer: str, seq: int) -> list[int]:
        """The in-flight seqs ack(seq) delivers, in order; none for an ack beyond the highest seq sent."""
        if seq > self.highest_sent(peer):
            return []
        flight = self._in_flight.get(peer, {})
        done = sorted(s for s in flight if s <= seq)
        for s in done:
            del flight[s]
        return done

    def due(self, peer: str, now: float) -> bool:
        """A seq sent RETRANSMIT_AFTER ago or more is still unacknowledged: send them all again."""
        return any(now - at >= self.retransmit_after for at in self._in_flight.get(peer, {}).values())

    def busy(self, peer: str) -> bool:
        """Seqs to the peer are in flight (sent, unacknowledged)."""
        return bool(self._in_flight.get(peer))

    def peers(self) -> list[str]:
        """The peers with seqs in flight."""
        return [peer for peer, flight in self._in_flight.items() if flight]

    def highest_sent(self, peer: str) -> int:
        """The highest seq sent to ``peer`` since the last reset; 0: none."""
        return self._highest.get(peer, 0)

    def reset(self, peer: str) -> None:
        """The peer disconnected: forget what is in flight to it."""
        self._in_flight.pop(peer, None)
        self._highest.pop(peer, None)


HELLO_REPLY_EVERY = 1.0  # seconds: at most one hello of ours in answer to a peer's, per peer


class HelloPacer:
    """How often a peer's hellos may make us act, whatever it sends: our reply to a hello with
    reply=0 at most once per ``reply_every``, and a resend of its unacknowledged entries at most
    once per ``resend_every``. A reply asked for sooner is owed, not dropped (the peer's plugin
    may really have restarted twice, and waits for it): :meth:`due_replies` gives it once its
    time comes. A resend asked for sooner is not needed: what it would send is in flight, and
    the Retransmitter sends it again when it is due. A hello costs its sender 5 bytes; without
    this, each could make us send every unacknowledged entry (up to 65 kB each) again.
    """

    def __init__(self, reply_every: float = HELLO_REPLY_EVERY, resend_every: float = RETRANSMIT_AFTER):
        self.reply_every = reply_every
        self.resend_every = resend_every
        self._replied: dict[str, float] = {}
        self._owed: set[str] = set()
        self._resent: dict[str, float] = {}

    def reply(self, peer: str, now: float) -> bool:
        """The peer asks for our hello: True to send it now, False if it is owed."""
        last = self._replied.get(peer)
        if last is None or now - last >= self.reply_every:
            self._replied[peer] = now
            self._owed.discard(peer)
            return True
        self._owed.add(peer)
        return False

    def resend(self, peer: str, now: float) -> bool:
        """The peer's hello asks for its unacknowledged entries again: True to send them now."""
        last = self._resent.get(peer)
        if last is None or now - last >= self.resend_every:
            self._resent[peer] = now
            return True
        return False

    def due_replies(self, now: float) -> list[str]:
        """The peers whose owed reply may go now (each taken off the owed list); sorted."""
        due = sorted(p for p in self._owed if now - self._replied[p] >= self.reply_every)
        for peer in due:
            self._owed.discard(peer)
            self._replied[peer] = now
        return due

    def forget(self, peer: str) -> None:
        """The peer disconnected: its next connection starts afresh."""
        self._replied.pop(peer, None)
        self._owed.discard(peer)
        self._resent.pop(peer, None)


ACK_DELAY = 0.010  # seconds: how long an ack of envelopes sent with more in flight (47437) may wait
ACK_EVERY = 32  # envelopes: and how many it may cover, however fast they come


@dataclass
class _Owed:
    since: float  # the first envelope the ack owes arrived
    last: int = 0  # the seq it acknowledges
    count: int = 0  # envelopes it covers


class AckPacer:
    """When the receiver acknowledges. Acks are cumulative (ack(stream, N) covers every seq <= N), so
    one may stand for many: a delayed ack, as TCP's (RFC 1122, 4.2.3.2), which the sender asks for.

    An envelope sent on its own (47433: nothing else of its stream in flight, so its sender waits
    for this ack) is acknowledged at once, with whatever was owed. One sent with more in flight
    (47437) leaves the ack owed until ``delay`` after the first envelope it owes, or until it owes
    ``every``, whichever comes first; :meth:`due` gives it then. Acks never outnumber envelopes, and
    nothing stays here longer than ``delay``.
    """

    def __init__(self, delay: float = ACK_DELAY, every: int = ACK_EVERY):
        self.delay = delay
        self.every = every
        self._owed: dict[tuple[str, int], _Owed] = {}

    def stored(self, peer: str, stream: int, last: int, more: bool, now: float) -> float | None:
        """An envelope was decided on, and ``last`` is the stream's highest seq stored. None:
        ack(stream, last) goes now; else it is owed, and this is when :meth:`due` gives it."""
        key = (peer, stream)
        if not more:
            self._owed.pop(key, None)
            return None
        owed = self._owed.setdefault(key, _Owed(now))
        owed.last, owed.count = last, owed.count + 1
        if owed.count >= self.every:
            del self._owed[key]
            return None
        return owed.since + self.delay

    def due(self, now: float) -> list[tuple[str, int, int]]:
        """The owed acks whose time has come, as (peer, stream, last), each given once."""
        due = [(key, owed) for key, owed in self._owed.items() if now >= owed.since + self.delay]
        for key, _ in due:
            del self._owed[key]
        return [(peer, stream, owed.last) for (peer, stream), owed in due]

    def next_due(self) -> float | None:
        """When the earliest owed ack is due; None: none is owed."""
        return min((owed.since + self.delay for owed in self._owed.values()), default=None)

    def owed(self) -> int:
        """How many streams are owed an ack."""
        return len(self._owed)

    def forget(self, peer: str) -> None:
        """The peer disconnected: what it was owed is moot (its sender sends those again, and the
        copies are acknowledged)."""
        for key in [key for key in self._owed if key[0] == peer]:
            del self._owed[key]
