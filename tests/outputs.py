"""Readers of a ``curate run`` output folder for tests that compare two runs."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import pyarrow.dataset as ds

from curation.schema import STAGE_NAMES

VOLATILE = {"path", "decoder", *(f"seconds_{name}" for name in STAGE_NAMES)}


def tables(out: Path) -> tuple[list[dict], list[dict]]:
    """The videos rows (less columns that differ between equal runs) and the shots rows."""
    videos = [{k: v for k, v in row.items() if k not in VOLATILE}
              for row in ds.dataset(out / "videos").to_table().to_pylist()]
    shots = ds.dataset(out / "shots").to_table().to_pylist()
    key = lambda r: (r["video_id"], r.get("shot_index", 0))  # noqa: E731
    return sorted(videos, key=key), sorted(shots, key=key)


def clips(out: Path) -> list[tuple]:
    """Every sample in the shards as (key, json, mp4 digest), whatever shard holds it."""
    samples = []
    for shard in sorted((out / "clips").glob("clips-*.tar")):
        with tarfile.open(shard) as tar:
            members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
        for name, data in members.items():
            if name.endswith(".json"):
                key = name[: -len(".json")]
                digest = hashlib.sha256(members[f"{key}.mp4"]).hexdigest()
                samples.append((key, json.loads(data)["shots"], digest))
    index = ds.dataset(out / "clips_index").to_table().to_pylist()
    assert sorted(r["key"] for r in index) == sorted(key for key, _, _ in samples)
    return sorted(samples)
