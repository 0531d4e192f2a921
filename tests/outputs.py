"""Readers of a ``curate run`` output folder for tests that compare two runs."""

from __future__ import annotations

import json
import subprocess
import tarfile
import tempfile
from pathlib import Path

import pyarrow.dataset as ds

from stages.registry import STAGE_NAMES

VOLATILE = {"path", "decoder", *(f"seconds_{name}" for name in STAGE_NAMES)}


def tables(out: Path) -> tuple[list[dict], list[dict]]:
    """The videos rows (less columns that differ between equal runs) and the shots rows."""
    videos = [{k: v for k, v in row.items() if k not in VOLATILE}
              for row in ds.dataset(out / "videos").to_table().to_pylist()]
    shots = ds.dataset(out / "shots").to_table().to_pylist()
    key = lambda r: (r["video_id"], r.get("shot_index", 0))  # noqa: E731
    return sorted(videos, key=key), sorted(shots, key=key)


def assert_same_output(actual: Path, reference: Path) -> None:
    """Both folders hold equal tables and equal samples (metadata and mp4 bytes); otherwise
    fail naming the first difference (for an mp4: its sizes and the first frame that differs
    when decoded)."""
    for name, mine, theirs in zip(("videos", "shots"), tables(actual), tables(reference),
                                  strict=True):
        keys = [r["video_id"] + str(r.get("shot_index", "")) for r in theirs]
        assert [r["video_id"] + str(r.get("shot_index", "")) for r in mine] == keys, \
            f"{name}: different rows"
        for row, other in zip(mine, theirs, strict=True):
            changed = {k: (row.get(k), other.get(k)) for k in row.keys() | other.keys()
                       if row.get(k) != other.get(k)}
            assert not changed, f"{name} row {other['video_id']}: (actual, reference) {changed}"
    samples = {key: (meta, mp4) for key, meta, mp4 in _samples(actual)}
    expected = {key: (meta, mp4) for key, meta, mp4 in _samples(reference)}
    assert expected, "the reference holds no samples"
    assert sorted(samples) == sorted(expected), \
        f"sample keys differ: only actual {sorted(samples.keys() - expected.keys())}, " \
        f"only reference {sorted(expected.keys() - samples.keys())}"
    for key in sorted(expected):
        (meta, mp4), (meta_ref, mp4_ref) = samples[key], expected[key]
        changed = {k: (meta.get(k), meta_ref.get(k)) for k in meta.keys() | meta_ref.keys()
                   if k != "source_path" and meta.get(k) != meta_ref.get(k)}
        assert not changed, f"sample {key} json: (actual, reference) {changed}"
        assert mp4 == mp4_ref, f"sample {key} mp4: {_mp4_difference(mp4, mp4_ref)}"


def _samples(out: Path) -> list[tuple[str, dict, bytes]]:
    """(key, json, mp4 bytes) of every sample, sorted by key; checks the index lists them."""
    samples = []
    for shard in sorted((out / "clips").glob("clips-*.tar")):
        with tarfile.open(shard) as tar:
            members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
        for name, data in members.items():
            if name.endswith(".json"):
                key = name[: -len(".json")]
                samples.append((key, json.loads(data), members[f"{key}.mp4"]))
    index = ds.dataset(out / "clips_index").to_table().to_pylist()
    assert sorted(r["key"] for r in index) == sorted(key for key, _, _ in samples)
    return sorted(samples, key=lambda sample: sample[0])


def _mp4_difference(actual: bytes, reference: bytes) -> str:
    """Sizes, and the first frame whose decoded picture differs (ffmpeg's framemd5)."""
    hashes = []
    with tempfile.TemporaryDirectory() as folder:
        for name, data in (("actual", actual), ("reference", reference)):
            path = Path(folder) / f"{name}.mp4"
            path.write_bytes(data)
            lines = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "framemd5",
                                    "-"], capture_output=True, text=True, check=True).stdout
            hashes.append([line.split(",")[-1].strip() for line in lines.splitlines()
                           if line and not line.startswith("#")])
    first = next((i for i, (a, b) in enumerate(zip(*hashes, strict=False)) if a != b), None)
    frames = (f"{len(hashes[0])} and {len(hashes[1])} frames" if first is None
              else f"decoded frame {first} differs")
    return f"bytes differ ({len(actual)} vs {len(reference)} bytes), {frames}"
