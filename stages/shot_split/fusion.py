"""Cuts and transition spans from a learned model's per-frame probabilities, alone or fused
with the content detector's cuts and the gradual detector's spans.

Both networks give frame ``i`` a high cut probability when it is the *last* frame of a shot, so
a cut found at ``i`` is reported at ``i + 1``, the first frame of the next shot (the frame the
content detector reports). A run of frames at or above the threshold is one boundary: a run as
long as a transition (``min_frames``, counted on the span head, which marks every frame of a
gradual transition) is a transition over those frames; a shorter run is a hard cut at its peak.

How ``fused`` votes (:func:`fused_boundaries`):

- a content cut stands only when the model gives the frames around it at least ``confirm``
  (fast motion scores high on colour change but low on the model: vetoed), and no cut stands
  inside a flash (:mod:`stages.shot_split.flashes`: the picture comes back; the model alone
  calls flashes cuts about half the time);
- the gradual detector's spans stand (its blend test is strict) and absorb model spans that
  overlap them;
- a model boundary the cheap detectors missed (a cut between similar shots, a wipe) is added
  where the model was asked to look: around every frame whose colour change stood out and
  every run of changing frames (:mod:`stages.shot_split.learned` predicts those ranges only).
"""

from __future__ import annotations

import numpy as np

from stages.shot_split.transitions import Span

# Frames around a content cut at ``c`` whose probability confirms it: the model marks ``c - 1``;
# one frame either way absorbs a peak shared by two frames.
CONFIRM_BEFORE, CONFIRM_AFTER = 2, 1


def learned_boundaries(cut: np.ndarray, span: np.ndarray, threshold: float,
                       min_frames: int, first: int = 0) -> tuple[list[int], list[Span]]:
    """(cut frames, transition spans) from per-frame probabilities of frames ``first ..``;
    NaN (not predicted) counts as no boundary."""
    hits = np.nan_to_num(cut, nan=0.0) >= threshold
    covered = np.nan_to_num(span, nan=0.0) >= threshold
    cuts: list[int] = []
    spans: list[Span] = []
    for start, end in _runs(hits):
        while start > 0 and covered[start - 1]:  # the span head marks the whole transition
            start -= 1
        while end < len(covered) and covered[end]:
            end += 1
        if end - start >= min_frames:
            spans.append(Span(first + start, first + end))
            continue
        peak = start + int(np.argmax(np.nan_to_num(cut[start:end], nan=0.0)))
        if 0 < peak < len(cut) - 2:  # a one-frame shot at either end: the windows' padding
            cuts.append(first + peak + 1)
    return sorted(set(cuts)), _distinct(spans)


def fused_boundaries(content_cuts: list[int], gradual_spans: list[Span], flashes: list[Span],
                     cut: np.ndarray, span: np.ndarray, threshold: float, confirm: float,
                     min_frames: int) -> tuple[list[int], list[Span]]:
    """(cut frames, transition spans) by the vote in the module docstring; ``content_cuts``
    are already cleared of flashes and pans (:func:`stages.shot_split.stage.boundaries_from`),
    the model's own cuts are checked against ``flashes`` here; ``cut`` and ``span`` cover every
    frame of the video, NaN where the model did not look."""
    kept = [c for c in content_cuts if _confirmed(cut, c, confirm)]
    model_cuts, model_spans = learned_boundaries(cut, span, threshold, min_frames)
    model_cuts = [c for c in model_cuts if not in_flash(c, flashes)]
    spans = list(gradual_spans)
    for extra in model_spans:
        if not any(_overlap(extra, s) for s in spans):
            spans.append(extra)
    cuts = list(kept)
    for extra in model_cuts:
        near_cut = any(abs(extra - c) <= 2 for c in cuts)
        in_span = any(s.start <= extra <= s.end for s in spans)
        if not near_cut and not in_span:
            cuts.append(extra)
    return sorted(cuts), sorted(spans, key=lambda s: s.start)


def in_flash(frame: int, flashes: list[Span]) -> bool:
    """Whether a cut at ``frame`` is the jump into, or out of, one of ``flashes``."""
    return any(f.start <= frame <= f.end for f in flashes)


def _confirmed(cut: np.ndarray, frame: int, confirm: float) -> bool:
    """Whether the model's cut probability near ``frame`` reaches ``confirm`` (kept when the
    model was not run there)."""
    around = cut[max(0, frame - CONFIRM_BEFORE):frame + CONFIRM_AFTER]
    if around.size == 0 or np.all(np.isnan(around)):
        return True
    return bool(np.nanmax(around) >= confirm)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of every run of True in ``mask``."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist(),
                    strict=True))


def _overlap(a: Span, b: Span) -> bool:
    return a.start < b.end and b.start < a.end


def _distinct(spans: list[Span]) -> list[Span]:
    """Spans in order, overlapping ones joined (two cut runs in one marked transition)."""
    joined: list[Span] = []
    for s in sorted(spans, key=lambda s: s.start):
        if joined and s.start < joined[-1].end:
            joined[-1] = Span(joined[-1].start, max(joined[-1].end, s.end))
        else:
            joined.append(s)
    return joined
