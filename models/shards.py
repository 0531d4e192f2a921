"""Stream curated samples straight from ``OUT/clips/*.tar`` or ``OUT/clips_index/`` for training.

The stream is infinite (epoch after epoch) and deterministic: the shard order and a shuffle
buffer are seeded by (seed, epoch, rank), so item ``i`` of the stream is always the same sample.
Training resumes from a stream position by skipping that many items, without decoding them.
Items that cannot be used (too short, undecodable) are yielded with ``error`` set, so the
position counts them too and the trainer logs them.

Windows: each item is a window of ``max_frames`` frames (4k+1: Wan's VAE maps them to k+1 latent
frames) drawn from anywhere in the sample. It starts at a random shot start among those that
leave a full window, else (no shot start does) at a random frame; the draw is seeded by (seed,
epoch, rank, stream position), so a resumed stream draws the same windows. Shots wholly outside
the window are dropped with their captions; the window's first shot starts at latent frame 0.

Captions: a shot with a null caption uses the sample's global caption, and if that is null too,
the empty string (the text encoder still sees its end-of-sequence token).
"""

from __future__ import annotations

import io
import json
import logging
import random
import sys
import tarfile
from bisect import bisect_left
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import count
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

log = logging.getLogger(__name__)

VAE_FRAMES = 4  # Wan's VAE: 1 + 4k frames -> 1 + k latent frames


class DataConfig(BaseModel):
    """What the trainer decodes from each sample."""

    model_config = ConfigDict(extra="forbid")

    height: int = Field(480, ge=16, description="Training height in pixels (multiple of 16).")
    width: int = Field(832, ge=16, description="Training width in pixels (multiple of 16).")
    fps: float = Field(16.0, gt=0, description="Frames are resampled to this rate.")
    max_frames: int = Field(157, ge=1, description="Window length in frames, 4k+1 (k+1 latent "
                            "frames; 157: 10 s at 16 fps, 40 latent frames).")
    min_frames: int = Field(17, ge=1, description="4k+1; samples with fewer frames at fps are "
                            "skipped, those between min and max give shorter windows.")
    shuffle_buffer: int = Field(16, ge=1, description="Samples held for shuffling across shards.")
    num_workers: int = Field(0, ge=0, description="DataLoader decode processes.")

    @field_validator("max_frames", "min_frames")
    @classmethod
    def _vae_frame_count(cls, value: int, info: ValidationInfo) -> int:
        """Frame counts the VAE maps to whole latent frames; min_frames <= max_frames."""
        if (value - 1) % VAE_FRAMES:
            low = (value - 1) // VAE_FRAMES * VAE_FRAMES + 1
            raise ValueError(f"{info.field_name} {value} is not {VAE_FRAMES}k+1 (Wan's VAE maps "
                             f"{VAE_FRAMES}k+1 frames to k+1 latent frames); nearest valid: "
                             f"{low} or {low + VAE_FRAMES}")
        if info.field_name == "min_frames" and value > info.data.get("max_frames", value):
            raise ValueError(f"min_frames {value} > max_frames {info.data['max_frames']}: every "
                             "sample would be skipped")
        return value


@dataclass
class ClipSample:
    """One training item; ``frames`` is None when its latents are cached or when ``error`` is set.

    ``shot_starts`` are latent-frame indices, one per caption in ``captions``.
    """

    position: int
    key: str
    sample_id: str = ""
    clip_key: str = ""
    frames: torch.Tensor | None = None  # (3, F, H, W) in [-1, 1]
    window_start: int = 0  # the window's first frame, counted at ``DataConfig.fps``
    shot_starts: list[int] = field(default_factory=list)
    captions: list[str] = field(default_factory=list)
    error: str | None = None


def list_shards(path: str) -> tuple[list[str], set[str] | None]:
    """Tar URLs of a clips folder, one tar, or a Parquet ``clips_index`` (then also its keys).

    ``path`` may be local or any fsspec URL. A ``clips_index`` names its tars by file name; they
    are looked up in the ``clips`` folder beside it.
    """
    import fsspec

    fs, root = fsspec.core.url_to_fs(path)
    if not fs.exists(root):
        raise FileNotFoundError(f"no data at {path}")
    if fs.isfile(root):
        return [fs.unstrip_protocol(root)], None
    tars = sorted(p for p in fs.ls(root, detail=False) if p.endswith(".tar"))
    if tars:
        return [fs.unstrip_protocol(p) for p in tars], None
    import pyarrow.dataset as ds

    table = ds.dataset(root, filesystem=fs, format="parquet").to_table(columns=["shard", "key"])
    if table.num_rows == 0:
        raise FileNotFoundError(f"no .tar shards and no index rows in {path}")
    clips = root.rstrip("/").rsplit("/", 1)[0] + "/clips"
    shards = sorted(set(table.column("shard").to_pylist()))
    return [fs.unstrip_protocol(f"{clips}/{s}") for s in shards], set(table["key"].to_pylist())


def iter_tar(url: str) -> Iterator[dict[str, bytes]]:
    """Stream a WebDataset tar: one dict per key, ``{"__key__": ..., "<ext>": bytes}``."""
    import fsspec

    current: dict[str, Any] = {}
    with fsspec.open(url, "rb") as f, tarfile.open(fileobj=f, mode="r|") as tar:
        for member in tar:
            if not member.isfile():
                continue
            name = member.name.rsplit("/", 1)[-1]
            key, _, ext = name.rpartition(".")  # our members have one extension
            if current and current["__key__"] != key:
                yield current
                current = {}
            current["__key__"] = key
            current[ext] = tar.extractfile(member).read()
    if current:
        yield current


def resample_indices(num_src: int, src_fps: float, fps: float, max_frames: int,
                     multiple: int) -> list[int]:
    """Source frame indices for frames at ``fps``, at most ``max_frames``, count = 1 + multiple*k.

    Empty when not even one frame fits.
    """
    available = int((num_src - 1) * fps / src_fps + 1e-6) + 1 if num_src > 0 else 0
    n = snap_length(min(available, max_frames), multiple)
    return [min(num_src - 1, round(k * src_fps / fps)) for k in range(n)]


def snap_length(n: int, multiple: int) -> int:
    """The largest ``1 + multiple * k`` not above ``n`` (0 when ``n`` < 1)."""
    return (n - 1) // multiple * multiple + 1 if n >= 1 else 0


def window_start(shot_frames: list[int], last_start: int, rng: random.Random) -> int:
    """A window's first frame: a random one of ``shot_frames`` (shot starts) not past
    ``last_start``, else a random frame in [0, ``last_start``]."""
    fits = sorted({f for f in shot_frames if 0 <= f <= last_start})
    return rng.choice(fits) if fits else rng.randrange(last_start + 1)


def latent_shots(frame_shots: list[int], stride: int) -> tuple[list[int], list[int]]:
    """Map per-frame shot ids to latent frames (frame 0 alone, then groups of ``stride``).

    Each latent frame takes the shot holding most of its frames (the later one on a tie).
    Returns (latent-frame starts of each shot run, the shot id of each run).
    """
    groups = [[frame_shots[0]]] + [frame_shots[i:i + stride]
                                   for i in range(1, len(frame_shots), stride)]
    owner = [max(set(g), key=lambda s, g=g: (g.count(s), s)) for g in groups]
    starts = [j for j in range(len(owner)) if j == 0 or owner[j] != owner[j - 1]]
    return starts, [owner[j] for j in starts]


def shot_captions(meta: dict[str, Any]) -> dict[int, str]:
    """Caption of each shot index, with the global-caption / empty-string fallback."""
    fallback = meta.get("caption") or ""
    return {s["index"]: s.get("caption") or fallback for s in meta["shots"]}


def cover_size(src: tuple[int, int], dst: tuple[int, int]) -> tuple[int, int]:
    """(w, h) to decode at so that a centre crop of ``dst`` (w, h) keeps the aspect ratio.

    The width is rounded up to a multiple of 32: decord's scaler corrupts other widths.
    """
    scale = max(dst[0] / src[0], dst[1] / src[1])
    w = -(-round(src[0] * scale) // 32) * 32
    return w, max(dst[1], round(src[1] * w / src[0]))


def decode_clip(mp4: bytes, meta: dict[str, Any], data: DataConfig,
                frames: list[int]) -> torch.Tensor:
    """Decode ``frames`` of ``mp4`` at the training size: (3, F, H, W) in [-1, 1].

    decord decodes; if it raises, PyAV decodes the same frames instead."""
    w, h = cover_size((meta["width"], meta["height"]), (data.width, data.height))
    try:
        batch = _decord_frames(mp4, (w, h), frames)
    except Exception as err:  # decord raises its own DECORDError types
        log.warning("decord failed on sample %s (%s); decoding it with PyAV",
                    meta.get("sample_id"), err)
        batch = _pyav_frames(mp4, (w, h), frames)
    top, left = (h - data.height) // 2, (w - data.width) // 2
    batch = np.ascontiguousarray(batch[:, top:top + data.height, left:left + data.width])
    return torch.from_numpy(batch).permute(3, 0, 1, 2).float().div(127.5).sub(1.0)


def _decord_frames(mp4: bytes, size: tuple[int, int], frames: list[int]) -> np.ndarray:
    """``frames`` of ``mp4`` as (F, h, w, 3) RGB ``uint8`` at ``size`` (w, h), by decord."""
    import decord

    reader = decord.VideoReader(io.BytesIO(mp4), width=size[0], height=size[1], num_threads=1)
    return reader.get_batch(frames).asnumpy()


def _pyav_frames(mp4: bytes, size: tuple[int, int], frames: list[int]) -> np.ndarray:
    """What :func:`_decord_frames` gives, by PyAV: frame ``i`` is the ``i``-th decoded frame,
    scaled and converted to RGB in one bilinear step as decord does."""
    import av

    wanted, picked = set(frames), {}
    with av.open(io.BytesIO(mp4)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index in wanted:
                picked[index] = frame.reformat(*size, format="rgb24",
                                               interpolation="BILINEAR").to_ndarray()
                if len(picked) == len(wanted):
                    break
    return np.stack([picked[i] for i in frames])


def prepare(item: dict[str, bytes], position: int, data: DataConfig, stride: int,
            is_cached: Callable[[str], bool] | None, rng: random.Random) -> ClipSample:
    """Turn one tar item into a :class:`ClipSample` of a window drawn with ``rng`` (decoding
    only the window's frames, and only unless its latents are cached)."""
    key = item["__key__"]
    if "json" not in item or "mp4" not in item:
        return ClipSample(position, key, error=f"missing {'json' if 'mp4' in item else 'mp4'}")
    meta = json.loads(item["json"])
    whole = resample_indices(meta["num_frames"], meta["fps"], data.fps, sys.maxsize, 1)
    length = snap_length(min(len(whole), data.max_frames), stride)
    if length < data.min_frames:
        return ClipSample(position, key, meta["sample_id"],
                          error=f"too short: {length} < {data.min_frames} frames")
    start = window_start([bisect_left(whole, s["start_frame"]) for s in meta["shots"]],
                         len(whole) - length, rng)
    frames = whole[start:start + length]
    shot_of = np.zeros(meta["num_frames"], dtype=np.int64)
    for shot in meta["shots"]:
        shot_of[shot["start_frame"]:shot["end_frame"]] = shot["index"]
    starts, shots = latent_shots([int(shot_of[i]) for i in frames], stride)
    captions = shot_captions(meta)
    clip_key = (f"{meta['sample_id']}|{data.width}x{data.height}|{data.fps:g}fps|"
                f"{length}f@{start}")
    sample = ClipSample(position, key, meta["sample_id"], clip_key, window_start=start,
                        shot_starts=starts, captions=[captions[s] for s in shots])
    if is_cached is None or not is_cached(clip_key):
        try:
            sample.frames = decode_clip(item["mp4"], meta, data, frames)
        except Exception as err:  # decoder errors come in many types
            sample.error = f"decode failed: {err}"
    return sample


class ShardStream(torch.utils.data.IterableDataset):
    """Infinite, seeded, resumable stream of :class:`ClipSample` over a rank's shards."""

    def __init__(self, path: str, data: DataConfig, stride: int, seed: int, start: int = 0,
                 rank: int = 0, world_size: int = 1,
                 is_cached: Callable[[str], bool] | None = None) -> None:
        super().__init__()
        self.shards, self.keys = list_shards(path)
        self.data, self.stride, self.seed, self.start = data, stride, seed, start
        self.rank, self.world_size, self.is_cached = rank, world_size, is_cached

    def _epoch_items(self, epoch: int) -> Iterator[dict[str, bytes]]:
        rng = random.Random(f"{self.seed}-{epoch}-{self.rank}")
        shards = list(self.shards)
        random.Random(f"{self.seed}-{epoch}").shuffle(shards)  # same order on every rank
        by_shard = len(shards) >= self.world_size
        if by_shard:
            shards = shards[self.rank::self.world_size]
        buffer: list[dict[str, bytes]] = []
        seen = 0
        for url in shards:
            for item in iter_tar(url):
                if self.keys is not None and item["__key__"] not in self.keys:
                    continue
                seen += 1
                if not by_shard and (seen - 1) % self.world_size != self.rank:
                    continue
                buffer.append(item)
                if len(buffer) >= self.data.shuffle_buffer:
                    yield buffer.pop(rng.randrange(len(buffer)))
        while buffer:
            yield buffer.pop(rng.randrange(len(buffer)))

    def __iter__(self) -> Iterator[ClipSample]:
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        position = 0
        for epoch in count():
            empty = True
            for item in self._epoch_items(epoch):
                empty = False
                # DataLoader reads its workers round-robin, so splitting positions by modulo
                # keeps the single-process order whatever the number of workers.
                if position >= self.start and (position - self.start) % workers == worker:
                    rng = random.Random(f"{self.seed}-{epoch}-{self.rank}-{position}")
                    yield prepare(item, position, self.data, self.stride, self.is_cached, rng)
                position += 1
            if empty:
                raise ValueError(f"rank {self.rank} got no samples from {len(self.shards)} shards")
