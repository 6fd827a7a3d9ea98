"""validate.parse_seconds: what a timeout or ttl may be, as lightningd hands it over (Python's reading of its JSON)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from custommsg.core import errors
from custommsg.core.errors import ValidationError
from custommsg.core.validate import parse_seconds

ACCEPTED: list[tuple[Any, bool, float]] = [
    (1, False, 1.0), (0.05, False, 0.05), (1e300, False, 1e300), (0, True, 0.0), (0.0, True, 0.0),
]
REFUSED: list[tuple[Any, bool]] = [
    (0, False), (-1, True), (-0.001, True),
    (math.inf, True), (-math.inf, True), (math.nan, True),  # 1e400 from lightningd reads as inf
    (True, True), ("5", True), (None, True), ([5], True),
]


@pytest.mark.parametrize(("value", "allow_zero", "seconds"), ACCEPTED)
def test_seconds_accepted(value: Any, allow_zero: bool, seconds: float) -> None:
    assert parse_seconds(value, "timeout", allow_zero=allow_zero) == seconds


@pytest.mark.parametrize(("value", "allow_zero"), REFUSED)
def test_seconds_refused(value: Any, allow_zero: bool) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_seconds(value, "ttl", allow_zero=allow_zero)
    assert caught.value.code == errors.INVALID_PARAMETER and caught.value.data == {"param": "ttl"}
