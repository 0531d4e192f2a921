"""Encode stage: each sample cropped, resized to 480p, resampled to 24 fps, H.264 in mp4.

The samples of a video split into chunks: runs of consecutive samples spanning at most
``chunk_s`` seconds of source, which the runner may encode in parallel. A chunk decodes only its
span with PyAV, from the keyframe at or before its first sample (:mod:`media.seek` numbers the
frames from their timestamps, exactly as the shot split counted them); a video probed as
variable-frame-rate, or one whose frames cannot be numbered by timestamp, is one chunk decoded
from the start (:func:`media.stream.iter_timed_frames`). Both ends of every sample are
frame-accurate and no keyframe copy is involved. Frames are cropped, resized and turned upright
on their YUV planes (:mod:`stages.encode.frames`) and piped raw to libx264 or NVENC
(:mod:`stages.encode.writer`), which tone-maps HDR to BT.709. Each sample's mp4 lands in the
staging folder; the driver packs it into a shard.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import ClassVar

from media.seek import FrameGrid, GridMismatch, grid_for_pieces, iter_frames_from
from media.stream import iter_timed_frames
from stages.base import ChunkedStage, ChunkFailure, consecutive_groups
from stages.encode.config import EncodeConfig
from stages.encode.writer import SampleWriter
from stages.records import Record

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EncodeChunk:
    """Samples at ``positions`` of ``record["samples"]`` (consecutive in source order), and the
    timestamps to seek by (None: decode from the first frame)."""

    positions: tuple[int, ...]
    grid: FrameGrid | None


class EncodeRule(StrEnum):
    """Why the encode fails a video."""

    ENCODE_ERROR = "encode_error"


class EncodeStage(ChunkedStage[EncodeConfig]):
    """Writes the mp4 of every planned sample of a video into ``staging_dir``."""

    name: ClassVar[str] = "encode"
    rules: ClassVar[type[StrEnum]] = EncodeRule

    def __init__(self, config: EncodeConfig, staging_dir: Path) -> None:
        super().__init__(config)
        self.staging_dir = staging_dir

    def chunks(self, record: Record) -> list[EncodeChunk]:
        """Runs of samples of at most ``chunk_s`` seconds; one decoded from the start when the
        video has one run, a variable frame rate or irregular timestamps."""
        samples = record.get("samples") or []
        if not samples:
            return []
        order = sorted(range(len(samples)), key=lambda i: samples[i]["start_frame"])
        limit = self.config.chunk_s
        max_frames = None if limit is None else max(1, round(limit * float(record["fps"])))
        groups = consecutive_groups(
            [(samples[i]["start_frame"], samples[i]["end_frame"]) for i in order], max_frames)
        runs = [tuple(order[i] for i in group) for group in groups]
        grid = None
        if len(runs) > 1:
            grid = grid_for_pieces(record)
        if grid is None:
            return [EncodeChunk(tuple(itertools.chain(*runs)), None)]
        return [EncodeChunk(run, grid) for run in runs]

    def process_chunk(self, record: Record, chunk: EncodeChunk
                      ) -> list[tuple[int, dict]] | ChunkFailure:
        """Encode the chunk's samples; return (position in ``samples``, output columns) each."""
        samples = [record["samples"][i] for i in chunk.positions]
        folder = self.staging_dir / record["video_id"]
        folder.mkdir(parents=True, exist_ok=True)
        try:
            columns = self._encode(record, chunk.grid, samples, folder)
        except Exception as err:  # decoder and encoder errors come in many types
            return ChunkFailure(EncodeRule.ENCODE_ERROR, f"{type(err).__name__}: {err}")
        return list(zip(chunk.positions, columns, strict=True))

    def join(self, record: Record, results: list[list[tuple[int, dict]]]) -> Record:
        """Each sample gains its mp4 path and size, output size, rotation, frame spans."""
        for result in results:
            for position, columns in result:
                record["samples"][position].update(columns)
        return record

    def _encode(self, record: Record, grid: FrameGrid | None, samples: list[dict],
                folder: Path) -> list[dict]:
        """Seek by ``grid`` when given; count from the first frame if it is not, or if a
        decoded frame turns out to be off the grid."""
        path, rotation = record["path"], int(record.get("rotation") or 0)
        if grid is not None:
            try:
                frames = iter_frames_from(path, grid, samples[0]["start_frame"])
                return encode_samples(frames, samples, folder, self.config, rotation)
            except GridMismatch as err:
                log.warning("%s: %s; encoding from the first frame", path, err)
        return encode_samples(iter_timed_frames(path), samples, folder, self.config, rotation)


def encode_samples(frames: Iterator[tuple[int, float, object]], samples: list[dict],
                   folder: Path, config: EncodeConfig, rotation: int) -> list[dict]:
    """Encode ``samples`` (in source order, non-overlapping) from the numbered ``frames`` into
    ``folder``; return each sample's output columns. ``rotation``: the display rotation."""
    end = max(s["end_frame"] for s in samples)
    frames = itertools.takewhile(lambda item: item[0] <= end, frames)
    pending = iter(samples)
    sample = next(pending, None)
    writer: SampleWriter | None = None
    columns: list[dict] = []
    try:
        for index, seconds, frame in frames:
            while sample is not None and index >= sample["end_frame"]:
                if writer is None:  # the decoder ended before the sample began
                    raise ValueError(f"no frame decoded for sample {sample['sample_id']}")
                columns.append(writer.finish(seconds))
                writer, sample = None, next(pending, None)
            if sample is None:
                break
            if index >= sample["start_frame"]:
                writer = writer or SampleWriter(sample, folder, config, rotation, frame)
                writer.push(index, seconds, frame)
        if writer is not None:  # the video ended inside the last sample
            columns.append(writer.finish(None))
            writer, sample = None, next(pending, None)
    finally:
        if writer is not None:
            writer.abort()
    if sample is not None:
        raise ValueError(f"the video ended before sample {sample['sample_id']} was complete")
    return columns
