"""Video filter stage: keep or reject a probed, scored video by the thresholds in the config.

Only decides; every number it compares was written by the probe and video score stages, so
thresholds can be changed and re-applied without decoding again. A rejection names the rule
(the config key) and the value that broke it.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from stages.base import ConfiguredStage
from stages.records import Record, reject
from stages.resources import Resources
from stages.rules import Rule, first_broken_rule


class VideoFilterConfig(BaseModel):
    """Thresholds a source video must meet. ``null`` switches a rule off."""

    model_config = ConfigDict(extra="forbid")

    min_duration_s: float | None = Field(2.0, ge=0)
    max_duration_s: float | None = Field(None, gt=0)
    min_frames: int | None = Field(2, ge=1)
    min_short_side: int | None = Field(144, ge=1)
    max_pixels: int | None = Field(
        36_000_000, ge=1, description="Largest width x height (8K UHD is 33.2 M); checked before "
        "decoding, so a huge declared size cannot make a decoder allocate gigabytes.")
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


# Rules on probe metadata run before any frame is decoded; rules on scores run after scoring.
_METADATA_RULES = [
    Rule("max_pixels", "pixels", "max"),
    Rule("min_duration_s", "duration_s", "min"),
    Rule("max_duration_s", "duration_s", "max"),
    Rule("min_frames", "num_frames", "min"),
    Rule("min_short_side", "short_side", "min"),
    Rule("min_fps", "fps", "min"),
    Rule("max_fps", "fps", "max"),
]
_SCORE_RULES = [
    Rule("max_border_fraction", "border_fraction", "max"),
    Rule("min_clarity", "vs_clarity", "min"),
    Rule("max_underexposed", "vs_underexposed", "max"),
    Rule("max_overexposed", "vs_overexposed", "max"),
]
Phase = Literal["metadata", "scores", "all"]


class VideoFilterStage(ConfiguredStage[VideoFilterConfig]):
    """Applies the video-level thresholds, first broken rule wins. The plan runs the
    ``metadata`` phase right after the probe, so a file too small, short or odd to decode is
    rejected by its rule before the scorer tries it, and the ``scores`` phase after scoring."""

    name: ClassVar[str] = "video_filter"

    def __init__(self, config: VideoFilterConfig, phase: Phase = "all") -> None:
        super().__init__(config)
        self.phase = phase

    def process(self, record: Record) -> Record:
        """Reject ``record`` at the first rule it breaks; leave it live otherwise."""
        codecs = self.config.allowed_codecs
        check_metadata = self.phase in ("metadata", "all")
        if check_metadata and codecs is not None and record.get("codec") not in codecs:
            return reject(record, self.name, "allowed_codecs", record.get("codec"),
                          f"codec {record.get('codec')} is not one of {codecs}")
        width, height = record["width"] or 0, record["height"] or 0
        values = dict(record, short_side=min(width, height), pixels=width * height)
        rules = (_METADATA_RULES if check_metadata else []) + (
            _SCORE_RULES if self.phase in ("scores", "all") else [])
        broken = first_broken_rule(values, self.config, rules)
        if broken is not None:
            return reject(record, self.name, broken.key, broken.value, broken.detail)
        return record
