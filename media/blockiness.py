"""Blockiness: how much a codec's block grid shows in a decoded picture.

Block codecs (H.264, HEVC, VP9, AV1, MPEG-2/4) code the picture in transform blocks aligned to an
8-pixel grid (4x4 transforms fall on it too). The coarser the quantiser, the more the blocks'
edges step while their insides flatten. :func:`block_edge_ratio` compares the mean |difference|
of neighbouring luma pixels across the grid's lines (between columns 8k-1 and 8k, and rows
likewise) with the mean at positions inside blocks (phase 3, a 4x4 edge, left out): about 1 where
no grid shows, higher the blockier.

It needs the full-resolution plane (at the 256 px analysis width the grid is gone) and reads it
as the analysis pass decodes it, with deblocking skipped (``fast_decode``), where the edges are
undisguised; a deblocked decode reads far lower (CRF 46: 1.2-1.3). A ratio of grid-aligned
pixels, it compares across resolutions: on libx264 re-encodes of real footage it rises strictly
with the CRF at native and half size alike (``tests/test_compression.py``). Per direction, the
medians over sampled block rows and block columns (not means) keep a few strong edges that
happen to lie on the grid (graphics, bars) from reading as blocking, and :data:`FLAT` keeps
one-level steps in flat areas, invisible, from counting. Blur, noise and darkening leave it near
1; intra frames read blockiest, so it does not grow along a GOP from the skipped deblocking.

Measured (benchmarks/RESULTS.md): shot medians of 1.0-1.1 at CRF 18, 1.3-1.6 at CRF 38 and
2.7-4.1 at CRF 46; test patterns up to 1.5. It reads :data:`BANDS` bands of 9 rows whatever the
height: the analysis pass copies them from every frame (:func:`grid_bands`, about 0.01 ms) and
works out the ratio (:func:`bands_ratio`, about 0.05 ms) only on the frames it measures.
"""

from __future__ import annotations

import math

import numpy as np

GRID = 8  # block grid, pixels
BANDS = 16  # most bands of GRID + 1 rows sampled per picture
FLAT = 1.0  # luma levels added to both sides of the ratio, per direction
_ROWS = np.arange(GRID + 1)
_INSIDE = [0, 1, 2, 4, 5, 6]  # phases inside a block (7: across the grid; 3: a 4x4 edge)


def block_edge_ratio(luma: np.ndarray, bits: int = 8) -> float:
    """Mean |step| across the block grid over the mean inside blocks, from a full-resolution
    luma plane (uint8, or uint16 holding ``bits``-bit levels); NaN for a picture under 9x9."""
    bands = grid_bands(luma, bits)
    return math.nan if bands is None else bands_ratio(bands)


def grid_bands(luma: np.ndarray, bits: int = 8) -> np.ndarray | None:
    """What :func:`bands_ratio` reads: up to :data:`BANDS` bands of rows 8g .. 8g + 8, spread
    evenly down the plane, copied as 8-bit levels, (n, 9, width); None under 9x9 pixels."""
    height, width = luma.shape
    block_rows = (height - 1) // GRID
    if block_rows < 1 or width <= GRID:
        return None
    n = min(BANDS, block_rows)
    bands = luma[(np.arange(n) * block_rows // n * GRID)[:, None] + _ROWS]
    return (bands >> (bits - 8)).astype(np.uint8) if bits > 8 else bands


def bands_ratio(bands: np.ndarray) -> float:
    """The block-edge ratio of the bands :func:`grid_bands` sampled."""
    import cv2

    n, _, width = bands.shape
    cols = (width - 1) // GRID * GRID
    flat = bands.reshape(n, (GRID + 1) * width)
    # row r+1 against row r of each band: (n * 8, width) -> phase r of band g at [g, r]
    vertical = cv2.absdiff(flat[:, width:], flat[:, :-width]).reshape(n * GRID, width)
    vertical = cv2.reduce(vertical, 1, cv2.REDUCE_SUM, dtype=cv2.CV_32S).reshape(n, GRID) / width
    # column x+1 against column x of every sampled row, summed down: phase x % 8 of block x // 8
    rows = flat.reshape(-1, width)
    horizontal = cv2.reduce(cv2.absdiff(rows[:, 1:cols + 1], rows[:, :cols]), 0,
                            cv2.REDUCE_SUM, dtype=cv2.CV_32S).reshape(-1, GRID) / len(rows)
    phases = _middle(vertical) + _middle(horizontal)
    return float((phases[GRID - 1] + 2 * FLAT) / (phases[_INSIDE].mean() + 2 * FLAT))


def _middle(values: np.ndarray) -> np.ndarray:
    """Each column's median (the upper middle value for an even count; a sort is several times
    quicker than ``np.median`` on these small arrays)."""
    return np.sort(values, axis=0)[len(values) // 2]


def luma_plane(frame: object) -> tuple[np.ndarray, int] | None:
    """(luma plane at full resolution, bits per level) of a decoded PyAV frame, read in place
    (a view of the decoder's buffer); None for RGB, packed and big-endian formats."""
    form = frame.format
    luma = form.components[0]
    if not (luma.is_luma and luma.plane == 0 and (form.is_planar or form.name == "gray")):
        return None
    if luma.bits > 8 and not form.name.endswith("le"):
        return None
    plane = frame.planes[0]
    dtype, size = (np.uint8, 1) if luma.bits <= 8 else (np.dtype("<u2"), 2)
    rows = np.frombuffer(plane, dtype).reshape(plane.height, plane.line_size // size)
    return rows[:, :plane.width], luma.bits
