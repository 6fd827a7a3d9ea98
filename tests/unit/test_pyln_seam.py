"""The private parts of pyln-client and of CPython that the plugin relies on are still there.

A pyln-client (or Python) release that changes one fails here, naming it, instead of
breaking the plugin silently or letting the guard's escape check be skipped.
"""

from __future__ import annotations

import json.decoder
import json.scanner

import pytest
from pyln.client import Plugin

from custommsg.core.guard import EscapedStr, loads_marking_escapes
from custommsg.node.seam import missing_seams


def test_every_pyln_seam_is_there() -> None:
    assert missing_seams() == []


def test_a_missing_seam_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """Given a pyln-client whose _multi_dispatch is gone, the check names it."""
    monkeypatch.delattr(Plugin, "_multi_dispatch")
    assert missing_seams() == ["Plugin._multi_dispatch(self, msgs)"]


def test_a_changed_signature_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    def _exec_func(self: object, func: object, request: object, extra: object) -> None: ...

    monkeypatch.setattr(Plugin, "_exec_func", _exec_func)
    assert missing_seams() == ["Plugin._exec_func(self, func, request)"]


def test_cpython_json_internals_the_guard_uses() -> None:
    """guard.py swaps the string parser of json's pure-Python scanner (CPython internals)."""
    assert callable(json.decoder.scanstring)  # type: ignore[attr-defined]
    assert callable(json.scanner.py_make_scanner)  # type: ignore[attr-defined]
    decoded = loads_marking_escapes(b'{"msg": "\\u0038001", "plain": "8001"}')
    assert type(decoded["msg"]) is EscapedStr and decoded["msg"] == "8001"
    assert type(decoded["plain"]) is str
