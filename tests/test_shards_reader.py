"""The shard reader on tars and a Parquet index written in ``curate run``'s format.

``write_clip_shards`` builds such an output folder from generated multi-shot videos; the trainer
tests use it too.
"""

from __future__ import annotations

import random
from itertools import islice
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from models.shards import (
    DataConfig,
    ShardStream,
    cover_size,
    decode_clip,
    iter_tar,
    latent_shots,
    list_shards,
    resample_indices,
    shot_captions,
    window_start,
)
from models.train_config import TrainConfigError, parse_train_config
from tests import media

# Three shots of 16, 12 and 20 frames at 24 fps (48 frames). At 12 fps and 17 frames the
# training frames are source frames 0, 2, ..., 32: shot 0 holds frames 0-7, shot 1 8-13 and
# shot 2 14-16. Latent frames are [0], [1-4], [5-8], [9-12], [13-16]; by majority their shots are
# 0, 0, 0, 1, 2, so the shots start at latent frames 0, 3 and 4.
SHOT_FRAMES = [16, 12, 20]
LATENT_STARTS = [0, 3, 4]
TINY_DATA = DataConfig(height=64, width=64, fps=12, max_frames=17, min_frames=17,
                       shuffle_buffer=2)
# 9-frame windows of the same 24 frames at 12 fps: the shots start at frames 0, 8 and 14 (source
# frames 0, 16, 28), and all three leave a full window (start <= 24 - 9). Window frames 0, 1-4,
# 5-8 make the latent frames; e.g. from frame 8 they are shots 1, 1 and (by majority) 2.
WINDOW_DATA = DataConfig(**{**TINY_DATA.model_dump(), "max_frames": 9, "min_frames": 9})
WINDOW_SHOTS = {0: ([0], [0]), 8: ([0, 2], [1, 2]), 14: ([0], [2])}  # start: (starts, shots)


def clip_metadata(sample_id: str, shots: list[int], captions: list[str | None],
                  caption: str | None, width: int, height: int) -> dict:
    """A ``KEY.json`` record as ``curate run`` writes it."""
    starts = [sum(shots[:i]) for i in range(len(shots))]
    return {
        "sample_id": sample_id, "video_id": f"v-{sample_id}", "source_path": f"/raw/{sample_id}",
        "start_time": 0.0, "end_time": sum(shots) / 24, "crop": [0, 0, width, height],
        "fps": 24.0, "width": width, "height": height, "num_frames": sum(shots),
        "caption": caption, "caption_model": None if caption is None else "tiny",
        "shots": [{"index": i, "start_frame": s, "end_frame": s + n, "caption": c,
                   "scores": {"aesthetic": 5.0}}
                  for i, (s, n, c) in enumerate(zip(starts, shots, captions, strict=True))],
    }


def write_clip_shards(out: Path, samples_per_shard: int = 2, count: int = 5,
                      captions: bool = True) -> list[dict]:
    """``out/clips/clips-NNNNNN.tar`` and ``out/clips_index/part-0.parquet``; returns metadata.

    Sample i is 96x64 (width 16 mod 32, the case decord's scaler mangles) or 64x80.
    """
    import webdataset as wds

    (out / "clips").mkdir(parents=True)
    (out / "clips_index").mkdir()
    rows, metas, shards = [], [], {}
    for i in range(count):
        width, height = (96, 64) if i % 2 == 0 else (64, 80)
        mp4 = out / f"src-{i}.mp4"
        media.make_cuts(mp4, SHOT_FRAMES, width, height, 24)
        shot_caps = ([f"shot {j} of clip {i}" for j in range(3)] if captions
                     else [None, None, None])
        meta = clip_metadata(f"s{i:03d}", SHOT_FRAMES, shot_caps,
                             f"clip {i}" if captions else None, width, height)
        shard = f"clips-{i // samples_per_shard:06d}.tar"
        rows.append({**meta, "shard": shard, "key": meta["sample_id"]})
        metas.append(meta)
        shards.setdefault(shard, []).append({"__key__": meta["sample_id"],
                                             "mp4": mp4.read_bytes(), "json": meta})
        mp4.unlink()
    for shard, items in shards.items():
        with wds.TarWriter(str(out / "clips" / shard)) as sink:
            for item in items:
                sink.write(item)
    pq.write_table(pa.Table.from_pylist(rows), out / "clips_index" / "part-0.parquet")
    return metas


@pytest.fixture(scope="module")
def curated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    out = tmp_path_factory.mktemp("curated")
    return out, write_clip_shards(out)


def test_latent_shots_maps_frame_spans_by_majority() -> None:
    frames = resample_indices(48, 24.0, 12.0, 17, 4)
    assert frames == list(range(0, 33, 2))
    shot_of = [0] * 16 + [1] * 12 + [2] * 20
    assert latent_shots([shot_of[i] for i in frames], 4) == (LATENT_STARTS, [0, 1, 2])
    # A shot shorter than a latent frame vanishes with its caption.
    assert latent_shots([0, 0, 1, 2, 2, 2, 2, 2, 2], 4) == ([0, 1], [0, 2])


def test_resample_indices_snaps_to_vae_frame_count() -> None:
    assert len(resample_indices(100, 24.0, 16.0, 161, 4)) == 65  # 67 available -> 1 + 4k
    assert resample_indices(0, 24.0, 16.0, 161, 4) == []


def test_cover_size_keeps_aspect_and_decodable_width() -> None:
    w, h = cover_size((96, 64), (64, 64))
    assert w % 32 == 0 and w >= 64 and h >= 64 and abs(w / h - 1.5) < 0.05


def test_caption_fallback_global_then_empty() -> None:
    meta = clip_metadata("x", [5, 5], ["a", None], "global", 64, 64)
    assert shot_captions(meta) == {0: "a", 1: "global"}
    meta["caption"] = None
    assert shot_captions(meta) == {0: "a", 1: ""}


@pytest.mark.parametrize("source", ["clips", "clips_index", "file://"])
def test_stream_reads_every_sample_with_shots(curated: tuple[Path, list[dict]],
                                              source: str) -> None:
    out, metas = curated
    path = f"file://{out / 'clips'}" if source == "file://" else str(out / source)
    samples = list(islice(ShardStream(path, TINY_DATA, 4, seed=0), len(metas)))
    assert sorted(s.sample_id for s in samples) == [m["sample_id"] for m in metas]
    for s in samples:
        assert s.error is None and s.frames.shape == (3, 17, 64, 64)
        assert s.frames.min() >= -1 and s.frames.max() <= 1 and s.frames.std() > 0.1
        assert s.shot_starts == LATENT_STARTS
        assert s.captions == [f"shot {j} of clip {int(s.sample_id[1:])}" for j in range(3)]


def test_index_selects_its_keys(curated: tuple[Path, list[dict]], tmp_path: Path) -> None:
    out, metas = curated
    index = tmp_path / "clips_index"
    index.mkdir()
    table = pq.read_table(out / "clips_index")
    pq.write_table(table.filter(pa.compute.equal(table["shard"], "clips-000001.tar")),
                   index / "part-0.parquet")
    (tmp_path / "clips").symlink_to(out / "clips")
    shards, keys = list_shards(str(index))
    assert [s.rsplit("/", 1)[-1] for s in shards] == ["clips-000001.tar"]
    samples = list(islice(ShardStream(str(index), TINY_DATA, 4, seed=0), 4))
    assert {s.sample_id for s in samples} == keys == {"s002", "s003"}


def test_stream_is_seeded_resumable_and_split_by_rank(curated: tuple[Path, list[dict]]) -> None:
    out, metas = curated
    path = str(out / "clips")
    no_decode = lambda key: True  # noqa: E731 - pretend every latent is cached
    first = [s.sample_id for s in islice(ShardStream(path, TINY_DATA, 4, 0, is_cached=no_decode),
                                         12)]
    assert sorted(first[:5]) == sorted(first[5:10]) and first[:5] != first[5:10]  # reshuffled
    again = [s.sample_id for s in islice(ShardStream(path, TINY_DATA, 4, 0, start=7,
                                                     is_cached=no_decode), 5)]
    assert again == first[7:12]
    ranks = [{s.sample_id for s in islice(ShardStream(path, TINY_DATA, 4, 0, rank=r,
                                                      world_size=2, is_cached=no_decode), 2)}
             for r in (0, 1)]
    assert not ranks[0] & ranks[1]
    loader = torch.utils.data.DataLoader(ShardStream(path, TINY_DATA, 4, 0, is_cached=no_decode),
                                         batch_size=None, num_workers=2)
    assert [s.sample_id for s in islice(loader, 12)] == first


def test_unusable_samples_are_reported_not_dropped(curated: tuple[Path, list[dict]]) -> None:
    out, metas = curated
    long = DataConfig(**{**TINY_DATA.model_dump(), "max_frames": 33, "min_frames": 33})
    samples = list(islice(ShardStream(str(out / "clips"), long, 4, 0), 5))
    assert [s.position for s in samples] == list(range(5))
    assert all(s.error and s.error.startswith("too short") and s.frames is None for s in samples)


@pytest.mark.parametrize("key", ["max_frames", "min_frames"])
def test_frame_counts_must_be_4k_plus_1(key: str) -> None:
    with pytest.raises(TrainConfigError) as err:
        parse_train_config({"encoders": {"vae_path": "v", "text_encoder_path": "t"},
                            "data": {"max_frames": 157, "min_frames": 81, key: 160}})
    assert f"data.{key}: Value error, {key} 160 is not 4k+1" in str(err.value)
    assert "nearest valid: 157 or 161" in str(err.value)
    with pytest.raises(ValueError, match="min_frames 161 > max_frames 157"):
        DataConfig(max_frames=157, min_frames=161)
    assert DataConfig(max_frames=477, min_frames=157).max_frames == 477


def test_window_start_prefers_shot_starts_that_leave_a_full_window() -> None:
    rng = random.Random(0)
    assert {window_start([0, 8, 14, 30], 15, rng) for _ in range(50)} == {0, 8, 14}
    assert {window_start([20, 30], 3, rng) for _ in range(50)} == {0, 1, 2, 3}  # none fits
    assert window_start([0, 8], 0, rng) == 0


def _windows(stream: ShardStream, n: int) -> list[tuple]:
    return [(s.position, s.sample_id, s.window_start, s.shot_starts, s.captions, s.clip_key)
            for s in islice(stream, n)]


def test_windows_move_and_carry_their_shots_and_captions(
        curated: tuple[Path, list[dict]]) -> None:
    out, metas = curated
    no_decode = lambda key: True  # noqa: E731 - pretend every latent is cached
    windows = _windows(ShardStream(str(out / "clips"), WINDOW_DATA, 4, 0, is_cached=no_decode), 30)
    assert {w[2] for w in windows} == set(WINDOW_SHOTS)  # starts differ across items
    for _, sample_id, start, shot_starts, captions, clip_key in windows:
        starts, shots = WINDOW_SHOTS[start]
        assert shot_starts == starts and clip_key.endswith(f"|9f@{start}")
        assert captions == [f"shot {j} of clip {int(sample_id[1:])}" for j in shots]
    # The same windows after a resume at position 11, and with decode workers.
    resumed = ShardStream(str(out / "clips"), WINDOW_DATA, 4, 0, start=11, is_cached=no_decode)
    assert _windows(resumed, 19) == windows[11:]
    loader = torch.utils.data.DataLoader(
        ShardStream(str(out / "clips"), WINDOW_DATA, 4, 0, is_cached=no_decode),
        batch_size=None, num_workers=2)
    assert _windows(loader, 30) == windows
    # Another seed draws other windows.
    other = _windows(ShardStream(str(out / "clips"), WINDOW_DATA, 4, 1, is_cached=no_decode), 30)
    assert [w[2] for w in other] != [w[2] for w in windows]


def test_decoded_window_is_those_frames_of_the_sample(curated: tuple[Path, list[dict]]) -> None:
    out, metas = curated
    items = {item["__key__"]: item for item in iter_tar(str(out / "clips" / "clips-000000.tar"))}
    stream = ShardStream(str(out / "clips"), WINDOW_DATA, 4, 0)
    checked = set()
    for sample in islice(stream, 30):
        if sample.sample_id not in items or sample.window_start in checked:
            continue
        checked.add(sample.window_start)
        meta = metas[int(sample.sample_id[1:])]
        whole = resample_indices(meta["num_frames"], meta["fps"], 12.0, 24, 1)
        every = decode_clip(items[sample.sample_id]["mp4"], meta, WINDOW_DATA, whole)
        start = sample.window_start
        assert torch.equal(sample.frames, every[:, start:start + 9])
    assert len(checked) >= 2
