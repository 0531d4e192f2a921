"""One sample's encoder: source frames resampled to the output rate (sample and hold) and piped
raw to ffmpeg (libx264, or NVENC where the worker has it) in a process that dies with its
parent.

Output frame ``k`` shows the source frame on screen at ``start + k / fps``, which fixes each
shot's span in output frames exactly. HDR input (10-bit PQ or HLG) is tone-mapped to BT.709 SDR
in the ffmpeg process (zscale to linear light, Hable tone curve, BT.709 primaries and transfer)
and the mp4 is tagged BT.709.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from stages.encode.encoders import choose_encoder, codec_options
from stages.encode.frames import Picture, frame_bytes, hdr_transfer, picture_for

if TYPE_CHECKING:
    from stages.encode.config import EncodeConfig

_PR_SET_PDEATHSIG = 1
_BT709 = {"color_primaries": "bt709", "color_trc": "bt709", "colorspace": "bt709"}


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child get SIGKILL when this thread's process dies (a
    worker killed by its per-item timeout or by SIGKILL); None off Linux. The kernel signals when
    the *thread* that started the child ends, so the child must not outlive that call."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved before the fork
    parent = os.getpid()

    def preexec() -> None:
        if prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec


def encoder_args(path: Path, picture: Picture, first_frame: object, config: EncodeConfig,
                 encoder: str) -> list[str]:
    """ffmpeg's command line: raw ``picture.pix_fmt`` frames on stdin to an H.264 mp4 written
    by ``encoder`` (:mod:`stages.encode.encoders`)."""
    import ffmpeg

    w, h = picture.size
    stream = ffmpeg.input("pipe:", format="rawvideo", pix_fmt=picture.pix_fmt, s=f"{w}x{h}",
                          framerate=config.fps)
    tags: dict[str, str] = {}
    transfer = hdr_transfer(first_frame)
    if transfer:
        stream = tone_map(stream, transfer, first_frame)
        tags = _BT709
    codec = codec_options(encoder, config.crf, config.preset, config.nvenc_preset)
    return (stream.output(str(path), pix_fmt="yuv420p", movflags="+faststart", an=None,
                          **codec, **tags)
            .global_args("-loglevel", "error", "-nostdin").overwrite_output().compile())


def tone_map(stream: object, transfer: str, frame: object) -> object:
    """HDR to BT.709 SDR: the raw frames tagged as ``frame`` is (unset primaries and matrix:
    BT.2020; unset range: limited), linear light scaled to 100 nits, Hable curve, BT.709."""
    primaries = frame.color_primaries if frame.color_primaries not in (0, 2) else 9
    matrix = frame.colorspace if frame.colorspace not in (0, 2) else 9
    return (stream
            .filter("setparams", color_primaries=primaries, color_trc=transfer,
                    colorspace=matrix, range=2 if frame.color_range == 2 else 1)
            .filter("zscale", t="linear", npl=100)
            .filter("format", "gbrpf32le")
            .filter("zscale", p="bt709")
            .filter("tonemap", tonemap="hable", desat=0)
            .filter("zscale", t="bt709", m="bt709", r="limited")
            .filter("format", "yuv420p"))


class SampleWriter:
    """Resamples one sample's frames to the output rate and pipes them to the encoder."""

    def __init__(self, sample: dict, folder: Path, config: EncodeConfig, rotation: int,
                 first_frame: object) -> None:
        self.sample, self.config = sample, config
        self.picture = picture_for(sample, config.short_side, rotation, first_frame)
        self.tone_mapped_from = hdr_transfer(first_frame)
        self.path = folder / f"{sample['sample_id']}.mp4"
        self.tmp = folder / f".{sample['sample_id']}.{os.getpid()}.tmp.mp4"
        self.encoder = choose_encoder(config.encoder)
        args = encoder_args(self.tmp, self.picture, first_frame, config, self.encoder)
        self.process = subprocess.Popen(args, stdin=subprocess.PIPE, stderr=subprocess.PIPE,
                                        preexec_fn=die_with_parent())
        self.start_seconds: float | None = None
        self.held: tuple[int, float, object] | None = None
        self.source_step = 1.0 / config.fps  # duration of the last source frame, once known
        self.source_of_output: list[int] = []

    def push(self, index: int, seconds: float, frame: object) -> None:
        """Take source frame ``index`` shown from ``seconds``; emit output frames before it."""
        if self.start_seconds is None:
            self.start_seconds = seconds
        if self.held is not None:
            if seconds < self.held[1]:  # the resample would be garbage: refuse the sample
                raise ValueError(f"source frame {index} is at {seconds:.3f} s, before frame "
                                 f"{self.held[0]} at {self.held[1]:.3f} s")
            self.source_step = seconds - self.held[1]
            self._emit_until(seconds)
        self.held = (index, seconds, frame)

    def finish(self, next_seconds: float | None) -> dict:
        """Flush the held frame up to ``next_seconds`` (the next source frame, or one frame
        duration after the last), close the encoder; return the sample's output columns."""
        assert self.held is not None and self.start_seconds is not None
        end = next_seconds if next_seconds is not None else self.held[1] + self.source_step
        self._emit_until(end)
        with contextlib.suppress(BrokenPipeError):  # ffmpeg exited: its status tells why
            self.process.stdin.close()
        error = self.process.stderr.read().decode(errors="replace").strip()
        if self.process.wait() != 0:
            raise RuntimeError(f"ffmpeg failed encoding {self.path.name}: {error}")
        os.replace(self.tmp, self.path)
        return self._columns(end)

    def abort(self) -> None:
        """Stop the encoder and remove its partial file."""
        self.process.kill()
        with contextlib.suppress(BrokenPipeError):
            self.process.stdin.close()
        self.process.wait()
        self.process.stderr.close()
        self.tmp.unlink(missing_ok=True)

    def _emit_until(self, seconds: float) -> None:
        """Write the held frame for every output tick before ``seconds``."""
        index, _, frame = self.held
        data = None
        while self.start_seconds + len(self.source_of_output) / self.config.fps < seconds - 1e-6:
            data = data if data is not None else frame_bytes(frame, self.picture)
            try:
                self.process.stdin.write(data)
            except BrokenPipeError:
                error = self.process.stderr.read().decode(errors="replace").strip()
                raise RuntimeError(f"ffmpeg stopped encoding {self.path.name}: {error}") from None
            self.source_of_output.append(index)

    def _columns(self, end_seconds: float) -> dict:
        source = np.asarray(self.source_of_output)
        spans = []
        for start, end in self.sample["shot_spans"]:
            inside = np.flatnonzero((source >= start) & (source < end))
            spans.append([int(inside[0]), int(inside[-1]) + 1] if inside.size else [0, 0])
        return {
            "mp4_path": str(self.path),
            "mp4_bytes": self.path.stat().st_size,
            "width": self.picture.size[0], "height": self.picture.size[1],
            "fps": self.config.fps,
            "num_frames": len(source),
            "start_time": round(self.start_seconds, 6), "end_time": round(end_seconds, 6),
            "shot_frames": spans,
            "rotation": self.picture.turns * 90,
            "tone_mapped_from": self.tone_mapped_from,
            "encoder": self.encoder,
        }
