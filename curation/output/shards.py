"""WebDataset shards of the encoded samples: ``OUT/clips/clips-NNNNNN.tar``.

Each sample is two members, ``KEY.mp4`` and ``KEY.json``
(:func:`curation.output.schema.clip_metadata`). A shard is written atomically
(:func:`common.atomic.atomic_file`), so a reader never sees half a tar. Shards are numbered on
from the highest one a committed ``clips_index`` part refers to; on resume, shards no committed
part refers to are deleted (see :class:`curation.output.writer.PartWriter`).
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

from common.atomic import atomic_file


class ShardWriter:
    """Packs samples into shards of at most ``samples_per_shard`` samples / ``max_bytes`` bytes."""

    def __init__(self, clips_dir: Path, next_number: int, samples_per_shard: int,
                 max_bytes: int) -> None:
        self.clips_dir = clips_dir
        self.next_number = next_number
        self.samples_per_shard = samples_per_shard
        self.max_bytes = max_bytes
        clips_dir.mkdir(parents=True, exist_ok=True)

    def write(self, samples: list[tuple[dict, Path]]) -> list[tuple[str, str]]:
        """Write (metadata, mp4 path) pairs into new shards; return (shard, key) for each."""
        placed: list[tuple[str, str]] = []
        batch: list[tuple[dict, Path]] = []
        size = 0
        for metadata, mp4 in samples:
            mp4_size = mp4.stat().st_size
            if batch and (len(batch) >= self.samples_per_shard or size + mp4_size > self.max_bytes):
                placed += self._write_shard(batch)
                batch, size = [], 0
            batch.append((metadata, mp4))
            size += mp4_size
        if batch:
            placed += self._write_shard(batch)
        return placed

    def _write_shard(self, batch: list[tuple[dict, Path]]) -> list[tuple[str, str]]:
        name = f"clips-{self.next_number:06d}.tar"
        with (atomic_file(self.clips_dir / name) as handle,
              tarfile.open(fileobj=handle, mode="w", format=tarfile.USTAR_FORMAT) as tar):
            for metadata, mp4 in batch:
                key = metadata["sample_id"]
                _add(tar, f"{key}.mp4", mp4.read_bytes())
                _add(tar, f"{key}.json", json.dumps(metadata, sort_keys=True).encode())
        self.next_number += 1
        return [(name, metadata["sample_id"]) for metadata, _ in batch]


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))
