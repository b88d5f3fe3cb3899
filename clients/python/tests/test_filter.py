"""The filter builder: what it refuses, the server refuses too; what it
builds, the server accepts and evaluates as documented."""

from __future__ import annotations

import random
from typing import Any, Callable, Dict, List, Tuple

import pytest

import aionbd
from aionbd import Filter, Match, Range

# (builder call that must raise ValueError, the raw JSON filter it would have meant)
INVALID: List[Tuple[Callable[[], Any], Dict[str, Any]]] = [
    (lambda: Match("", 1), {"must": [{"field": "", "value": 1}]}),
    (lambda: Match("   ", 1), {"must": [{"field": "   ", "value": 1}]}),
    (lambda: Range("price"), {"must": [{"field": "price"}]}),
    (lambda: Range("price", gte=5, lte=4), {"must": [{"field": "price", "gte": 5, "lte": 4}]}),
    (lambda: Range("price", gt=5, lt=4.5), {"must": [{"field": "price", "gt": 5, "lt": 4.5}]}),
    (lambda: Range("price", gte=5, lt=1), {"should": [{"field": "price", "gte": 5, "lt": 1}]}),
    (lambda: Filter(should=[Match("a", 1)], minimum_should_match=2),
     {"should": [{"field": "a", "value": 1}], "minimum_should_match": 2}),
    (lambda: Filter(minimum_should_match=1), {"minimum_should_match": 1}),
    (lambda: Match("a", None), {"must": [{"field": "a", "value": None}]}),  # type: ignore[arg-type]
    (lambda: Match("a", [1, 2]), {"must": [{"field": "a", "value": [1, 2]}]}),  # type: ignore[arg-type]
    (lambda: Match("a", {"b": 1}), {"must": [{"field": "a", "value": {"b": 1}}]}),  # type: ignore[arg-type]
    (lambda: Range("a", gt="1"), {"must": [{"field": "a", "gt": "1"}]}),  # type: ignore[arg-type]
    (lambda: Filter(must=[{"field": "a", "value": 1, "gt": 0}]),  # type: ignore[list-item]
     {"must": [{"field": "a", "value": 1, "gt": 0}]}),
    (lambda: Filter(minimum_should_match=-1), {"minimum_should_match": -1}),
]


@pytest.mark.parametrize("build, raw", INVALID)
def test_builder_refuses_what_the_server_refuses(
    client: aionbd.Client, name: str, build: Callable[[], Any], raw: Dict[str, Any]
) -> None:
    with pytest.raises(ValueError):
        build()
    client.create_collection(name, 2)
    with pytest.raises(aionbd.InvalidArgumentError):
        client.count_points(name, raw)


def test_non_finite_values_are_refused() -> None:
    for bad in (float("nan"), float("inf"), 10**400):
        with pytest.raises(ValueError):
            Range("a", lt=bad)
    with pytest.raises(ValueError):
        Match("a", float("nan"))
    with pytest.raises(ValueError):
        Match("a", 2**64)
    with pytest.raises(ValueError):
        Range("a", gte=True)  # bools are not numbers here


def test_filter_is_immutable_and_serialises() -> None:
    f = Filter(must=[Match("tier", "gold"), Range("price", gte=10, lt=20)], must_not=[Match("region", "eu")],
               should=[Match("c", 1), Match("c", 2)], minimum_should_match=1)
    assert f.to_dict() == {
        "must": [{"field": "tier", "value": "gold"}, {"field": "price", "gte": 10, "lt": 20}],
        "should": [{"field": "c", "value": 1}, {"field": "c", "value": 2}],
        "must_not": [{"field": "region", "value": "eu"}],
        "minimum_should_match": 1,
    }
    with pytest.raises(AttributeError):
        f.must = ()  # type: ignore[misc]
    assert Filter().to_dict() == {}
    assert Range("x", gt=1, lt=1).to_dict() == {"field": "x", "gt": 1, "lt": 1}  # allowed: empty interval


def _random_clause(rng: random.Random) -> Any:  # a Match or a Range
    fieldname = rng.choice(["tier", "price", "price", "tags", "flag", "missing"])
    if rng.random() < 0.5:
        value: Any = rng.choice([1, 2, 2.0, "a", "b", True, False, -5, 0.5])
        return Match(fieldname, value)
    bounds: Dict[str, float] = {}
    for k in rng.sample(["gt", "gte", "lt", "lte"], rng.randint(1, 2)):
        bounds[k] = rng.choice([-1, 0, 1, 1.5, 2, 3])
    try:
        return Range(fieldname, **bounds)
    except ValueError:
        return Range(fieldname, gte=0)


def _passes(f: Filter, payload: Dict[str, Any]) -> bool:
    """The documented semantics (API.md §7, arrays per §12), as a model."""

    def scalars(v: Any) -> List[Any]:
        return v if isinstance(v, list) else [v]

    def num(x: Any) -> bool:
        return isinstance(x, (int, float)) and not isinstance(x, bool)

    def clause(c: Any) -> bool:
        if c.field not in payload:
            return False
        vals = scalars(payload[c.field])
        if isinstance(c, Match):
            return any(
                (num(v) and num(c.value) and float(v) == float(c.value))
                or (type(v) is type(c.value) and v == c.value) for v in vals
            )
        return any(
            num(v) and (c.gt is None or v > c.gt) and (c.gte is None or v >= c.gte)
            and (c.lt is None or v < c.lt) and (c.lte is None or v <= c.lte) for v in vals
        )

    if not all(clause(c) for c in f.must) or any(clause(c) for c in f.must_not):
        return False
    need = 1 if f.minimum_should_match is None else f.minimum_should_match
    return not f.should or need == 0 or sum(clause(c) for c in f.should) >= need


def test_random_filters_are_accepted_and_evaluated_as_documented(client: aionbd.Client, name: str) -> None:
    rng = random.Random(18)
    payloads: List[Dict[str, Any]] = [
        {"tier": 1, "price": 0.5, "tags": ["a", "b"], "flag": True},
        {"tier": 2, "price": 2, "tags": ["b"], "flag": False},
        {"tier": 2.0, "price": 3, "tags": "a"},
        {"tier": "a", "price": -1, "tags": [1, 2]},
        {"price": 1.5, "flag": True},
        {},
    ]
    client.create_collection(name, 2)
    client.upsert_points_batch(name, [(i, [1, i], p) for i, p in enumerate(payloads)])
    seen = set()
    for _ in range(200):
        should = [_random_clause(rng) for _ in range(rng.randint(0, 3))]
        f = Filter(
            must=[_random_clause(rng) for _ in range(rng.choice([0, 0, 1, 2]))],
            should=should,
            must_not=[_random_clause(rng) for _ in range(rng.randint(0, 1))],
            minimum_should_match=rng.choice([None, *range(len(should) + 1)]),
        )
        expected = sum(_passes(f, p) for p in payloads)
        assert client.count_points(name, f) == expected, f.to_dict()
        top = client.search_collection_top_k(name, [1, 0], limit=10, filter=f, mode="exact")
        assert len(top) == expected
        seen.add(expected)
    assert len(seen) >= 5  # the cases are not all trivial
