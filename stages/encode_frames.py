"""Per-frame picture work of the encode, on the YUV 4:2:0 planes (no RGB round trip): the
sample's crop (in decoded source pixels) and the resize.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Picture:
    """How one sample's source frames become output frames."""

    crop: tuple[int, int, int, int]  # x, y, w, h in decoded source pixels
    size: tuple[int, int]  # output (w, h)


def output_size(crop_w: int, crop_h: int, short_side: int) -> tuple[int, int]:
    """(w, h) with the crop's aspect, short side ``short_side``, both multiples of 16."""
    if crop_w >= crop_h:
        return max(16, round(short_side * crop_w / crop_h / 16) * 16), short_side
    return short_side, max(16, round(short_side * crop_h / crop_w / 16) * 16)


def picture_for(sample: dict, short_side: int) -> Picture:
    """The :class:`Picture` of ``sample``."""
    crop = (sample["crop_x"], sample["crop_y"], sample["crop_w"], sample["crop_h"])
    return Picture(crop, output_size(crop[2], crop[3], short_side))


def frame_bytes(frame: object, picture: Picture) -> bytes:
    """``picture``'s crop of a PyAV frame, resized, as raw ``yuv420p``."""
    import cv2

    if frame.format.name != "yuv420p" or frame.width % 2 or frame.height % 2:
        frame = frame.reformat(width=frame.width // 2 * 2, height=frame.height // 2 * 2,
                               format="yuv420p")
    planes = frame.to_ndarray()  # (h * 3 / 2, w): Y, then U and V of (h / 2, w / 2) each
    h, w = frame.height, frame.width
    x, y, cw, ch = picture.crop
    cw, ch = min(cw, w - x), min(ch, h - y)
    luma = planes[:h][y:y + ch, x:x + cw]
    chroma = planes[h:].reshape(2, h // 2, w // 2)[:, y // 2:(y + ch) // 2, x // 2:(x + cw) // 2]
    out_w, out_h = picture.size
    parts = [cv2.resize(luma, (out_w, out_h), interpolation=cv2.INTER_AREA)]
    parts += [cv2.resize(c, (out_w // 2, out_h // 2), interpolation=cv2.INTER_AREA) for c in chroma]
    return b"".join(np.ascontiguousarray(p).tobytes() for p in parts)
