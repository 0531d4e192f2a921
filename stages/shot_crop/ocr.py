"""OCR engines behind one protocol (RapidOCR's PP-OCR ONNX models by default, PaddleOCR when
installed) and the text boxes they find on a frame."""

from __future__ import annotations

from dataclasses import dataclass
from difflib import SequenceMatcher
from enum import StrEnum
from typing import Protocol

import numpy as np

from stages.shot_crop.config import ShotCropConfig
from stages.shot_crop.geometry import Rect

# A detected box can be text only if it is at least 1.2 times as wide as high and at most 0.6 of
# the frame high; it is clearly a text line if also at least 2.5 times as wide as high and at
# most a third of the frame high. Boxes in between are recognised to be kept, even when words
# are not asked for (``read_text``): they are few, and recognition tells the two kinds apart.
# Measured (benchmarks/RESULTS.md, issue 18): texture hits of the detector on fractals and colour
# bars span 0.74 to 1.0 of the frame's height; those in the BBB film's picture (grass, fur, a
# leaf) are 1.13 to 2.74 times as wide as high, up to 0.49 of its height, and read as one
# character or with scores of 0.14 to 0.36; its two-line title is one box 0.51 high and 1.89
# wide, read at 0.81. Subtitle, watermark, caption and credits lines are 2.5 to 28 times as
# wide as high and under a third of the frame high.
MAX_TEXT_HEIGHT = 0.6
MIN_TEXT_ASPECT = 1.2
MAX_LINE_HEIGHT = 1 / 3
MIN_LINE_ASPECT = 2.5


@dataclass(frozen=True)
class TextBox:
    """One text line on one frame, in decoded-frame pixels; ``text`` is empty and ``score``
    None where recognition did not run."""

    box: Rect
    text: str = ""
    score: float | None = None


class OcrEngine(Protocol):
    """What the stage needs from an OCR backend."""

    name: str
    device: str

    def detect(self, image: np.ndarray) -> list[Rect]:
        """Axis-aligned boxes of text lines in a BGR image."""

    def recognize(self, crops: list[np.ndarray]) -> list[tuple[str, float]]:
        """(text, score) for each BGR crop."""


class RapidOcrEngine:
    """RapidOCR (ONNX Runtime) with the PP-OCRv6 small models its wheel ships."""

    name = "rapidocr"

    def __init__(self, detect_width: int, threads: int, device: str = "cpu") -> None:
        from rapidocr import RapidOCR

        self.device = device
        self._ocr = RapidOCR(params={
            "Global.log_level": "error",  # "detection result is empty" is a warning per frame
            "Global.use_cls": False,  # video text is upright
            "Det.limit_type": "max",  # frames arrive at detect_width: no second upscale
            "Det.limit_side_len": detect_width,
            "EngineConfig.onnxruntime.intra_op_num_threads": threads,
            "EngineConfig.onnxruntime.inter_op_num_threads": 1,
            "EngineConfig.onnxruntime.use_cuda": device == "cuda",
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
    device = "cpu"

    def __init__(self, det_dir: str, rec_dir: str, detect_width: int) -> None:
        from paddleocr import TextDetection, TextRecognition

        self._det = TextDetection(model_dir=det_dir, limit_type="max", limit_side_len=detect_width)
        self._rec = TextRecognition(model_dir=rec_dir)

    def detect(self, image: np.ndarray) -> list[Rect]:
        (found,) = self._det.predict(image)
        return [_bounds(np.asarray(q)) for q in found["dt_polys"]]

    def recognize(self, crops: list[np.ndarray]) -> list[tuple[str, float]]:
        return [(str(r["rec_text"]), float(r["rec_score"])) for r in self._rec.predict(crops)]


def build_engine(config: ShotCropConfig) -> OcrEngine:
    """The configured OCR backend, using as many threads as the stage reserves CPUs."""
    if config.engine == "paddleocr":
        return PaddleOcrEngine(str(config.paddle_det_model_dir), str(config.paddle_rec_model_dir),
                               config.detect_width)
    threads = max(1, round(config.resources.num_cpus))
    return RapidOcrEngine(config.detect_width, threads, ocr_device(config.device))


def ocr_device(device: str) -> str:
    """``auto``: cuda where onnxruntime has its CUDA provider and this worker sees a GPU (Ray
    gives GPUs to GPU tasks only), else cpu. A CPU-only onnxruntime never imports torch here."""
    if device != "auto":
        return device
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        return "cpu"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def read_text(engine: OcrEngine, frame: np.ndarray, config: ShotCropConfig) -> list[TextBox]:
    """Text on one RGB frame: detection on the whole frame, boxes kept by shape
    (:func:`text_shape`), recognition on the doubtful ones, or on all with ``read_text``.

    Recognition vets detection: a box read with a score under ``min_text_score`` or with fewer
    than ``min_text_chars`` letters and digits is most often texture (foliage, fractals and
    colour bars all make such hits). Without ``read_text`` the kept boxes carry no text."""
    image = np.ascontiguousarray(frame[..., ::-1])  # the engines take BGR
    shaped = [(b, text_shape(b, image.shape[0])) for b in engine.detect(image)]
    unread = [] if config.read_text else [b for b, s in shaped if s is TextShape.LINE]
    asked = [b for b, s in shaped
             if s is TextShape.DOUBTFUL or (s is TextShape.LINE and config.read_text)]
    read = engine.recognize([image[y0:y1, x0:x1] for x0, y0, x1, y1 in asked]) if asked else []
    vetted = [TextBox(b, *((t.strip(), s) if config.read_text else ()))
              for b, (t, s) in zip(asked, read, strict=True)
              if s >= config.min_text_score
              and sum(c.isalnum() for c in t) >= config.min_text_chars]
    return [TextBox(b) for b in unread] + vetted


class TextShape(StrEnum):
    """What a detected box's shape says (see ``MIN_LINE_ASPECT``)."""

    LINE = "line"
    DOUBTFUL = "doubtful"
    TEXTURE = "texture"


def text_shape(box: Rect, frame_height: int) -> TextShape:
    """Whether a detected box is shaped like a text line, could be text, or cannot be."""
    width, height = box[2] - box[0], box[3] - box[1]
    if not 0 < height <= MAX_TEXT_HEIGHT * frame_height or width < MIN_TEXT_ASPECT * height:
        return TextShape.TEXTURE
    if height <= MAX_LINE_HEIGHT * frame_height and width >= MIN_LINE_ASPECT * height:
        return TextShape.LINE
    return TextShape.DOUBTFUL


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


def _bounds(quad: np.ndarray) -> Rect:
    """Axis-aligned integer bounds (outward) of a quadrilateral's corner points."""
    lo, hi = np.floor(quad.min(axis=0)), np.ceil(quad.max(axis=0))
    return max(0, int(lo[0])), max(0, int(lo[1])), int(hi[0]), int(hi[1])

