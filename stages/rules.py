"""Threshold rules shared by the filter stages: ``min_*``/``max_*`` config keys over columns."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel


@dataclass(frozen=True)
class Rule:
    """``key`` in the config bounds ``column``: ``kind`` "min" needs value >= limit."""

    key: str
    column: str
    kind: str


@dataclass(frozen=True)
class BrokenRule:
    """The first rule a row broke, the value that broke it and a readable detail."""

    key: str
    value: Any
    detail: str


def first_broken_rule(
    values: Mapping[str, Any], config: BaseModel, rules: list[Rule]
) -> BrokenRule | None:
    """The first of ``rules`` (with a non-null limit in ``config``) that ``values`` breaks."""
    for rule in rules:
        limit = getattr(config, rule.key)
        if limit is None:
            continue
        value = values.get(rule.column)
        if value is None:
            return BrokenRule(rule.key, None, f"{rule.column} is unknown")
        ok = value >= limit if rule.kind == "min" else value <= limit
        if not ok:
            sign = "<" if rule.kind == "min" else ">"
            return BrokenRule(rule.key, value, f"{rule.column} {value:g} {sign} {limit:g}")
    return None
