"""Static groupings beside MoGA: STGA windows and per-frame attention, as ``SegmentPlan``s.

STGA (paper section 3.2): the latent frame grid is cut into ``window_grid`` spatial windows (as
equal as the grid allows) and the frames of each shot into temporal groups of at most
``temporal_frames`` frames (as equal as possible), so no group crosses a shot cut. A temporal
group at the start of a shot also takes as keys/values (not queries) the last ``context_frames``
frames of the shot before it, and one at the end of a shot the first ``context_frames`` of the
shot after it, in the same window: the paper's fix for flicker after a cut.

Plans depend only on shapes and shots, so they are cached.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch

from models.attention_core import SegmentPlan, make_plan


def shot_spans(num_frames: int, shot_starts: tuple[int, ...]) -> list[tuple[int, int]]:
    """[start, end) latent frames of each shot; 0 may or may not be in ``shot_starts``."""
    if any(s < 0 or s >= num_frames for s in shot_starts):
        raise ValueError(f"shot starts {shot_starts} outside 0..{num_frames - 1}")
    starts = sorted({0, *shot_starts})
    return list(zip(starts, [*starts[1:], num_frames], strict=True))


def temporal_groups(spans: list[tuple[int, int]], temporal_frames: int,
                    context_frames: int) -> list[tuple[range, list[int]]]:
    """(query frames, key/value frames) of each temporal group, in time order."""
    groups = []
    for j, (start, end) in enumerate(spans):
        parts = math.ceil((end - start) / temporal_frames)
        cuts = [start + (end - start) * i // parts for i in range(parts + 1)]
        for i in range(parts):
            frames = range(cuts[i], cuts[i + 1])
            before = range(max(spans[j - 1][0], start - context_frames), start) \
                if i == 0 and j > 0 else range(0)
            after = range(end, min(spans[j + 1][1], end + context_frames)) \
                if i == parts - 1 and j + 1 < len(spans) else range(0)
            groups.append((frames, [*before, *frames, *after]))
    return groups


def _splits(size: int, parts: int) -> list[tuple[int, int]]:
    """``size`` cut into ``parts`` near-equal [start, end) pieces, empty ones left out."""
    cuts = [size * i // parts for i in range(parts + 1)]
    return [(a, b) for a, b in zip(cuts, cuts[1:], strict=False) if b > a]


@lru_cache(maxsize=32)
def window_plan(batch: int, grid: tuple[int, int, int], shot_starts: tuple[int, ...],
                window_grid: tuple[int, int], temporal_frames: int, context_frames: int,
                device: torch.device) -> SegmentPlan:
    """STGA window groups over ``batch`` sequences of ``grid`` = (T, Hh, Ww) raster tokens."""
    frames, height, width = grid
    index = torch.arange(frames * height * width).view(frames, height, width)
    windows = [index[:, h0:h1, w0:w1] for h0, h1 in _splits(height, window_grid[0])
               for w0, w1 in _splits(width, window_grid[1])]
    groups = temporal_groups(shot_spans(frames, shot_starts), temporal_frames, context_frames)
    segments = [(win[q_frames].reshape(-1), win[kv_frames].reshape(-1))
                for q_frames, kv_frames in groups for win in windows]
    # Equal shapes side by side, so each shape is one batched call.
    segments.sort(key=lambda seg: (seg[0].numel(), seg[1].numel()))
    tokens = frames * height * width
    q_rows = [q + b * tokens for q, _ in segments for b in range(batch)]
    kv_rows = [kv + b * tokens for _, kv in segments for b in range(batch)]
    return make_plan(torch.cat(q_rows).to(device), [q.numel() for q in q_rows],
                     torch.cat(kv_rows).to(device), [kv.numel() for kv in kv_rows])


@lru_cache(maxsize=32)
def frame_plan(batch: int, grid: tuple[int, int, int]) -> SegmentPlan:
    """One group per latent frame: in raster order these are already contiguous."""
    frames, height, width = grid
    return make_plan(None, [height * width] * (batch * frames))
