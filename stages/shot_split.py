"""Shot split stage: one decode pass at analysis size feeds two detectors.

Frames come once from the decoder at ``analysis_width``. Each goes to PySceneDetect's
ContentDetector (hard cuts, through its ``process_frame``) and to
:class:`~stages.transitions.GradualTransitionDetector` (fades and dissolves). Boundaries are
labelled ``clean`` or ``transition`` with their frame span, and the shots tile the decoded
frames exactly. Writes ``shots`` (a list of shot rows), ``num_shots`` and ``frames_decoded``.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from curation.decode import analysis_size, open_reader
from curation.records import Record, fail
from curation.resources import Resources
from stages.transitions import GradualConfig, GradualTransitionDetector, label_boundaries, tile_shots


class ShotSplitConfig(BaseModel):
    """Settings of the shot split stage."""

    model_config = ConfigDict(extra="forbid")

    analysis_width: int = Field(256, ge=32, description="Width frames are decoded at.")
    cut_threshold: float = Field(27.0, gt=0, description="ContentDetector threshold.")
    min_shot_s: float = Field(0.5, ge=0, description="Shortest shot, in seconds.")
    batch_frames: int = Field(64, ge=1, description="Frames fetched from the decoder at once.")
    gradual: GradualConfig = GradualConfig()
    resources: Resources = Resources(num_cpus=1.0)


class ShotSplitStage:
    """Detects shots of one accepted video."""

    name: ClassVar[str] = "shot_split"

    def __init__(self, config: ShotSplitConfig) -> None:
        self.config = config

    def setup(self) -> None:
        """Import PySceneDetect once per worker."""
        import scenedetect  # noqa: F401

    def process(self, record: Record) -> Record:
        """Add ``shots`` to ``record``: boundaries found in one pass over the frames."""
        try:
            shots, frames = detect_shots(
                record["path"], record["width"], record["height"], record["fps"], self.config
            )
        except Exception as err:  # decoder errors come in many types
            return fail(record, self.name, "decode_error", f"{type(err).__name__}: {err}")
        record["shots"] = shots
        record["num_shots"] = len(shots)
        record["frames_decoded"] = frames
        return record


def detect_shots(
    path: str, width: int, height: int, fps: float, config: ShotSplitConfig
) -> tuple[list[dict], int]:
    """Shots of the video at ``path`` and the number of frames decoded."""
    import cv2
    from scenedetect import ContentDetector, FrameTimecode

    min_shot_frames = max(1, int(round(config.min_shot_s * fps)))
    reader = open_reader(path, analysis_size(width, height, config.analysis_width))
    content = ContentDetector(threshold=config.cut_threshold, min_scene_len=min_shot_frames)
    gradual = GradualTransitionDetector(config.gradual, fps)
    signal_size = config.gradual.signal_size
    cuts: list[int] = []
    index = 0
    for batch in reader.iter_batches(config.batch_frames):
        bgr = np.ascontiguousarray(batch[..., ::-1])
        for frame in bgr:
            timecode = FrameTimecode(index, fps=fps)
            cuts += [tc.frame_num for tc in content.process_frame(timecode, frame)]
            if config.gradual.enabled:
                luma = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
                small = cv2.resize(luma, signal_size, interpolation=cv2.INTER_AREA)
                gradual.push(index, small.astype(np.float32))
            index += 1
    if index == 0:
        raise ValueError("no frame could be decoded")
    cuts += [tc.frame_num for tc in content.post_process(FrameTimecode(index, fps=fps))]
    spans = gradual.finish(index)
    boundaries = label_boundaries(sorted(set(cuts)), spans, index, min_shot_frames)
    shots = tile_shots(boundaries, index)
    times = reader.frame_times()
    for shot in shots:
        shot["start_time"] = float(times[shot["start_frame"]][0])
        shot["end_time"] = float(times[shot["end_frame"] - 1][1])
    return shots, index
