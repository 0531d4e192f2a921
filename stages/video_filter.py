"""Video filter stage: keep or reject a probed, scored video by the thresholds in the config.

Only decides; every number it compares was written by the probe and video score stages, so
thresholds can be changed and re-applied without decoding again. A rejection names the rule
(the config key) and the value that broke it.
"""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from stages.base import ConfiguredStage
from stages.records import Record, reject
from stages.resources import Resources
from stages.rules import Threshold, first_broken_rule


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


class VideoFilterRule(StrEnum):
    """Why the video filter rejects a video: its config key whose limit the video broke."""

    ALLOWED_CODECS = "allowed_codecs"
    MAX_PIXELS = "max_pixels"
    MIN_DURATION_S = "min_duration_s"
    MAX_DURATION_S = "max_duration_s"
    MIN_FRAMES = "min_frames"
    MIN_SHORT_SIDE = "min_short_side"
    MIN_FPS = "min_fps"
    MAX_FPS = "max_fps"
    MAX_BORDER_FRACTION = "max_border_fraction"
    MIN_CLARITY = "min_clarity"
    MAX_UNDEREXPOSED = "max_underexposed"
    MAX_OVEREXPOSED = "max_overexposed"


_R = VideoFilterRule
# Rules on probe metadata run before any frame is decoded; rules on scores run after scoring.
_METADATA_RULES = [
    Threshold(_R.MAX_PIXELS, "pixels", "max"),
    Threshold(_R.MIN_DURATION_S, "duration_s", "min"),
    Threshold(_R.MAX_DURATION_S, "duration_s", "max"),
    Threshold(_R.MIN_FRAMES, "num_frames", "min"),
    Threshold(_R.MIN_SHORT_SIDE, "short_side", "min"),
    Threshold(_R.MIN_FPS, "fps", "min"),
    Threshold(_R.MAX_FPS, "fps", "max"),
]
_SCORE_RULES = [
    Threshold(_R.MAX_BORDER_FRACTION, "border_fraction", "max"),
    Threshold(_R.MIN_CLARITY, "vs_clarity", "min"),
    Threshold(_R.MAX_UNDEREXPOSED, "vs_underexposed", "max"),
    Threshold(_R.MAX_OVEREXPOSED, "vs_overexposed", "max"),
]
Phase = Literal["metadata", "scores", "all"]


class VideoFilterStage(ConfiguredStage[VideoFilterConfig]):
    """Applies the video-level thresholds, first broken rule wins. The plan runs the
    ``metadata`` phase right after the probe, so a file too small, short or odd to decode is
    rejected by its rule before the scorer tries it, and the ``scores`` phase after scoring."""

    name: ClassVar[str] = "video_filter"
    rules: ClassVar[type[StrEnum]] = VideoFilterRule

    def __init__(self, config: VideoFilterConfig, phase: Phase = "all") -> None:
        super().__init__(config)
        self.phase = phase

    def process(self, record: Record) -> Record:
        """Reject ``record`` at the first rule it breaks; leave it live otherwise."""
        codecs = self.config.allowed_codecs
        check_metadata = self.phase in ("metadata", "all")
        if check_metadata and codecs is not None and record.get("codec") not in codecs:
            return reject(record, self.name, _R.ALLOWED_CODECS, record.get("codec"),
                          f"codec {record.get('codec')} is not one of {codecs}")
        width, height = record["width"] or 0, record["height"] or 0
        values = dict(record, short_side=min(width, height), pixels=width * height)
        rules = (_METADATA_RULES if check_metadata else []) + (
            _SCORE_RULES if self.phase in ("scores", "all") else [])
        broken = first_broken_rule(values, self.config, rules)
        if broken is not None:
            return reject(record, self.name, broken.rule, broken.value, broken.detail)
        return record
