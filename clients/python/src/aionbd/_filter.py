"""Payload filters (API.md §7) that are valid by construction.

Every rule the server checks is checked when the object is built, so a
`Filter` that exists always serialises to a filter the server accepts:

    Filter(
        must=[Match("tier", "gold"), Range("price", gte=10, lt=20)],
        must_not=[Match("region", "eu")],
        should=[Match("color", "red"), Match("color", "blue")],
        minimum_should_match=1,
    )

A point passes when every `must` clause matches, no `must_not` clause does,
and at least `minimum_should_match` (default 1 when `should` is non-empty,
0 disables) of the `should` clauses do. Invalid input raises `ValueError`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, Iterable, Optional, Tuple, Union

Scalar = Union[str, int, float, bool]

_INT_MIN, _UINT_MAX = -(2**63), 2**64 - 1


def _field(name: Any) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"a filter field must be a non-blank string, got {name!r}")
    return name


def _number(name: str, x: Any) -> Optional[float]:
    if x is None:
        return None
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise ValueError(f"range bound {name} must be a number, got {x!r}")
    try:
        if not math.isfinite(float(x)):
            raise ValueError
    except (OverflowError, ValueError):
        raise ValueError(f"range bound {name} must be finite, got {x!r}") from None
    return x


@dataclass(frozen=True)
class Match:
    """`field` equals `value` (for an array payload: any element does).
    Numbers compare numerically (`1 == 1.0`); otherwise types must agree."""

    field: str
    value: Scalar

    def __post_init__(self) -> None:
        _field(self.field)
        v = self.value
        if isinstance(v, (bool, str)):
            return
        if isinstance(v, int):
            if not _INT_MIN <= v <= _UINT_MAX:
                raise ValueError(f"match value {v} is outside the 64-bit integer range")
            return
        if isinstance(v, float) and math.isfinite(v):
            return
        raise ValueError(f"match value must be a string, integer, finite float or bool, got {v!r}")

    def to_dict(self) -> Dict[str, Any]:
        return {"field": self.field, "value": self.value}


@dataclass(frozen=True)
class Range:
    """`field` is a number within every given bound (gt/lt strict)."""

    field: str
    gt: Optional[float] = None
    gte: Optional[float] = None
    lt: Optional[float] = None
    lte: Optional[float] = None

    def __post_init__(self) -> None:
        _field(self.field)
        bounds = {k: _number(k, getattr(self, k)) for k in ("gt", "gte", "lt", "lte")}
        if all(b is None for b in bounds.values()):
            raise ValueError(f"range on '{self.field}' needs at least one of gt, gte, lt, lte")
        lower = bounds["gte"] if bounds["gte"] is not None else bounds["gt"]
        upper = bounds["lte"] if bounds["lte"] is not None else bounds["lt"]
        if lower is not None and upper is not None and lower > upper:
            raise ValueError(f"range on '{self.field}' has lower bound {lower} above upper bound {upper}")

    def to_dict(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {"field": self.field}
        for k in ("gt", "gte", "lt", "lte"):
            if getattr(self, k) is not None:
                out[k] = getattr(self, k)
        return out


Clause = Union[Match, Range]


def _clauses(name: str, items: Iterable[Clause]) -> Tuple[Clause, ...]:
    if isinstance(items, (Match, Range, dict, str)):
        raise ValueError(f"{name} must be a list of clauses, got {items!r}")
    out = tuple(items)
    for c in out:
        if not isinstance(c, (Match, Range)):
            raise ValueError(f"{name} holds {c!r}: clauses are Match(...) or Range(...)")
    return out


@dataclass(frozen=True)
class Filter:
    must: Tuple[Clause, ...] = ()
    should: Tuple[Clause, ...] = ()
    must_not: Tuple[Clause, ...] = ()
    minimum_should_match: Optional[int] = None

    def __init__(
        self,
        must: Iterable[Clause] = (),
        should: Iterable[Clause] = (),
        must_not: Iterable[Clause] = (),
        minimum_should_match: Optional[int] = None,
    ) -> None:
        object.__setattr__(self, "must", _clauses("must", must))
        object.__setattr__(self, "should", _clauses("should", should))
        object.__setattr__(self, "must_not", _clauses("must_not", must_not))
        m = minimum_should_match
        if m is not None:
            if isinstance(m, bool) or not isinstance(m, int) or m < 0:
                raise ValueError(f"minimum_should_match must be an integer >= 0, got {m!r}")
            if m > len(self.should):
                raise ValueError(f"minimum_should_match ({m}) exceeds the number of should clauses ({len(self.should)})")
        object.__setattr__(self, "minimum_should_match", m)

    def to_dict(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {}
        for name in ("must", "should", "must_not"):
            clauses = getattr(self, name)
            if clauses:
                out[name] = [c.to_dict() for c in clauses]
        if self.minimum_should_match is not None:
            out["minimum_should_match"] = self.minimum_should_match
        return out


FilterLike = Union[Filter, Dict[str, Any]]
"""A `Filter`, or a raw JSON filter (sent as given, checked by the server)."""


def filter_json(f: Optional[FilterLike]) -> Optional[Dict[str, Any]]:
    if f is None or isinstance(f, dict):
        return f
    if isinstance(f, Filter):
        return f.to_dict()
    raise TypeError(f"filter must be a Filter or a dict, got {type(f).__name__}")
