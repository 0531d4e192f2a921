"""Per-frame quality signals, computed on the shot-split pass's analysis frames.

The shot split decodes every frame once at a fixed analysis width; this module measures a few
cheap signals on every ``stride``-th of those frames, so shot-level scoring needs no second
decode and its numbers compare across source resolutions. ``blockiness`` is the exception: the
codec's block grid is gone at analysis size, so it is the scale-free block-edge ratio of the
full-resolution picture that each analysis frame carries (:func:`media.stream.frame_blockiness`).
The signals travel in the record as one packed float32 matrix (:func:`pack`) and are read back
by :mod:`stages.shot_score.stage`.
"""

from __future__ import annotations

import math

import numpy as np

from media.stream import frame_blockiness

# Column order of the packed matrix; ``frame`` is the frame index the row was measured on.
SIGNAL_NAMES = ("frame", "clarity", "mean_luma", "underexposed", "overexposed", "noise",
                "contrast", "colourfulness", "motion", "blockiness")

# Immerkaer's fast noise estimator: the difference of two Laplacians cancels image structure.
_NOISE_KERNEL = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float32)


class FrameSignalRecorder:
    """Collects :data:`SIGNAL_NAMES` for every ``stride``-th frame pushed to it."""

    def __init__(self, stride: int, dark_luma: int, bright_luma: int) -> None:
        self.stride = stride
        self.dark_luma, self.bright_luma = dark_luma, bright_luma
        self._rows: list[tuple[float, ...]] = []
        self._previous: np.ndarray | None = None

    def push(self, index: int, bgr: np.ndarray, luma: np.ndarray) -> None:
        """Measure frame ``index`` (BGR and its grey version, both uint8; the BGR an
        :func:`~media.stream.analysis_bgr` frame, else blockiness is NaN) if it is on the
        stride."""
        if index % self.stride:
            return
        import cv2

        h, w = luma.shape
        pixels = float(h * w)
        _, laplacian_std = cv2.meanStdDev(cv2.Laplacian(luma, cv2.CV_16S))
        residual = cv2.filter2D(luma, cv2.CV_16S, _NOISE_KERNEL)[1:-1, 1:-1]
        noise = cv2.norm(residual, cv2.NORM_L1) * math.sqrt(math.pi / 2) / (
            6.0 * max(1, (w - 2) * (h - 2)))
        mean, std = cv2.meanStdDev(luma)
        motion = float("nan") if self._previous is None else (
            cv2.norm(luma, self._previous, cv2.NORM_L1) / pixels)
        self._previous = luma
        self._rows.append((
            float(index),
            float(laplacian_std[0, 0]) ** 2,
            float(mean[0, 0]),
            cv2.countNonZero(cv2.inRange(luma, 0, self.dark_luma - 1)) / pixels,
            cv2.countNonZero(cv2.inRange(luma, self.bright_luma + 1, 255)) / pixels,
            noise,
            float(std[0, 0]),
            colourfulness(bgr),
            motion,
            frame_blockiness(bgr),
        ))

    def pack(self, start: int = 0, end: int | None = None) -> bytes:
        """The rows measured on frames ``[start, end)`` (``end`` None: all after ``start``) as
        float32 bytes, row-major in :data:`SIGNAL_NAMES` order."""
        rows = [row for row in self._rows if row[0] >= start and (end is None or row[0] < end)]
        matrix = np.asarray(rows, dtype=np.float32).reshape(-1, len(SIGNAL_NAMES))
        return matrix.tobytes()


def unpack(packed: bytes) -> np.ndarray:
    """The (n, len(SIGNAL_NAMES)) float32 matrix written by :meth:`FrameSignalRecorder.pack`."""
    return np.frombuffer(packed, dtype=np.float32).reshape(-1, len(SIGNAL_NAMES))


def colourfulness(bgr: np.ndarray) -> float:
    """Hasler and Suesstrunk's colourfulness metric (0 for grey; about 100 is very colourful),
    on every second pixel in each direction (a global statistic; four times cheaper)."""
    import cv2

    b, g, r = cv2.split(np.ascontiguousarray(bgr[::2, ::2]).astype(np.int16))
    rg = cv2.subtract(r, g)
    yb2 = cv2.subtract(cv2.add(r, g), cv2.multiply(b, 2))  # twice yellow-blue, kept integer
    rg_mean, rg_std = cv2.meanStdDev(rg)
    yb_mean, yb_std = cv2.meanStdDev(yb2)
    spread = math.hypot(float(rg_std[0, 0]), float(yb_std[0, 0]) / 2)
    centre = math.hypot(float(rg_mean[0, 0]), float(yb_mean[0, 0]) / 2)
    return spread + 0.3 * centre
