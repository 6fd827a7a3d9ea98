"""Checking responses against doc/schemas, shared by the unit, protocol and integration tiers.

The files are in Core Lightning's format (``doc/schemas/*.json`` in the CLN tree: draft-07 JSON
schemas with CLN's extra types and keys), so CLN's tools turn them into man pages and pyln-testing's
``jsonschemas`` fixture validates calls with them. Two things live here:

* :data:`FORMAT`, a meta-schema of that format, written for this repository: which top-level keys a
  file may have, which keys a field may have, and that every ``description`` is a list of lines. It is
  stricter than draft-07 alone, which would accept ``"optional": true`` or a string description.
* :func:`problems`, which validates a request or response with CLN's types checked the way
  pyln-testing's ``_extra_validator`` checks them (contrib/pyln-testing/pyln/testing/fixtures.py):
  hex is any run of hex digits, a pubkey is 66 hex digits starting 02 or 03, uN is an integer in
  [0, 2**N).
"""

from __future__ import annotations

import functools
import json
import string
from pathlib import Path
from typing import Any

import jsonschema
from jsonschema import Draft7Validator

SCHEMAS = Path(__file__).resolve().parents[1] / "doc" / "schemas"
METHOD_FILES = sorted(SCHEMAS.glob("custommsg-*.json"))
NOTIFICATION_FILES = sorted((SCHEMAS / "notification").glob("*.json"))
ALL_FILES = METHOD_FILES + NOTIFICATION_FILES

# Draft-07's own types and the CLN types these schemas use.
TYPES = ["object", "array", "string", "number", "integer", "boolean", "null",
         "hex", "u8", "u16", "u32", "u64", "pubkey", "msat", "short_channel_id", "txid", "secret", "hash"]
_LINES = {"type": "array", "items": {"type": "string"}}
_NAMES = {"type": "array", "items": {"type": "string"}, "uniqueItems": True}

# A field: what may describe one parameter or one member of a response. An empty object is CLN's
# placeholder for a field typed in an if/then clause.
FORMAT: dict[str, Any] = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "definitions": {
        "lines": _LINES,
        "field": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "type": {"oneOf": [{"enum": TYPES}, {"type": "array", "items": {"enum": TYPES}}]},
                "description": {"$ref": "#/definitions/lines"},
                "enum": {"type": "array", "minItems": 1},
                "default": True,
                "minimum": {"type": "number"},
                "maximum": {"type": "number"},
                "minLength": {"type": "integer"},
                "maxLength": {"type": "integer"},
                "pattern": {"type": "string", "format": "regex"},
                "added": {"type": "string"},
                "deprecated": {"type": "array", "items": {"type": "string"}},
                "hidden": {"type": "boolean"},
                "pre_return_value_notes": {"$ref": "#/definitions/lines"},
                "post_return_value_notes": {"$ref": "#/definitions/lines"},
                "items": {"$ref": "#/definitions/field"},
                "properties": {"type": "object", "additionalProperties": {"$ref": "#/definitions/field"}},
                "required": _NAMES,
                "additionalProperties": {"type": "boolean"},
                "oneOf": {"type": "array", "items": {"$ref": "#/definitions/field"}},
                "allOf": {"type": "array", "items": {"$ref": "#/definitions/conditional"}},
            },
        },
        "conditional": {
            "type": "object",
            "additionalProperties": False,
            "required": ["if"],
            "properties": {"if": {"type": "object"}, "then": {"$ref": "#/definitions/field"},
                           "else": {"$ref": "#/definitions/field"}},
        },
        "request": {
            "type": "object",
            "additionalProperties": False,
            "required": ["required", "additionalProperties", "properties"],
            "properties": {
                "required": _NAMES,
                "additionalProperties": {"const": False},
                "properties": {"type": "object", "additionalProperties": {"$ref": "#/definitions/field"}},
                "dependentUpon": {"type": "object", "additionalProperties": _NAMES},
                "oneOfMany": {"type": "array", "items": _NAMES},
                "pairedWith": {"type": "array", "items": _NAMES},
            },
        },
        "example": {
            "type": "object",
            "additionalProperties": False,
            "required": ["request", "response"],
            "properties": {
                "description": {"$ref": "#/definitions/lines"},
                "request": {
                    "type": "object",
                    "required": ["id", "method", "params"],
                    "properties": {"id": {"type": "string"}, "method": {"type": "string"},
                                   "params": {"type": ["object", "array"]}},
                },
                "response": {"type": "object"},
            },
        },
    },
    "type": "object",
    "additionalProperties": False,
    "required": ["$schema", "type", "title", "description", "request", "response"],
    "oneOf": [{"required": ["rpc"]}, {"required": ["notification"]}],
    "properties": {
        "$schema": {"type": "string"},
        "type": {"const": "object"},
        "additionalProperties": {"const": False},
        "rpc": {"type": "string", "pattern": "^custommsg-[a-z-]+$"},
        "notification": {"type": "string", "pattern": "^custommsg_[a-z_]+$"},
        "title": {"type": "string", "minLength": 1},
        "description": {"$ref": "#/definitions/lines"},
        "categories": {"type": "array", "items": {"type": "string"}},
        "added": {"type": "string"},
        "request": {"anyOf": [{"$ref": "#/definitions/request"}, {"const": {}}]},
        "response": {"$ref": "#/definitions/field"},
        "errors": {"$ref": "#/definitions/lines"},
        "author": {"$ref": "#/definitions/lines"},
        "see_also": {"$ref": "#/definitions/lines"},
        "resources": {"$ref": "#/definitions/lines"},
        "examples": {"type": "array", "minItems": 1, "items": {"$ref": "#/definitions/example"}},
    },
}

FormatValidator = Draft7Validator(FORMAT, format_checker=jsonschema.FormatChecker(["regex"]))


def _is_hex(checker: Any, instance: Any) -> bool:
    return bool(checker.is_type(instance, "string") and all(c in string.hexdigits for c in instance))


def _is_uint(bits: int) -> Any:
    def check(checker: Any, instance: Any) -> bool:
        return bool(checker.is_type(instance, "integer") and 0 <= instance < 2**bits)

    return check


def _is_pubkey(checker: Any, instance: Any) -> bool:
    return bool(checker.is_type(instance, "hex") and len(instance) == 66 and instance[:2] in ("02", "03"))


CLN_TYPES = Draft7Validator.TYPE_CHECKER.redefine_many(
    {"hex": _is_hex, "u8": _is_uint(8), "u16": _is_uint(16), "u32": _is_uint(32), "u64": _is_uint(64),
     "pubkey": _is_pubkey}
)
CLNValidator = jsonschema.validators.extend(Draft7Validator, type_checker=CLN_TYPES)


def load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def format_problems(schema: Any) -> list[str]:
    """Where ``schema`` (a whole file) breaks the format of CLN's doc/schemas."""
    return [f"{list(e.absolute_path)}: {e.message}" for e in FormatValidator.iter_errors(schema)]


def schema_path(name: str) -> Path | None:
    """The file of a method's (``custommsg-send``) or a notification's (``custommsg_stored``) schema."""
    for path in (SCHEMAS / f"{name}.json", SCHEMAS / "notification" / f"{name}.json"):
        if path.exists():
            return path
    return None


def schema_of(name: str) -> Any:
    """The schema of a method (``custommsg-send``) or of a notification (``custommsg_stored``)."""
    path = schema_path(name)
    if path is None:
        raise FileNotFoundError(f"no schema of {name} in {SCHEMAS}")
    return load(path)


@functools.cache
def _validator(name: str, part: str) -> Any:
    return CLNValidator(schema_of(name)[part])


def problems(name: str, part: str, instance: Any) -> list[str]:
    """Where ``instance`` breaks ``part`` ("request" or "response") of ``name``'s schema."""
    return [f"{list(e.absolute_path)}: {e.message}" for e in _validator(name, part).iter_errors(instance)]
