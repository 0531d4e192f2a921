"""Shot score stage (VQA): clarity, exposure, noise, contrast, colourfulness, motion, aesthetics.

The signals come from the shot-split pass (:mod:`stages.frame_signals`): every ``stride``-th frame
was measured at the fixed analysis width, so this stage decodes nothing for them and the scores
compare across source resolutions. Per live shot it writes the ``vqa_*`` columns (medians over the
shot's measured frames; exposure as means) and ``vqa_frozen`` (no pixel moved). When an aesthetic
model is configured (:mod:`stages.aesthetic`), ``vqa_aesthetic`` comes from it.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from curation.records import Record, live_shots
from curation.resources import Resources
from stages import ConfiguredStage
from stages.aesthetic import AestheticConfig, AestheticScorer
from stages.frame_signals import SIGNAL_NAMES, unpack

_COLUMN = {name: i for i, name in enumerate(SIGNAL_NAMES)}
_MEDIAN = ("clarity", "mean_luma", "noise", "contrast", "colourfulness")
_MEAN = ("underexposed", "overexposed")


class ShotScoreConfig(BaseModel):
    """Settings of the shot score stage."""

    model_config = ConfigDict(extra="forbid")

    frozen_motion: float = Field(
        0.05, ge=0, description="A shot whose largest frame-to-frame luma change stays below this "
        "(mean absolute difference, 0-255 levels) is frozen.")
    aesthetic: AestheticConfig = AestheticConfig()
    resources: Resources = Resources(num_cpus=1.0)


class ShotScoreStage(ConfiguredStage[ShotScoreConfig]):
    """Scores every live shot of a video from its frame signals."""

    name: ClassVar[str] = "shot_score"

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
    return scores
