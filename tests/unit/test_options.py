"""options.py: lightningd's ``init`` options -> Config, or the refusal that disables the plugin."""

from __future__ import annotations

from typing import Any

import pytest

from custommsg.core import errors
from custommsg.core.errors import ValidationError
from custommsg.core.options import Config, parse_options
from custommsg.core.policy import OFF, Budget, TypeSelection

# What lightningd hands over in init when the operator set nothing (the defaults node.plugin.OPTIONS
# registers; lightningd sends an int option as a JSON number, a string one as a string).
DEFAULTS: dict[str, Any] = {
    "custommsg-guard": True,
    "custommsg-type": [],
    "custommsg-db": "",
    "custommsg-inbox-max": 100000,
    "custommsg-peer-rate": "100",
    "custommsg-peer-burst": 1000,
    "custommsg-outbox-max": 1000,
    "custommsg-peer-kbps": 2048,
    "custommsg-peer-burst-bytes": 2097152,
    "custommsg-global-kbps": 16384,
    "custommsg-global-burst-bytes": 16777216,
    "custommsg-peer-send-kbps": 2048,
    "custommsg-peer-send-burst-bytes": 2097152,
    "custommsg-acked-delivery": True,
    "custommsg-stored-notification": True,
}


def options(**changes: Any) -> dict[str, Any]:
    return {**DEFAULTS, **{name.replace("_", "-"): value for name, value in changes.items()}}


def test_defaults() -> None:
    assert parse_options(DEFAULTS, "/ln/regtest") == Config(
        guard=True,
        types=TypeSelection.default(),
        db_path="/ln/regtest/custommsg/custommsg.sqlite3",
        inbox_max=100000,
        peer_rate=100.0,
        peer_burst=1000,
        outbox_max=1000,
        peer_bytes=Budget(256000.0, 2097152.0),
        global_bytes=Budget(2048000.0, 16777216.0),
        send_bytes=Budget(256000.0, 2097152.0),
    )


# (options changed, the Config field, its value)
ACCEPTED: list[tuple[dict[str, Any], str, Any]] = [
    ({"custommsg_guard": False}, "guard", False),
    ({"custommsg_type": ["40000", "7-9"]}, "types", TypeSelection([(40000, 40000), (7, 9)])),
    ({"custommsg_db": "inbox.db"}, "db_path", "/ln/regtest/inbox.db"),  # relative to the network dir
    ({"custommsg_db": "/var/lib/custommsg.db"}, "db_path", "/var/lib/custommsg.db"),
    ({"custommsg_inbox_max": 1}, "inbox_max", 1),
    ({"custommsg_inbox_max": "25"}, "inbox_max", 25),  # from a config file through an older lightningd
    ({"custommsg_peer_rate": "0.5"}, "peer_rate", 0.5),
    ({"custommsg_peer_rate": "1e3"}, "peer_rate", 1000.0),
    ({"custommsg_peer_burst": 1}, "peer_burst", 1),
    ({"custommsg_outbox_max": 5}, "outbox_max", 5),
    ({"custommsg_acked_delivery": False}, "acked_delivery", False),
    # LND's units: 1 kbps is 125 bytes a second; both 0 turn a budget off; 65535 is the smallest burst.
    ({"custommsg_peer_kbps": 512, "custommsg_peer_burst_bytes": 262144}, "peer_bytes", Budget(64000.0, 262144.0)),
    ({"custommsg_peer_kbps": 1, "custommsg_peer_burst_bytes": 65535}, "peer_bytes", Budget(125.0, 65535.0)),
    ({"custommsg_peer_kbps": "8", "custommsg_peer_burst_bytes": "70000"}, "peer_bytes", Budget(1000.0, 70000.0)),
    ({"custommsg_peer_kbps": 0, "custommsg_peer_burst_bytes": 0}, "peer_bytes", OFF),
    ({"custommsg_global_kbps": 5120, "custommsg_global_burst_bytes": 1638400}, "global_bytes",
     Budget(640000.0, 1638400.0)),
    ({"custommsg_global_kbps": 0, "custommsg_global_burst_bytes": 0}, "global_bytes", OFF),
    ({"custommsg_peer_send_kbps": 16, "custommsg_peer_send_burst_bytes": 65536}, "send_bytes",
     Budget(2000.0, 65536.0)),
    ({"custommsg_peer_send_kbps": 0, "custommsg_peer_send_burst_bytes": 0}, "send_bytes", OFF),
]


@pytest.mark.parametrize("changed, field, value", ACCEPTED, ids=[f"{c[1]}={c[2]!r}" for c in ACCEPTED])
def test_accepted(changed: dict[str, Any], field: str, value: Any) -> None:
    assert getattr(parse_options(options(**changed), "/ln/regtest"), field) == value


# (options changed, the words the refusal must say)
REFUSED: list[tuple[dict[str, Any], str]] = [
    ({"custommsg_peer_rate": "0"}, "custommsg-peer-rate must be a number"),
    ({"custommsg_peer_rate": "-1"}, "custommsg-peer-rate must be a number"),
    ({"custommsg_peer_rate": "fast"}, "custommsg-peer-rate must be a number"),
    ({"custommsg_peer_rate": "nan"}, "custommsg-peer-rate must be a number"),
    ({"custommsg_peer_rate": "inf"}, "custommsg-peer-rate must be a number"),
    ({"custommsg_peer_rate": None}, "custommsg-peer-rate must be a number"),
    ({"custommsg_inbox_max": 0}, "custommsg-inbox-max must be a whole number above 0"),
    ({"custommsg_inbox_max": -5}, "custommsg-inbox-max must be a whole number above 0"),
    ({"custommsg_inbox_max": "1.5"}, "custommsg-inbox-max must be a whole number above 0"),
    ({"custommsg_inbox_max": True}, "custommsg-inbox-max must be a whole number above 0"),
    ({"custommsg_peer_burst": 0}, "custommsg-peer-burst must be a whole number above 0"),
    ({"custommsg_outbox_max": "many"}, "custommsg-outbox-max must be a whole number above 0"),
    ({"custommsg_type": ["70000"]}, "custommsg-type '70000': types are 0 to 65535"),
    ({"custommsg_peer_burst_bytes": 65534}, "custommsg-peer-burst-bytes must be at least 65535 (the largest message)"),
    ({"custommsg_peer_burst_bytes": 0}, "custommsg-peer-burst-bytes must be at least 65535"),
    ({"custommsg_peer_kbps": 0}, "custommsg-peer-kbps must be above 0, or 0 with custommsg-peer-burst-bytes 0"),
    ({"custommsg_peer_kbps": -1}, "custommsg-peer-kbps must be a whole number, 0 or above"),
    ({"custommsg_peer_kbps": "1.5"}, "custommsg-peer-kbps must be a whole number, 0 or above"),
    ({"custommsg_global_burst_bytes": 1000}, "custommsg-global-burst-bytes must be at least 65535"),
    ({"custommsg_global_kbps": 0}, "custommsg-global-kbps must be above 0"),
    ({"custommsg_peer_send_burst_bytes": 65534}, "custommsg-peer-send-burst-bytes must be at least 65535"),
    ({"custommsg_peer_send_kbps": True}, "custommsg-peer-send-kbps must be a whole number"),
    ({"custommsg_type": ["40000", "9-7"]}, "custommsg-type '9-7': the range is empty"),
    ({"custommsg_type": ["18"]}, "custommsg-type '18': type 18 (ping) never reaches plugins"),
]


@pytest.mark.parametrize("changed, says", REFUSED, ids=[f"{next(iter(c[0]))}={c[0][next(iter(c[0]))]!r}"
                                                         for c in REFUSED])
def test_refused(changed: dict[str, Any], says: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_options(options(**changed), "/ln/regtest")
    assert caught.value.code == errors.INVALID_PARAMETER
    assert caught.value.message.startswith(says), caught.value.message


def test_dev_timeouts_from_the_environment() -> None:
    assert parse_options(DEFAULTS, "/ln/regtest").hello_timeout is None
    environ = {"CUSTOMMSG_DEV_HELLO_TIMEOUT": "2", "CUSTOMMSG_DEV_RETRANSMIT_AFTER": "0.5",
               "CUSTOMMSG_DEV_ACK_DELAY": "1"}
    config = parse_options(DEFAULTS, "/ln/regtest", environ)
    assert (config.hello_timeout, config.retransmit_after, config.ack_delay) == (2.0, 0.5, 1.0)


@pytest.mark.parametrize("value", ["0", "-1", "soon", "nan", "inf", ""])
def test_dev_timeouts_refused(value: str) -> None:
    for name in ("CUSTOMMSG_DEV_HELLO_TIMEOUT", "CUSTOMMSG_DEV_RETRANSMIT_AFTER", "CUSTOMMSG_DEV_ACK_DELAY"):
        with pytest.raises(ValidationError, match=f"{name} must be a number of seconds above 0"):
            parse_options(DEFAULTS, "/ln/regtest", {name: value})
