"""Frame timestamps that contradict themselves or the probe, and a frame that does not decode
(fuzz finds of issue 14). Each reproducer is one small Matroska file changed with ffmpeg or a
flipped bit; each ends as a reasoned rejection or a sound sample, never as an output that
``curate validate`` refuses."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import av
import pyarrow.dataset as ds
import pytest

from curation.inspect.validate import shot_time_problems, validate
from media.readers import PyAVReader
from media.stream import decoded_frames, open_video
from stages.encode.config import EncodeConfig
from stages.encode.stage import EncodeStage
from stages.probe import ProbeConfig, ProbeStage
from stages.shot_split.config import ShotSplitConfig
from stages.shot_split.stage import ShotSplitStage, timing_problem
from stages.video_score import VideoScoreConfig, VideoScoreStage
from tests import media


@pytest.fixture(scope="module")
def cuts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Shots of 30, 24 and 36 frames at 24 fps, in Matroska (millisecond timestamps)."""
    path = tmp_path_factory.mktemp("timestamps") / "cuts.mkv"
    media.make_cuts(path, [30, 24, 36], w=256, h=144, moving=True)
    return path


def _setts(expression: str) -> Callable[[Path, Path], None]:
    """A maker that rewrites each packet's pts (milliseconds) with ffmpeg's setts filter."""
    def make(source: Path, target: Path) -> None:
        subprocess.run(["ffmpeg", "-v", "error", "-i", str(source), "-c", "copy", "-bsf:v",
                        f"setts=pts={expression}", str(target)], check=True)
    return make


def _slow(source: Path, target: Path) -> None:
    """TimestampScale 1 ms -> 10 ms: frames 417 ms apart while the file still declares 24 fps."""
    data, scale = source.read_bytes(), bytes.fromhex("2ad7b1830f4240")  # ID, size 3, 10^6 ns
    assert data.count(scale) == 1
    target.write_bytes(data.replace(scale, bytes.fromhex("2ad7b183989680")))


def _damaged(last_shown: bool) -> Callable[[Path, Path], None]:
    """A maker that flips bit 0x10 of the NAL header (a reserved NAL type, which the decoder
    rejects) in the last packet in decode order (a B-frame here), or in the last frame shown."""
    def make(source: Path, target: Path) -> None:
        with av.open(str(source)) as container:
            packets = [p for p in container.demux(video=0) if p.size]
            last = bytes(max(packets, key=lambda p: p.pts) if last_shown else packets[-1])
        data = bytearray(source.read_bytes())
        data[data.rindex(last) + 4] ^= 0x10  # after the 4-byte NAL length
        target.write_bytes(bytes(data))
    return make


MAKERS: dict[str, Callable[[Path, Path], None]] = {
    "jump": _setts(r"if(eq(N\,40)\,PTS+32000\,PTS)"),  # one frame 32 s ahead of its place
    "back": _setts(r"if(lt(N\,36)\,PTS+3000\,PTS)"),  # the first 36 packets 3 s late
    "slow": _slow,
    "gap": _setts(r"if(gte(PTS\,1700)\,PTS+500\,PTS)"),  # a pause of 0.5 s, times still rising
    "damaged": _damaged(last_shown=False),
    "damaged_end": _damaged(last_shown=True),
}


def _make(name: str, cuts: Path, folder: Path) -> Path:
    path = folder / f"{name}.mkv"
    MAKERS[name](cuts, path)
    return path


def _probed(path: Path) -> dict:
    return ProbeStage(ProbeConfig()).process({"path": str(path), "status": "pending",
                                               "video_id": path.stem})


@pytest.mark.parametrize(("name", "rule"), [("jump", "timestamps_not_increasing"),
                                            ("back", "timestamps_not_increasing"),
                                            ("slow", "fps_mismatch")])
def test_timestamps_that_contradict_themselves_or_the_probe_are_rejected(
    name: str, rule: str, cuts: Path, tmp_path: Path,
) -> None:
    record = ShotSplitStage(ShotSplitConfig()).process(_probed(_make(name, cuts, tmp_path)))
    assert record["status"] == "rejected", record.get("reason")
    assert record["reason"].startswith(f"shot_split.{rule}: ")
    if name == "slow":  # 2.4 fps by the timestamps against the declared 24
        assert float(record["reject_value"]) == pytest.approx(2.4, abs=0.01)


def test_timing_rules() -> None:
    steady = [i / 24 for i in range(48)]
    assert timing_problem(steady, 24.0) is None
    paired = [(i // 2) * 2 / 24 for i in range(48)]  # repeated timestamps are allowed
    assert timing_problem(paired, 24.0) is None
    assert timing_problem([0.0] * 48, 24.0)[0] == "fps_mismatch"


def test_a_pause_in_rising_timestamps_is_encoded_consistently(cuts: Path, tmp_path: Path) -> None:
    """Frame k of the output shows the source at start + k/24 s, so a 0.5 s pause holds a frame
    for 12 more output frames, and the shots' output spans still tile the mp4."""
    record = ShotSplitStage(ShotSplitConfig()).process(_probed(_make("gap", cuts, tmp_path)))
    assert record["status"] == "pending", record.get("reason")
    spans = [[s["start_frame"], s["end_frame"]] for s in record["shots"]]
    record["samples"] = [{"sample_id": "gap-0000", "start_frame": 0, "end_frame": 90,
                          "shot_spans": spans, "crop_x": 0, "crop_y": 0, "crop_w": 256,
                          "crop_h": 144}]
    out = EncodeStage(EncodeConfig(short_side=96), tmp_path / "staging").process(record)
    sample = out["samples"][0]
    assert sample["num_frames"] == 90 + 12
    frames = sample["shot_frames"]
    assert frames[0][0] == 0 and frames[-1][1] == sample["num_frames"]
    assert all(a[1] == b[0] and a[0] < a[1] for a, b in zip(frames, frames[1:], strict=False))


def test_the_encode_refuses_frames_whose_times_go_back(cuts: Path, tmp_path: Path) -> None:
    """Past the shot split's check, the encode still writes no sample from backward times."""
    path = _make("jump", cuts, tmp_path)
    record = {"path": str(path), "video_id": "jump", "status": "pending", "fps": 24.0,
              "fps_variable": False, "rotation": 0,
              "samples": [{"sample_id": "jump-0000", "start_frame": 0, "end_frame": 90,
                           "shot_spans": [[0, 30], [30, 54], [54, 90]], "crop_x": 0,
                           "crop_y": 0, "crop_w": 256, "crop_h": 144}]}
    out = EncodeStage(EncodeConfig(short_side=96), tmp_path / "staging").process(record)
    assert out["status"] == "failed"
    assert out["reason"] == ("encode.encode_error: ValueError: source frame 41 is at 1.708 s, "
                             "before frame 40 at 33.667 s")


def test_validate_wants_shot_times_rising_from_zero() -> None:
    """The backward file was accepted with shots at 0-1.25, 1.25-(-0.75) and -0.75-0.75 s."""
    shots = [{"shot_index": i, "start_time": a, "end_time": b}
             for i, (a, b) in enumerate([(0.0, 1.25), (1.25, -0.75), (-0.75, 0.75)])]
    assert shot_time_problems(shots) == [
        "shot 1: times [1.25, -0.75) do not rise from 1.25",
        "shot 2: times [-0.75, 0.75) do not rise from 1.25"]
    assert shot_time_problems([dict(s, start_time=a, end_time=b) for s, (a, b) in zip(
        shots, [(0.0, 1.25), (1.25, 2.25), (2.25, 3.75)], strict=True)]) == []


def test_a_frame_that_does_not_decode_is_replaced_by_the_nearest(
    cuts: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    """The random-access reader counts 90 packets; the frames the damaged packet takes with it
    (how many depends on the decoder's threads) are served by the last one that decoded."""
    path = _make("damaged", cuts, tmp_path)
    reader = PyAVReader(str(path), (64, 36))
    assert reader.num_frames == 90
    with caplog.at_level(logging.WARNING, "media"):
        frames = reader.frames_at([0, 45, 89])
    assert frames.shape == (3, 36, 64, 3)
    assert "did not decode" in caplog.text and "89]" in caplog.text
    with open_video(str(path), threads=1) as (container, stream):  # one thread: send fails
        assert len(list(decoded_frames(container, stream))) == 89


@pytest.mark.parametrize(("name", "chunk_s"), [("damaged", None), ("damaged_end", 1.5)])
def test_a_damaged_last_frame_leaves_the_video_usable(
    name: str, chunk_s: float | None, cuts: Path, tmp_path: Path,
) -> None:
    """Scored with the nearest decoded frames, split over the frames that decode: in pieces of
    1.5 s, the last piece finds the stream ending early and the video is measured in one pass."""
    record = VideoScoreStage(VideoScoreConfig()).process(_probed(_make(name, cuts, tmp_path)))
    assert record["status"] == "pending", record.get("reason")
    splitter = ShotSplitStage(ShotSplitConfig(chunk_s=chunk_s))
    assert len(splitter.chunks(record)) == (1 if chunk_s is None else 3)
    record = splitter.process(record)
    assert record["status"] == "pending", record.get("reason")
    assert 85 <= record["frames_decoded"] < 90
    assert [s["start_frame"] for s in record["shots"]] == [0, 30, 54]


@pytest.mark.slow
def test_every_reproducer_ends_in_a_valid_output(cuts: Path, tmp_path: Path) -> None:
    raw, out = tmp_path / "raw", tmp_path / "out"
    raw.mkdir()
    for name in MAKERS:
        _make(name, cuts, raw)
    done = subprocess.run([sys.executable, "-m", "curation.cli", "run", str(raw), str(out),
                           "--num-cpus", "2", "--progress", "quiet"], capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    rows = {Path(r["rel_path"]).stem: r for r in ds.dataset(out / "videos").to_table().to_pylist()}
    assert {name: (r["status"], r["reject_rule"]) for name, r in rows.items()} == {
        "jump": ("rejected", "timestamps_not_increasing"),
        "back": ("rejected", "timestamps_not_increasing"),
        "slow": ("rejected", "fps_mismatch"),
        "gap": ("accepted", None),
        "damaged": ("accepted", None),
        "damaged_end": ("accepted", None),
    }
    assert {rows[name]["num_samples"] for name in ("gap", "damaged", "damaged_end")} == {1}
    assert validate(out) == []
