"""Flashes: the picture jumps away and comes back within a fraction of a second.

A photographer's flash, lightning, a muzzle flash or a strobe changes every pixel for a frame or
a few, so the colour-change score jumps at the flash and again when it ends; PySceneDetect's
flash filter only merges the two into one (false) cut, and TransNetV2 gives flashes a cut
probability around 0.5 (measured: 0.28, 0.53 and 0.56 for flashes of 1, 2 and 3 frames). What
marks a flash is that the picture after it is the picture before it: :class:`FlashFinder`
keeps the frame before each large jump and, for ``max_frames`` frames, compares the frames that
follow with it.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from stages.shot_split.transitions import Span, hsv_distance


class FlashFinder:
    """Spans ``[jump, return)`` where the picture jumped (a content score at or above
    ``jump``) and, within ``max_frames``, came back to within ``back`` of the frame before the
    jump (the content score's own scale, on HSV frames)."""

    def __init__(self, jump: float, back: float, max_frames: int) -> None:
        self.jump, self.back, self.max_frames = jump, back, max_frames
        self.flashes: list[Span] = []
        self._before: deque[tuple[int, np.ndarray]] = deque()  # (jump frame, frame before it)
        self._previous: np.ndarray | None = None

    def push(self, index: int, hsv: np.ndarray, score: float) -> None:
        """Frame ``index`` (HSV, as the content score saw it) and its content score."""
        while self._before and index - self._before[0][0] > self.max_frames:
            self._before.popleft()
        for jump, before in self._before:
            if index > jump and hsv_distance(before, hsv) < self.back:
                self.flashes.append(Span(jump, index))
                self._before.clear()
                break
        if score >= self.jump and self._previous is not None:
            self._before.append((index, self._previous))
        self._previous = hsv
