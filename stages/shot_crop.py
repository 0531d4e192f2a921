"""Shot crop stage: find burned-in text (subtitles, watermarks, logos, tickers) with OCR and crop
each shot to the largest source-aspect rectangle that leaves it and the black borders out.

Per live shot, ``frames_per_shot`` frames spread through the shot are read at ``detect_width``
from one sequential decode per piece (runs of shots up to ``chunk_s``, see
:class:`~stages.ChunkedStage`), which holds one frame at a time. Text detection runs on each
of them, and recognition only on the boxes it finds. Boxes on the shot's frames are grouped by
place (:func:`stages.crop_geometry.group_by_place`): a place seen on ``min_static_frames`` or
more sampled frames is static text (a subtitle band whose words change stays one place).
A place seen on fewer frames (a subtitle shown briefly, or text that moves) is excluded as well
while ``exclude_transient`` is on: for training data, cutting a little picture is cheaper than
keeping burned-in text. The crop must avoid every excluded place, grown by ``margin_px``.

Writes per live shot: ``ocr_frames`` (frames read), ``ocr_boxes`` ([x0, y0, x1, y1] in source
pixels, one per excluded place), ``ocr_texts`` (the distinct texts read there, " | "-joined),
``ocr_seen`` (on how many frames each place was seen), ``crop_x/y/w/h`` (source pixels) and
``crop_kept_fraction`` (crop area over the full frame). A shot whose kept fraction is below
``min_kept_fraction`` is dropped with rule ``text_covers_frame``. Per video: ``ocr_engine``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from difflib import SequenceMatcher
from typing import Any, ClassVar, Literal, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from curation.decode import analysis_size
from curation.records import Record, drop_shot, live_shots
from curation.resources import SPEED_ONLY, Resources
from curation.seek import FrameGrid, GridMismatch, grid_for_pieces, iter_frames_at
from stages import ChunkedStage, ChunkFailure, consecutive_groups
from stages.crop_geometry import Rect, expand, group_by_place, largest_crop, union

log = logging.getLogger(__name__)


class ShotCropConfig(BaseModel):
    """Settings of the shot crop stage."""

    model_config = ConfigDict(extra="forbid")

    engine: Literal["rapidocr", "paddleocr"] = Field(
        "rapidocr", description="OCR backend; rapidocr runs offline from the models in its wheel."
    )
    paddle_det_model_dir: str | None = Field(
        None, description="Local PaddleOCR text detection model folder (engine paddleocr)."
    )
    paddle_rec_model_dir: str | None = Field(
        None, description="Local PaddleOCR text recognition model folder (engine paddleocr)."
    )
    frames_per_shot: int = Field(3, ge=1, description="Frames read per shot, spread through it.")
    detect_width: int = Field(640, ge=64, description="Width frames are decoded and read at.")
    min_text_score: float = Field(
        0.5, ge=0, le=1, description="Boxes whose recognition scores lower are not text."
    )
    min_text_chars: int = Field(
        2, ge=1, description="Boxes read as fewer letters/digits are not text (texture hits)."
    )
    same_place_overlap: float = Field(
        0.5, gt=0, le=1, description="Share of the smaller box two boxes share to be one place."
    )
    min_static_frames: int = Field(
        2, ge=1, description="Sampled frames a place must be seen on to count as static text."
    )
    exclude_transient: bool = Field(
        True, description="Also exclude text seen on fewer frames (brief subtitles, moving text)."
    )
    margin_px: int = Field(8, ge=0, description="Source pixels kept clear around each text place.")
    min_kept_fraction: float = Field(
        0.5, ge=0, le=1, description="Drop the shot when the crop keeps less of the frame."
    )
    chunk_s: float | None = Field(
        300.0, gt=0, description="Seconds of source per parallel piece of one video's OCR "
        "(runs of whole shots); null: the whole video in one piece.",
        json_schema_extra=SPEED_ONLY)
    resources: Resources = Resources(num_cpus=1.0)

    @model_validator(mode="after")
    def _paddle_needs_models(self) -> ShotCropConfig:
        dirs = (self.paddle_det_model_dir, self.paddle_rec_model_dir)
        if self.engine == "paddleocr" and not all(dirs):
            raise ValueError("engine paddleocr needs paddle_det_model_dir and paddle_rec_model_dir")
        return self


@dataclass(frozen=True)
class TextBox:
    """One recognised text line on one frame, in decoded-frame pixels."""

    box: Rect
    text: str
    score: float


class OcrEngine(Protocol):
    """What the stage needs from an OCR backend."""

    name: str

    def detect(self, image: np.ndarray) -> list[Rect]:
        """Axis-aligned boxes of text lines in a BGR image."""

    def recognize(self, crops: list[np.ndarray]) -> list[tuple[str, float]]:
        """(text, score) for each BGR crop."""


class RapidOcrEngine:
    """RapidOCR (ONNX Runtime) with the PP-OCRv6 small models its wheel ships."""

    name = "rapidocr"

    def __init__(self, detect_width: int, threads: int) -> None:
        from rapidocr import RapidOCR

        self._ocr = RapidOCR(params={
            "Global.log_level": "error",  # "detection result is empty" is a warning per frame
            "Global.use_cls": False,  # video text is upright
            "Det.limit_type": "max",  # frames arrive at detect_width: no second upscale
            "Det.limit_side_len": detect_width,
            "EngineConfig.onnxruntime.intra_op_num_threads": threads,
            "EngineConfig.onnxruntime.inter_op_num_threads": 1,
        })

    def detect(self, image: np.ndarray) -> list[Rect]:
        found = self._ocr(image, use_det=True, use_cls=False, use_rec=False)
        quads = getattr(found, "boxes", None)
        return [] if quads is None else [_bounds(q) for q in quads]

    def recognize(self, crops: list[np.ndarray]) -> list[tuple[str, float]]:
        read = self._ocr.recognize_txt(crops)
        return [(str(t), float(s)) for t, s in zip(read.txts, read.scores, strict=True)]


class PaddleOcrEngine:
    """PaddleOCR 3 detection and recognition modules loaded from local model folders."""

    name = "paddleocr"

    def __init__(self, det_dir: str, rec_dir: str, detect_width: int) -> None:
        from paddleocr import TextDetection, TextRecognition

        self._det = TextDetection(model_dir=det_dir, limit_type="max", limit_side_len=detect_width)
        self._rec = TextRecognition(model_dir=rec_dir)

    def detect(self, image: np.ndarray) -> list[Rect]:
        (found,) = self._det.predict(image)
        return [_bounds(np.asarray(q)) for q in found["dt_polys"]]

    def recognize(self, crops: list[np.ndarray]) -> list[tuple[str, float]]:
        return [(str(r["rec_text"]), float(r["rec_score"])) for r in self._rec.predict(crops)]


class ShotCropStage(ChunkedStage[ShotCropConfig]):
    """Crops every live shot clear of burned-in text and black borders.

    A chunk is a run of live shots spanning at most ``chunk_s`` seconds of source; each opens
    its own reader, so the OCR of a long film spreads over workers.
    """

    name: ClassVar[str] = "shot_crop"

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

    def process_chunk(self, record: Record, chunk: CropChunk
                      ) -> list[tuple[int, dict]] | ChunkFailure:
        """(shot index, its ``ocr_*`` and ``crop_*`` columns) for each of the chunk's shots."""
        shots = [record["shots"][i] for i in chunk.shots]
        size = analysis_size(record["width"], record["height"], self.config.detect_width)
        plan = [shot_frames(s, self.config.frames_per_shot, s["end_frame"]) for s in shots]
        indices = sorted({i for p in plan for i in p})
        try:
            found = self._text_on_frames(record["path"], indices, chunk.grid, size)
        except DecodeError as err:
            return ChunkFailure("decode_error", str(err))
        frame = (record["width"], record["height"])
        picture = active_picture(record)
        columns = []
        for indices in plan:
            boxes = [(i, _to_source(t.box, size, frame), t.text)
                     for i in indices for t in found[i]]
            columns.append(crop_shot(boxes, len(indices), picture, frame, self.config))
        return list(zip(chunk.shots, columns, strict=True))

    def join(self, record: Record, results: list[list[tuple[int, dict]]]) -> Record:
        """Write each shot's crop; drop shots whose crop keeps too little of the frame."""
        record["ocr_engine"] = self.config.engine
        for result in results:
            for index, crop in result:
                shot = record["shots"][index]
                shot.update(crop)
                if shot["crop_kept_fraction"] < self.config.min_kept_fraction:
                    drop_shot(shot, self.name, "text_covers_frame", shot["crop_kept_fraction"],
                              f"crop keeps {shot['crop_kept_fraction']:.3f} of the frame < "
                              f"{self.config.min_kept_fraction}")
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


class DecodeError(RuntimeError):
    """The decoder could not open the video or give the frames asked for."""


@contextmanager
def _decoding() -> Iterator[None]:
    """Re-raise a decoder error as :class:`DecodeError`, so OCR errors stay distinct."""
    try:
        yield
    except Exception as err:  # decoder errors come in many types
        raise DecodeError(f"{type(err).__name__}: {err}") from err


def build_engine(config: ShotCropConfig) -> OcrEngine:
    """The configured OCR backend, using as many threads as the stage reserves CPUs."""
    if config.engine == "paddleocr":
        return PaddleOcrEngine(str(config.paddle_det_model_dir), str(config.paddle_rec_model_dir),
                               config.detect_width)
    threads = max(1, round(config.resources.num_cpus))
    return RapidOcrEngine(config.detect_width, threads)


def shot_frames(shot: dict[str, Any], count: int, num_frames: int) -> list[int]:
    """Up to ``count`` distinct frames at the middles of ``count`` equal parts of the shot (its
    ends, where transitions blend, are avoided), clipped to the decoder's frame count."""
    start, end = shot["start_frame"], min(shot["end_frame"], num_frames)
    if end <= start:
        return [min(start, num_frames - 1)]
    length = end - start
    return sorted({start + int((k + 0.5) * length / count) for k in range(count)})


def read_text(engine: OcrEngine, frame: np.ndarray, config: ShotCropConfig) -> list[TextBox]:
    """Text lines on one RGB frame: detection on the whole frame, recognition on its boxes.

    Recognition also vets detection: a box read with a low score or as a single character is
    most often texture (foliage, fractals and colour bars all make such hits)."""
    image = np.ascontiguousarray(frame[..., ::-1])  # the engines take BGR
    boxes = [b for b in engine.detect(image) if b[2] > b[0] and b[3] > b[1]]
    if not boxes:
        return []
    crops = [image[y0:y1, x0:x1] for x0, y0, x1, y1 in boxes]
    read = engine.recognize(crops)
    return [TextBox(b, t.strip(), s) for b, (t, s) in zip(boxes, read, strict=True)
            if s >= config.min_text_score and sum(c.isalnum() for c in t) >= config.min_text_chars]


def crop_shot(
    boxes: list[tuple[int, Rect, str]], frames: int, active: Rect, frame: tuple[int, int],
    config: ShotCropConfig,
) -> dict[str, Any]:
    """The shot's columns from its ``(frame index, source box, text)`` reads on ``frames``
    frames, the active picture ``active`` and the source ``frame`` (width, height), whose aspect
    the crop keeps."""
    places = []
    for group in group_by_place([(f, b) for f, b, _ in boxes], config.same_place_overlap):
        seen = len({boxes[i][0] for i in group})
        if seen >= config.min_static_frames or config.exclude_transient:
            texts = distinct_texts([boxes[i][2] for i in group])
            places.append((union([boxes[i][1] for i in group]), " | ".join(texts), seen))
    obstacles = [expand(p[0], config.margin_px, active) for p in places]
    crop = largest_crop(active, obstacles, frame) or (0, 0, 0, 0)
    return {
        "ocr_frames": frames,
        "ocr_boxes": [list(p[0]) for p in places],
        "ocr_texts": [p[1] for p in places],
        "ocr_seen": [p[2] for p in places],
        "crop_x": crop[0], "crop_y": crop[1],
        "crop_w": crop[2] - crop[0], "crop_h": crop[3] - crop[1],
        "crop_kept_fraction": round((crop[2] - crop[0]) * (crop[3] - crop[1])
                                    / float(frame[0] * frame[1]), 6),
    }


def distinct_texts(texts: list[str]) -> list[str]:
    """``texts`` in first-seen order without repeats: a read is dropped when 80% of its
    characters appear, in order, in a longer one kept (the same line read with OCR noise on
    another frame, or detected in pieces)."""
    kept: list[str] = []
    for text in sorted(dict.fromkeys(texts), key=len, reverse=True):
        if not any(_matched(text, k) >= 0.8 * len(text) for k in kept):
            kept.append(text)
    return [t for t in dict.fromkeys(texts) if t in kept]


def _matched(short: str, long: str) -> int:
    return sum(block.size for block in SequenceMatcher(None, short, long).get_matching_blocks())


def active_picture(record: Record) -> Rect:
    """The picture inside the black borders in source pixels; the whole frame when
    ``border_w`` is 0 (no border box was found)."""
    if not record.get("border_w"):
        return 0, 0, record["width"], record["height"]
    x, y = record["border_x"], record["border_y"]
    return x, y, x + record["border_w"], y + record["border_h"]


def _bounds(quad: np.ndarray) -> Rect:
    """Axis-aligned integer bounds (outward) of a quadrilateral's corner points."""
    lo, hi = np.floor(quad.min(axis=0)), np.ceil(quad.max(axis=0))
    return max(0, int(lo[0])), max(0, int(lo[1])), int(hi[0]), int(hi[1])


def _to_source(box: Rect, size: tuple[int, int], frame: tuple[int, int]) -> Rect:
    """A box on a ``size`` decoded frame in ``frame`` source pixels, rounded outward."""
    sx, sy = frame[0] / size[0], frame[1] / size[1]
    return (max(0, int(np.floor(box[0] * sx))), max(0, int(np.floor(box[1] * sy))),
            min(frame[0], int(np.ceil(box[2] * sx))), min(frame[1], int(np.ceil(box[3] * sy))))
