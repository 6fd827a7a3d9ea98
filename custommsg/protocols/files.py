"""Reading protocol specs from disk: one CSV file, or every ``*.csv`` of the protocols folder.

``core.protocols`` parses and checks; here are only the files: where they are (relative to the
network directory, lightningd's working directory and ours), how much is read, and a file that
cannot be read refused like a spec that does not parse.
"""

from __future__ import annotations

import os

from ..core.errors import PROTOCOL_SPEC_INVALID
from ..core.protocols import PROTOCOLS_FOLDER, Spec, SpecError, parse_spec

# A spec is a few lines per field: anything this large is not one (and is not read whole).
MAX_SPEC_BYTES = 1 << 20


def read_spec(path: str, from_folder: bool = False) -> Spec:
    """The spec in the file at ``path``, or SpecError naming the file and why it cannot be used."""
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_SPEC_BYTES + 1)
    except OSError as exc:
        raise _unreadable(path, exc.strerror or str(exc)) from None
    if len(data) > MAX_SPEC_BYTES:
        raise _unreadable(path, f"larger than {MAX_SPEC_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise _unreadable(path, "not UTF-8 text") from None
    spec = parse_spec(text, path)
    spec.from_folder = from_folder
    return spec


def folder_specs(network_dir: str) -> list[Spec]:
    """Every ``*.csv`` in ``<network_dir>/custommsg/protocols``, by name (none if there is no such folder)."""
    folder = os.path.join(network_dir, PROTOCOLS_FOLDER)
    try:
        names = sorted(name for name in os.listdir(folder) if name.endswith(".csv"))
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise _unreadable(folder, exc.strerror or str(exc)) from None
    return [read_spec(os.path.join(folder, name), from_folder=True) for name in names]


def _unreadable(path: str, why: str) -> SpecError:
    reason = f"cannot be read: {why}"
    return SpecError(PROTOCOL_SPEC_INVALID, f"{path}: {reason}", {"source": path, "line": None, "reason": reason})
