"""Shot filter stage: drop shots by the VQA thresholds in the config; dropped shots keep their row.

Only decides, from the columns the shot split and shot score stages wrote, so thresholds can be
tuned and re-applied without decoding. A dropped shot records the rule (config key) and value.
"""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from stages.base import ConfiguredStage
from stages.records import SHOT_STATUS_COLUMNS, Column, Record, drop_shot, live_shots
from stages.resources import Resources
from stages.rules import Threshold, first_broken_rule


class ShotFilterConfig(BaseModel):
    """Thresholds a shot must meet; ``null`` switches a rule off. Luma values are 0-255 levels
    measured at the shot split's analysis width."""

    model_config = ConfigDict(extra="forbid")

    min_duration_s: float | None = Field(1.0, ge=0)
    min_clarity: float | None = Field(None, ge=0, description="Variance of the Laplacian.")
    min_mean_luma: float | None = Field(12.0, ge=0, le=255)
    max_mean_luma: float | None = Field(245.0, ge=0, le=255)
    max_underexposed: float | None = Field(0.85, ge=0, le=1)
    max_overexposed: float | None = Field(0.85, ge=0, le=1)
    max_noise: float | None = Field(None, ge=0, description="Estimated noise sigma, luma levels.")
    min_contrast: float | None = Field(4.0, ge=0, description="Luma standard deviation.")
    min_colourfulness: float | None = Field(None, ge=0)
    min_motion: float | None = Field(None, ge=0, description="Median frame-to-frame change.")
    max_motion: float | None = Field(None, ge=0)
    max_blockiness: float | None = Field(
        2.5, ge=0, description="Codec block-edge ratio (1: no grid), as the default fast_decode "
        "reads it; applies where measured. 2.5 drops severe blocking only: libx264 re-encodes "
        "of real footage read 2.7-4.1 at CRF 46, 1.3-1.6 at CRF 38; test patterns at most 1.5, "
        "shots of the 540 kbps BBB film at most 2.24 but for one of 16 frames (2.56) "
        "(benchmarks/RESULTS.md).")
    drop_frozen: bool = True
    min_aesthetic: float | None = Field(None, description="Applies when an aesthetic model ran.")
    resources: Resources = Resources(num_cpus=0.1)


class ShotFilterRule(StrEnum):
    """Why the shot filter drops a shot: its config key whose limit the shot broke."""

    DROP_FROZEN = "drop_frozen"
    MIN_DURATION_S = "min_duration_s"
    MIN_CLARITY = "min_clarity"
    MIN_MEAN_LUMA = "min_mean_luma"
    MAX_MEAN_LUMA = "max_mean_luma"
    MAX_UNDEREXPOSED = "max_underexposed"
    MAX_OVEREXPOSED = "max_overexposed"
    MAX_NOISE = "max_noise"
    MIN_CONTRAST = "min_contrast"
    MIN_COLOURFULNESS = "min_colourfulness"
    MIN_MOTION = "min_motion"
    MAX_MOTION = "max_motion"
    MAX_BLOCKINESS = "max_blockiness"
    MIN_AESTHETIC = "min_aesthetic"


_R = ShotFilterRule
_RULES = [
    Threshold(_R.MIN_DURATION_S, "duration_s", "min"),
    Threshold(_R.MIN_CLARITY, "vqa_clarity", "min"),
    Threshold(_R.MIN_MEAN_LUMA, "vqa_mean_luma", "min"),
    Threshold(_R.MAX_MEAN_LUMA, "vqa_mean_luma", "max"),
    Threshold(_R.MAX_UNDEREXPOSED, "vqa_underexposed", "max"),
    Threshold(_R.MAX_OVEREXPOSED, "vqa_overexposed", "max"),
    Threshold(_R.MAX_NOISE, "vqa_noise", "max"),
    Threshold(_R.MIN_CONTRAST, "vqa_contrast", "min"),
    Threshold(_R.MIN_COLOURFULNESS, "vqa_colourfulness", "min"),
    Threshold(_R.MIN_MOTION, "vqa_motion", "min"),
    Threshold(_R.MAX_MOTION, "vqa_motion", "max"),
]
# rules over scores that may be unknown (null), applied only where they are known
_WHERE_KNOWN = [
    Threshold(_R.MAX_BLOCKINESS, "vqa_blockiness", "max"),
    Threshold(_R.MIN_AESTHETIC, "vqa_aesthetic", "min"),
]


class ShotFilterStage(ConfiguredStage[ShotFilterConfig]):
    """Applies the shot-level thresholds, first broken rule wins."""

    name: ClassVar[str] = "shot_filter"
    rules: ClassVar[type[StrEnum]] = ShotFilterRule
    # it marks every shot it sees kept or dropped; the later shot stages may drop one too
    shot_columns: ClassVar[tuple[Column, ...]] = SHOT_STATUS_COLUMNS

    def process(self, record: Record) -> Record:
        """Drop the live shots of ``record`` that break a rule; mark the rest kept."""
        for shot in live_shots(record):
            shot["kept"] = True
            if self.config.drop_frozen and shot.get("vqa_frozen"):
                drop_shot(shot, self.name, _R.DROP_FROZEN, True, "no pixel moved in the shot")
                continue
            values = dict(shot, duration_s=shot["end_time"] - shot["start_time"])
            rules = [*_RULES, *(t for t in _WHERE_KNOWN if shot.get(t.column) is not None)]
            broken = first_broken_rule(values, self.config, rules)
            if broken is not None:
                drop_shot(shot, self.name, broken.rule, broken.value, broken.detail)
        return record
