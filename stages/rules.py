"""Threshold rules shared by the filter stages: ``min_*``/``max_*`` config keys over columns.

Each threshold is named by a member of its stage's rule enum whose value is the config key, so
the rule a row records is the key that set the limit."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel


@dataclass(frozen=True)
class Threshold:
    """The config key ``rule`` bounds ``column``: ``kind`` "min" needs value >= limit."""

    rule: StrEnum
    column: str
    kind: str


@dataclass(frozen=True)
class BrokenRule:
    """The first rule a row broke, the value that broke it and a readable detail."""

    rule: StrEnum
    value: Any
    detail: str


def first_broken_rule(
    values: Mapping[str, Any], config: BaseModel, thresholds: list[Threshold]
) -> BrokenRule | None:
    """The first of ``thresholds`` (with a non-null limit in ``config``) that ``values``
    breaks."""
    for threshold in thresholds:
        limit = getattr(config, threshold.rule.value)
        if limit is None:
            continue
        column = threshold.column
        value = values.get(column)
        if value is None:
            return BrokenRule(threshold.rule, None, f"{column} is unknown")
        ok = value >= limit if threshold.kind == "min" else value <= limit
        if not ok:
            sign = "<" if threshold.kind == "min" else ">"
            return BrokenRule(threshold.rule, value, f"{column} {value:g} {sign} {limit:g}")
    return None
