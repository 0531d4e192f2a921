"""Byte mutations of the base videos, generic and per container family, and the table that
names each one's category and family."""

from __future__ import annotations

import random
import struct
from collections.abc import Callable

from benchmarks.fuzz.media import (
    CLUSTER,
    CUES,
    SEEKHEAD,
    Span,
    ebml_elements,
    ebml_find,
    mp4_boxes,
    mp4_find,
    riff_chunks,
    riff_find,
    vint,
)

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
    _, id_len = vint(data, offset, marker=True)
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
        _, track_len = vint(data, offset + header, marker=False)
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
