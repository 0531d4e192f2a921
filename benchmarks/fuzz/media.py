"""Base media and container structure: small valid videos per container and codec, and walkers
over ISO BMFF boxes, EBML elements and RIFF chunks that the byte mutations edit."""

from __future__ import annotations

import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path

from tests import media

FAMILY = {"mp4": "isobmff", "mov": "isobmff", "mkv": "ebml", "webm": "ebml", "avi": "riff"}


# --- base media -----------------------------------------------------------------------------

def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", *args], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)


def _encoders() -> set[str]:
    out = subprocess.run(["ffmpeg", "-hide_banner", "-encoders"], capture_output=True, text=True)
    return {line.split()[1] for line in out.stdout.splitlines()[10:] if len(line.split()) > 1}


# One thread each: the same bytes on a busy machine, so a seed gives the same inputs.
X265 = ["-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=error:pools=none",
        "-threads", "1"]
AOM = ["-c:v", "libaom-av1", "-cpu-used", "8", "-usage", "realtime", "-threads", "1"]
VP9 = ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "300k",
       "-threads", "1"]
X264 = ["-c:v", "libx264", "-preset", "veryfast", "-bf", "3", "-threads", "1"]
BASES: dict[str, list[str]] = {  # ffmpeg arguments after ``-i source.mp4``
    "h264.mp4": ["-c", "copy"],
    "h264-aac.mp4": ["-f", "lavfi", "-i", "sine=duration=4", "-map", "0:v", "-map", "1:a",
                     "-c:v", "copy", "-c:a", "aac", "-shortest"],
    "hevc.mp4": X265, "av1.mp4": AOM, "h264.mov": ["-c", "copy"], "h264.mkv": ["-c", "copy"],
    "hevc.mkv": X265, "av1.mkv": AOM, "vp9.mkv": VP9, "vp9.webm": VP9, "av1.webm": AOM,
    "mpeg4.avi": ["-c:v", "mpeg4", "-q:v", "5"], "h264.avi": X264,
}


def make_bases(folder: Path) -> dict[str, bytes]:
    """Valid 256x144 videos of three hard-cut shots (3.75 s), per container and codec."""
    folder.mkdir(parents=True, exist_ok=True)
    source = folder / "source.mp4"
    media.make_cuts(source, [30, 24, 36], w=256, h=144, moving=True)
    have = _encoders()
    bases = {}
    for name, args in BASES.items():
        encoder = args[args.index("-c:v") + 1] if "-c:v" in args else "copy"
        if encoder not in have | {"copy"}:
            continue
        ffmpeg("-i", str(source), *args, str(folder / name))
        bases[name] = (folder / name).read_bytes()
    return bases


# --- container structure --------------------------------------------------------------------

Span = tuple[int, int, int]  # offset of the element, length of its header, length of its payload

MP4_PARENTS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts", b"dinf", b"udta", b"mvex"}


def mp4_boxes(data: bytes, start: int = 0, end: int | None = None,
              deep: bool = True) -> Iterator[tuple[bytes, Span]]:
    """(type, span) of the ISO BMFF boxes in ``data[start:end]``, into containers if ``deep``."""
    end = len(data) if end is None else end
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, pos)
        header = 8
        if size == 1 and pos + 16 <= end:
            size, header = struct.unpack_from(">Q", data, pos + 8)[0], 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            return
        yield kind, (pos, header, size - header)
        if deep and kind in MP4_PARENTS:
            yield from mp4_boxes(data, pos + header, pos + size)
        pos += size


def mp4_find(data: bytes, kind: bytes) -> list[int]:
    """Offsets of every box of ``kind``."""
    return [span[0] for found, span in mp4_boxes(data) if found == kind]


EBML_MASTERS = {0x18538067, 0x1F43B675, 0x1654AE6B, 0xAE, 0xE0, 0x1549A966, 0xA0}
CLUSTER, CUES, SEEKHEAD, TRACKS = 0x1F43B675, 0x1C53BB6B, 0x114D9B74, 0x1654AE6B


def vint(data: bytes, pos: int, marker: bool) -> tuple[int, int]:
    """(value, length) of the EBML variable-size integer at ``pos``; keeps the marker for ids."""
    first = data[pos]
    length = 9 - first.bit_length() if first else 9
    if length > 8 or pos + length > len(data):
        raise ValueError("bad EBML number")
    value = int.from_bytes(data[pos:pos + length], "big")
    return (value if marker else value & ((1 << (7 * length)) - 1)), length


def ebml_elements(data: bytes, start: int = 0, end: int | None = None) -> Iterator[
        tuple[int, Span]]:
    """(id, span) of the EBML elements in ``data[start:end]``, into master elements."""
    end = len(data) if end is None else end
    pos = start
    while pos < end:
        try:
            eid, id_len = vint(data, pos, marker=True)
            size, size_len = vint(data, pos + id_len, marker=False)
        except (ValueError, IndexError):
            return
        header = id_len + size_len
        if size == (1 << (7 * size_len)) - 1:  # unknown size: up to the end of the parent
            size = end - pos - header
        if pos + header + size > end:
            return
        yield eid, (pos, header, size)
        if eid in EBML_MASTERS:
            yield from ebml_elements(data, pos + header, pos + header + size)
        pos += header + size


def ebml_find(data: bytes, eid: int) -> list[Span]:
    return [span for found, span in ebml_elements(data) if found == eid]


def riff_chunks(data: bytes, start: int = 12, end: int | None = None) -> Iterator[
        tuple[bytes, Span]]:
    """(fourcc, span) of the RIFF chunks in ``data[start:end]``, into LIST chunks."""
    end = len(data) if end is None else end
    pos = start
    while pos + 8 <= end:
        fourcc, size = struct.unpack_from("<4sI", data, pos)
        if pos + 8 + size > end:
            return
        yield fourcc, (pos, 8, size)
        if fourcc == b"LIST":
            yield from riff_chunks(data, pos + 12, pos + 8 + size)
        pos += 8 + size + (size & 1)


def riff_find(data: bytes, fourcc: bytes) -> list[Span]:
    return [span for found, span in riff_chunks(data) if found == fourcc]
