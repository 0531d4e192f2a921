"""Fuzz campaign (issue 14): hostile inputs through one ``curate run``, counted like a benchmark.

From small valid videos of every container and codec this ffmpeg writes (mp4, mov, mkv, webm,
avi; H.264, HEVC, VP9, AV1, MPEG-4 part 2; lavfi sources with hard cuts, as ``tests.media`` makes
them) it builds about ``--count`` hostile inputs in one folder, one subfolder per category:

- ``truncate``, ``bitflip``: cut at random offsets; bits flipped in headers, index and mid-stream;
- ``index``: zeroed or renamed mp4 ``moov``/``stco``/``stss``, mkv Cues/SeekHead, avi ``idx1``;
- ``atoms``: swapped, duplicated or moved boxes, clusters and chunks;
- ``sizes``: absurd box/element/chunk sizes, frame sizes and display matrices;
- ``rates``: absurd timescales, durations, frame rates;
- ``timestamps``: repeating and backwards timestamps (mp4 ``stts``/``ctts``, mkv block times);
- ``frames``: zero-sample, stream-less and one- or two-frame files;
- ``audio``, ``image``, ``archive``: audio only, stills and animations, archives, text, empty;
- ``sidecar``: non-video files, videos with unknown or odd extensions (discovery probes them);
- ``links``: symlink loops, dangling links, a folder linked to its parent, devices, a FIFO;
- ``perms``: unreadable files and folders (curate runs without root's file-access powers);
- ``names``: newlines, control characters, invalid UTF-8, shell and format metacharacters;
- ``change``: files truncated, deleted, replaced or locked while the run goes on.

It runs ``curate run INPUT OUT`` once (stage timeouts cut to ``--stage-timeout``; as root,
with a private ``/tmp`` and without root's power over file permissions), then counts a crash
for: an exit code other than 0 (1 under ``--strict`` when a file failed); an input without
exactly one ``videos`` row, or a row for no input; a row not accepted without a rule and a
``stage.rule:`` reason; a run past ``--time-limit`` (a hang); a write outside OUT (the input
tree, the working folder, ``$HOME``, ``/tmp`` but for Ray's session folder); a file changed
after discovery, before any video was processed, that did not fail with
``changed_during_run``; a ``curate validate`` violation. The inputs are what discovery
documents (README): every non-folder entry the walk reaches (symlinks followed, each real
folder once) with a video extension, or with another extension not ignored and a moving
picture in it, plus one row per folder that cannot be listed. Prints inputs per category,
statuses per rule, unexpected stage exceptions, the slowest videos and the crashes; exits 1
when there is a crash.

    python3 benchmarks/fuzz.py [--seed 14] [--count 200] [--out /var/tmp/curate-fuzz]
                               [--time-limit 900] [--stage-timeout 60] [--strict]
                               [--skip names,change] [--num-cpus 2]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import tarfile
import threading
import time
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import pyarrow.dataset as pads  # noqa: E402
import yaml  # noqa: E402

from curation.config import load_config  # noqa: E402
from curation.discover import quick_fingerprint  # noqa: E402
from tests import media  # noqa: E402

CURATE = [sys.executable, "-m", "curation.cli"]
# Root that keeps its uid but loses the powers to bypass file permissions, so chmod 000 bites.
NO_DAC = ["setpriv", "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search", "--"]
CATEGORIES = ("truncate", "bitflip", "index", "atoms", "sizes", "rates", "timestamps", "frames",
              "audio", "image", "archive", "sidecar", "links", "perms", "names", "change")
BYTE_CATEGORIES = CATEGORIES[:7]
FAMILY = {"mp4": "isobmff", "mov": "isobmff", "mkv": "ebml", "webm": "ebml", "avi": "riff"}


# --- base media -----------------------------------------------------------------------------

def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", *args], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)


def _encoders() -> set[str]:
    out = subprocess.run(["ffmpeg", "-hide_banner", "-encoders"], capture_output=True, text=True)
    return {line.split()[1] for line in out.stdout.splitlines()[10:] if len(line.split()) > 1}


X265 = ["-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=error"]
AOM = ["-c:v", "libaom-av1", "-cpu-used", "8", "-usage", "realtime"]
VP9 = ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "300k"]
X264 = ["-c:v", "libx264", "-preset", "veryfast", "-bf", "3"]
BASES: dict[str, list[str]] = {
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
        audio_in = args[:args.index("-map")] if "-map" in args else []
        rest = args[len(audio_in):]
        _ffmpeg("-i", str(source), *audio_in, *rest, str(folder / name))
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


def _vint(data: bytes, pos: int, marker: bool) -> tuple[int, int]:
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
            eid, id_len = _vint(data, pos, marker=True)
            size, size_len = _vint(data, pos + id_len, marker=False)
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


# --- byte mutations -------------------------------------------------------------------------

Mutation = Callable[[bytearray, random.Random], bool]  # edits in place; False: not applicable


def _absurd(rng: random.Random, width: int) -> int:
    top = (1 << (8 * width)) - 1
    return rng.choice([0, 1, 2, top, top >> 1, top // 1000])


def _flip(data: bytearray, rng: random.Random, lo: int, hi: int, bits: int) -> bool:
    if hi <= lo:
        return False
    for _ in range(bits):
        data[rng.randrange(lo, hi)] ^= 1 << rng.randrange(8)
    return True


def _put_uint(data: bytearray, span: Span, value: int) -> None:
    offset, header, size = span
    data[offset + header:offset + header + size] = value.to_bytes(size, "big")


def truncate_anywhere(data: bytearray, rng: random.Random) -> bool:
    del data[rng.randrange(1, len(data)):]
    return True


def truncate_header(data: bytearray, rng: random.Random) -> bool:
    del data[rng.randrange(1, 512):]
    return True


def truncate_tail(data: bytearray, rng: random.Random) -> bool:
    del data[len(data) - rng.randrange(1, 4096):]
    return True


def flip_header(data: bytearray, rng: random.Random) -> bool:
    return _flip(data, rng, 0, min(len(data), 1024), rng.randint(1, 8))


def flip_tail(data: bytearray, rng: random.Random) -> bool:
    return _flip(data, rng, max(0, len(data) - 4096), len(data), rng.randint(1, 8))


def flip_middle(data: bytearray, rng: random.Random) -> bool:
    return _flip(data, rng, len(data) // 10, len(data) * 9 // 10, rng.randint(8, 256))


def garbage_block(data: bytearray, rng: random.Random) -> bool:
    start = rng.randrange(len(data) // 10, len(data) * 9 // 10)
    data[start:start + 4096] = rng.randbytes(len(data[start:start + 4096]))
    return True


def _mp4_zero(kind: bytes, header_bytes: int, name: str) -> Mutation:
    """Zero the payload of every ``kind`` box past its first ``header_bytes`` bytes."""
    def mutate(data: bytearray, rng: random.Random) -> bool:
        spans = [span for found, span in mp4_boxes(data) if found == kind]
        for offset, header, size in spans:
            data[offset + header + header_bytes:offset + header + size] = bytes(
                max(0, size - header_bytes))
        return bool(spans)
    mutate.__name__ = name
    return mutate


def mp4_moov_to_free(data: bytearray, rng: random.Random) -> bool:
    offsets = mp4_find(data, b"moov")
    for offset in offsets:
        data[offset + 4:offset + 8] = b"free"
    return bool(offsets)


def mp4_zero_samples(data: bytearray, rng: random.Random) -> bool:
    """Sample tables that list no sample (the boxes keep their size)."""
    for kind, field_at in ((b"stsz", 16), (b"stts", 12), (b"stsc", 12), (b"stco", 12),
                           (b"stss", 12), (b"ctts", 12)):
        for offset in mp4_find(data, kind):
            struct.pack_into(">I", data, offset + field_at, 0)
    return bool(mp4_find(data, b"stsz"))


def mp4_swap_top(data: bytearray, rng: random.Random) -> bool:
    top = [span for _, span in mp4_boxes(data, deep=False)]
    if len(top) < 2 or sum(h + s for _, h, s in top) != len(data):
        return False
    i, j = sorted(rng.sample(range(len(top)), 2))
    parts = [bytes(data[o:o + h + s]) for o, h, s in top]
    parts[i], parts[j] = parts[j], parts[i]
    data[:] = b"".join(parts)
    return True


def mp4_dup_moov(data: bytearray, rng: random.Random) -> bool:
    spans = [span for kind, span in mp4_boxes(data, deep=False) if kind == b"moov"]
    for offset, header, size in spans:
        data += data[offset:offset + header + size]
    return bool(spans)


def mp4_dup_trak(data: bytearray, rng: random.Random) -> bool:
    """A second copy of the first track right after it (moov's size grown to match)."""
    moov = [span for kind, span in mp4_boxes(data) if kind == b"moov"]
    trak = [span for kind, span in mp4_boxes(data) if kind == b"trak"]
    if not moov or not trak or moov[0][1] != 8:
        return False
    offset, header, size = trak[0]
    copy = bytes(data[offset:offset + header + size])
    data[offset + header + size:offset + header + size] = copy
    struct.pack_into(">I", data, moov[0][0], moov[0][2] + 8 + len(copy))
    return True


def mp4_box_size(data: bytearray, rng: random.Random) -> bool:
    spans = [span for _, span in mp4_boxes(data) if span[1] == 8]
    offset, _, size = rng.choice(spans)
    struct.pack_into(">I", data, offset, rng.choice(
        [0, 1, 7, 0xFFFFFFFF, (size * 1000) & 0xFFFFFFFF, size + 7, size - 1]))
    return True


def _tkhd_fields(data: bytes, offset: int) -> int:
    """Offset of tkhd's matrix (36 bytes, then width and height in 16.16)."""
    return offset + 8 + 4 + (32 if data[offset + 8] == 1 else 20) + 16


def mp4_dims(data: bytearray, rng: random.Random) -> bool:
    """Absurd frame sizes in the track header and the sample description."""
    width, height = rng.choice([(0, 0), (1, 1), (65535, 65535), (65535, 1), (16, 9000)])
    for offset in mp4_find(data, b"tkhd"):
        struct.pack_into(">II", data, _tkhd_fields(data, offset) + 36, width << 16, height << 16)
    for offset in mp4_find(data, b"stsd"):
        struct.pack_into(">HH", data, offset + 16 + 32, width, height)
    return bool(mp4_find(data, b"stsd"))


def mp4_matrix(data: bytearray, rng: random.Random) -> bool:
    """A display matrix that is zero, or scales by -1 on one axis, or is huge."""
    matrix = rng.choice([(0,) * 9, (-65536, 0, 0, 0, 65536, 0, 0, 0, 1 << 30),
                         (0x7FFFFFFF,) * 9])
    for offset in mp4_find(data, b"tkhd"):
        struct.pack_into(">9i", data, _tkhd_fields(data, offset), *matrix)
    return bool(mp4_find(data, b"tkhd"))


def mp4_timescale(data: bytearray, rng: random.Random) -> bool:
    """Absurd timescale or duration in the movie and media headers."""
    found = False
    for kind in (b"mvhd", b"mdhd"):
        for offset in mp4_find(data, kind):
            long = data[offset + 8] == 1
            at = offset + 12 + (16 if long else 8)
            if rng.random() < 0.5:
                struct.pack_into(">I", data, at, _absurd(rng, 4))
            else:
                width = 8 if long else 4
                data[at + 4:at + 4 + width] = _absurd(rng, width).to_bytes(width, "big")
            found = True
    return found


def _mp4_entries(kind: bytes, name: str) -> Mutation:
    """Rewrite the (count, value) entries of every ``kind`` box: values zeroed (timestamps that
    repeat), huge or negative (timestamps that jump or run backwards)."""
    def mutate(data: bytearray, rng: random.Random) -> bool:
        found = False
        for offset in mp4_find(data, kind):
            count = struct.unpack_from(">I", data, offset + 12)[0]
            for i in rng.sample(range(count), min(count, rng.randint(1, 4))):
                value = rng.choice([0, 0xFFFFFFFF, 0x80000000, 0xFFFF0000, 1])
                struct.pack_into(">I", data, offset + 16 + 8 * i + 4, value)
                found = True
        return found
    mutate.__name__ = name
    return mutate


def _ebml_zero(eid: int, name: str) -> Mutation:
    def mutate(data: bytearray, rng: random.Random) -> bool:
        spans = ebml_find(data, eid)
        for offset, header, size in spans:
            data[offset + header:offset + header + size] = bytes(size)
        return bool(spans)
    mutate.__name__ = name
    return mutate


def _ebml_uint(eid: int, name: str) -> Mutation:
    """An absurd value in every unsigned-integer element ``eid``."""
    def mutate(data: bytearray, rng: random.Random) -> bool:
        spans = ebml_find(data, eid)
        for span in spans:
            _put_uint(data, span, _absurd(rng, span[2]))
        return bool(spans)
    mutate.__name__ = name
    return mutate


def mkv_duration(data: bytearray, rng: random.Random) -> bool:
    spans = [s for s in ebml_find(data, 0x4489) if s[2] in (4, 8)]
    value = rng.choice([float("nan"), float("inf"), -1.0, 1e300, 0.0])
    for offset, header, size in spans:
        struct.pack_into(">f" if size == 4 else ">d", data, offset + header, value)
    return bool(spans)


def mkv_no_clusters(data: bytearray, rng: random.Random) -> bool:
    clusters = ebml_find(data, CLUSTER)
    if clusters:
        del data[clusters[0][0]:]
    return bool(clusters)


def _swap(data: bytearray, first: Span, second: Span) -> None:
    """Exchange two elements (``first`` before ``second``); what lies between them moves."""
    a, b = first[0], second[0]
    end_a, end_b = a + first[1] + first[2], b + second[1] + second[2]
    data[a:end_b] = data[b:end_b] + data[end_a:b] + data[a:end_a]


def mkv_swap_clusters(data: bytearray, rng: random.Random) -> bool:
    clusters = ebml_find(data, CLUSTER)
    if len(clusters) < 2:
        return False
    _swap(data, *sorted(rng.sample(clusters, 2)))
    return True


def mkv_dup_cluster(data: bytearray, rng: random.Random) -> bool:
    clusters = ebml_find(data, CLUSTER)
    if not clusters:
        return False
    offset, header, size = rng.choice(clusters)
    end = offset + header + size
    data[end:end] = data[offset:end]
    return True


def mkv_element_size(data: bytearray, rng: random.Random) -> bool:
    """One element's size field set to its largest value (unknown size), or to zero."""
    offset, header, _ = rng.choice([span for _, span in ebml_elements(data)])
    _, id_len = _vint(data, offset, marker=True)
    size_len = header - id_len
    value = rng.choice([0, (1 << (7 * size_len)) - 1, (1 << (7 * size_len)) - 2])
    data[offset + id_len:offset + header] = ((1 << (7 * size_len)) | value).to_bytes(size_len,
                                                                                     "big")
    return True


def mkv_block_times(data: bytearray, rng: random.Random) -> bool:
    """Block timestamps (int16 after the track number) that repeat or run backwards."""
    blocks = [span for eid, span in ebml_elements(data) if eid in (0xA3, 0xA1)]
    if len(blocks) < 4:
        return False
    for offset, header, _ in rng.sample(blocks[1:], rng.randint(1, min(8, len(blocks) - 1))):
        _, track_len = _vint(data, offset + header, marker=False)
        value = rng.choice([0, -32768, 32767, -1000])
        struct.pack_into(">h", data, offset + header + track_len, value)
    return True


def _riff_field(fourcc: bytes, fields: tuple[int, ...], name: str) -> Mutation:
    """Absurd values in the 32-bit fields at ``fields`` of every ``fourcc`` chunk."""
    def mutate(data: bytearray, rng: random.Random) -> bool:
        spans = riff_find(data, fourcc)
        for offset, header, size in spans:
            for at in fields:
                if at + 4 <= size:
                    struct.pack_into("<I", data, offset + header + at, _absurd(rng, 4))
        return bool(spans)
    mutate.__name__ = name
    return mutate


def avi_idx1_to_junk(data: bytearray, rng: random.Random) -> bool:
    spans = riff_find(data, b"idx1")
    for offset, _, _ in spans:
        data[offset:offset + 4] = b"JUNK"
    return bool(spans)


def avi_chunk_size(data: bytearray, rng: random.Random) -> bool:
    offset, _, size = rng.choice([span for _, span in riff_chunks(data)])
    struct.pack_into("<I", data, offset + 4, rng.choice([0, 0xFFFFFFFF, size * 1000, size + 1]))
    return True


def avi_swap_frames(data: bytearray, rng: random.Random) -> bool:
    frames = [(o, h, s + (s & 1)) for fourcc, (o, h, s) in riff_chunks(data)
              if fourcc[2:] in (b"dc", b"db")]
    if len(frames) < 2:
        return False
    _swap(data, *sorted(rng.sample(frames, 2)))
    return True


# (category, container family or None for any, mutation)
MUTATIONS: list[tuple[str, str | None, Mutation]] = [
    ("truncate", None, truncate_anywhere),
    ("truncate", None, truncate_header),
    ("truncate", None, truncate_tail),
    ("bitflip", None, flip_header),
    ("bitflip", None, flip_tail),
    ("bitflip", None, flip_middle),
    ("bitflip", None, garbage_block),
    ("index", "isobmff", _mp4_zero(b"moov", 0, "zero_moov")),
    ("index", "isobmff", mp4_moov_to_free),
    ("index", "isobmff", _mp4_zero(b"stco", 8, "zero_stco")),
    ("index", "isobmff", _mp4_zero(b"stss", 8, "zero_stss")),
    ("index", "ebml", _ebml_zero(CUES, "zero_cues")),
    ("index", "ebml", _ebml_zero(SEEKHEAD, "zero_seekhead")),
    ("index", "riff", _riff_field(b"idx1", tuple(range(0, 4096, 4)), "idx1_garbage")),
    ("index", "riff", avi_idx1_to_junk),
    ("atoms", "isobmff", mp4_swap_top),
    ("atoms", "isobmff", mp4_dup_moov),
    ("atoms", "isobmff", mp4_dup_trak),
    ("atoms", "ebml", mkv_swap_clusters),
    ("atoms", "ebml", mkv_dup_cluster),
    ("atoms", "riff", avi_swap_frames),
    ("sizes", "isobmff", mp4_box_size),
    ("sizes", "isobmff", mp4_dims),
    ("sizes", "isobmff", mp4_matrix),
    ("sizes", "ebml", mkv_element_size),
    ("sizes", "ebml", _ebml_uint(0xB0, "pixel_width")),
    ("sizes", "ebml", _ebml_uint(0xBA, "pixel_height")),
    ("sizes", "riff", avi_chunk_size),
    ("sizes", "riff", _riff_field(b"avih", (32, 36), "avih_size")),
    ("sizes", "riff", _riff_field(b"strf", (4, 8), "strf_size")),
    ("rates", "isobmff", mp4_timescale),
    ("rates", "ebml", _ebml_uint(0x2AD7B1, "timestamp_scale")),
    ("rates", "ebml", _ebml_uint(0x23E383, "default_duration")),
    ("rates", "ebml", mkv_duration),
    ("rates", "riff", _riff_field(b"avih", (0, 16), "avih_rate")),
    ("rates", "riff", _riff_field(b"strh", (20, 24, 32), "strh_rate")),
    ("timestamps", "isobmff", _mp4_entries(b"stts", "stts_deltas")),
    ("timestamps", "isobmff", _mp4_entries(b"ctts", "ctts_offsets")),
    ("timestamps", "ebml", mkv_block_times),
    ("timestamps", "ebml", _ebml_uint(0xE7, "cluster_time")),
]


# --- the input folder -----------------------------------------------------------------------

@dataclass
class Change:
    """A file the run sees changing: ``action`` is truncate, delete, replace or lock (chmod
    000); ``early`` ones happen right after discovery, before any video is processed."""

    path: Path
    action: str
    early: bool
    original: bytes
    mtime_ns: int


@dataclass
class Folder:
    """The hostile input folder and what the checks must know about it."""

    root: Path
    rng: random.Random
    bases: dict[str, bytes]
    category: dict[str, str] = field(default_factory=dict)  # rel path -> category
    probe_video: set[str] = field(default_factory=set)  # unknown-extension videos (rel paths)
    modes: dict[Path, int] = field(default_factory=dict)  # chmod applied just before the run
    changes: list[Change] = field(default_factory=list)
    serial: int = 0

    def path(self, category: str, name: str) -> Path:
        """Where ``name`` of ``category`` goes; recorded as an entry of that category."""
        path = self.root / category / name
        path.parent.mkdir(parents=True, exist_ok=True)
        self.category[str(path.relative_to(self.root))] = category
        return path

    def write(self, category: str, name: str, data: bytes, probe_video: bool = False) -> Path:
        path = self.path(category, name)
        path.write_bytes(data)
        if probe_video:
            self.probe_video.add(str(path.relative_to(self.root)))
        return path

    def unique(self, base: str = "h264.mp4") -> bytes:
        """``base`` made unique by a trailing box or element, so it is no duplicate."""
        self.serial += 1
        tag = f"fuzz{self.serial:08d}".encode()
        family = FAMILY[base.rsplit(".", 1)[1]]
        if family == "isobmff":
            tail = struct.pack(">I4s", 8 + len(tag), b"free") + tag
        elif family == "ebml":
            tail = bytes([0xEC, 0x80 | len(tag)]) + tag  # a top-level Void element
        else:
            tail = b"JUNK" + struct.pack("<I", len(tag)) + tag
        return self.bases[base] + tail

    def media(self, category: str, name: str, *args: str) -> Path:
        """Run ffmpeg ``args`` writing this entry."""
        path = self.path(category, name)
        _ffmpeg(*args, str(path))
        return path


def build_mutated(folder: Folder, category: str, index: int) -> None:
    """One base file through one seeded mutation of ``category``."""
    rng = folder.rng
    options = [(family, mutate) for cat, family, mutate in MUTATIONS if cat == category]
    for _ in range(20):
        family, mutate = rng.choice(options)
        names = [n for n in folder.bases if family in (None, FAMILY[n.rsplit(".", 1)[1]])]
        base = rng.choice(names)
        data = bytearray(folder.bases[base])
        if mutate(data, rng) and bytes(data) != folder.bases[base]:
            folder.write(category, f"{index:03d}-{mutate.__name__}-{base}", bytes(data))
            return


def build_frames(folder: Folder) -> None:
    src = str(folder.root.parent / "bases" / "source.mp4")
    zero = bytearray(folder.bases["h264.mp4"])
    mp4_zero_samples(zero, folder.rng)
    folder.write("frames", "zero-samples.mp4", bytes(zero))
    clusterless = bytearray(folder.bases["h264.mkv"])
    mkv_no_clusters(clusterless, folder.rng)
    folder.write("frames", "no-clusters.mkv", bytes(clusterless))
    folder.media("frames", "zero-frames.avi", "-i", src, "-frames:v", "0", "-c:v", "mpeg4")
    folder.media("frames", "no-stream.mp4", "-f", "lavfi", "-i", "testsrc2=size=256x144",
                 "-frames:v", "0", "-c:v", "libx264")
    for name, frames, codec in (("one-frame.mp4", 1, X264), ("one-frame.mkv", 1, X264),
                                ("one-frame.webm", 1, VP9), ("one-frame.avi", 1, ["-c:v", "mpeg4"]),
                                ("two-frames.mp4", 2, X264), ("1fps.mkv", 90, X264)):
        rate = ["-r", "1"] if name == "1fps.mkv" else []
        folder.media("frames", name, "-i", src, "-frames:v", str(frames), *rate, *codec)


def build_audio(folder: Folder) -> None:
    media.make_audio_only(folder.path("audio", "tone.mp4"))
    tone = ["-f", "lavfi", "-i", "sine=duration=3"]
    folder.media("audio", "tone.mkv", *tone, "-c:a", "flac")
    folder.media("audio", "tone.webm", *tone, "-c:a", "libopus")
    folder.media("audio", "tone.m4a", *tone, "-c:a", "aac")  # unknown extension, no picture


def build_image(folder: Folder) -> None:
    media.make_image(folder.path("image", "png-as.mp4"))
    still = ["-f", "lavfi", "-i", "testsrc2=size=256x144,trim=end_frame=1"]
    folder.media("image", "jpeg-as.mkv", *still, "-c:v", "mjpeg", "-f", "image2")
    folder.media("image", "png-stream.mkv", *still, "-c:v", "png")
    folder.media("image", "png-as.dat", *still, "-c:v", "png", "-f", "image2")
    folder.media("image", "gif-as.mp4", "-f", "lavfi", "-i", "testsrc2=size=256x144:rate=10",
                 "-t", "3", "-f", "gif")
    folder.media("image", "cover-art.mp4", "-f", "lavfi", "-i", "sine=duration=3", *still,
                 "-map", "0:a", "-map", "1:v", "-c:a", "aac", "-c:v", "png",
                 "-disposition:v", "attached_pic")


def _archive(kind: str, member: bytes) -> bytes:
    buffer = io.BytesIO()
    if kind == "zip":
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("clip.mp4", member)
    else:
        with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
            info = tarfile.TarInfo("clip.mp4")
            info.size = len(member)
            archive.addfile(info, io.BytesIO(member))
    return buffer.getvalue()


def build_archive(folder: Folder) -> None:
    video = folder.bases["h264.mp4"]
    folder.write("archive", "zip-as.mp4", _archive("zip", video))
    folder.write("archive", "tgz-as.mkv", _archive("tgz", video))
    folder.write("archive", "real.zip", _archive("zip", video))
    folder.write("archive", "real.tar.gz", _archive("tgz", video))
    folder.write("archive", "text-as.mp4", b"this is not a video\n" * 50)
    folder.write("archive", "html-as.webm", b"<!doctype html><title>x</title><video></video>")
    folder.write("archive", "json-as.mov", json.dumps({"streams": []}).encode())
    folder.write("archive", "random-as.avi", folder.rng.randbytes(300_000))
    folder.write("archive", "empty.mp4", b"")
    folder.write("archive", "one-byte.mkv", b"\x1a")
    sparse = folder.write("archive", "sparse-2GiB.mp4", folder.unique())
    os.truncate(sparse, 2 << 30)


def build_sidecar(folder: Folder) -> None:
    folder.write("sidecar", "notes.txt", b"shot list\n")
    folder.write("sidecar", "subs.srt", b"1\n00:00:00,000 --> 00:00:01,000\nhi\n")
    folder.write("sidecar", "clip.mp4.txt", folder.unique())
    folder.write("sidecar", "clip.bin", folder.unique(), probe_video=True)
    folder.write("sidecar", "no-extension", folder.unique("h264.mkv"), probe_video=True)
    folder.write("sidecar", ".mp4", folder.unique(), probe_video=True)  # a hidden name, no suffix
    folder.write("sidecar", "text.dat", b"plain text, probed and skipped\n")
    folder.write("sidecar", "UPPER.MP4", folder.unique())


def build_links(folder: Folder) -> None:
    def link(name: str, target: str) -> None:
        os.symlink(target, folder.path("links", name))

    link("loop-a.mp4", "loop-b.mp4")
    link("loop-b.mp4", "loop-a.mp4")
    link("self.mkv", "self.mkv")
    link("dangling.mp4", "no-such-file.mp4")
    link("up", "..")
    link("here", ".")
    link("dev-zero.mp4", "/dev/zero")
    link("dev-null.mkv", "/dev/null")
    target = folder.write("links", "target.mp4", folder.unique())
    link("to-target.mp4", "target.mp4")
    os.link(target, folder.path("links", "hardlink.mp4"))
    folder.write("links", "copy.mp4", target.read_bytes())
    outside = folder.root.parent / "outside"
    outside.mkdir(exist_ok=True)
    (outside / "elsewhere.mp4").write_bytes(folder.unique("h264.mov"))
    link("outside", str(outside))
    os.mkfifo(folder.path("links", "fifo.mp4"))
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(folder.path("links", "socket.mkv")))


def build_perms(folder: Folder) -> None:
    for name, mode in (("locked.mp4", 0o000), ("write-only.mkv", 0o200), ("locked.bin", 0o000)):
        folder.modes[folder.write("perms", name, folder.unique())] = mode
    for name, mode in (("locked-dir", 0o000), ("search-only-dir", 0o100),
                       ("list-only-dir", 0o400)):
        inner = folder.write("perms", f"{name}/inside.mp4", folder.unique())
        folder.modes[inner.parent] = mode


NAMES = [b"new\nline.mp4", b"carriage\rreturn.mp4", b"tab\there.mp4", b"\x1b[31mansi.mp4",
         b"bell\x07.mp4", b"bad\xff.mp4", b"overlong\xc0\xaf.mp4", b"surrogate\xed\xa0\x80.mp4",
         b"latin1-caf\xe9.mkv", b"-i leading-dash.mp4", b"--help.mp4", b"%d%s%n.mp4",
         b"$(touch pwned).mp4", b"`touch pwned`.mp4", b"a;touch pwned;.mp4", b"quote'\"\\.mp4",
         b"glob*?[x].mp4", b"caf\xc3\xa9-nfc.mp4", b"cafe\xcc\x81-nfd.mp4",
         b"\xe2\x80\xaertl-override.mp4", b"emoji-\xf0\x9f\x8e\xac.mp4", b"trailing space.mp4 ",
         b" .mp4", b"x" * 251 + b".mp4", b"file:colon.mp4", b"dir\nwith\xffbytes/inside.mp4"]


def build_names(folder: Folder) -> None:
    for i, raw in enumerate(NAMES):
        base = ("h264.mp4", "hevc.mkv", "h264.mov")[i % 3]
        folder.write("names", os.fsdecode(raw), folder.unique(base), probe_video=True)


def build_change(folder: Folder) -> None:
    actions = ("truncate", "delete", "replace", "lock")
    for i, (action, early) in enumerate((a, e) for a in actions for e in (True, False)):
        when = "early" if early else "late"
        path = folder.write("change", f"{i}-{action}-{when}.mp4", folder.unique())
        folder.changes.append(Change(path, action, early, path.read_bytes(),
                                     path.stat().st_mtime_ns))


BUILDERS: dict[str, Callable[[Folder], None]] = {
    "frames": build_frames, "audio": build_audio, "image": build_image, "archive": build_archive,
    "sidecar": build_sidecar, "links": build_links, "perms": build_perms, "names": build_names,
    "change": build_change}


def build_inputs(root: Path, bases: dict[str, bytes], seed: int, count: int,
                 skip: set[str]) -> Folder:
    """The hostile folder: every fixed category not skipped, then seeded byte mutations of the
    bases up to about ``count`` entries."""
    folder = Folder(root, random.Random(seed), bases)
    for name, build in BUILDERS.items():
        if name not in skip:
            build(folder)
    byte_categories = [c for c in BYTE_CATEGORIES if c not in skip]
    for i in range(max(0, count - len(folder.category)) if byte_categories else 0):
        build_mutated(folder, byte_categories[i % len(byte_categories)], i)
    return folder


# --- what the run must cover ----------------------------------------------------------------

def expected_inputs(folder: Folder) -> set[str]:
    """Rel paths of the rows discovery must give, walking as a user without root's powers
    would: a folder that cannot be listed is one row; the entries of a folder without search
    permission are files that cannot be stat'ed. Extensions from the built-in config."""
    config = load_config(None).input
    known = {e.lower().lstrip(".") for e in config.extensions}
    ignored = {e.lower().lstrip(".") for e in config.ignore_extensions}
    found: set[str] = set()
    seen: set[str] = set()

    def visit(directory: str) -> None:
        mode = os.stat(directory).st_mode
        if not mode & stat.S_IRUSR:
            found.add(os.path.relpath(directory, folder.root))
            return
        searchable = bool(mode & stat.S_IXUSR)
        names = sorted(os.listdir(directory))
        subdirs = [n for n in names if searchable and os.path.isdir(os.path.join(directory, n))]
        real = os.path.realpath(directory)
        if real in seen:
            return
        seen.add(real)
        for name in (n for n in names if n not in subdirs):
            rel = os.path.relpath(os.path.join(directory, name), folder.root)
            suffix = Path(name).suffix.lower().lstrip(".")
            if suffix in known or (searchable and suffix not in ignored
                                   and rel in folder.probe_video):
                found.add(rel)
        for name in subdirs:
            visit(os.path.join(directory, name))

    visit(str(folder.root))
    return found


# --- the run --------------------------------------------------------------------------------

@dataclass
class Outcome:
    """One command's end: exit code (None when killed at its limit), seconds and output."""

    code: int | None
    seconds: float
    lines: list[str]


def run_command(cmd: list[str], work: Path, limit: float,
                on_line: Callable[[str], None] = lambda line: None) -> Outcome:
    """Run ``cmd`` in its own session in ``work/cwd`` with ``HOME`` and ``TMPDIR`` in
    ``work``; kill the whole session at ``limit`` seconds."""
    started = time.monotonic()
    env = dict(os.environ, HOME=str(work / "home"), TMPDIR=str(work / "tmp"))
    proc = subprocess.Popen(cmd, cwd=work / "cwd", env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    lines: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            lines.append(raw.decode(errors="replace").rstrip("\n"))
            on_line(lines[-1])

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        code: int | None = proc.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        code = None
    reader.join(timeout=10)
    return Outcome(code, time.monotonic() - started, lines)


def apply_change(change: Change, bases: dict[str, bytes]) -> None:
    path = change.path
    if change.action == "truncate":
        os.truncate(path, len(change.original) // 3)
    elif change.action == "delete":
        path.unlink()
    elif change.action == "replace":
        staged = path.with_name(path.name + ".new")
        staged.write_bytes(bases["h264.mkv"])
        staged.replace(path)
    else:
        path.chmod(0o000)


def restore_change(change: Change) -> None:
    """Put the file back as it was, so the checks see the tree discovery saw."""
    if not change.path.exists() or change.path.read_bytes() != change.original:
        change.path.write_bytes(change.original)
    change.path.chmod(0o644)
    os.utime(change.path, ns=(change.mtime_ns, change.mtime_ns))


def change_files(folder: Folder, discovered: threading.Event, delay: float,
                 done: threading.Event) -> None:
    """Early changes as soon as discovery has listed the files, late ones ``delay`` s later;
    none once the run is ``done``."""
    while not discovered.wait(0.05):
        if done.is_set():
            return
    for early in (True, False):
        for change in (c for c in folder.changes if c.early == early):
            apply_change(change, folder.bases)
        if early and done.wait(delay):
            return


def sandbox(work: Path) -> list[str]:
    """As root, the prefix that runs a command with a private ``/tmp`` (``work/tmp`` mounted
    there, so every temp write can be seen) and without root's power to ignore file
    permissions (so chmod 000 bites); [] when not root or when that fails (packages must
    import, ``/tmp`` must be empty, a chmod 000 file unreadable)."""
    if os.geteuid() != 0:
        return []
    prefix = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
              'mount --bind "$0" /tmp && exec "$@"', str(work / "tmp"), *NO_DAC]
    probe = work / "cwd" / "locked"
    probe.write_bytes(b"x")
    probe.chmod(0o000)
    check = ("import os, curation.cli, ray, av, decord, cv2, rapidocr\n"
             "assert not os.listdir('/tmp')\n"
             f"try:\n open({str(probe)!r}).read()\nexcept PermissionError:\n print('ok')")
    out = subprocess.run([*prefix, sys.executable, "-c", check], capture_output=True, text=True)
    probe.unlink()
    return prefix if out.stdout.strip() == "ok" else []


def write_config(path: Path, stage_timeout: float) -> Path:
    """pipeline.yaml with every stage's per-video timeout cut to ``stage_timeout`` seconds."""
    config = yaml.safe_load((REPO / "pipeline.yaml").read_text())
    for stage in config["stages"].values():
        stage.setdefault("resources", {})["timeout_s"] = stage_timeout
    path.write_text(yaml.safe_dump(config))
    return path


# --- checks ---------------------------------------------------------------------------------

Snapshot = dict[str, tuple[int, int, int]]


def snapshot(top: Path) -> Snapshot:
    """(size, mtime, mode) of every file under ``top`` and the mode of every folder."""
    found: Snapshot = {}
    for directory, subdirs, files in os.walk(top):
        for name in files + subdirs:
            info = os.lstat(os.path.join(directory, name))
            kept = name in files
            found[os.path.join(directory, name)] = (
                info.st_size if kept else 0, info.st_mtime_ns if kept else 0, info.st_mode)
    return found


def changed_paths(before: Snapshot, after: Snapshot) -> list[str]:
    return sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))


def outside_writes(work: Path) -> list[str]:
    """What the run left in its working folder, ``HOME`` and (private) ``/tmp``, which hold
    nothing else; Ray's own session folder ``/tmp/ray`` is allowed."""
    left = []
    for name in ("cwd", "home", "tmp"):
        for entry in sorted((work / name).iterdir()):
            if (name, entry.name) != ("tmp", "ray"):
                left.append(f"written outside OUT: {show(str(entry))}")
    return left


def show(name: str | bytes) -> str:
    """A file name on one printable line."""
    text = os.fsdecode(name) if isinstance(name, bytes) else name
    return repr(text)[1:-1]


def row_key(row: dict) -> bytes:
    """The exact path bytes of a videos row (``path_bytes`` when the table has it)."""
    if row.get("path_bytes") is not None:
        return bytes(row["path_bytes"])
    return os.fsencode(row["path"])


def path_keys(path: Path) -> set[bytes]:
    """Forms a row may give ``path`` in: its bytes, or UTF-8 with ``\\xNN`` escapes."""
    raw = os.fsencode(path)
    return {raw, raw.decode("utf-8", "backslashreplace").encode()}


def check_rows(rows: list[dict], folder: Folder) -> list[str]:
    """Exactly one row per input, no row for anything else, a reason on every row not accepted."""
    crashes = []
    by_key = Counter(row_key(row) for row in rows)
    expected = expected_inputs(folder)
    claimed: set[bytes] = set()
    for rel in sorted(expected):
        keys = path_keys(folder.root / rel)
        n = sum(by_key[k] for k in keys)
        claimed |= keys
        if n != 1:
            crashes.append(f"{'missing row' if n == 0 else f'{n} rows'}: {show(rel)}")
    crashes += [f"row for a non-input: {show(key)}" for key in by_key if key not in claimed]
    for row in rows:
        status, rule, stage = row["status"], row["reject_rule"], row["reject_stage"]
        if status not in ("accepted", "rejected", "failed", "duplicate"):
            crashes.append(f"unknown status {status!r}: {show(row['rel_path'])}")
        elif status != "accepted" and not (rule and (row["reason"] or "").startswith(
                f"{stage}.{rule}:")):
            crashes.append(f"{status} without rule and reason: {show(row['rel_path'])}")
    return crashes


def check_changes(rows: list[dict], folder: Folder) -> list[str]:
    """A file changed before any video was processed must fail with ``changed_during_run``
    (a lock changes no content: any reasoned row will do)."""
    by_path = {row_key(row): row for row in rows}
    crashes = []
    for change in folder.changes:
        row = next((by_path[k] for k in path_keys(change.path) if k in by_path), None)
        if row and change.early and change.action != "lock" and row[
                "reject_rule"] != "changed_during_run":
            crashes.append(f"change not detected ({change.action} after discovery): "
                           f"{show(row['rel_path'])} is {row['status']} {row['reason']}")
    return crashes


def hung_videos(out: Path, folder: Folder) -> list[str]:
    """The inputs whose stage calls were still in flight, from the watchdog's markers."""
    names = {}
    for directory, _, files in os.walk(folder.root):
        for path in (Path(directory, name) for name in files):
            try:
                if stat.S_ISREG(path.lstat().st_mode):
                    names[quick_fingerprint(path, path.stat().st_size)] = path
            except OSError:
                continue
    markers = sorted((out / ".inflight").glob("*.json"))
    return [f"{show(str(names.get(m.name.split('.')[0], m.name)))} in {m.name.split('.')[1]}"
            for m in markers]


# --- report ---------------------------------------------------------------------------------

def print_tables(rows: list[dict], folder: Folder) -> None:
    """Statuses per rule, per category, unexpected stage exceptions, the slowest videos."""
    per_rule = Counter((r["status"], f"{r['reject_stage']}.{r['reject_rule']}"
                        if r["reject_rule"] else "-") for r in rows)
    print(f"\n{'status':10s} {'rule':36s} {'count':>5s}")
    for (status, rule), n in sorted(per_rule.items()):
        print(f"{status:10s} {rule:36s} {n:5d}")
    per_category: dict[str, Counter] = {}
    for row in rows:
        rel = os.path.relpath(os.fsdecode(row_key(row)), folder.root)
        per_category.setdefault(rel.split(os.sep)[0], Counter())[row["status"]] += 1
    print("\nper category: " + "; ".join(
        f"{c} " + ", ".join(f"{s} {n}" for s, n in sorted(k.items()))
        for c, k in sorted(per_category.items())))
    errors = Counter(r["reason"][:160] for r in rows if r["reject_rule"] == "error")
    for reason, n in errors.most_common():
        print(f"unexpected exception x{n}: {reason}")
    seconds = {r["rel_path"]: sum(v or 0 for k, v in r.items() if k.startswith("seconds_"))
               for r in rows}
    slowest = sorted(seconds.items(), key=lambda item: -item[1])[:5]
    print("slowest: " + ", ".join(f"{show(rel)} {s:.1f} s" for rel, s in slowest))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--count", type=int, default=200, help="about this many inputs")
    parser.add_argument("--out", type=Path, default=Path("/var/tmp/curate-fuzz"),
                        help="work folder, emptied first; outside /tmp (runs get a private one)")
    parser.add_argument("--time-limit", type=float, default=900,
                        help="seconds the curate run may take before it counts as a hang")
    parser.add_argument("--stage-timeout", type=float, default=60,
                        help="each stage's per-video timeout_s in the run's config")
    parser.add_argument("--strict", action="store_true", help="run curate with --strict")
    parser.add_argument("--skip", default="", help=f"comma-separated categories of {CATEGORIES}")
    parser.add_argument("--num-cpus", type=int, default=2)
    args = parser.parse_args()
    skip = {s for s in args.skip.split(",") if s}
    if unknown := skip - set(CATEGORIES):
        parser.error(f"unknown categories {sorted(unknown)}")
    work = args.out.resolve()
    if work.is_relative_to("/tmp"):
        parser.error("--out must be outside /tmp: the run gets a private /tmp")
    started = time.monotonic()
    shutil.rmtree(work, ignore_errors=True)
    for name in ("cwd", "home", "tmp"):
        (work / name).mkdir(parents=True)
    prefix = sandbox(work)
    if not prefix:
        print("note: no sandbox (not root, or unshare/setpriv failed): /tmp unchecked, "
              "perms skipped")
        skip.add("perms")
    folder = build_inputs(work / "input", make_bases(work / "bases"), args.seed, args.count, skip)
    print(f"fuzz: seed {args.seed}, {len(folder.category)} inputs tried "
          f"({time.monotonic() - started:.0f} s to make), skipped: {sorted(skip) or 'none'}")
    print("  " + ", ".join(f"{c} {n}" for c, n in Counter(folder.category.values()).items()))
    crashes = run_and_check(args, folder, work, prefix)
    print(f"\ncrashes: {len(crashes)}")
    for crash in crashes:
        print(f"  {crash}")
    print(f"wall: {time.monotonic() - started:.0f} s")
    sys.exit(1 if crashes else 0)


def run_and_check(args: argparse.Namespace, folder: Folder, work: Path,
                  prefix: list[str]) -> list[str]:
    """Run curate once on the folder (changing files under it) and check the output."""
    out = work / "out"
    config = write_config(work / "fuzz.yaml", args.stage_timeout)
    for path, mode in folder.modes.items():
        path.chmod(mode)
    inputs_before = snapshot(folder.root)
    discovered, done = threading.Event(), threading.Event()
    changer = threading.Thread(target=change_files, daemon=True, args=(
        folder, discovered, folder.rng.uniform(3, 8), done))
    changer.start()
    cmd = [*prefix, *CURATE, "run", str(folder.root), str(out), "-c", str(config),
           "--num-cpus", str(args.num_cpus), "--progress", "plain", *(
               ["--strict"] if args.strict else [])]
    run = run_command(cmd, work, args.time_limit,
                      lambda line: "curation.runner: found" in line and discovered.set())
    done.set()
    changer.join()
    for change in folder.changes:
        restore_change(change)
    print(f"\ncurate run: exit {run.code} in {run.seconds:.0f} s (limit {args.time_limit:.0f} s)")
    if run.code is None:
        return [f"hang: run killed after {args.time_limit:.0f} s; in flight: "
                + "; ".join(hung_videos(out, folder))]
    crashes = []
    rows = pads.dataset(out / "videos").to_table().to_pylist() if (out / "videos").is_dir() else []
    expected_code = 1 if args.strict and any(r["status"] == "failed" for r in rows) else 0
    if run.code != expected_code:
        crashes.append(f"exit {run.code} (expected {expected_code}): "
                       + " | ".join(run.lines[-4:]))
    if rows:
        print_tables(rows, folder)
        crashes += check_rows(rows, folder) + check_changes(rows, folder)
        check = run_command([*prefix, *CURATE, "validate", str(out), "--raw", str(folder.root)],
                            work, 600)
        crashes += [f"validate: {line}" for line in check.lines if check.code != 0]
    crashes += [f"input tree changed: {show(p)}"
                for p in changed_paths(inputs_before, snapshot(folder.root))]
    return crashes + outside_writes(work)


if __name__ == "__main__":
    main()
