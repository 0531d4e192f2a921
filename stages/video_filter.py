"""Video filter stage: keep or reject a probed, scored video by the thresholds in the config.

Only decides; every number it compares was written by the probe and video score stages, so
thresholds can be changed and re-applied without decoding again. A rejection names the rule
(the config key) and the value that broke it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from curation.records import Record, reject
from curation.resources import Resources
from stages import ConfiguredStage


class VideoFilterConfig(BaseModel):
    """Thresholds a source video must meet. ``null`` switches a rule off."""

    model_config = ConfigDict(extra="forbid")

    min_duration_s: float | None = Field(2.0, ge=0)
    max_duration_s: float | None = Field(None, gt=0)
    min_frames: int | None = Field(2, ge=1)
    min_short_side: int | None = Field(144, ge=1)
    min_fps: float | None = Field(10.0, gt=0)
    max_fps: float | None = Field(120.0, gt=0)
    allowed_codecs: list[str] | None = None
    max_border_fraction: float | None = Field(0.5, ge=0, le=1)
    min_clarity: float | None = Field(None, ge=0)
    max_underexposed: float | None = Field(0.9, ge=0, le=1)
    max_overexposed: float | None = Field(0.9, ge=0, le=1)
    resources: Resources = Resources(num_cpus=0.1)

    @model_validator(mode="after")
    def _ranges_ordered(self) -> VideoFilterConfig:
        pairs = [("min_duration_s", "max_duration_s"), ("min_fps", "max_fps")]
        for low, high in pairs:
            lo, hi = getattr(self, low), getattr(self, high)
            if lo is not None and hi is not None and lo > hi:
                raise ValueError(f"{low} ({lo}) is above {high} ({hi})")
        return self


# (config key, column, comparison) for every numeric rule: "min" keys need value >= threshold.
_NUMERIC_RULES: list[tuple[str, str, str]] = [
    ("min_duration_s", "duration_s", "min"),
    ("max_duration_s", "duration_s", "max"),
    ("min_frames", "num_frames", "min"),
    ("min_short_side", "short_side", "min"),
    ("min_fps", "fps", "min"),
    ("max_fps", "fps", "max"),
    ("max_border_fraction", "border_fraction", "max"),
    ("min_clarity", "vs_clarity", "min"),
    ("max_underexposed", "vs_underexposed", "max"),
    ("max_overexposed", "vs_overexposed", "max"),
]

_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "min": lambda value, limit: value >= limit,
    "max": lambda value, limit: value <= limit,
}


class VideoFilterStage(ConfiguredStage[VideoFilterConfig]):
    """Applies the video-level thresholds, first broken rule wins."""

    name: ClassVar[str] = "video_filter"

    def process(self, record: Record) -> Record:
        """Reject ``record`` at the first rule it breaks; leave it live otherwise."""
        codecs = self.config.allowed_codecs
        if codecs is not None and record.get("codec") not in codecs:
            return reject(record, self.name, "allowed_codecs", record.get("codec"),
                          f"codec {record.get('codec')} is not one of {codecs}")
        values = dict(record, short_side=min(record["width"] or 0, record["height"] or 0))
        for key, column, kind in _NUMERIC_RULES:
            limit = getattr(self.config, key)
            value = values.get(column)
            if limit is None:
                continue
            if value is None:
                return reject(record, self.name, key, None, f"{column} is unknown")
            if not _COMPARE[kind](value, limit):
                sign = "<" if kind == "min" else ">"
                return reject(record, self.name, key, value,
                              f"{column} {value:g} {sign} {limit:g}")
        return record
