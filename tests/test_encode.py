"""The encode stage on generated media: chunked encodes equal the one-chunk encode byte for byte,
and seeking decode numbers frames as sequential decoding does."""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import numpy as np
import pytest

from curation.decode import iter_timed_frames
from curation.seek import frame_grid, iter_frames_from
from stages.encode import EncodeChunk, EncodeConfig, EncodeStage
from tests import media

SHOTS = [50, 70, 40, 90, 61]  # 311 frames


def _record(path: Path, edges: list[int], cuts: list[int], fps: float, size=(320, 180),
            crop=None) -> dict:
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
            "fps_variable": False, "width": size[0], "height": size[1],
            "samples": samples}


def _encode(tmp: Path, record: dict, **config: object) -> dict:
    staging = Path(tempfile.mkdtemp(dir=tmp, prefix="staging-"))
    return EncodeStage(EncodeConfig(short_side=96, **config), staging).process(record)


def _outputs(record: dict) -> list[tuple[bytes, dict]]:
    assert record["status"] == "pending", record.get("reason")
    return [(Path(s["mp4_path"]).read_bytes(), {k: v for k, v in s.items() if k != "mp4_path"})
            for s in record["samples"]]


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


def test_a_decoded_frame_off_the_grid_falls_back_to_counting(
        source: tuple, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path, cuts, fps = source
    edges = [60, 130, 200]
    one = _encode(tmp_path, _record(path, edges, cuts, fps), chunk_s=None)
    record = _record(path, edges, cuts, fps)
    stage = EncodeStage(EncodeConfig(short_side=96, chunk_s=3.0), tmp_path / "wrong-grid")
    grid = frame_grid(str(path))
    wrong = dataclasses.replace(grid, step=grid.step * 2, num_frames=grid.num_frames // 2)
    results = [stage.process_chunk(record, EncodeChunk((0, 1), wrong))]
    assert _outputs(stage.join(record, results)) == _outputs(one)
    assert "encoding from the first frame" in caplog.text


def test_variable_frame_rate_is_one_chunk_from_the_start(tmp_path: Path) -> None:
    path = tmp_path / "vfr.mp4"
    media.make_variable_fps(path)
    assert frame_grid(str(path)) is None
    stage = EncodeStage(EncodeConfig(short_side=96, chunk_s=0.5), tmp_path / "staging")
    for flagged in (True, False):  # probe's flag, or timestamps found off one grid
        record = dict(_record(path, [0, 20, 40, 60, 70], [], 30.0), fps_variable=flagged)
        (chunk,) = stage.chunks(record)
        assert chunk.positions == (0, 1, 2, 3) and chunk.grid is None
