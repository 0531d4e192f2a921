"""Shot score stage (VQA): clarity, exposure, noise, contrast, colourfulness, motion, blockiness,
aesthetics.

The signals come from the shot-split pass (:mod:`stages.frame_signals`): every ``stride``-th frame
was measured at the fixed analysis width, so this stage decodes nothing for them and the scores
compare across source resolutions (``vqa_blockiness`` by being a ratio: it needs the full-resolution
picture, :mod:`media.blockiness`). Per live shot it writes the ``vqa_*`` columns (medians over the
shot's measured frames; exposure as means) and ``vqa_frozen`` (no pixel moved). When an aesthetic
model is configured (:mod:`stages.shot_score.aesthetic`), ``vqa_aesthetic`` comes from it.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pyarrow as pa

from stages.base import ConfiguredStage
from stages.frame_signals import SIGNAL_NAMES, unpack
from stages.records import Column, Record, live_shots
from stages.shot_score.aesthetic import AestheticScorer
from stages.shot_score.config import ShotScoreConfig

_COLUMN = {name: i for i, name in enumerate(SIGNAL_NAMES)}
_MEDIAN = ("clarity", "mean_luma", "noise", "contrast", "colourfulness")
_MEAN = ("underexposed", "overexposed")

# The shot scores, written as ``vqa_<name>``, and what each measures.
VQA_MEANINGS = {
    "clarity": "median variance of the Laplacian (sharpness)",
    "mean_luma": "median mean luma, 0-255",
    "underexposed": "mean fraction of pixels below dark_luma",
    "overexposed": "mean fraction of pixels above bright_luma",
    "noise": "median estimated noise sigma, luma levels",
    "contrast": "median luma standard deviation",
    "colourfulness": "median Hasler-Suesstrunk colourfulness",
    "motion": "median frame-to-frame change within the shot",
    "blockiness": "median codec block-edge ratio, full-resolution luma (1: no grid; null: "
                  "no luma plane)",
    "aesthetic": "the aesthetic model's score (null without one)",
}
VQA_SCORES = tuple(VQA_MEANINGS)


class ShotScoreStage(ConfiguredStage[ShotScoreConfig]):
    """Scores every live shot of a video from its frame signals."""

    name: ClassVar[str] = "shot_score"
    columns: ClassVar[tuple[Column, ...]] = (
        Column("aesthetic_model", pa.string(), "the aesthetic model that scored the shots"),
    )
    shot_columns: ClassVar[tuple[Column, ...]] = (
        *(Column(f"vqa_{name}", pa.float64(), meaning) for name, meaning in VQA_MEANINGS.items()),
        Column("vqa_frozen", pa.bool_(), "no pixel moved in the shot"),
    )

    def setup(self) -> None:
        """Load the aesthetic model when one is configured."""
        self._aesthetic = (AestheticScorer(self.config.aesthetic)
                           if self.config.aesthetic.clip_model else None)

    def process(self, record: Record) -> Record:
        """Add the ``vqa_*`` scores to each live shot of ``record``."""
        signals = unpack(record.pop("frame_signals"))
        shots = live_shots(record)
        for shot in shots:
            shot.update(score_shot(signals, shot["start_frame"], shot["end_frame"],
                                   self.config.frozen_motion))
        if self._aesthetic is not None and shots:
            scores = self._aesthetic.score_shots(record["path"], record["width"],
                                                 record["height"], shots)
            for shot, score in zip(shots, scores, strict=True):
                shot["vqa_aesthetic"] = score
            record["aesthetic_model"] = self._aesthetic.description
        return record


def score_shot(signals: np.ndarray, start: int, end: int, frozen_motion: float) -> dict:
    """Scores of frames ``[start, end)`` from the signal matrix (see :data:`SIGNAL_NAMES`)."""
    frames = signals[:, _COLUMN["frame"]]
    rows = signals[(frames >= start) & (frames < end)]
    if len(rows) == 0:  # a shot shorter than the stride: use the nearest measured frame
        rows = signals[[int(np.abs(frames - start).argmin())]]
    scores = {f"vqa_{name}": float(np.median(rows[:, _COLUMN[name]])) for name in _MEDIAN}
    scores.update({f"vqa_{name}": float(rows[:, _COLUMN[name]].mean()) for name in _MEAN})
    # the first measured frame's motion compares against the previous shot: not this shot's
    motion = rows[1:, _COLUMN["motion"]]
    motion = motion[np.isfinite(motion)]
    scores["vqa_motion"] = float(np.median(motion)) if motion.size else None
    scores["vqa_frozen"] = bool(motion.size and motion.max() < frozen_motion)
    blockiness = rows[:, _COLUMN["blockiness"]]
    blockiness = blockiness[np.isfinite(blockiness)]  # NaN: no luma plane to measure
    scores["vqa_blockiness"] = float(np.median(blockiness)) if blockiness.size else None
    return scores
