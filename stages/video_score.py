"""Video score stage: clarity, exposure and black borders from frames sampled across the video.

Frames are key frames spread evenly over the video (cheap to seek to), decoded at a fixed
analysis width so scores compare across source resolutions. Writes ``vs_frames``,
``vs_clarity`` (median variance of the Laplacian), ``vs_mean_luma``, ``vs_underexposed`` /
``vs_overexposed`` (mean fraction of pixels below / above the luma bounds), and the active-picture
rectangle ``border_x/y/w/h`` in source pixels with ``border_fraction`` (share of the frame that is
letterbox or pillarbox).
"""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from media.readers import analysis_size, open_reader
from stages.base import ConfiguredStage
from stages.records import Column, Record, fail
from stages.resources import Resources


class VideoScoreConfig(BaseModel):
    """Settings of the video score stage."""

    model_config = ConfigDict(extra="forbid")

    num_frames: int = Field(16, ge=1, description="Frames sampled across the video.")
    analysis_width: int = Field(640, ge=64, description="Width frames are scored at.")
    border_luma: int = Field(24, ge=0, le=255,
                             description="Rows/columns darker than this are border.")
    dark_luma: int = Field(16, ge=0, le=255, description="Pixels below count as underexposed.")
    bright_luma: int = Field(240, ge=0, le=255, description="Pixels above count as overexposed.")
    resources: Resources = Resources(num_cpus=1.0)


class VideoScoreRule(StrEnum):
    """Why the video score fails a video."""

    DECODE_ERROR = "decode_error"


class VideoScoreStage(ConfiguredStage[VideoScoreConfig]):
    """Scores a whole video on sampled frames."""

    name: ClassVar[str] = "video_score"
    rules: ClassVar[type[StrEnum]] = VideoScoreRule
    columns: ClassVar[tuple[Column, ...]] = (
        Column("decoder", pa.string(), "the reader that gave the sampled frames: decord or pyav"),
        Column("vs_frames", pa.int32(), "frames sampled"),
        Column("vs_clarity", pa.float64(), "median variance of the Laplacian, active picture"),
        Column("vs_mean_luma", pa.float64(), "mean luma of the active picture, 0-255"),
        Column("vs_underexposed", pa.float64(), "fraction of active pixels below dark_luma"),
        Column("vs_overexposed", pa.float64(), "fraction of active pixels above bright_luma"),
        Column("border_x", pa.int32(), "left of the picture inside black bars, source pixels"),
        Column("border_y", pa.int32(), "top of that picture"),
        Column("border_w", pa.int32(), "its width (0: all black)"),
        Column("border_h", pa.int32(), "its height"),
        Column("border_fraction", pa.float64(), "fraction of the frame that is black bars"),
    )

    def process(self, record: Record) -> Record:
        """Fill the ``vs_*`` and ``border_*`` columns of ``record``."""
        size = analysis_size(record["width"], record["height"], self.config.analysis_width)
        try:
            reader = open_reader(record["path"], size)
            indices = sample_indices(reader.key_indices(), reader.num_frames,
                                     self.config.num_frames)
            frames = reader.frames_at(indices)
        except Exception as err:  # decoder errors come in many types
            return fail(record, self.name, VideoScoreRule.DECODE_ERROR,
                        f"{type(err).__name__}: {err}")
        luma = _to_luma(frames)
        box = active_box(luma, self.config.border_luma)
        record.update(score_frames(luma, box, self.config))
        record.update(_box_columns(box, size, record["width"], record["height"]))
        record["decoder"] = reader.backend
        return record


def sample_indices(key_indices: list[int], num_frames: int, wanted: int) -> list[int]:
    """Up to ``wanted`` indices spread evenly over the video, preferring key frames."""
    wanted = min(wanted, num_frames)
    keys = sorted(set(key_indices))
    if len(keys) >= wanted:
        picks = np.linspace(0, len(keys) - 1, wanted).round().astype(int)
        return [keys[i] for i in sorted(set(picks.tolist()))]
    spread = np.linspace(0, num_frames - 1, wanted).round().astype(int).tolist()
    return sorted(set(spread) | set(keys))


def score_frames(
    luma: np.ndarray, box: tuple[int, int, int, int] | None, config: VideoScoreConfig
) -> dict[str, float | int]:
    """Clarity and exposure over (n, H, W) uint8 luma frames, inside the active picture ``box``
    (from :func:`active_box`; None when the picture is all black)."""
    import cv2

    if box is None:  # the whole picture is black
        return {"vs_frames": len(luma), "vs_clarity": 0.0, "vs_mean_luma": float(luma.mean()),
                "vs_underexposed": 1.0, "vs_overexposed": 0.0}
    x, y, w, h = box
    active = luma[:, y : y + h, x : x + w]
    sharpness = [float(cv2.Laplacian(f, cv2.CV_64F).var()) for f in active]
    return {
        "vs_frames": len(luma),
        "vs_clarity": float(np.median(sharpness)),
        "vs_mean_luma": float(active.mean()),
        "vs_underexposed": float((active < config.dark_luma).mean()),
        "vs_overexposed": float((active > config.bright_luma).mean()),
    }


def active_box(luma: np.ndarray, border_luma: int) -> tuple[int, int, int, int] | None:
    """(x, y, w, h) of the picture inside black bars, over (n, H, W) frames; None if all black.

    A row (column) is border when its mean luma stays at or below ``border_luma`` in every
    sampled frame, so a dark scene does not count as a bar as long as one frame lights it.
    """
    rows = luma.mean(axis=2).max(axis=0)
    cols = luma.mean(axis=1).max(axis=0)
    live_rows = np.flatnonzero(rows > border_luma)
    live_cols = np.flatnonzero(cols > border_luma)
    if live_rows.size == 0 or live_cols.size == 0:
        return None
    y0, y1 = int(live_rows[0]), int(live_rows[-1]) + 1
    x0, x1 = int(live_cols[0]), int(live_cols[-1]) + 1
    return x0, y0, x1 - x0, y1 - y0


def _box_columns(
    box: tuple[int, int, int, int] | None, size: tuple[int, int], width: int, height: int
) -> dict[str, int | float]:
    if box is None:
        return {"border_x": 0, "border_y": 0, "border_w": 0, "border_h": 0, "border_fraction": 1.0}
    sx, sy = width / size[0], height / size[1]
    x0, y0 = int(round(box[0] * sx)), int(round(box[1] * sy))
    x1 = min(width, int(round((box[0] + box[2]) * sx)))
    y1 = min(height, int(round((box[1] + box[3]) * sy)))
    kept = (x1 - x0) * (y1 - y0) / float(width * height)
    return {"border_x": x0, "border_y": y0, "border_w": x1 - x0, "border_h": y1 - y0,
            "border_fraction": round(1.0 - kept, 6)}


def _to_luma(frames: np.ndarray) -> np.ndarray:
    """(n, H, W, 3) RGB to (n, H, W) BT.601 luma, uint8."""
    weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return np.clip(frames.astype(np.float32) @ weights + 0.5, 0, 255).astype(np.uint8)
