"""Typed protocols' RPC methods: ``custommsg-protocol-add`` and ``custommsg-protocols``.

Written as ``inbox.methods`` writes its own: parameters after ``runtime`` and ``reply`` are the
method's, the docstring is its ``help``. Parsing and checking a spec is ``core.protocols``'s;
sending fields is ``send``'s, and reading them ``inbox``'s.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..core.completion import Reply
from ..core.errors import INVALID_PARAMETER, ValidationError
from .files import read_spec

if TYPE_CHECKING:
    from ..node.runtime import Runtime


def protocol_add(runtime: Runtime, reply: Reply, path: Any) -> Any:
    """Register a protocol described in Core Lightning's wire CSV: the file at {path}.

    {path} is relative to the network directory. The same checks as the option custommsg-protocol:
    a line that does not parse, a type Core Lightning or this plugin reads itself, a type or name
    another protocol registered, and an even type (only the protocols folder read at start may have
    those) are refused. Registered until the plugin stops. Returns {source}, {messages} (name,
    type, fields) and {warnings} (types public protocols use, also logged).
    """
    if not isinstance(path, str) or not path or "\0" in path:
        raise ValidationError(INVALID_PARAMETER, "path must be the path of a CSV file", {"param": "path"})
    spec = read_spec(os.path.join(runtime.network_dir, path))
    warnings = runtime.protocols.register(spec)
    for warning in warnings:
        runtime.plugin.log(warning, level="warn")
    return {**spec.to_json(), "warnings": warnings}


def list_protocols(runtime: Runtime, reply: Reply) -> Any:
    """List the registered protocols: each file's messages, with their name, type and fields.

    Returns {protocols} (each with source, from_folder, and messages) and {even_types}, the even
    types lightningd lets through for this plugin.
    """
    protocols = runtime.protocols
    return {
        "protocols": [{**spec.to_json(), "from_folder": spec.from_folder} for spec in protocols.specs],
        "even_types": protocols.even_types(),
    }


METHODS: dict[str, Callable[..., Any]] = {
    "custommsg-protocol-add": protocol_add,
    "custommsg-protocols": list_protocols,
}
