"""Per-frame picture work of the encode, on the YUV 4:2:0 planes (no RGB round trip): the
sample's crop (in decoded, unrotated source pixels), the resize, and the display rotation.

HDR frames (PQ or HLG transfer) keep 10 bits here; the encoder process tone-maps them
(:mod:`stages.encode.writer`). Every other frame is reduced to 8-bit ``yuv420p`` first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# H.273 transfer characteristics (the numbers ffmpeg, PyAV and zscale share) that need tone mapping.
HDR_TRANSFERS = {16: "smpte2084", 18: "arib-std-b67"}


@dataclass(frozen=True)
class Picture:
    """How one sample's source frames become output frames."""

    crop: tuple[int, int, int, int]  # x, y, w, h in decoded source pixels
    size: tuple[int, int]  # output (w, h), after rotation
    turns: int  # counterclockwise quarter turns (np.rot90's k) that make the frame upright
    pix_fmt: str  # yuv420p, or yuv420p10le for HDR frames kept for tone mapping


def output_size(crop_w: int, crop_h: int, short_side: int) -> tuple[int, int]:
    """(w, h) with the crop's aspect, short side ``short_side``, both multiples of 16."""
    if crop_w >= crop_h:
        return max(16, round(short_side * crop_w / crop_h / 16) * 16), short_side
    return short_side, max(16, round(short_side * crop_h / crop_w / 16) * 16)


def quarter_turns(rotation: int) -> int:
    """np.rot90's ``k`` for the probe's display rotation (degrees counterclockwise, as ffprobe
    reports the display matrix), to the nearest quarter turn."""
    return round(rotation / 90) % 4


def hdr_transfer(frame: object) -> str | None:
    """The zscale name of ``frame``'s transfer when it is PQ or HLG, else None."""
    return HDR_TRANSFERS.get(int(getattr(frame, "color_trc", 0) or 0))


def picture_for(sample: dict, short_side: int, rotation: int, first_frame: object) -> Picture:
    """The :class:`Picture` of ``sample``; ``first_frame`` (its first source frame) tells HDR."""
    crop = (sample["crop_x"], sample["crop_y"], sample["crop_w"], sample["crop_h"])
    turns = quarter_turns(rotation)
    w, h = output_size(crop[2], crop[3], short_side)
    size = (h, w) if turns % 2 else (w, h)
    pix_fmt = "yuv420p10le" if hdr_transfer(first_frame) else "yuv420p"
    return Picture(crop, size, turns, pix_fmt)


def frame_bytes(frame: object, picture: Picture) -> bytes:
    """``picture``'s crop of a PyAV frame, resized and rotated, as raw ``picture.pix_fmt``."""
    import cv2

    if frame.format.name != picture.pix_fmt or frame.width % 2 or frame.height % 2:
        frame = frame.reformat(width=frame.width // 2 * 2, height=frame.height // 2 * 2,
                               format=picture.pix_fmt)
    planes = frame.to_ndarray()  # (h * 3 / 2, w): Y, then U and V of (h / 2, w / 2) each
    h, w = frame.height, frame.width
    x, y, cw, ch = picture.crop
    cw, ch = min(cw, w - x), min(ch, h - y)
    luma = planes[:h][y:y + ch, x:x + cw]
    chroma = planes[h:].reshape(2, h // 2, w // 2)[:, y // 2:(y + ch) // 2, x // 2:(x + cw) // 2]
    out_w, out_h = picture.size[::-1] if picture.turns % 2 else picture.size
    parts = [cv2.resize(luma, (out_w, out_h), interpolation=cv2.INTER_AREA)]
    parts += [cv2.resize(c, (out_w // 2, out_h // 2), interpolation=cv2.INTER_AREA) for c in chroma]
    return b"".join(np.ascontiguousarray(np.rot90(p, picture.turns)).tobytes() for p in parts)
