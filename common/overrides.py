"""``--set key.sub=value`` overrides of a parsed YAML config."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml


class OverrideError(ValueError):
    """An override is malformed, its value is not YAML, or a parent of its key is not a section."""


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Set each ``key.sub=value`` in ``data`` (in place, creating sections; the value is parsed as
    YAML) and return ``data``."""
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise OverrideError(f"--set {item!r}: expected key.sub=value")
        node = data
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise OverrideError(f"--set {key}: {part} is not a section")
        try:
            node[leaf] = yaml.safe_load(value)
        except yaml.YAMLError as err:
            raise OverrideError(f"--set {item!r}: value is not YAML: {err}") from None
    return data
