"""Shot split stage: one decode pass at analysis size feeds two detectors.

Frames come once from PyAV at ``analysis_width`` (:func:`curation.decode.iter_analysis_frames`).
Each goes to :class:`~stages.transitions.ContentCutDetector` (hard cuts: PySceneDetect's
ContentDetector scores and flash filter, computed more cheaply) and to
:class:`~stages.transitions.GradualTransitionDetector` (fades and dissolves). Boundaries are
labelled ``clean`` or ``transition`` with their frame span, and the shots tile the decoded
frames exactly. The same frames feed :class:`~stages.frame_signals.FrameSignalRecorder`, whose
per-frame quality signals the shot score stage aggregates without decoding again. Writes
``shots`` (a list of shot rows), ``num_shots``, ``frames_decoded`` and ``frame_signals``.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from curation.decode import analysis_size, iter_analysis_frames
from curation.records import Record, fail
from curation.resources import Resources
from stages import ConfiguredStage
from stages.frame_signals import FrameSignalRecorder
from stages.transitions import (
    ContentCutDetector,
    GradualConfig,
    GradualTransitionDetector,
    label_boundaries,
    tile_shots,
)


class SignalConfig(BaseModel):
    """Per-frame quality signals measured in the same pass, for shot scoring."""

    model_config = ConfigDict(extra="forbid")

    stride: int = Field(3, ge=1, description="Measure every n-th analysis frame.")
    dark_luma: int = Field(16, ge=0, le=255, description="Pixels below count as underexposed.")
    bright_luma: int = Field(240, ge=0, le=255, description="Pixels above count as overexposed.")


class ShotSplitConfig(BaseModel):
    """Settings of the shot split stage."""

    model_config = ConfigDict(extra="forbid")

    analysis_width: int = Field(256, ge=32, description="Width frames are decoded at.")
    cut_threshold: float = Field(27.0, gt=0, description="ContentDetector threshold.")
    min_shot_s: float = Field(0.5, ge=0, description="Shortest shot, in seconds.")
    fast_decode: bool = Field(
        True, description="Skip H.264/HEVC deblocking in the analysis pass (about 15% faster)."
    )
    prefetch_frames: int = Field(
        32, ge=0, description="Decode this many frames ahead in a background thread (0: off).")
    gradual: GradualConfig = GradualConfig()
    signals: SignalConfig = SignalConfig()
    resources: Resources = Resources(num_cpus=1.0)


class ShotSplitStage(ConfiguredStage[ShotSplitConfig]):
    """Detects shots of one accepted video."""

    name: ClassVar[str] = "shot_split"

    def process(self, record: Record) -> Record:
        """Add ``shots`` to ``record``: boundaries found in one pass over the frames."""
        try:
            shots, frames, signals = detect_shots(
                record["path"], record["width"], record["height"], record["fps"], self.config
            )
        except Exception as err:  # decoder errors come in many types
            return fail(record, self.name, "decode_error", f"{type(err).__name__}: {err}")
        record["shots"] = shots
        record["num_shots"] = len(shots)
        record["frames_decoded"] = frames
        record["frame_signals"] = signals
        return record


def detect_shots(
    path: str, width: int, height: int, fps: float, config: ShotSplitConfig
) -> tuple[list[dict], int, bytes]:
    """Shots of the video at ``path``, the number of frames decoded and the packed frame signals."""
    import cv2

    min_shot_frames = max(1, int(round(config.min_shot_s * fps)))
    size = analysis_size(width, height, config.analysis_width)
    content = ContentCutDetector(config.cut_threshold, min_shot_frames)
    gradual = GradualTransitionDetector(config.gradual, fps)
    signals = FrameSignalRecorder(**config.signals.model_dump())
    cuts: list[int] = []
    times: list[float] = []
    for index, (seconds, frame) in enumerate(iter_analysis_frames(
            path, size, config.fast_decode, config.prefetch_frames)):
        times.append(seconds)
        cuts += content.push(index, frame)
        luma = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        signals.push(index, frame, luma)
        if config.gradual.enabled:
            small = cv2.resize(luma, config.gradual.signal_size, interpolation=cv2.INTER_AREA)
            gradual.push(index, small.astype(np.float32))
    count = len(times)
    if count == 0:
        raise ValueError("no frame could be decoded")
    boundaries = label_boundaries(sorted(set(cuts)), gradual.finish(count), count, min_shot_frames)
    shots = tile_shots(boundaries, count)
    times.append(times[-1] + 1.0 / fps)  # end of the last frame
    for shot in shots:
        shot["start_time"] = times[shot["start_frame"]]
        shot["end_time"] = times[shot["end_frame"]]
    return shots, count, signals.pack()
