"""The encode stage on generated media: chunked encodes equal the one-chunk encode byte for byte,
seeking decode numbers frames as sequential decoding does, rotated sources come out upright,
HDR is tone-mapped to BT.709, and an encoder never outlives its killed worker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from media.seek import frame_grid, iter_frames_from
from media.stream import iter_timed_frames
from stages.encode.config import EncodeConfig
from stages.encode.stage import EncodeChunk, EncodeStage
from tests import media

ROOT = Path(__file__).resolve().parents[1]
SHOTS = [50, 70, 40, 90, 61]  # 311 frames


def _record(path: Path, edges: list[int], cuts: list[int], fps: float, size=(320, 180),
            crop=None, rotation: int = 0) -> dict:
    """A video record with one sample per ``[edges[i], edges[i + 1])``, split into shots at
    ``cuts``, cropped to ``crop`` (default: the whole frame)."""
    bounds = [0, *cuts, 10**9]
    samples = []
    for n, (a, b) in enumerate(zip(edges, edges[1:], strict=False)):
        shots = [i for i, (s, e) in enumerate(zip(bounds, bounds[1:], strict=False))
                 if s < b and e > a]
        spans = [[max(a, bounds[i]), min(b, bounds[i + 1])] for i in shots]
        x, y, w, h = crop or (0, 0, *size)
        samples.append({"start_frame": a, "end_frame": b, "shot_indices": shots,
                        "shot_spans": spans, "crop_x": x, "crop_y": y, "crop_w": w, "crop_h": h,
                        "crop_kept_fraction": w * h / (size[0] * size[1]), "split_shot": False,
                        "sample_id": f"v-{n:04d}", "sample_index": n})
    return {"video_id": "v", "path": str(path), "status": "pending", "fps": fps,
            "fps_variable": False, "rotation": rotation, "width": size[0], "height": size[1],
            "samples": samples}


def _encode(tmp: Path, record: dict, **config: object) -> dict:
    staging = Path(tempfile.mkdtemp(dir=tmp, prefix="staging-"))
    return EncodeStage(EncodeConfig(short_side=96, **config), staging).process(record)


def _outputs(record: dict) -> list[tuple[bytes, dict]]:
    assert record["status"] == "pending", record.get("reason")
    return [(Path(s["mp4_path"]).read_bytes(), {k: v for k, v in s.items() if k != "mp4_path"})
            for s in record["samples"]]


def _luma(mp4: str | Path) -> np.ndarray:
    """The Y plane of every frame of an 8-bit 4:2:0 video, as float."""
    with av.open(str(mp4)) as container:
        return np.stack([f.to_ndarray()[:f.height].astype(np.float32)
                         for f in container.decode(video=0)])


def _ffmpeg_luma(source: Path, filters: str, size: tuple[int, int]) -> np.ndarray:
    """The Y plane of ``source`` through ffmpeg's ``filters`` (ending at ``size``)."""
    w, h = size
    out = subprocess.run(["ffmpeg", "-v", "error", "-i", str(source), "-vf", filters, "-f",
                          "rawvideo", "-pix_fmt", "yuv420p", "-"], capture_output=True,
                         check=True).stdout
    frames = np.frombuffer(out, np.uint8).reshape(-1, w * h * 3 // 2)
    return frames[:, :w * h].reshape(-1, h, w).astype(np.float32)


@pytest.fixture(scope="module", params=["24", "30", "30000/1001"])
def source(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> tuple[Path, list[int], float]:
    """Five shots with cuts and B-frames at 24, 30 and 29.97 fps; GOPs of 2 s (scene cuts add
    keyframes)."""
    rate = request.param
    path = tmp_path_factory.mktemp("src") / "cuts.mp4"
    if "/" in rate:
        cuts = media.make_cuts_at_rate(path, SHOTS, rate, gop=60)
    else:
        cuts = media.make_cuts(path, SHOTS, fps=int(rate))
    num, _, den = rate.partition("/")
    return path, cuts, int(num) / int(den or 1)


def test_seeking_decode_numbers_frames_like_the_sequential_decode(source: tuple) -> None:
    path, _, _ = source
    grid = frame_grid(str(path))
    assert grid is not None and grid.num_frames == sum(SHOTS)
    reference = [(i, s, f.to_ndarray()) for i, s, f in iter_timed_frames(str(path))]
    mid_gop = [k + 7 for k in grid.keyframes[1:]] + [grid.keyframes[-1] - 1, sum(SHOTS) - 1]
    for start in [0, 1, *grid.keyframes, *mid_gop]:
        got = list(iter_frames_from(str(path), grid, start))
        first = got[0][0]
        assert first == grid.keys_before(start)[0] <= start
        assert len(got) == len(reference) - first
        for (index, seconds, frame), (ref_index, ref_seconds, ref_planes) in zip(
                got, reference[first:], strict=True):
            assert (index, seconds) == (ref_index, ref_seconds)
            assert np.array_equal(frame.to_ndarray(), ref_planes)


def test_chunked_encode_equals_the_one_chunk_encode(source: tuple, tmp_path: Path) -> None:
    path, cuts, fps = source
    edges = [5, 37, 50, 101, 163, 230, 311]  # samples mostly start inside GOPs
    one = _encode(tmp_path, _record(path, edges, cuts, fps, crop=(32, 18, 256, 144)),
                  chunk_s=None)
    record = _record(path, edges, cuts, fps, crop=(32, 18, 256, 144))
    stage = EncodeStage(EncodeConfig(short_side=96, chunk_s=2.5), tmp_path / "chunked")
    chunks = stage.chunks(record)
    assert len(chunks) >= 4 and all(c.grid is not None for c in chunks)
    grid = chunks[0].grid
    starts = [record["samples"][c.positions[0]]["start_frame"] for c in chunks]
    assert any(s not in grid.keyframes and grid.keys_before(s)[0] > 0 for s in starts), (
        "no chunk starts in the middle of a GOP after the first", starts, grid.keyframes)
    chunked = stage.process(record)
    assert _outputs(chunked) == _outputs(one)  # byte-identical mp4s, identical columns


def test_encoder_runs_one_x264_thread_so_equal_frames_give_equal_bytes(tmp_path: Path) -> None:
    # frame-threaded x264 wrote different bytes for the same 480p frames on a loaded machine
    # (benchmarks/RESULTS.md); at this size its automatic choice would be several threads
    path = tmp_path / "wide.mp4"
    cuts = media.make_cuts(path, [24, 24], w=854, h=480)
    stage = EncodeStage(EncodeConfig(short_side=480, encoder="libx264"), tmp_path / "staging")
    record = stage.process(_record(path, [0, 48], cuts, 24.0, size=(854, 480)))
    assert record["samples"][0]["encoder"] == "libx264"
    mp4, _ = _outputs(record)[0]
    settings = mp4[mp4.index(b"x264 - core"):].split(b"\0")[0].decode()
    assert " threads=1 lookahead_threads=1 " in settings, settings


def test_a_decoded_frame_off_the_grid_falls_back_to_counting(
        source: tuple, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path, cuts, fps = source
    edges = [60, 130, 200]
    one = _encode(tmp_path, _record(path, edges, cuts, fps), chunk_s=None)
    record = _record(path, edges, cuts, fps)
    stage = EncodeStage(EncodeConfig(short_side=96, chunk_s=3.0), tmp_path / "wrong-grid")
    grid = frame_grid(str(path))
    wrong = media.misleading_grid(grid)
    results = [stage.process_chunk(record, EncodeChunk((0, 1), wrong))]
    assert _outputs(stage.join(record, results)) == _outputs(one)
    assert "encoding from the first frame" in caplog.text


def test_variable_frame_rate_is_one_chunk_from_the_start(tmp_path: Path) -> None:
    path = tmp_path / "vfr.mp4"
    media.make_variable_fps(path)
    stage = EncodeStage(EncodeConfig(short_side=96, chunk_s=0.5), tmp_path / "staging")
    record = dict(_record(path, [0, 20, 40, 60, 70], [], 30.0), fps_variable=True)
    (chunk,) = stage.chunks(record)
    assert chunk.positions == (0, 1, 2, 3) and chunk.grid is None


@pytest.mark.parametrize("kind", ["variable frame rate", "matroska", "repeated timestamps"])
def test_seeking_numbers_frames_by_timestamp_rank_where_they_are_not_evenly_spaced(
    kind: str, tmp_path: Path,
) -> None:
    """Uneven timestamps (variable rate; Matroska's whole milliseconds at 24 fps) still number
    frames after a seek as the sequential decode counts them; repeated ones cannot."""
    path = tmp_path / ("clip.mkv" if kind == "matroska" else "clip.mp4")
    if kind == "variable frame rate":
        media.make_variable_fps(path)
    else:
        source = tmp_path / "cuts.mp4"
        media.make_cuts(source, [30, 50, 40, 60])
        args = ["-c", "copy"] if kind == "matroska" else [
            "-vf", "setpts='floor(N/2)*2/24/TB'", "-fps_mode", "passthrough", *media.X264]
        subprocess.run(["ffmpeg", "-v", "error", "-i", str(source), *args, str(path)],
                       check=True)
    grid = frame_grid(str(path))
    if kind == "repeated timestamps":
        assert grid is None
        return
    reference = [(i, s, f.to_ndarray()) for i, s, f in iter_timed_frames(str(path))]
    assert grid is not None and grid.num_frames == len(reference)
    steps = {b - a for a, b in zip(grid.pts, grid.pts[1:], strict=False)}
    assert len(steps) > 1  # not evenly spaced
    for start in [0, *grid.keyframes[1:], grid.keyframes[-1] + 3, len(reference) - 1]:
        got = list(iter_frames_from(str(path), grid, start))
        first = got[0][0]
        assert first == grid.keys_before(start)[0] <= start
        for (index, seconds, frame), (ref_index, ref_seconds, ref_planes) in zip(
                got, reference[first:], strict=True):
            assert (index, seconds) == (ref_index, ref_seconds)
            assert np.array_equal(frame.to_ndarray(), ref_planes)
    assert grid.seconds(0, len(reference)) == [s for _, s, _ in reference]


@pytest.mark.parametrize("degrees", [90, 270])
def test_rotated_source_is_encoded_upright(degrees: int, tmp_path: Path) -> None:
    upright, rotated = tmp_path / "upright.mp4", tmp_path / "rotated.mp4"
    media.make_cuts(upright, [24, 24])
    media.make_rotated(upright, rotated, degrees)
    crop = (160, 0, 160, 90)  # the top right quarter in stored (unrotated) pixels
    whole = _encode(tmp_path, _record(rotated, [0, 24], [], 24.0, rotation=degrees))
    part = _encode(tmp_path, _record(rotated, [24, 48], [], 24.0, crop=crop, rotation=degrees),
                   chunk_s=None)
    (_, columns), = _outputs(whole)
    assert (columns["width"], columns["height"], columns["rotation"]) == (96, 176, degrees)
    ours = _luma(whole["samples"][0]["mp4_path"])
    # How players show the file: ffmpeg applies the display matrix before the filters.
    shown = _ffmpeg_luma(rotated, "scale=96:176:flags=area", (96, 176))[:24]
    assert np.abs(ours - shown).mean() < 4
    assert np.abs(ours - np.rot90(shown, 2, axes=(1, 2))).mean() > 20  # not upside down

    stored = [f.to_ndarray()[:180] for _, _, f in iter_timed_frames(str(rotated))][24:]
    turns = degrees // 90  # the crop is taken before turning
    expected = np.stack([np.rot90(cv2.resize(g[0:90, 160:320], (176, 96),
                                             interpolation=cv2.INTER_AREA), turns)
                         for g in stored]).astype(np.float32)
    assert np.abs(_luma(part["samples"][0]["mp4_path"]) - expected).mean() < 4


def _stream_tags(mp4: str) -> dict[str, str]:
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                          "stream=pix_fmt,color_transfer,color_primaries,color_space", "-of",
                          "default=noprint_wrappers=1", mp4], capture_output=True, text=True,
                         check=True).stdout
    return dict(line.split("=", 1) for line in out.split())


@pytest.mark.parametrize("transfer", ["smpte2084", "arib-std-b67"])
def test_hdr_is_tone_mapped_to_bt709(transfer: str, tmp_path: Path) -> None:
    path = tmp_path / "hdr.mp4"
    if transfer == "smpte2084":
        media.make_hdr(path, 48)
    else:
        media.make_encoded(path, 48, 320, 180, pix_fmt="yuv420p10le", extra=[
            "-color_primaries", "bt2020", "-color_trc", transfer, "-colorspace", "bt2020nc"])
    record = _encode(tmp_path, _record(path, [0, 48], [], 24.0))
    sample = record["samples"][0]
    assert sample["tone_mapped_from"] == transfer
    assert _stream_tags(sample["mp4_path"]) == {
        "pix_fmt": "yuv420p", "color_space": "bt709", "color_transfer": "bt709",
        "color_primaries": "bt709"}
    ours = _luma(sample["mp4_path"])
    naive = _ffmpeg_luma(path, "scale=176:96:flags=area", (176, 96))  # PQ/HLG codes as SDR
    mapped = _ffmpeg_luma(path, "zscale=t=linear:npl=100,format=gbrpf32le,zscale=p=bt709,"
                          "tonemap=hable:desat=0,zscale=t=bt709:m=bt709:r=tv,format=yuv420p,"
                          "scale=176:96:flags=area", (176, 96))  # ffmpeg's, on whole frames
    print(f"{transfer}: mean luma {ours.mean():.1f}, ffmpeg tone-mapped {mapped.mean():.1f}, "
          f"naive {naive.mean():.1f}")
    assert 16 < ours.mean() < 235
    assert abs(ours.mean() - mapped.mean()) < 5 and np.abs(ours - mapped).mean() < 8
    assert np.abs(ours - naive).mean() > 20


def test_ten_bit_sdr_is_reduced_to_eight_bits_unmapped(tmp_path: Path) -> None:
    path = tmp_path / "ten.mp4"
    media.make_encoded(path, 24, 320, 180, pix_fmt="yuv420p10le")
    sample = _encode(tmp_path, _record(path, [0, 24], [], 24.0))["samples"][0]
    assert sample["tone_mapped_from"] is None
    assert _stream_tags(sample["mp4_path"])["pix_fmt"] == "yuv420p"
    plain = _ffmpeg_luma(path, "scale=176:96:flags=area", (176, 96))
    assert np.abs(_luma(sample["mp4_path"]) - plain).mean() < 3


CHILD = """
import os, signal, subprocess, sys
from pathlib import Path
import av
import stages.encode.writer as writer
from stages.encode.config import EncodeConfig
source, folder, guarded = sys.argv[1], Path(sys.argv[2]), sys.argv[3] == "1"
if not guarded:
    writer.die_with_parent = lambda: None
frame = next(av.open(source).decode(video=0))
sample = {"sample_id": "s", "crop_x": 0, "crop_y": 0, "crop_w": 64, "crop_h": 64,
          "shot_spans": [[0, 10]]}
encoder = writer.SampleWriter(sample, folder, EncodeConfig(short_side=64), 0, frame)
encoder.push(0, 0.0, frame)
encoder.push(1, 1.0, frame)  # ffmpeg is running and has frames
holder = subprocess.Popen(["sleep", "60"], pass_fds=[encoder.process.stdin.fileno()],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(encoder.process.pid, holder.pid, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def _alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux")
@pytest.mark.parametrize("guarded", [True, False])
def test_encoder_dies_with_its_killed_worker(guarded: bool, tmp_path: Path) -> None:
    """A worker SIGKILLed mid-encode leaves no ffmpeg behind, even while another process holds
    the encoder's input open (without the guard, that ffmpeg would wait forever)."""
    source = tmp_path / "src.mp4"
    media.make_encoded(source, 2, 64, 64)
    with subprocess.Popen([sys.executable, "-c", CHILD, str(source), str(tmp_path),
                           "1" if guarded else "0"], cwd=ROOT, stdout=subprocess.PIPE,
                          text=True) as child:  # one line: the encoder inherits stdout
        pids = child.stdout.readline().split()
        assert child.wait(timeout=60) == -signal.SIGKILL
    ffmpeg_pid, holder_pid = map(int, pids)
    try:
        deadline = time.monotonic() + (5 if guarded else 1)
        while _alive(ffmpeg_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _alive(ffmpeg_pid) is not guarded
    finally:
        for pid in (ffmpeg_pid, holder_pid):
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
