"""Is a big colour change the same picture, moved? A fast pan or a whip of the camera changes
most pixels from one frame to the next, so the content score calls it a cut; but the two frames
still phase-correlate: shifted by the camera's motion, one is the other, and the correlation
peak stands out (measured on the evaluation set, ``tests/shot_eval.py``: 0.57 to 0.89 on fast
pans, at most 0.19 on true cuts between different shots, 0.46 on a reframe of the same scene,
which is why a cut that stands out from its neighbours is kept; see
:mod:`stages.shot_split.spikes`). A jump with no shift and a peak near 1 is not even moved: the
same picture re-encoded (a keyframe in a still shot) or re-lit.
"""

from __future__ import annotations

import functools

import numpy as np

# A frame that phase-correlates with the one before at least this well without moving is the
# same picture (a keyframe's quality jump in a still shot scores 0.99-1.01), never a cut.
STILL_RESPONSE = 0.8


def correlation(previous: np.ndarray, current: np.ndarray) -> tuple[float, float]:
    """(shift in pixels, peak from 0 to 1) of the phase correlation of two grey frames of equal
    size: the peak is near 1 when one is the other translated by the shift, near 0 for unrelated
    pictures."""
    import cv2

    window = _hanning(previous.shape)
    (dx, dy), response = cv2.phaseCorrelate(previous.astype(np.float32),
                                            current.astype(np.float32), window)
    return float(np.hypot(dx, dy)), float(response)


def same_picture(shift: float, response: float) -> bool:
    """Whether a correlation says the picture did not change, only its encoding or light."""
    return shift < 1.0 and response >= STILL_RESPONSE


@functools.lru_cache(maxsize=4)
def _hanning(shape: tuple[int, int]) -> np.ndarray:
    import cv2

    return cv2.createHanningWindow((shape[1], shape[0]), cv2.CV_32F)
