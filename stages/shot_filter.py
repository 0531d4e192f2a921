"""Shot filter stage: drop shots by the VQA thresholds in the config; dropped shots keep their row.

Only decides, from the columns the shot split and shot score stages wrote, so thresholds can be
tuned and re-applied without decoding. A dropped shot records the rule (config key) and value.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from stages.base import ConfiguredStage
from stages.records import Record, drop_shot, live_shots
from stages.resources import Resources
from stages.rules import Rule, first_broken_rule


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
    drop_frozen: bool = True
    min_aesthetic: float | None = Field(None, description="Applies when an aesthetic model ran.")
    resources: Resources = Resources(num_cpus=0.1)


_RULES = [
    Rule("min_duration_s", "duration_s", "min"),
    Rule("min_clarity", "vqa_clarity", "min"),
    Rule("min_mean_luma", "vqa_mean_luma", "min"),
    Rule("max_mean_luma", "vqa_mean_luma", "max"),
    Rule("max_underexposed", "vqa_underexposed", "max"),
    Rule("max_overexposed", "vqa_overexposed", "max"),
    Rule("max_noise", "vqa_noise", "max"),
    Rule("min_contrast", "vqa_contrast", "min"),
    Rule("min_colourfulness", "vqa_colourfulness", "min"),
    Rule("min_motion", "vqa_motion", "min"),
    Rule("max_motion", "vqa_motion", "max"),
]


class ShotFilterStage(ConfiguredStage[ShotFilterConfig]):
    """Applies the shot-level thresholds, first broken rule wins."""

    name: ClassVar[str] = "shot_filter"

    def process(self, record: Record) -> Record:
        """Drop the live shots of ``record`` that break a rule; mark the rest kept."""
        for shot in live_shots(record):
            shot["kept"] = True
            if self.config.drop_frozen and shot.get("vqa_frozen"):
                drop_shot(shot, self.name, "drop_frozen", True, "no pixel moved in the shot")
                continue
            values = dict(shot, duration_s=shot["end_time"] - shot["start_time"])
            rules = _RULES if shot.get("vqa_aesthetic") is None else [
                *_RULES, Rule("min_aesthetic", "vqa_aesthetic", "min")]
            broken = first_broken_rule(values, self.config, rules)
            if broken is not None:
                drop_shot(shot, self.name, broken.key, broken.value, broken.detail)
        return record
