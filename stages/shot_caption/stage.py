"""Caption stage: a multimodal LLM describes every shot of every sample, and each whole sample.

For each sample, every shot's trimmed span (``shot_spans``) gives ``frames_per_shot`` frames and the
sample as a whole gives ``frames_per_sample`` frames spread over all its spans; all are cropped to
the sample's crop rectangle. Frames are decoded once per chunk of samples, sorted, in one call. The
model (:mod:`stages.shot_caption.captioner`) runs on batches of ``batch_size`` clips with greedy
decoding. Writes ``caption``, ``caption_model`` and ``caption_prompt_version`` into each captioned
shot and each sample, and ``shot_captions`` (one per entry of ``shot_indices``) into each sample;
shots in no sample are left as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar, Literal

import numpy as np
import pyarrow as pa

from media.readers import FrameReader, analysis_size, open_reader
from stages.base import ConfiguredStage
from stages.records import Column, Record, fail
from stages.shot_caption.captioner import (
    Captioner,
    Clip,
)
from stages.shot_caption.config import ShotCaptionConfig


@dataclass
class CaptionJob:
    """One clip to caption: the row that receives the caption and where its frames are."""

    target: dict[str, Any]  # the shot or sample dict the caption is written into
    kind: Literal["shot", "sample"]
    indices: list[int]  # source frame indices, ascending
    crop: tuple[int, int, int, int]  # x, y, w, h in source pixels
    seconds: float  # time the frames span
    sample: dict[str, Any]  # the sample the clip belongs to
    position: int | None = None  # a shot's place in the sample's shot_indices

    def write(self, caption: str, tags: dict[str, str | None]) -> None:
        """Store ``caption`` and its ``tags`` in the target; a shot's caption also goes into
        the sample's ``shot_captions``, since pieces of one split shot get one caption each."""
        self.target.update(caption=caption, **tags)
        if self.position is not None:
            shot_captions = self.sample.setdefault(
                "shot_captions", [None] * len(self.sample["shot_indices"]))
            shot_captions[self.position] = caption


class ShotCaptionRule(StrEnum):
    """Why the caption stage fails a video."""

    DECODE_ERROR = "decode_error"
    GENERATE_ERROR = "generate_error"


class ShotCaptionStage(ConfiguredStage[ShotCaptionConfig]):
    """Captions the shots and samples of one video with a multimodal LLM."""

    name: ClassVar[str] = "shot_caption"
    rules: ClassVar[type[StrEnum]] = ShotCaptionRule
    shot_columns: ClassVar[tuple[Column, ...]] = (
        Column("caption", pa.string(), "the shot's caption"),
        Column("caption_model", pa.string(), "the model that wrote it"),
        Column("caption_prompt_version", pa.string(), "the prompt version it was asked with"),
    )

    def setup(self) -> None:
        """Load the model and processor once per worker."""
        self.captioner = Captioner(self.config)

    def process(self, record: Record) -> Record:
        """Write captions into the shots in samples and into the samples of ``record``."""
        jobs = plan_jobs(record, self.config)
        if not jobs:
            return record
        size = analysis_size(record["width"], record["height"], self.config.decode_width)
        scale = (size[0] / record["width"], size[1] / record["height"])
        try:
            reader = open_reader(record["path"], size)
        except Exception as err:  # decoder errors come in many types
            return fail(record, self.name, ShotCaptionRule.DECODE_ERROR, _error(err))
        for chunk in chunk_jobs(jobs, self.config.max_decode_frames):
            try:
                clips = decode_clips(reader, chunk, scale, self.config.max_pixels)
            except Exception as err:  # decoder errors come in many types
                return fail(record, self.name, ShotCaptionRule.DECODE_ERROR, _error(err))
            try:
                captions = self._caption(chunk, clips)
            except Exception as err:  # tokenizer, processor and CUDA errors alike
                return fail(record, self.name, ShotCaptionRule.GENERATE_ERROR, _error(err))
            tags = {"caption_model": self.config.model,
                    "caption_prompt_version": self.config.prompt_version}
            for job, caption in zip(chunk, captions, strict=True):
                job.write(caption, tags)
        return record

    def _caption(self, jobs: list[CaptionJob], clips: list[Clip]) -> list[str]:
        """Captions in ``jobs`` order; shots and samples are batched apart (own prompts)."""
        captions: list[str] = [""] * len(jobs)
        settings = {"shot": (self.config.prompt, self.config.max_new_tokens),
                    "sample": (self.config.global_prompt, self.config.global_max_new_tokens)}
        for kind, (prompt, max_new_tokens) in settings.items():
            picked = [i for i, job in enumerate(jobs) if job.kind == kind]
            for start in range(0, len(picked), self.config.batch_size):
                batch = picked[start : start + self.config.batch_size]
                texts = self.captioner.caption([clips[i] for i in batch], prompt, max_new_tokens)
                for i, text in zip(batch, texts, strict=True):
                    captions[i] = text
        return captions


def plan_jobs(record: Record, config: ShotCaptionConfig) -> list[CaptionJob]:
    """Shot jobs, then the sample's own job, for every sample of ``record`` in order."""
    shots = {shot["shot_index"]: shot for shot in record.get("shots") or []}
    fps = float(record["fps"])
    jobs: list[CaptionJob] = []
    for sample in record.get("samples") or []:
        crop = (sample["crop_x"], sample["crop_y"], sample["crop_w"], sample["crop_h"])
        spans = [(int(start), int(end)) for start, end in sample["shot_spans"]]
        for position, (shot_index, (start, end)) in enumerate(
                zip(sample["shot_indices"], spans, strict=True)):
            jobs.append(CaptionJob(shots[shot_index], "shot",
                                   spread_indices([(start, end)], config.frames_per_shot),
                                   crop, (end - start) / fps, sample, position))
        seconds = sum(end - start for start, end in spans) / fps
        jobs.append(CaptionJob(sample, "sample", spread_indices(spans, config.frames_per_sample),
                               crop, seconds, sample))
    return jobs


def spread_indices(spans: list[tuple[int, int]], count: int) -> list[int]:
    """``count`` frames spread evenly over the frames of ``spans`` ([start, end), in order),
    each at the middle of its share; every frame when the spans hold fewer."""
    frames = np.concatenate([np.arange(start, end) for start, end in spans])
    if len(frames) <= count:
        return frames.tolist()
    positions = ((np.arange(count) + 0.5) * len(frames) / count).astype(int)
    return frames[positions].tolist()


def chunk_jobs(jobs: list[CaptionJob], max_frames: int) -> list[list[CaptionJob]]:
    """Consecutive groups of jobs that need at most ``max_frames`` distinct frames (a single job
    that needs more forms its own group)."""
    chunks: list[list[CaptionJob]] = []
    frames: set[int] = set()
    for job in jobs:
        if chunks and len(frames | set(job.indices)) <= max_frames:
            chunks[-1].append(job)
            frames |= set(job.indices)
        else:
            chunks.append([job])
            frames = set(job.indices)
    return chunks


def decode_clips(
    reader: FrameReader, jobs: list[CaptionJob], scale: tuple[float, float], max_pixels: int
) -> list[Clip]:
    """Decode every frame ``jobs`` need in one sorted call; crop and downscale each job's."""
    # Shot split counted frames with PyAV; decord may see a frame or two fewer at the very end.
    last = reader.num_frames - 1
    indices = sorted({min(i, last) for job in jobs for i in job.indices})
    frames = reader.frames_at(indices)
    position = {index: n for n, index in enumerate(indices)}
    clips = []
    for job in jobs:
        x, y, w, h = scale_crop(job.crop, scale, frames.shape[2], frames.shape[1])
        picked = frames[[position[min(i, last)] for i in job.indices], y : y + h, x : x + w]
        clips.append(Clip(fit_pixels(picked, max_pixels), job.seconds))
    return clips


def scale_crop(
    crop: tuple[int, int, int, int], scale: tuple[float, float], width: int, height: int
) -> tuple[int, int, int, int]:
    """A source-pixel rectangle in decoded pixels, clamped to the ``width`` x ``height`` frame
    and at least 2 x 2."""
    x0 = min(max(0, int(round(crop[0] * scale[0]))), width - 2)
    y0 = min(max(0, int(round(crop[1] * scale[1]))), height - 2)
    x1 = max(x0 + 2, min(width, int(round((crop[0] + crop[2]) * scale[0]))))
    y1 = max(y0 + 2, min(height, int(round((crop[1] + crop[3]) * scale[1]))))
    return x0, y0, x1 - x0, y1 - y0


def fit_pixels(frames: np.ndarray, max_pixels: int) -> np.ndarray:
    """(n, H, W, 3) frames downscaled, aspect kept, to at most ``max_pixels`` per frame."""
    import cv2

    height, width = frames.shape[1:3]
    if height * width <= max_pixels:
        return np.ascontiguousarray(frames)
    factor = (max_pixels / (height * width)) ** 0.5
    size = (max(1, int(width * factor)), max(1, int(height * factor)))
    return np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames])


def _error(err: Exception) -> str:
    return f"{type(err).__name__}: {err}"
