"""Probe stage: container and stream facts from ffprobe.

Writes ``container``, ``codec``, ``pix_fmt``, ``duration_s``, ``fps``, ``fps_variable``, ``width``,
``height``, ``rotation``, ``num_frames``, ``audio_streams``, ``bitrate``. Files ffprobe cannot read
fail with ffprobe's own error lines; files without a moving picture are rejected.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
from enum import StrEnum
from fractions import Fraction
from typing import Any, ClassVar

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from stages.base import ConfiguredStage
from stages.records import Column, Record, fail, reject
from stages.resources import Resources

# Demuxers and codecs that hold a still picture, not a video.
_IMAGE_FORMAT_MARKERS = ("image2", "_pipe")
_IMAGE_CODECS = {"png", "bmp", "tiff", "webp", "jpegls", "qoi", "ppm", "pgm", "pam"}


class ProbeConfig(BaseModel):
    """Settings of the probe stage."""

    model_config = ConfigDict(extra="forbid")

    timeout_s: float = Field(60.0, gt=0, description="Seconds before ffprobe is abandoned.")
    resources: Resources = Resources(num_cpus=0.5)


class ProbeRule(StrEnum):
    """Why the probe rejects (not a video) or fails (cannot be read) a file."""

    UNREADABLE = "unreadable"
    EMPTY_FILE = "empty_file"
    PLAYLIST = "playlist"
    TIMEOUT = "timeout"  # ffprobe's own limit, timeout_s
    UNREADABLE_CONTAINER = "unreadable_container"
    NO_VIDEO_STREAM = "no_video_stream"
    STILL_IMAGE = "still_image"


class ProbeStage(ConfiguredStage[ProbeConfig]):
    """Reads container/stream metadata of one video file with ffprobe."""

    name: ClassVar[str] = "probe"
    rules: ClassVar[type[StrEnum]] = ProbeRule
    columns: ClassVar[tuple[Column, ...]] = (
        Column("container", pa.string(), "ffprobe's format name(s)"),
        Column("codec", pa.string(), "codec of the first video stream"),
        Column("pix_fmt", pa.string(), "its pixel format"),
        Column("duration_s", pa.float64(), "duration of the stream (else the container)"),
        Column("fps", pa.float64(), "average frame rate (else the nominal rate)"),
        Column("fps_variable", pa.bool_(), "nominal and average rates differ by over 1%"),
        Column("width", pa.int32(), "coded width, before rotation"),
        Column("height", pa.int32(), "coded height, before rotation"),
        Column("rotation", pa.int32(), "clockwise degrees the picture must turn"),
        Column("num_frames", pa.int64(), "frames in the stream (declared, else from the rate)"),
        Column("audio_streams", pa.int32(), "number of audio streams"),
        Column("bitrate", pa.int64(), "container bit rate, bits per second"),
    )

    def process(self, record: Record) -> Record:
        """Fill the probe columns of ``record`` or reject/fail it with the cause."""
        path = record["path"]
        try:
            size, kind = os.path.getsize(path), playlist_kind(path)
        except OSError as err:  # its permissions changed since discovery, say
            return fail(record, self.name, ProbeRule.UNREADABLE,
                        f"cannot read file: {err.strerror}")
        if size == 0:
            return fail(record, self.name, ProbeRule.EMPTY_FILE, "file is empty (0 bytes)")
        if kind:
            return reject(record, self.name, ProbeRule.PLAYLIST, kind,
                          f"a {kind} playlist, which names other files; not followed")
        try:
            info = run_ffprobe(path, self.config.timeout_s)
        except subprocess.TimeoutExpired:
            return fail(record, self.name, ProbeRule.TIMEOUT,
                        f"ffprobe took over {self.config.timeout_s} s")
        except ProbeError as err:
            return fail(record, self.name, ProbeRule.UNREADABLE_CONTAINER, str(err))
        return apply_probe(record, info, self.name)


# Text formats that ffmpeg's demuxers recognise by their start and follow to other files (any
# path, a FIFO that blocks for ever, a URL): a video file never starts so.
_PLAYLIST_MARKERS = {b"#EXTM3U": "HLS", b"ffconcat version": "ffconcat", b"<MPD": "DASH",
                     b"<?xml": "XML (DASH)"}


def playlist_kind(path: str) -> str | None:
    """The playlist format ``path`` holds (its first bytes, past a UTF-8 byte-order mark and
    white space), or None for anything else."""
    with open(path, "rb") as handle:
        start = handle.read(256).removeprefix(b"\xef\xbb\xbf").lstrip()
    return next((kind for marker, kind in _PLAYLIST_MARKERS.items()
                 if start.startswith(marker)), None)


class ProbeError(RuntimeError):
    """ffprobe exited non-zero; the message is its last few stderr lines."""


def run_ffprobe(path: str, timeout_s: float) -> dict[str, Any]:
    """Run ffprobe on ``path`` (no shell) and return its JSON document; raises
    ``subprocess.TimeoutExpired`` (the child killed) past ``timeout_s``.

    ffprobe is run directly rather than through ``ffmpeg.probe``: ffmpeg-python 0.2.0 has no
    timeout and passes ``timeout=`` on as ffprobe's network ``-timeout`` option, so a playlist
    that points at a FIFO held discovery forever."""
    command = ["ffprobe", "-hide_banner", "-v", "error", "-show_format", "-show_streams",
               "-of", "json", path]
    done = subprocess.run(command, capture_output=True, timeout=timeout_s, check=False)
    if done.returncode != 0:
        raise ProbeError(_ffprobe_message(done.stderr.decode(errors="replace"), path))
    try:
        return json.loads(done.stdout)
    except json.JSONDecodeError as err:
        raise ProbeError(f"ffprobe printed invalid JSON: {err}") from None


def _ffprobe_message(stderr: str, path: str) -> str:
    """ffprobe's distinct error lines, without the file path and demuxer prefixes."""
    lines: list[str] = []
    for line in stderr.splitlines():
        line = line.replace(f"{path}: ", "").strip()
        line = line.split("] ", 1)[1] if line.startswith("[") and "] " in line else line
        if line and line not in lines:
            lines.append(line)
    return "; ".join(lines[-3:]) or "ffprobe failed without a message"


def apply_probe(record: Record, info: dict[str, Any], stage: str) -> Record:
    """Copy the facts of ffprobe's ``info`` into ``record``; reject non-videos."""
    fmt = info.get("format", {})
    streams = info.get("streams", [])
    audio = [s for s in streams if s.get("codec_type") == "audio"]
    videos = [
        s
        for s in streams
        if s.get("codec_type") == "video" and not s.get("disposition", {}).get("attached_pic")
    ]
    record["container"] = fmt.get("format_name")
    record["audio_streams"] = len(audio)
    record["bitrate"] = _int_or_none(fmt.get("bit_rate"))
    if not videos:
        kinds = sorted({s.get("codec_type", "unknown") for s in streams}) or ["none"]
        return reject(
            record, stage, ProbeRule.NO_VIDEO_STREAM, ",".join(kinds),
            f"no video stream (streams: {', '.join(kinds)})",
        )
    video = videos[0]
    record["codec"] = video.get("codec_name")
    if _is_still_image(record["container"] or "", record["codec"] or ""):
        return reject(
            record, stage, ProbeRule.STILL_IMAGE, record["container"],
            f"a still image ({record['container']}/{record['codec']}), not a video",
        )
    record["pix_fmt"] = video.get("pix_fmt")
    record["width"] = _int_or_none(video.get("width"))
    record["height"] = _int_or_none(video.get("height"))
    record["rotation"] = _rotation(video)
    rate = _rate(video.get("r_frame_rate"))
    avg = _rate(video.get("avg_frame_rate"))
    record["fps"] = avg or rate
    record["fps_variable"] = bool(rate and avg and abs(rate - avg) > 0.01 * rate)
    duration = _float_or_none(video.get("duration")) or _float_or_none(fmt.get("duration"))
    record["duration_s"] = duration
    frames = _int_or_none(video.get("nb_frames"))
    if frames is None and duration and record["fps"]:
        frames = round(duration * record["fps"])
    record["num_frames"] = frames
    return record


def _is_still_image(container: str, codec: str) -> bool:
    return codec in _IMAGE_CODECS or any(m in container for m in _IMAGE_FORMAT_MARKERS)


def _rotation(stream: dict[str, Any]) -> int:
    """Clockwise degrees the picture must turn; 0 when none is declared or the declared value is
    no angle (a degenerate display matrix makes ffprobe print INT64_MIN)."""
    for side in stream.get("side_data_list", []):
        if "rotation" in side:
            return _angle(side["rotation"])
    return _angle(stream.get("tags", {}).get("rotate", 0))


def _angle(value: Any) -> int:
    degrees = _float_or_none(value)
    if degrees is None or not math.isfinite(degrees) or abs(degrees) > 360:
        return 0
    return int(round(degrees)) % 360


def _rate(text: str | None) -> float | None:
    """Frames per second from ffprobe's ``num/den``; None when absent or no rate (``1/0``)."""
    try:
        value = float(Fraction(text)) if text else 0.0
    except (ValueError, ZeroDivisionError):
        return None
    return value if value > 0 and math.isfinite(value) else None


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _float_or_none(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
