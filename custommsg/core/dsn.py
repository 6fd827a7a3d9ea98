"""Where the store lives, as the operator wrote it: a SQLite file or a PostgreSQL URL.

A PostgreSQL URL is what lightningd's ``wallet`` option takes
(``postgres://user:password@host:port/dbname``, lightningd/options.c and
wallet/db_postgres.c: libpq reads it as is). Its password must never reach a log line,
an error or an answer: :func:`redacted` is the one form of a URL the plugin shows.
Nothing here does I/O.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlsplit

POSTGRES_SCHEMES = ("postgres", "postgresql")
# The schema the plugin's tables live in, in the database it shares with lightningd's wallet.
SCHEMA = "custommsg"
# A schema of one node when several may share one database (custommsg-db names it): PostgreSQL
# identifiers are at most 63 bytes, so the node id's first 40 hex digits (160 bits) stand for it.
NODE_SCHEMA_PREFIX = "custommsg_"
NODE_ID_DIGITS = 40
_QUERY_PASSWORD = re.compile(r"([?&]password=)[^&#]*", re.IGNORECASE)


def is_postgres(location: str) -> bool:
    return location.split("://", 1)[0].lower() in POSTGRES_SCHEMES and "://" in location


def redacted(location: str) -> str:
    """The location with any password replaced by ``***`` (in the user part and in a ``password``
    query parameter), the rest as written; a SQLite path unchanged."""
    if not is_postgres(location):
        return location
    scheme, rest = location.split("://", 1)
    cut = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    authority, tail = rest[:cut], rest[cut:]
    if "@" in authority:
        userinfo, _, hostport = authority.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        authority = f"{user}{':***' if colon else ''}@{hostport}"
    return f"{scheme}://{authority}" + _QUERY_PASSWORD.sub(r"\1***", tail)


def password_of(location: str) -> str:
    """The password a PostgreSQL URL carries ("" for none), so that no text the plugin shows repeats it."""
    if not is_postgres(location):
        return ""
    parts = urlsplit(location)
    from_query = [value for key, value in parse_qsl(parts.query) if key.lower() == "password"]
    return parts.password or (from_query[0] if from_query else "")


def host_of(location: str) -> str:
    """The server a PostgreSQL URL names, as ``host:port`` (a socket directory or libpq's default when
    the URL names no host), for the reason a plugin that cannot reach it gives."""
    parts = urlsplit(location)
    host = parts.hostname or dict(parse_qsl(parts.query)).get("host") or "the default socket"
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{host}:{port}" if port else host


def node_schema(node_id: str) -> str:
    """The schema of one node in a database several nodes may share."""
    return NODE_SCHEMA_PREFIX + node_id[:NODE_ID_DIGITS].lower()
