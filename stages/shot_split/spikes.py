"""Cuts just under the content threshold that stand far above the frames around them.

A cut between two similar shots (a small reframe of the same scene, a slight colour change)
can score just under ``cut_threshold``, while the frames around it score almost nothing.
PySceneDetect's AdaptiveDetector judges every frame by that ratio; here the ratio only rescues
frames that already reach :data:`FLOOR` of the threshold, so nothing the content detector
rejects far below its threshold comes back. The flash check applies to these cuts as to any
other; the motion check (:mod:`stages.shot_split.motion`) only to cuts that do not stand out,
since a reframe of the same scene is one picture moved too, but in one jump, where a pan moves
every frame.
"""

from __future__ import annotations

import numpy as np

FLOOR = 2 / 3  # share of the cut threshold a rescued frame must reach


def standout(scores: np.ndarray, index: int, window: int) -> float:
    """How many times frame ``index``'s score is the mean score of the ``window`` frames on
    each side of it (itself left out); infinite where they are all 0."""
    around = np.concatenate([scores[max(0, index - window):index],
                             scores[index + 1:index + 1 + window]])
    mean = float(around.mean()) if around.size else 0.0
    return float(scores[index]) / mean if mean > 0 else float("inf")


def spike_cuts(scores: np.ndarray, threshold: float, ratio: float, window: int) -> list[int]:
    """Frames scoring in ``[FLOOR * threshold, threshold)`` whose :func:`standout` reaches
    ``ratio``."""
    candidates = np.flatnonzero((scores >= FLOOR * threshold) & (scores < threshold))
    return [i for i in candidates.tolist() if standout(scores, i, window) >= ratio]
