"""Encode stage: each sample cropped, resized to 480p, resampled to 24 fps, H.264 in mp4.

One sequential PyAV decode of the source (frame indices counted exactly as the shot split counted
them) feeds every sample of the video in order, so both ends are frame-accurate and no keyframe
copy is involved. Output frame ``k`` shows the source frame on screen at ``start + k / fps``
(sample and hold), which fixes each shot's span in output frames exactly. Cropping and resizing
work on the YUV 4:2:0 planes (no RGB round trip); frames go raw to ffmpeg's libx264 through
ffmpeg-python. Each sample's mp4 lands in the staging folder; the driver packs it into a shard.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from curation.decode import iter_timed_frames
from curation.records import Record, fail
from curation.resources import Resources
from stages import ConfiguredStage


class EncodeConfig(BaseModel):
    """Output format of the samples."""

    model_config = ConfigDict(extra="forbid")

    short_side: int = Field(480, ge=16, description="Short side of the output, in pixels.")
    fps: float = Field(24.0, gt=0, description="Output frame rate.")
    crf: int = Field(20, ge=0, le=51, description="x264 constant rate factor.")
    preset: str = Field("veryfast", description="x264 preset.")
    resources: Resources = Resources(num_cpus=1.0)


class EncodeStage(ConfiguredStage[EncodeConfig]):
    """Writes the mp4 of every planned sample of a video into ``staging_dir``."""

    name: ClassVar[str] = "encode"

    def __init__(self, config: EncodeConfig, staging_dir: Path) -> None:
        super().__init__(config)
        self.staging_dir = staging_dir

    def process(self, record: Record) -> Record:
        """Encode ``record["samples"]``; each sample gains its mp4 path, size and frame spans."""
        samples = record.get("samples") or []
        if not samples:
            return record
        folder = self.staging_dir / record["video_id"]
        folder.mkdir(parents=True, exist_ok=True)
        try:
            encode_samples(record["path"], samples, folder, self.config)
        except Exception as err:  # decoder and encoder errors come in many types
            return fail(record, self.name, "encode_error", f"{type(err).__name__}: {err}")
        return record


def output_size(crop_w: int, crop_h: int, short_side: int) -> tuple[int, int]:
    """(w, h) with the crop's aspect, short side ``short_side``, both multiples of 16."""
    if crop_w >= crop_h:
        return max(16, round(short_side * crop_w / crop_h / 16) * 16), short_side
    return short_side, max(16, round(short_side * crop_h / crop_w / 16) * 16)


def encode_samples(path: str, samples: list[dict], folder: Path, config: EncodeConfig) -> None:
    """Decode ``path`` once and encode each sample (ordered, non-overlapping) into ``folder``."""
    end = max(s["end_frame"] for s in samples)
    frames = itertools.takewhile(lambda item: item[0] <= end, iter_timed_frames(path))
    pending = iter(sorted(samples, key=lambda s: s["start_frame"]))
    sample = next(pending, None)
    writer: _SampleWriter | None = None
    for index, seconds, frame in frames:
        while sample is not None and index >= sample["end_frame"]:
            if writer is None:  # the decoder ended before the sample began
                raise ValueError(f"no frame decoded for sample {sample['sample_id']}")
            writer.finish(seconds)
            writer, sample = None, next(pending, None)
        if sample is None:
            break
        if index >= sample["start_frame"]:
            writer = writer or _SampleWriter(sample, folder, config)
            writer.push(index, seconds, frame)
    if writer is not None:  # the video ended inside the last sample
        writer.finish(None)
        sample = next(pending, None)
    if sample is not None:
        raise ValueError(f"the video ended before sample {sample['sample_id']} was complete")


class _SampleWriter:
    """Resamples one sample's frames to the output rate and pipes them to libx264."""

    def __init__(self, sample: dict, folder: Path, config: EncodeConfig) -> None:
        import ffmpeg

        self.sample, self.config = sample, config
        self.size = output_size(sample["crop_w"], sample["crop_h"], config.short_side)
        self.path = folder / f"{sample['sample_id']}.mp4"
        self.tmp = folder / f".{sample['sample_id']}.{os.getpid()}.tmp.mp4"
        w, h = self.size
        self.process = (
            ffmpeg.input("pipe:", format="rawvideo", pix_fmt="yuv420p", s=f"{w}x{h}",
                         framerate=config.fps)
            .output(str(self.tmp), vcodec="libx264", pix_fmt="yuv420p", crf=config.crf,
                    preset=config.preset, movflags="+faststart", an=None)
            .global_args("-loglevel", "error", "-nostdin")
            .overwrite_output()
            .run_async(pipe_stdin=True, pipe_stderr=True)
        )
        self.start_seconds: float | None = None
        self.held: tuple[int, float, object] | None = None
        self.source_step = 1.0 / config.fps  # duration of the last source frame, once known
        self.source_of_output: list[int] = []

    def push(self, index: int, seconds: float, frame: object) -> None:
        """Take source frame ``index`` shown from ``seconds``; emit output frames before it."""
        if self.start_seconds is None:
            self.start_seconds = seconds
        if self.held is not None:
            self.source_step = seconds - self.held[1]
            self._emit_until(seconds)
        self.held = (index, seconds, frame)

    def finish(self, next_seconds: float | None) -> None:
        """Flush the held frame up to ``next_seconds`` (the next source frame, or one frame
        duration after the last), close the encoder and record the sample's output columns."""
        assert self.held is not None and self.start_seconds is not None
        held_seconds = self.held[1]
        end = next_seconds if next_seconds is not None else held_seconds + self.source_step
        self._emit_until(end)
        self.process.stdin.close()
        error = self.process.stderr.read().decode(errors="replace").strip()
        if self.process.wait() != 0:
            raise RuntimeError(f"ffmpeg failed encoding {self.path.name}: {error}")
        os.replace(self.tmp, self.path)
        self._record(end)

    def _emit_until(self, seconds: float) -> None:
        """Write the held frame for every output tick before ``seconds``."""
        index, _, frame = self.held
        planes = None
        while self.start_seconds + len(self.source_of_output) / self.config.fps < seconds - 1e-6:
            planes = planes if planes is not None else _crop_resize_yuv(frame, self.sample,
                                                                        self.size)
            self.process.stdin.write(planes)
            self.source_of_output.append(index)

    def _record(self, end_seconds: float) -> None:
        source = np.asarray(self.source_of_output)
        spans = []
        for start, end in self.sample["shot_spans"]:
            inside = np.flatnonzero((source >= start) & (source < end))
            spans.append([int(inside[0]), int(inside[-1]) + 1] if inside.size else [0, 0])
        self.sample.update({
            "mp4_path": str(self.path),
            "mp4_bytes": self.path.stat().st_size,
            "width": self.size[0], "height": self.size[1], "fps": self.config.fps,
            "num_frames": len(source),
            "start_time": round(self.start_seconds, 6), "end_time": round(end_seconds, 6),
            "shot_frames": spans,
        })


def _crop_resize_yuv(frame: object, sample: dict, size: tuple[int, int]) -> bytes:
    """The sample's crop of a PyAV frame, resized to ``size``, as raw yuv420p bytes."""
    import cv2

    if frame.format.name != "yuv420p" or frame.width % 2 or frame.height % 2:
        frame = frame.reformat(width=frame.width // 2 * 2, height=frame.height // 2 * 2,
                               format="yuv420p")
    planes = frame.to_ndarray()
    h, w = frame.height, frame.width
    x, y = sample["crop_x"], sample["crop_y"]
    cw, ch = min(sample["crop_w"], w - x), min(sample["crop_h"], h - y)
    luma = planes[:h][y:y + ch, x:x + cw]
    chroma = planes[h:].reshape(2, h // 2, w // 2)[:, y // 2:(y + ch) // 2, x // 2:(x + cw) // 2]
    out_w, out_h = size
    parts = [cv2.resize(luma, (out_w, out_h), interpolation=cv2.INTER_AREA)]
    parts += [cv2.resize(c, (out_w // 2, out_h // 2), interpolation=cv2.INTER_AREA) for c in chroma]
    return b"".join(np.ascontiguousarray(p).tobytes() for p in parts)
