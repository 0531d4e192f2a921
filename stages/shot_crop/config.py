"""Settings of the shot crop stage: the OCR engine, the frames it reads, and the crop rules."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from stages.resources import SPEED_ONLY, Resources


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
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="Where RapidOCR runs: auto takes the GPU when onnxruntime has its "
        "CUDA provider (the onnxruntime-gpu package) and the worker has a GPU (give the stage "
        "resources.gpu_when_available), else the CPU.", json_schema_extra=SPEED_ONLY)
    read_text: bool = Field(
        False, description="Also recognise each box's text: fills ocr_texts, vets boxes by "
        "their reads and matches the video's persistent text by its words (off: boxes alone, "
        "matched by place; the crop needs only the boxes)."
    )
    min_text_score: float = Field(
        0.5, ge=0, le=1, description="With read_text: boxes whose recognition scores lower are "
        "not text."
    )
    min_text_chars: int = Field(
        2, ge=1, description="With read_text: boxes read as fewer letters/digits are not text."
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
    min_static_shots: int = Field(
        2, ge=0, description="Shots text must be seen in at one place (with read_text: the "
        "same words) to count as the video's (a faint watermark OCR misses on some shots) and "
        "be excluded from every shot; 0: off."
    )
    min_static_share: float = Field(
        0.05, ge=0, le=1, description="Share of the video's read shots the video's text must "
        "also be seen in: a title or credits in a few shots of a film is not a watermark."
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

