"""One video's work in pieces: :class:`stages.base.ChunkedStage` mapped in order and as parallel Ray
tasks (:mod:`curation.fan_out`) gives the same record; a failing piece fails its video."""

from __future__ import annotations

import dataclasses
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel

from stages.base import ChunkedStage, consecutive_groups
from stages.probe import ProbeConfig, ProbeStage
from stages.records import Record
from stages.resources import Resources
from stages.shot_crop.config import ShotCropConfig
from stages.shot_crop.stage import ShotCropStage
from tests import media
from tests.media_text import TextVideo, make_text_video

ray = pytest.importorskip("ray")


class _Config(BaseModel):
    fail_on: int | None = None
    kill_on: int | None = None
    kill_marker: str | None = None  # the piece kills its worker only while this file is absent


class PidStage(ChunkedStage[_Config]):
    """Pieces that take a moment and say which process ran them."""

    name: ClassVar[str] = "pid"

    def chunks(self, record: Record) -> list[int]:
        return list(range(record["pieces"]))

    def process_chunk(self, record: Record, chunk: int) -> Any:
        if chunk == self.config.fail_on:
            raise ValueError(f"piece {chunk} is broken")
        marker = self.config.kill_marker
        if chunk == self.config.kill_on and not (marker and os.path.exists(marker)):
            if marker:
                Path(marker).touch()
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(0.5)
        return {"piece": chunk, "pid": os.getpid()}

    def join(self, record: Record, results: list[Any]) -> Record:
        record["results"] = results
        return record


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _mapper(stage: ChunkedStage):  # noqa: ANN202 - a RayPieceMapper
    from curation.fan_out import RayPieceMapper

    return RayPieceMapper(stage, Resources(num_cpus=1), 0)


def test_consecutive_groups_bound_the_span_of_each_piece() -> None:
    spans = [(0, 10), (10, 20), (20, 50), (50, 60), (60, 200)]
    assert consecutive_groups(spans, 30) == [[0, 1], [2], [3], [4]]
    assert consecutive_groups(spans, None) == [[0, 1, 2, 3, 4]]
    assert consecutive_groups([], 5) == []


def test_pieces_run_in_parallel_processes_and_join_in_order(local_ray: None) -> None:
    stage = PidStage(_Config())
    record = stage.run_chunks({"status": "pending", "pieces": 6}, _mapper(stage))
    assert [r["piece"] for r in record["results"]] == list(range(6))
    assert record["results"][0]["pid"] == os.getpid()  # the first piece runs in the caller
    assert len({r["pid"] for r in record["results"]} - {os.getpid()}) == 2


def test_a_failing_piece_fails_its_video_with_the_cause(local_ray: None) -> None:
    stage = PidStage(_Config(fail_on=2))
    record = stage.run_chunks({"status": "pending", "pieces": 4}, _mapper(stage))
    assert record["status"] == "failed" and record["reject_rule"] == "error"
    assert "ValueError: piece 2 is broken" in record["reason"]


def test_a_killed_piece_worker_is_retried_and_a_doomed_piece_fails_its_video(
    local_ray: None, tmp_path: Path
) -> None:
    once = PidStage(_Config(kill_on=1, kill_marker=str(tmp_path / "killed-once")))
    record = once.run_chunks({"status": "pending", "pieces": 3}, _mapper(once))
    assert [r["piece"] for r in record["results"]] == [0, 1, 2]
    always = PidStage(_Config(kill_on=1))
    record = always.run_chunks({"status": "pending", "pieces": 3}, _mapper(always))
    assert record["status"] == "failed" and record["reject_rule"] == "worker_lost"
    assert record["reason"].startswith("pid.worker_lost: piece 1: its worker died 3 times")


def _subtitled(tmp_path: Path) -> Record:
    """A probed four-shot video with subtitles and a watermark, its shots given."""
    video = tmp_path / "subtitled.mp4"
    spec = TextVideo([["HELLO WORLD"], ["SCENE TWO"], ["AND THREE"], ["THE END"]],
                     shot_frames=30, watermark="MOGA TV")
    make_text_video(video, spec)
    probed = ProbeStage(ProbeConfig()).process({"path": str(video), "status": "pending",
                                                 "border_w": 0})
    bounds = [0, *spec.cuts, probed["num_frames"]]
    probed["shots"] = [{"shot_index": i, "start_frame": a, "end_frame": b}
                       for i, (a, b) in enumerate(zip(bounds, bounds[1:], strict=False))]
    return probed


def test_ocr_in_parallel_pieces_equals_the_whole_video_at_once(
    local_ray: None, tmp_path: Path
) -> None:
    probed = _subtitled(tmp_path)
    whole = ShotCropStage(ShotCropConfig(chunk_s=None))
    pieces = ShotCropStage(ShotCropConfig(chunk_s=1.0))
    assert len(pieces.chunks(probed)) == 4 and len(whole.chunks(probed)) == 1
    expected = whole.process(dict(probed, shots=[dict(s) for s in probed["shots"]]))
    got = pieces.run_chunks(dict(probed, shots=[dict(s) for s in probed["shots"]]),
                            _mapper(pieces))
    assert got == expected
    assert all(shot["ocr_boxes"] and shot["crop_kept_fraction"] < 1 for shot in got["shots"])


def test_ocr_pieces_misled_by_the_timestamps_count_frames_from_the_start(tmp_path: Path) -> None:
    probed = _subtitled(tmp_path)
    stage = ShotCropStage(ShotCropConfig(chunk_s=1.0))
    expected = ShotCropStage(ShotCropConfig(chunk_s=None)).process(
        dict(probed, shots=[dict(s) for s in probed["shots"]]))
    record = dict(probed, shots=[dict(s) for s in probed["shots"]])
    wrong = [dataclasses.replace(c, grid=media.misleading_grid(c.grid))
             for c in stage.chunks(record)]
    assert stage.join(record, [stage.process_chunk(record, c) for c in wrong]) == expected

