"""The operator's side of input: the plugin's options, read and checked once, at ``init``.

lightningd hands every option over in ``init`` (``custommsg-type`` as a list, since it
is repeatable); a value that breaks a rule here makes ``init`` return ``disable``, so
lightningd starts without the plugin and logs why. The caller's side (RPC parameters)
is ``validate``'s. Nothing here does I/O.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .dsn import SCHEMA, is_postgres, node_schema
from .errors import INVALID_PARAMETER, ValidationError
from .policy import OFF, Budget, TypeSelection
from .wire import INTERNAL_TYPES, MAX_MESSAGE_LEN, MAX_TYPE

# Acknowledged delivery's timeouts (envelope.HELLO_TIMEOUT, envelope.RETRANSMIT_AFTER, and the
# receiver's acked.rules.ACK_DELAY), changed by the tests only: seconds, from the plugin's
# environment (README, "Development").
HELLO_TIMEOUT_ENV = "CUSTOMMSG_DEV_HELLO_TIMEOUT"
RETRANSMIT_AFTER_ENV = "CUSTOMMSG_DEV_RETRANSMIT_AFTER"
ACK_DELAY_ENV = "CUSTOMMSG_DEV_ACK_DELAY"


@dataclass(frozen=True)
class Config:
    guard: bool
    types: TypeSelection
    db_path: str  # a SQLite file, or a PostgreSQL URL (core.dsn)
    inbox_max: int
    peer_rate: float
    peer_burst: int
    outbox_max: int
    peer_bytes: Budget = OFF  # custommsg-peer-kbps, -peer-burst-bytes
    global_bytes: Budget = OFF  # custommsg-global-kbps, -global-burst-bytes
    send_bytes: Budget = OFF  # custommsg-peer-send-kbps, -peer-send-burst-bytes
    acked_delivery: bool = True  # custommsg-acked-delivery: false, no hellos sent or answered
    stored_notification: bool = True  # custommsg-stored-notification
    hello_timeout: float | None = None  # None: acknowledged delivery's own (envelope.HELLO_TIMEOUT)
    retransmit_after: float | None = None
    ack_delay: float | None = None
    protocol_paths: tuple[str, ...] = ()  # custommsg-protocol: CSV specs, relative to the network directory
    db_schema: str = SCHEMA  # on PostgreSQL: the schema the tables live in
    import_from: str | None = None  # on PostgreSQL: the SQLite file an earlier run kept, imported once


def parse_options(
    options: dict[str, Any], lightning_dir: str, environ: Mapping[str, str] | None = None,
    wallet: str | None = None, node_id: str = "",
) -> Config:
    """lightningd's ``init`` options (and the tests' overrides in ``environ``) -> :class:`Config`,
    or the error that disables the plugin.

    Where the store lives: ``custommsg-db`` if set (a file, relative to the network
    directory, or a PostgreSQL URL: then in a schema of this node's own, ``node_schema``,
    since several nodes may share that database); else lightningd's own ``wallet`` when it
    is a PostgreSQL URL (schema ``custommsg``: the wallet's database is this node's alone);
    else the SQLite file ``custommsg/custommsg.sqlite3``. On PostgreSQL, that file (from a
    run before the node moved) is imported once.
    """
    try:
        rate = float(options["custommsg-peer-rate"])
    except (KeyError, TypeError, ValueError):
        rate = -1
    if not 0 < rate < math.inf:  # nan and inf too: a bucket refilled at inf * 0 seconds holds nan
        raise ValidationError(INVALID_PARAMETER, "custommsg-peer-rate must be a number of messages per second above 0")
    # Relative to the network directory, lightningd's working directory, as CLN's own paths.
    default_file = os.path.join(lightning_dir, "custommsg", "custommsg.sqlite3")
    given = str(options.get("custommsg-db") or "")
    schema = SCHEMA
    if is_postgres(given):
        location, schema = given, node_schema(node_id)
    elif given:
        location = os.path.join(lightning_dir, given)
    elif wallet and is_postgres(wallet):
        location = wallet
    else:
        location = default_file
    on_postgres = is_postgres(location)
    return Config(
        guard=bool(options.get("custommsg-guard", True)),
        types=parse_types(options.get("custommsg-type") or []),
        db_path=location,
        db_schema=schema,
        import_from=default_file if on_postgres else None,
        inbox_max=_positive_option(options, "custommsg-inbox-max"),
        peer_rate=rate,
        peer_burst=_positive_option(options, "custommsg-peer-burst"),
        outbox_max=_positive_option(options, "custommsg-outbox-max"),
        peer_bytes=byte_budget(options, "custommsg-peer-kbps", "custommsg-peer-burst-bytes"),
        global_bytes=byte_budget(options, "custommsg-global-kbps", "custommsg-global-burst-bytes"),
        send_bytes=byte_budget(options, "custommsg-peer-send-kbps", "custommsg-peer-send-burst-bytes"),
        acked_delivery=bool(options.get("custommsg-acked-delivery", True)),
        stored_notification=bool(options.get("custommsg-stored-notification", True)),
        hello_timeout=_seconds_env(environ or {}, HELLO_TIMEOUT_ENV),
        retransmit_after=_seconds_env(environ or {}, RETRANSMIT_AFTER_ENV),
        ack_delay=_seconds_env(environ or {}, ACK_DELAY_ENV),
        protocol_paths=tuple(os.path.join(lightning_dir, str(p)) for p in options.get("custommsg-protocol") or []),
    )


def _seconds_env(environ: Mapping[str, str], name: str) -> float | None:
    if name not in environ:
        return None
    try:
        seconds = float(environ[name])
    except ValueError:
        seconds = -1
    if not 0 < seconds < math.inf:
        raise ValidationError(INVALID_PARAMETER, f"{name} must be a number of seconds above 0")
    return seconds


# Defaults no honest peer meets: a peer may keep sending 256,000 bytes a second (four largest messages)
# after a burst of 2 MiB (32 of them), all peers together eight times that. What we send one peer is held
# to the same per-peer default, so a custommsg node at its defaults never sends one at its defaults more
# than it keeps. (LND's onion-message defaults are 512 kbps and 262144 bytes per peer.)
DEFAULT_PEER_KBPS, DEFAULT_PEER_BURST_BYTES = 2048, 2 * 1024 * 1024
DEFAULT_GLOBAL_KBPS, DEFAULT_GLOBAL_BURST_BYTES = 8 * DEFAULT_PEER_KBPS, 8 * DEFAULT_PEER_BURST_BYTES
# The smallest burst that is on: the largest message must fit in a full bucket, or it would never pass
# (lnd refuses a burst below it at start too).
MIN_BURST_BYTES = MAX_MESSAGE_LEN


def byte_budget(options: dict[str, Any], kbps_name: str, burst_name: str) -> Budget:
    """A rate in kilobits a second and a burst in bytes, as LND takes them: both 0 turn the budget off;
    a burst below 65535 bytes (the largest message) is refused; so is one of the two 0 alone."""
    kbps = _whole_option(options, kbps_name)
    burst = _whole_option(options, burst_name)
    if kbps == 0 and burst == 0:
        return OFF
    if burst < MIN_BURST_BYTES:
        raise ValidationError(
            INVALID_PARAMETER,
            f"{burst_name} must be at least {MIN_BURST_BYTES} (the largest message), or 0 with {kbps_name} 0 "
            "to turn the budget off",
            {"option": burst_name, "value": burst, "min": MIN_BURST_BYTES},
        )
    if kbps == 0:
        raise ValidationError(
            INVALID_PARAMETER, f"{kbps_name} must be above 0, or 0 with {burst_name} 0 to turn the budget off",
            {"option": kbps_name, "value": kbps},
        )
    return Budget.kbps(kbps, burst)


def _whole_option(options: dict[str, Any], name: str) -> int:
    value = options.get(name)
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValidationError(INVALID_PARAMETER, f"{name} must be a whole number, 0 or above",
                              {"option": name, "value": value})
    return value


def _positive_option(options: dict[str, Any], name: str) -> int:
    value = options.get(name)
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValidationError(INVALID_PARAMETER, f"{name} must be a whole number above 0")
    return value


def parse_types(specs: Iterable[str | int]) -> TypeSelection:
    """The values of the repeatable option ``custommsg-type``; none means BOLT #1's custom range."""
    ranges = [parse_type_spec(spec) for spec in specs]
    return TypeSelection(ranges) if ranges else TypeSelection.default()


def parse_type_spec(spec: str | int) -> tuple[int, int]:
    """``"40000"`` -> (40000, 40000); ``"40000-40999"`` -> (40000, 40999)."""
    text = str(spec).strip()
    low_text, sep, high_text = text.partition("-")
    try:
        low = int(low_text, 10)
        high = int(high_text, 10) if sep else low
    except ValueError:
        raise _bad_type_spec(text, "not a number or a range like 40000-40999") from None
    if not (0 <= low <= MAX_TYPE and 0 <= high <= MAX_TYPE):
        raise _bad_type_spec(text, f"types are 0 to {MAX_TYPE}")
    if low > high:
        raise _bad_type_spec(text, "the range is empty (its start is above its end)")
    if low == high and low in INTERNAL_TYPES:
        raise _bad_type_spec(text, f"type {low} ({INTERNAL_TYPES[low]}) never reaches plugins")
    return low, high


def _bad_type_spec(text: str, why: str) -> ValidationError:
    data = {"option": "custommsg-type", "value": text}
    return ValidationError(INVALID_PARAMETER, f"custommsg-type {text!r}: {why}", data)
