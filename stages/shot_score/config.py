"""Settings of the shot score stage and its optional aesthetic model."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from stages.resources import Resources


class AestheticConfig(BaseModel):
    """Where the aesthetic model lives; both paths unset (the default) switches it off."""

    model_config = ConfigDict(extra="forbid")

    clip_model: str | None = Field(None, description="CLIP ViT-L/14 checkpoint (path or hub id).")
    mlp_weights: str | None = Field(None, description="The predictor's MLP state dict (.pth).")
    frames_per_shot: int = Field(1, ge=1)
    batch_size: int = Field(16, ge=1)
    device: str = Field("auto", description="'auto' (cuda when present), 'cpu' or 'cuda'.")

    @model_validator(mode="after")
    def _both_or_neither(self) -> AestheticConfig:
        if (self.clip_model is None) != (self.mlp_weights is None):
            raise ValueError("set both clip_model and mlp_weights, or neither")
        return self


class ShotScoreConfig(BaseModel):
    """Settings of the shot score stage."""

    model_config = ConfigDict(extra="forbid")

    frozen_motion: float = Field(
        0.05, ge=0, description="A shot whose largest frame-to-frame luma change stays below this "
        "(mean absolute difference, 0-255 levels) is frozen.")
    aesthetic: AestheticConfig = AestheticConfig()
    resources: Resources = Resources(num_cpus=1.0)

