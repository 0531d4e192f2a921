"""Settings of the shot split stage: detectors, the per-frame signals, and the pieces."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from stages.resources import SPEED_ONLY, Resources


class GradualConfig(BaseModel):
    """Thresholds of the gradual-transition detector (luma levels on a 0-255 scale)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    signal_size: tuple[int, int] = (64, 36)
    low_change: float = Field(1.0, gt=0, description="Least mean |frame diff| of a candidate.")
    motion_ratio: float = Field(
        1.4, ge=1, description="A candidate's frame diffs exceed the recent median times this."
    )
    min_total_change: float = Field(20.0, gt=0, description="Mean |after - before| required.")
    max_blend_residual: float = Field(
        0.3, gt=0, description="|mid - (before+after)/2| / |after - before| allowed."
    )
    max_wipe_residual: float = Field(
        0.15, gt=0, description="Wipe test: mean of min(|f - before|, |f - after|) / "
        "|after - before| allowed at a quarter, half and three quarters through.")
    min_frames: int = Field(4, ge=2, description="Shortest transition, in frames.")
    dark_luma: float = Field(24.0, ge=0, description="Mean luma of the black in a fade.")
    max_seconds: float = Field(3.0, gt=0, description="Longest transition, in seconds.")


class SignalConfig(BaseModel):
    """Per-frame quality signals measured in the same pass, for shot scoring."""

    model_config = ConfigDict(extra="forbid")

    stride: int = Field(3, ge=1, description="Measure every n-th analysis frame.")
    dark_luma: int = Field(16, ge=0, le=255, description="Pixels below count as underexposed.")
    bright_luma: int = Field(240, ge=0, le=255, description="Pixels above count as overexposed.")


class LearnedConfig(BaseModel):
    """The learned model behind the ``transnetv2``, ``autoshot`` and ``fused`` detectors."""

    model_config = ConfigDict(extra="forbid")

    model: Literal["transnetv2", "autoshot"] = Field(
        "transnetv2", description="The network the fused detector consults.")
    threshold: float | None = Field(
        None, gt=0, lt=1, description="Boundary probability; null: the model's published one "
        "(TransNetV2 0.5, AutoShot 0.296).")
    confirm: float = Field(
        0.05, gt=0, lt=1, description="Fused: a content cut stands when the model gives the "
        "frames at it at least this probability.")
    spike_ratio: float = Field(
        3.0, ge=1, description="Fused: the model looks at a frame whose colour change is this "
        "many times the median of the second before it (and at every content cut and every run "
        "of changing frames).")
    device: str = Field("auto", description="auto: the GPU when the worker has one, else CPU.")
    bf16: bool = Field(
        True, description="Compute in bfloat16 where the device does so natively (probabilities "
        "move by about 0.01).")
    batch_windows: int = Field(
        8, ge=1, description="Windows run together (pays on a GPU).", json_schema_extra=SPEED_ONLY)


class ShotSplitConfig(BaseModel):
    """Settings of the shot split stage."""

    model_config = ConfigDict(extra="forbid")

    detector: Literal["content", "transnetv2", "autoshot", "fused"] = Field(
        "content", description="content: PySceneDetect's ContentDetector scores and the gradual "
        "detector; transnetv2 / autoshot: the learned model on every frame; fused: content and "
        "gradual detectors, their cuts confirmed and their misses found by the learned model "
        "where they saw change (stages/shot_split/fusion.py).")
    analysis_width: int = Field(256, ge=32, description="Width frames are decoded at.")
    cut_threshold: float = Field(27.0, gt=0, description="ContentDetector threshold.")
    min_shot_s: float = Field(0.5, ge=0, description="Shortest shot, in seconds.")
    spike_ratio: float | None = Field(
        5.0, gt=1, description="A frame scoring between 2/3 of cut_threshold and it is a cut "
        "when it scores this many times the mean of the half second each side "
        "(stages/shot_split/spikes.py); null: off.")
    moved_correlation: float = Field(
        0.35, gt=0, le=1, description="A cut's two frames phase-correlating at least this well "
        "are one picture moved (a fast pan), not a cut (stages/shot_split/motion.py).")
    fast_decode: bool = Field(
        True, description="Skip H.264/HEVC deblocking in the analysis pass (about 15% faster)."
    )
    prefetch_frames: int = Field(
        32, ge=0, description="Decode this many frames ahead in a background thread (0: off); "
        "not in pieces holding one CPU, where the second thread only adds hand-offs.",
        json_schema_extra=SPEED_ONLY)
    sparse_decode: bool = Field(
        False, description="In a one-pass video, decode reference frames and the frames the "
        "signals need, then only the gaps where a cut may lie: the same cuts from about a "
        "quarter less decoding, but a dissolve barely above its shot's motion can be missed "
        "(falls back to every frame where frames cannot be numbered by presentation time).")
    chunk_s: float | None = Field(
        300.0, gt=0, description="Seconds of video per parallel piece of a longer video (each "
        "decoded from a keyframe a few seconds before it, every frame); null: one pass per "
        "video. A variable-frame-rate video is always one pass.",
        json_schema_extra=SPEED_ONLY)
    gradual: GradualConfig = GradualConfig()
    learned: LearnedConfig = LearnedConfig()
    signals: SignalConfig = SignalConfig()
    resources: Resources = Resources(num_cpus=1.0)

