"""Output format of the encoded samples."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from stages.resources import SPEED_ONLY, Resources


class EncodeConfig(BaseModel):
    """Output format of the samples."""

    model_config = ConfigDict(extra="forbid")

    short_side: int = Field(480, ge=16, description="Short side of the output, in pixels.")
    fps: float = Field(24.0, gt=0, description="Output frame rate.")
    encoder: Literal["auto", "libx264", "h264_nvenc"] = Field(
        "auto", description="H.264 encoder: auto takes h264_nvenc where a trial encode on the "
        "worker works (a GPU with a video encoder; give the stage a GPU share), else libx264.")
    crf: int = Field(20, ge=0, le=51, description="x264 constant rate factor; NVENC's constant "
                     "quality (-cq) on the same scale.")
    preset: str = Field("veryfast", description="x264 preset; superfast at CRF 22 matches "
                        "veryfast CRF 20's quality with 0.6-0.8x the encoder CPU and 1.2-1.5x "
                        "the bytes (benchmarks/encode_presets.py).")
    nvenc_preset: str = Field("p4", description="NVENC preset, p1 (fastest) to p7 (best).")
    chunk_s: float | None = Field(
        300.0, gt=0, description="Seconds of source per parallel piece of one video's encode "
        "(runs of whole samples, each decoded from the keyframe before it); null: the whole "
        "video in one piece. A variable-frame-rate video is always one piece.",
        json_schema_extra=SPEED_ONLY)
    resources: Resources = Resources(num_cpus=1.0)

