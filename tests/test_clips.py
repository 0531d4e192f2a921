"""``curate run`` on a long multi-shot film: one-minute samples in WebDataset shards + index."""

from __future__ import annotations

import io
import json
import math
import random
import subprocess
import sys
import tarfile
from pathlib import Path

import av
import numpy as np
import pyarrow.dataset as ds
import pytest

from tests import media

pytestmark = pytest.mark.slow
FPS_IN = 30


@pytest.fixture(scope="module")
def long_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[int], int]:
    """A 3.6-minute, 18-shot film at 30 fps curated with the default pipeline."""
    root = tmp_path_factory.mktemp("long")
    raw = root / "raw"
    raw.mkdir()
    random.seed(3)
    lengths = [random.randint(150, 600) for _ in range(18)]
    cuts = media.make_cuts(raw / "film.mp4", lengths, fps=FPS_IN, moving=True)
    out = root / "out"
    done = subprocess.run([sys.executable, "-m", "curation.cli", "run", str(raw), str(out),
                           "--num-cpus", "2"], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    return out, cuts, sum(lengths)


def _members(out: Path) -> dict[str, dict[str, bytes]]:
    samples: dict[str, dict[str, bytes]] = {}
    for shard in sorted((out / "clips").glob("clips-*.tar")):
        with tarfile.open(shard) as tar:
            for member in tar.getmembers():
                key, ext = member.name.split(".", 1)
                samples.setdefault(key, {})[ext] = tar.extractfile(member).read()
    return samples


def _decoded(mp4: bytes) -> tuple[int, int, int]:
    with av.open(io.BytesIO(mp4)) as container:
        frames = [f for f in container.decode(video=0)]
    return len(frames), frames[0].width, frames[0].height


def test_samples_are_at_most_65s_and_cut_on_clean_boundaries(long_run: tuple) -> None:
    out, cuts, total = long_run
    index = ds.dataset(out / "clips_index").to_table().to_pylist()
    assert len(index) >= 3
    edges = {0, total, *cuts}
    for row in index:
        assert row["num_frames"] / row["fps"] <= 65.0 + 1e-6
        assert row["source_start_frame"] in edges and row["source_end_frame"] in edges
        assert row["width"] % 16 == 0 and row["height"] == 480
        assert all(s["boundary_in"] in {"sample_start", "clean"} for s in row["shots"])
    spans = sorted((r["source_start_frame"], r["source_end_frame"]) for r in index)
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False))


def test_mp4s_match_their_json_and_shot_frames_map_exactly(long_run: tuple) -> None:
    out, _, _ = long_run
    samples = _members(out)
    index = {r["key"]: r for r in ds.dataset(out / "clips_index").to_table().to_pylist()}
    assert set(samples) == set(index)
    for key, member in samples.items():
        meta = json.loads(member["json"])
        row = index[key]
        assert {k: row[k] for k in meta} == meta  # the index row is the JSON plus shard and key
        count, width, height = _decoded(member["mp4"])
        assert (count, width, height) == (meta["num_frames"], meta["width"], meta["height"])
        shots = meta["shots"]
        assert shots[0]["start_frame"] == 0 and shots[-1]["end_frame"] == count
        assert all(a["end_frame"] == b["start_frame"] for a, b in zip(shots, shots[1:],
                                                                       strict=False))
        for shot in shots:  # output frame k shows the source at start + k/24 s
            expected = math.ceil((shot["source_start_frame"] - meta["source_start_frame"])
                                 / FPS_IN * meta["fps"] - 1e-4)
            assert shot["start_frame"] == expected
        change = _frame_changes(member["mp4"])  # change[k]: from output frame k-1 to k
        typical = float(np.median(change[1:]))
        for shot in shots[1:]:  # the picture changes exactly at each recorded cut, not beside it
            k = shot["start_frame"]
            assert change[k] > 2 * typical, (key, k, change[k - 2:k + 3], typical)
            assert change[k] > max(change[k - 1], change[k + 1]), (key, k, change[k - 2:k + 3])


def _frame_changes(mp4: bytes) -> np.ndarray:
    """Mean absolute change of a small grey picture between consecutive frames (0 for frame 0)."""
    with av.open(io.BytesIO(mp4)) as container:
        grey = np.stack([f.reformat(64, 36, format="gray").to_ndarray().astype(np.float32)
                         for f in container.decode(video=0)])
    return np.concatenate([[0.0], np.abs(np.diff(grey, axis=0)).mean(axis=(1, 2))])


def test_shards_read_with_webdataset_and_ray(long_run: tuple) -> None:
    import webdataset as wds

    out, _, _ = long_run
    urls = [str(p) for p in sorted((out / "clips").glob("clips-*.tar"))]
    rows = list(wds.WebDataset(urls, shardshuffle=False))
    assert rows and all({"mp4", "json"} <= set(row) for row in rows)
    index = ds.dataset(out / "clips_index").count_rows()
    assert len(rows) == index
    probe = subprocess.run([sys.executable, "-c", (
        "import ray, sys; ray.init(address=\"local\", num_cpus=1, include_dashboard=False);"
        f"print(ray.data.read_webdataset({urls!r}).count())")],
        capture_output=True, text=True, timeout=300)
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip().splitlines()[-1] == str(index), probe.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["samples"] == index
