"""Shot crop stage: find burned-in text (subtitles, watermarks, logos, tickers) with OCR and crop
each shot to the largest source-aspect rectangle that leaves it and the black borders out.

Per live shot, ``frames_per_shot`` frames spread through the shot are read at ``detect_width``
from one sequential decode per piece (runs of shots up to ``chunk_s``, see
:class:`~stages.base.ChunkedStage`), which holds one frame at a time. Text detection runs on
each of them; a box shaped like a text line is kept, one that cannot be text is dropped, and
one in between is kept only if recognition reads it as text
(:func:`~stages.shot_crop.ocr.text_shape`). The crop needs boxes only, so recognition runs on
every box only with ``read_text``. Boxes on the shot's frames are grouped by place
(:func:`stages.shot_crop.geometry.group_by_place`): a place seen on ``min_static_frames`` or
more sampled frames is static text (a subtitle band whose words change stays one place).
A place seen on fewer frames (a subtitle shown briefly, or text that moves) is excluded as well
while ``exclude_transient`` is on: for training data, cutting a little picture is cheaper than
keeping burned-in text. Once every piece is read, text seen at one place in
``min_static_shots`` shots and ``min_static_share`` of them (with ``read_text``: the same words)
is the video's (:mod:`stages.shot_crop.places`) and every shot excludes it, seen there or not,
unless excluding it would drop the shot: text a shot's own frames did not show never drops it.
The crop must avoid every excluded place, grown by ``margin_px``; its corners are even (4:2:0
chroma crops to it exactly).

Writes per live shot: ``ocr_frames`` (frames read), ``ocr_boxes`` ([x0, y0, x1, y1] in source
pixels, one per excluded place), ``ocr_texts`` (with ``read_text``: the distinct texts read
there, " | "-joined; else null), ``ocr_seen`` (on how many frames each place was seen; 0: the
video's text, missed here), ``crop_obstacles`` (the boxes grown by the margin: what
:mod:`stages.shot_merge` keeps out of a sample's crop), ``crop_x/y/w/h`` (source pixels) and
``crop_kept_fraction`` (crop area over the full frame). A shot whose kept fraction is below
``min_kept_fraction`` is dropped with rule ``text_covers_frame``. Per video: ``ocr_engine`` and
``ocr_device``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from media.readers import analysis_size
from media.seek import FrameGrid, GridMismatch, grid_for_pieces, iter_frames_at
from stages.base import ChunkedStage, ChunkFailure, consecutive_groups
from stages.records import Column, Record, drop_shot, live_shots
from stages.shot_crop.config import ShotCropConfig
from stages.shot_crop.geometry import Rect, active_picture, even_crop, expand
from stages.shot_crop.ocr import OcrEngine, TextBox, build_engine, distinct_texts, read_text
from stages.shot_crop.places import Place, excluded_places, persistent_places, shot_places

log = logging.getLogger(__name__)


class ShotCropRule(StrEnum):
    """Why the shot crop fails a video or drops a shot."""

    DECODE_ERROR = "decode_error"
    TEXT_COVERS_FRAME = "text_covers_frame"


class ShotCropStage(ChunkedStage[ShotCropConfig]):
    """Crops every live shot clear of burned-in text and black borders.

    A chunk is a run of live shots spanning at most ``chunk_s`` seconds of source; each opens
    its own reader, so the OCR of a long film spreads over workers.
    """

    name: ClassVar[str] = "shot_crop"
    rules: ClassVar[type[StrEnum]] = ShotCropRule
    columns: ClassVar[tuple[Column, ...]] = (
        Column("ocr_engine", pa.string(), "the OCR engine that read the frames"),
        Column("ocr_device", pa.string(), "where OCR ran: cpu, cuda (pieces on both: cpu,cuda)"),
    )
    shot_columns: ClassVar[tuple[Column, ...]] = (
        Column("ocr_boxes", pa.list_(pa.list_(pa.int32())),
               "[x0, y0, x1, y1] source pixels of each excluded text place"),
        Column("ocr_texts", pa.list_(pa.string()), "the distinct texts read at each place"),
        Column("ocr_seen", pa.list_(pa.int32()), "on how many frames each place was seen"),
        Column("ocr_frames", pa.int32(), "frames OCR read in the shot"),
        Column("crop_obstacles", pa.list_(pa.list_(pa.int32())),
               "[x0, y0, x1, y1] source pixels each crop of the shot avoids (box and margin)"),
        Column("crop_x", pa.int32(), "left of the crop, source pixels"),
        Column("crop_y", pa.int32(), "top of the crop"),
        Column("crop_w", pa.int32(), "width of the crop"),
        Column("crop_h", pa.int32(), "height of the crop"),
        Column("crop_kept_fraction", pa.float64(), "crop area over the full frame"),
    )

    _engine: OcrEngine | None = None

    def chunks(self, record: Record) -> list[CropChunk]:
        """Runs of live shots of at most ``chunk_s`` seconds, each decoded from the keyframe
        before it; one run decoded from the start when the video has one run or its frames
        cannot be numbered by timestamp (variable frame rate, irregular timestamps)."""
        shots = live_shots(record)
        limit = self.config.chunk_s
        max_frames = None if limit is None else max(1, round(limit * float(record["fps"])))
        groups = consecutive_groups([(s["start_frame"], s["end_frame"]) for s in shots],
                                    max_frames)
        grid = None
        if len(groups) > 1:
            with _decoding():
                grid = grid_for_pieces(record)
        if grid is None:
            groups = [[i for group in groups for i in group]] if groups else []
        return [CropChunk(tuple(shots[i]["shot_index"] for i in group), grid)
                for group in groups]

    def process_chunk(self, record: Record, chunk: CropChunk) -> CropResult | ChunkFailure:
        """(shot index, frames read, its text places) for each of the chunk's shots, and the
        device OCR ran on."""
        shots = [record["shots"][i] for i in chunk.shots]
        size = analysis_size(record["width"], record["height"], self.config.detect_width)
        plan = [shot_frames(s, self.config.frames_per_shot, s["end_frame"]) for s in shots]
        indices = sorted({i for p in plan for i in p})
        try:
            found = self._text_on_frames(record["path"], indices, chunk.grid, size)
        except DecodeError as err:
            return ChunkFailure(ShotCropRule.DECODE_ERROR, str(err))
        frame = (record["width"], record["height"])
        places = [shot_places([(i, _to_source(t.box, size, frame), t.text)
                               for i in indices for t in found[i]], self.config.same_place_overlap)
                  for indices in plan]
        return CropResult([(index, len(indices), shot) for index, indices, shot
                           in zip(chunk.shots, plan, places, strict=True)], self._ocr().device)

    def join(self, record: Record, results: list[CropResult]) -> Record:
        """Write each shot's crop, clear of its own text and the video's persistent text; drop
        shots whose crop keeps too little of the frame."""
        record["ocr_engine"] = self.config.engine
        record["ocr_device"] = ",".join(sorted({result.device for result in results})) or None
        read = [shot for result in results for shot in result.shots]
        video = persistent_places([places for _, _, places in read], self.config)
        picture, frame = active_picture(record), (record["width"], record["height"])
        for index, frames, places in read:
            shot = record["shots"][index]
            shot.update(crop_shot(excluded_places(places, video, self.config), frames, picture,
                                  frame, self.config))
            if video and shot["crop_kept_fraction"] < self.config.min_kept_fraction:
                # the video's text this shot's frames did not show never drops it
                shot.update(crop_shot(excluded_places(places, [], self.config), frames,
                                      picture, frame, self.config))
            kept = shot["crop_kept_fraction"]
            if kept < self.config.min_kept_fraction:
                drop_shot(shot, self.name, ShotCropRule.TEXT_COVERS_FRAME, kept,
                          f"crop keeps {kept:.3f} of the frame < {self.config.min_kept_fraction}")
        return record

    def _ocr(self) -> OcrEngine:
        """The OCR engine, built at first use in each worker (a worker that only joins the
        pieces never loads it)."""
        if self._engine is None:
            self._engine = build_engine(self.config)
        return self._engine

    def _text_on_frames(self, path: str, indices: list[int], grid: FrameGrid | None,
                        size: tuple[int, int]) -> dict[int, list[TextBox]]:
        """Text on frames ``indices``, seeking by ``grid``; counted from the first frame instead
        when a decoded frame is not where the grid's timestamps put it."""
        try:
            return self._read_text(iter_frames_at(path, indices, grid), size)
        except DecodeError as err:
            if grid is None or not isinstance(err.__cause__, GridMismatch):
                raise
            log.info("OCR of %s counts frames from the start: %s", path, err)
        return self._read_text(iter_frames_at(path, indices, None), size)

    def _read_text(self, frames: Iterator[tuple[int, Any]], size: tuple[int, int]
                   ) -> dict[int, list[TextBox]]:
        """Text on each decoded frame, converted to RGB at ``size`` and read before the next
        frame is decoded (one frame in memory at a time)."""
        found: dict[int, list[TextBox]] = {}
        while True:
            with _decoding():
                item = next(frames, None)
                if item is None:
                    return found
                index, decoded = item
                rgb = decoded.to_ndarray(width=size[0], height=size[1], format="rgb24")
            found[index] = read_text(self._ocr(), rgb, self.config)


@dataclass(frozen=True)
class CropChunk:
    """A piece of a video's OCR: its shots (indices into ``record["shots"]``) and the grid
    their decode seeks by (None: decode from the first frame)."""

    shots: tuple[int, ...]
    grid: FrameGrid | None


@dataclass
class CropResult:
    """What one chunk's OCR found: (shot index, frames read, text places) per shot, and the
    device it ran on."""

    shots: list[tuple[int, int, list[Place]]]
    device: str


class DecodeError(RuntimeError):
    """The decoder could not open the video or give the frames asked for."""


@contextmanager
def _decoding() -> Iterator[None]:
    """Re-raise a decoder error as :class:`DecodeError`, so OCR errors stay distinct."""
    try:
        yield
    except Exception as err:  # decoder errors come in many types
        raise DecodeError(f"{type(err).__name__}: {err}") from err


def shot_frames(shot: dict[str, Any], count: int, num_frames: int) -> list[int]:
    """Up to ``count`` distinct frames at the middles of ``count`` equal parts of the shot (its
    ends, where transitions blend, are avoided), clipped to the decoder's frame count."""
    start, end = shot["start_frame"], min(shot["end_frame"], num_frames)
    if end <= start:
        return [min(start, num_frames - 1)]
    length = end - start
    return sorted({start + int((k + 0.5) * length / count) for k in range(count)})


def crop_shot(
    places: list[Place], frames: int, active: Rect, frame: tuple[int, int],
    config: ShotCropConfig,
) -> dict[str, Any]:
    """The shot's columns from the ``places`` it excludes, read on ``frames`` frames, the active
    picture ``active`` and the source ``frame`` (width, height), whose aspect the crop keeps."""
    obstacles = [expand(p.box, config.margin_px, active) for p in places]
    crop = even_crop(active, obstacles, frame) or (0, 0, 0, 0)
    return {
        "ocr_frames": frames,
        "ocr_boxes": [list(p.box) for p in places],
        "ocr_texts": ([" | ".join(distinct_texts(list(p.texts))) for p in places]
                      if config.read_text else None),
        "ocr_seen": [len(p.frames) for p in places],
        "crop_obstacles": [list(o) for o in obstacles],
        "crop_x": crop[0], "crop_y": crop[1],
        "crop_w": crop[2] - crop[0], "crop_h": crop[3] - crop[1],
        "crop_kept_fraction": round((crop[2] - crop[0]) * (crop[3] - crop[1])
                                    / float(frame[0] * frame[1]), 6),
    }


def _to_source(box: Rect, size: tuple[int, int], frame: tuple[int, int]) -> Rect:
    """A box on a ``size`` decoded frame in ``frame`` source pixels, rounded outward."""
    sx, sy = frame[0] / size[0], frame[1] / size[1]
    return (max(0, int(np.floor(box[0] * sx))), max(0, int(np.floor(box[1] * sy))),
            min(frame[0], int(np.ceil(box[2] * sx))), min(frame[1], int(np.ceil(box[3] * sy))))
