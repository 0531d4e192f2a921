"""Hard-cut and gradual-transition detection, and boundary labelling.

:class:`ContentScore` and :func:`content_cuts` find hard cuts exactly as PySceneDetect's
``ContentDetector`` does with its default weights (same scores, PySceneDetect's own flash
filter), the scores at a third of the cost. Fades and
dissolves spread their change over many frames, each below its threshold.
:class:`GradualTransitionDetector` runs the twin-comparison idea (Zhang et al., 1993) on small
luma frames: a run of frames whose frame-to-frame change stays above a low threshold is a
candidate; it is a transition when the frames before and after the run differ a lot *and* the
middle frame is close to their average, which is what a dissolve or fade is (a camera pan or
moving object fails this blend test), or a wipe or slide (a pixel test for still shots; on
moving shots :mod:`stages.shot_split.sweeps` follows the seam). :func:`label_boundaries` then
fuses cuts and spans into one ordered list of labelled boundaries, and :func:`tile_shots` turns
that into shots that tile the video.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from stages.shot_split.config import GradualConfig
from stages.shot_split.sweeps import sweeps

BOUNDARY_CLEAN = "clean"
BOUNDARY_TRANSITION = "transition"
BOUNDARY_START = "video_start"
BOUNDARY_END = "video_end"


class ContentScore:
    """PySceneDetect's ``ContentDetector`` score with its default weights (hue, saturation and
    value; no edges), at about a third of the cost: the mean absolute difference of each frame's
    HSV planes from the previous frame's, averaged over the three planes.

    The sums are integers, so the scores are bit-identical to
    ``scenedetect.detectors.content_detector._mean_pixel_distance``'s; ``tests/test_transitions.py``
    checks them against ``ContentDetector`` on real footage. :func:`content_cuts` decides the cuts.
    """

    def __init__(self) -> None:
        self._previous: np.ndarray | None = None

    def push(self, bgr: np.ndarray) -> float:
        """The next frame's score (BGR uint8) against the frame pushed before (0 for the first)."""
        import cv2

        hsv = cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV)
        previous, self._previous = self._previous, hsv
        return 0.0 if previous is None else hsv_distance(previous, hsv)

    @property
    def hsv(self) -> np.ndarray | None:
        """The last frame pushed, in HSV."""
        return self._previous


def content_cuts(scores: Sequence[float], threshold: float, min_scene_len: int,
                 fps: float) -> list[int]:
    """The cut frames ``ContentDetector`` reports for these per-frame scores (frame ``i`` scored
    against frame ``i - 1``): the frames at or above ``threshold``, through PySceneDetect's own
    merge-mode ``FlashFilter`` (cuts closer than ``min_scene_len`` merge into one).

    The filter looks back across the whole video, so it runs over the scores of every frame in
    one place, also when the scores were measured in pieces."""
    from scenedetect import FrameTimecode
    from scenedetect.detector import FlashFilter

    flash = FlashFilter(FlashFilter.Mode.MERGE, min_scene_len)
    return [cut.frame_num for index, score in enumerate(scores)
            for cut in flash.filter(FrameTimecode(index, fps=fps), bool(score >= threshold))]


def hsv_distance(previous: np.ndarray, current: np.ndarray) -> float:
    """ContentDetector's default-weight score between two HSV frames, bit for bit."""
    import cv2

    hue, sat, lum = cv2.sumElems(cv2.absdiff(current, previous))[:3]
    pixels = float(current.shape[0] * current.shape[1])
    # the same float operations, in the same order, as ContentDetector's weighted sum
    return (0 + hue / pixels * 1.0 + sat / pixels * 1.0 + lum / pixels * 1.0 + 0.0 * 0.0) / 3.0


@dataclass(frozen=True)
class Span:
    """Frames ``[start, end)`` that blend two shots."""

    start: int
    end: int


@dataclass(frozen=True)
class Boundary:
    """Where one shot ends and the next begins; ``span`` is set for transitions."""

    frame: int
    kind: str
    span: Span | None = None


class GradualTransitionDetector:
    """Online twin-comparison detector fed one small luma frame at a time."""

    def __init__(self, config: GradualConfig, fps: float) -> None:
        self.config, self.fps = config, fps
        self.max_frames = max(config.min_frames + 1, int(round(config.max_seconds * fps)))
        self.max_hold = max(2, round(fps / 2))
        self._held = 0
        self.spans: list[Span] = []
        # every run long enough to test whose ends differ like two shots, blend or not
        self.runs: list[Span] = []
        self._prev: np.ndarray | None = None
        self._recent: deque[float] = deque(maxlen=max(3, int(round(fps))))  # diffs outside runs
        self._run: list[np.ndarray] = []  # [frame before the run, changing frames...]
        self._run_start = 0
        self._run_diffs: list[float] = []
        self._run_threshold = 0.0

    def push(self, index: int, luma: np.ndarray) -> None:
        """Feed frame ``index`` (frames must come in order) as a small float32 luma image."""
        prev, self._prev = self._prev, luma
        if prev is None:
            return
        diff = float(np.abs(luma - prev).mean())
        if not self._run:
            # Motion inside a shot raises every frame diff; a transition must stand above it.
            baseline = float(np.median(self._recent)) if self._recent else 0.0
            self._run_threshold = max(self.config.low_change, baseline * self.config.motion_ratio)
        if diff >= self._run_threshold:
            if not self._run:
                self._run, self._run_start, self._run_diffs = [prev], index, []
                self._held = 0
            self._run.append(luma)
            self._run_diffs.append(diff)
            self._check_run_length(index + 1)
        elif (self._run and self._held < self.max_hold
              and max(float(prev.mean()), float(luma.mean())) <= self.config.dark_luma):
            self._held += 1  # black held (up to half a second) between a fade out and in
            self._run.append(luma)
            self._run_diffs.append(diff)
            self._check_run_length(index + 1)
        else:
            self._recent.append(diff)
            if self._run:
                self._close(index)

    def _check_run_length(self, end: int) -> None:
        """End a run too long for a transition (motion), and test a run that fills the first
        second of a video before any baseline exists (a fade-in, or motion)."""
        length = len(self._run) - 1
        diffs = self._run_diffs
        if length > self.max_frames:
            self._run = []
        elif len(self._recent) < 3 and length >= (self._recent.maxlen or 0):
            found = len(self.spans)
            self._close(end)
            if len(self.spans) > found:
                return
        else:
            return
        self._recent.extend(diffs)

    def finish(self, num_frames: int) -> list[Span]:
        """Close any open candidate and return all spans found."""
        if self._run:
            self._close(num_frames)
        return self.spans

    def state(self) -> tuple:
        """Everything :meth:`push` depends on (not the spans found), for :meth:`restore`."""
        return (self._prev, tuple(self._recent), list(self._run), self._run_start,
                list(self._run_diffs), self._run_threshold, self._held)

    def restore(self, state: tuple) -> None:
        """Continue from a :meth:`state` taken earlier (frame arrays are shared, never changed)."""
        self._prev, recent, run, self._run_start, diffs, self._run_threshold, self._held = state
        self._recent = deque(recent, maxlen=self._recent.maxlen)
        self._run, self._run_diffs = list(run), list(diffs)

    def _close(self, end: int) -> None:
        run, start = self._run, self._run_start
        self._run = []
        if len(run) - 1 < self.config.min_frames:
            return
        if float(np.abs(run[-1] - run[0]).mean()) >= self.config.min_total_change:
            self.runs.append(Span(start, end - 1))
        fade = self._fade_through_dark(run)
        settled = self._settled(run)
        if self._is_gradual(run) and (self._is_blend(run) or self._is_wipe(run)):
            # run[-1] (frame end-1) is the first frame of settled new content.
            self.spans.append(Span(start, end - 1))
        elif fade is not None:  # run[i] is frame start - 1 + i
            self.spans.append(Span(start + fade[0], start - 1 + fade[1]))
        elif settled is not None and self._is_gradual(run[:settled + 1]) and self._is_blend(
                run[:settled + 1]):  # a dissolve into a moving shot: the run went on
            self.spans.append(Span(start, start - 1 + settled))
        elif (dark := self._first_dark(run)) is not None and self._is_blend(run[:dark + 1]):
            self.spans.append(Span(start, start - 1 + dark))  # a fade out to a held black
        else:  # wipes and slides, maybe with the shot between two of them in the run
            self.spans.extend(Span(start + first, start + last)
                              for first, last in sweeps(run, self.fps, self.config.min_frames))

    def _is_blend(self, run: list[np.ndarray], min_total: float | None = None) -> bool:
        """The middle frame is close to the average of the first and last: a dissolve/fade."""
        before, after = run[0], run[-1]
        total = float(np.abs(after - before).mean())
        if total < (self.config.min_total_change if min_total is None else min_total):
            return False
        middle = run[len(run) // 2]
        residual = float(np.abs(middle - (before + after) / 2).mean()) / total
        return residual <= self.config.max_blend_residual

    def _is_wipe(self, run: list[np.ndarray]) -> bool:
        """Frames a quarter, half and three quarters through are each, pixel by pixel, the
        first or the last frame (a wipe: an edge sweeps one shot over the other), where a blend
        is halfway everywhere and a pan matches neither."""
        before, after = run[0], run[-1]
        total = float(np.abs(after - before).mean())
        if total < self.config.min_total_change:
            return False
        for quarter in (1, 2, 3):
            frame = run[round(quarter * (len(run) - 1) / 4)]
            nearer = np.minimum(np.abs(frame - before), np.abs(frame - after))
            if float(nearer.mean()) / total > self.config.max_wipe_residual:
                return False
        return True

    def _is_gradual(self, run: list[np.ndarray]) -> bool:
        """No one step makes a third of the change: else it is a hard cut inside the run."""
        steps = [float(np.abs(b - a).mean()) for a, b in zip(run, run[1:], strict=False)]
        return max(steps) <= float(np.abs(run[-1] - run[0]).mean()) / 3

    def _settled(self, run: list[np.ndarray]) -> int | None:
        """Index of the first frame of ``run`` that is nine tenths of the way from the first
        frame to the farthest frame, when that comes before the run's end (what follows it is
        the new shot's own motion), or None."""
        away = [float(np.abs(frame - run[0]).mean()) for frame in run]
        settled = int(np.flatnonzero(np.array(away) >= 0.9 * max(away))[0])
        return settled if self.config.min_frames <= settled < len(run) - 1 else None

    def _first_dark(self, run: list[np.ndarray]) -> int | None:
        """Index of the first dark frame of ``run`` after at least ``min_frames`` of change."""
        dark = [i for i, frame in enumerate(run) if float(frame.mean()) <= self.config.dark_luma]
        return dark[0] if dark and dark[0] >= self.config.min_frames else None

    def _fade_through_dark(self, run: list[np.ndarray]) -> tuple[int, int] | None:
        """A fade out to dark, maybe a held black, and a fade in: two blends meeting in the
        dark. Returns (last frame before the fade out, first frame after the fade in) as
        indices into ``run``, each where the brightness gets within a tenth of its level on
        that side (motion before or after the fade is left out), or None."""
        means = np.array([float(f.mean()) for f in run])
        dark = np.flatnonzero(means <= self.config.dark_luma)
        if dark.size == 0 or dark[0] < 2 or dark[-1] > len(run) - 3:
            return None
        first_dark = int(dark[0])
        last_dark = first_dark + int(np.argmax(np.diff(np.append(dark, -1)) != 1))
        out_level, in_level = means[:first_dark].max(), means[last_dark:].max()
        start = int(np.flatnonzero(means[:first_dark] >= 0.9 * out_level)[-1])
        end = last_dark + int(np.flatnonzero(means[last_dark:] >= 0.9 * in_level)[0])
        half = self.config.min_total_change / 2
        if self._is_blend(run[start:first_dark + 1], half) and (
                self._is_blend(run[last_dark:end + 1], half)):
            return start, end
        return None


class SparseGradualDetector:
    """The gradual detector over a sparse pass (some frames not decoded), with what it takes to
    measure each transition it finds again on every frame.

    A frame missing between two decoded ones is filled in by linear interpolation: a dissolve or
    fade is a linear blend, so inside a transition the filled frames are close to the real ones.
    Each span found comes with the detector's state ``margin`` frames before its run began
    (``None``: from the first frame); :func:`replay_gradual` continues from there over the real
    frames, so the span's ends are measured on decoded frames, not on interpolated ones.
    """

    def __init__(self, config: GradualConfig, fps: float, margin: int = 4) -> None:
        self.detector = GradualTransitionDetector(config, fps)
        self.found: list[tuple[Span, tuple[int, tuple] | None]] = []
        self._history: deque[tuple[int, tuple]] = deque(maxlen=margin + 1)
        self._origin: tuple[int, tuple] | None = None
        self._last: tuple[int, np.ndarray] | None = None

    def push(self, index: int, luma: np.ndarray) -> None:
        """Feed decoded frame ``index`` (ascending, gaps allowed) as a small float32 luma image."""
        if self._last is not None and index - self._last[0] > 1:
            before_index, before = self._last
            for missing in range(before_index + 1, index):
                weight = (missing - before_index) / (index - before_index)
                self._push(missing, ((1 - weight) * before + weight * luma).astype(np.float32))
        self._push(index, luma)
        self._last = (index, luma)

    def finish(self, num_frames: int) -> list[tuple[Span, tuple[int, tuple] | None]]:
        """Close any open candidate; every span found with the state to replay it from."""
        found = len(self.detector.spans)
        self.detector.finish(num_frames)
        self.found += [(span, self._origin) for span in self.detector.spans[found:]]
        return self.found

    def _push(self, index: int, luma: np.ndarray) -> None:
        detector = self.detector
        in_run, found = bool(detector._run), len(detector.spans)
        detector.push(index, luma)
        if detector._run and not in_run:
            self._origin = self._history[0] if self._history else None
        self.found += [(span, self._origin) for span in detector.spans[found:]]
        self._history.append((index, detector.state()))


def replay_gradual(
    config: GradualConfig, fps: float, origin: tuple[int, tuple] | None,
    frames: dict[int, np.ndarray], end: int,
) -> list[Span] | None:
    """Spans the gradual detector finds continuing from ``origin`` (a
    :class:`SparseGradualDetector` state; ``None``: the first frame) over the real frames up to
    ``end``; None when a candidate is still open at ``end``."""
    detector = GradualTransitionDetector(config, fps)
    start = 0
    if origin is not None:
        index, state = origin
        detector.restore(state)
        detector._prev, start = frames[index], index + 1  # the real frame, not a filled-in one
    for index in range(start, end + 1):
        detector.push(index, frames[index])
    return None if detector._run else detector.spans


def label_boundaries(
    cuts: list[int], spans: list[Span], num_frames: int, min_shot_frames: int
) -> list[Boundary]:
    """Fuse hard cuts and transition spans into ordered boundaries.

    A cut within ``min_shot_frames`` of a span belongs to that transition and widens it. Spans
    closer than ``min_shot_frames`` to each other merge (a fade out, black, fade in is one
    transition).
    A transition's boundary sits in the middle of its span.
    """
    merged: list[Span] = []
    for span in sorted(spans, key=lambda s: s.start):
        if merged and span.start - merged[-1].end < min_shot_frames:
            merged[-1] = Span(merged[-1].start, max(span.end, merged[-1].end))
        else:
            merged.append(span)
    clean: list[int] = []
    for cut in cuts:
        near = [i for i, s in enumerate(merged)
                if s.start - min_shot_frames <= cut <= s.end + min_shot_frames]
        if not near:
            clean.append(cut)
            continue
        # The content detector fires where a blend's change peaks or completes: widen the span.
        span = merged[near[0]]
        merged[near[0]] = Span(min(span.start, cut), max(span.end, cut))
    boundaries = [Boundary((s.start + s.end) // 2, BOUNDARY_TRANSITION, s) for s in merged]
    boundaries += [Boundary(cut, BOUNDARY_CLEAN) for cut in clean]
    boundaries.sort(key=lambda b: b.frame)
    kept: list[Boundary] = []
    for b in boundaries:
        if b.frame <= 0 or b.frame >= num_frames:
            continue
        if kept and b.frame - kept[-1].frame < min_shot_frames:
            continue  # cuts are already spaced by the detector; this guards the fused list
        kept.append(b)
    return kept


def tile_shots(boundaries: list[Boundary], num_frames: int) -> list[dict]:
    """Shots ``[start_frame, end_frame)`` between consecutive boundaries, covering the video."""
    edges = [Boundary(0, BOUNDARY_START), *boundaries, Boundary(num_frames, BOUNDARY_END)]
    shots = []
    for index, (first, last) in enumerate(zip(edges, edges[1:], strict=False)):
        shots.append({
            "shot_index": index,
            "start_frame": first.frame,
            "end_frame": last.frame,
            "boundary_in": first.kind,
            "boundary_out": last.kind,
            "transition_in_start": first.span.start if first.span else None,
            "transition_in_end": first.span.end if first.span else None,
            "transition_out_start": last.span.start if last.span else None,
            "transition_out_end": last.span.end if last.span else None,
        })
    return shots
