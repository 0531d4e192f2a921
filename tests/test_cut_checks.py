"""The shot split's cheap checks on content cuts: flashes, pans, the same picture re-encoded,
and spikes just under the threshold (stages/shot_split/flashes.py, motion.py, spikes.py)."""

from __future__ import annotations

import cv2
import numpy as np

from stages.shot_split.flashes import FlashFinder
from stages.shot_split.motion import correlation, same_picture
from stages.shot_split.spikes import spike_cuts, standout
from stages.shot_split.transitions import Span, hsv_distance


def _texture(seed: int, shape: tuple[int, int] = (144, 256)) -> np.ndarray:
    """A smooth random grey picture (blurred noise stretched to 0-255), uint8."""
    noise = np.random.default_rng(seed).integers(0, 255, shape, np.uint8)
    return cv2.normalize(cv2.GaussianBlur(noise, (0, 0), 3), None, 0, 255, cv2.NORM_MINMAX)


def _hsv(seed: int) -> np.ndarray:
    """A smooth random colour picture, in HSV as the content score sees it."""
    bgr = np.dstack([_texture(seed * 3 + plane) for plane in range(3)])
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV)


def test_a_jump_that_comes_back_is_a_flash_and_one_that_stays_is_not() -> None:
    assert hsv_distance(_hsv(1), _hsv(2)) > 2 * 13.5  # the two shots are far apart
    finder = FlashFinder(jump=18.0, back=13.5, max_frames=12)
    shot, other = _hsv(1), _hsv(2)
    white = cv2.cvtColor(np.full((144, 256, 3), 250, np.uint8), cv2.COLOR_BGR2HSV)
    frames = [(shot, 0.0)] * 10 + [(white, 60.0), (white, 0.0), (shot, 60.0)] + [(shot, 0.0)] * 5
    frames += [(other, 40.0)] + [(other, 0.0)] * 20  # a cut at 18: the picture stays changed
    for index, (frame, score) in enumerate(frames):
        finder.push(index, frame, score)
    assert finder.flashes == [Span(10, 12)]


def test_a_jump_back_after_max_frames_is_two_cuts_not_a_flash() -> None:
    finder = FlashFinder(jump=18.0, back=13.5, max_frames=3)
    shot, other = _hsv(1), _hsv(2)
    frames = [(shot, 0.0)] * 5 + [(other, 40.0)] + [(other, 0.0)] * 5 + [(shot, 40.0)]
    for index, (frame, score) in enumerate(frames):
        finder.push(index, frame, score)
    assert finder.flashes == []


def test_a_pan_correlates_a_cut_does_not_and_a_reencode_is_the_same_picture() -> None:
    wide = _texture(3, (144, 400))
    before, panned = wide[:, :256], wide[:, 30:286]  # the camera moved 30 px
    shift, response = correlation(before, panned)
    assert abs(shift - 30) < 1 and response > 0.35 and not same_picture(shift, response)
    _, response = correlation(before, _texture(4))
    assert response < 0.2
    noisy = np.clip(before.astype(int) + np.random.default_rng(5).integers(-3, 4, before.shape),
                    0, 255).astype(np.uint8)  # a keyframe's quality jump, nothing moved
    assert same_picture(*correlation(before, noisy))


def test_spikes_just_under_the_threshold_that_stand_out_are_cuts() -> None:
    scores = np.full(100, 2.0)
    scores[30] = 20.0  # 2/3 of 27 is 18: in range, 10x the frames around it
    scores[60:75] = 20.0  # as high, but so are its neighbours (motion)
    scores[85] = 15.0  # stands out, but below 2/3 of the threshold
    scores[90] = 40.0  # above the threshold: the content detector's cut, not a spike
    assert spike_cuts(scores, 27.0, 5.0, 6) == [30]
    assert standout(scores, 30, 6) == 10.0
    assert standout(np.array([0.0, 5.0, 0.0]), 1, 1) == float("inf")
