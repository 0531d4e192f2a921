"""Discovery: recursion, symlinks, duplicates, unknown extensions and stable ids."""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

from curation.config import InputConfig
from curation.discover import discover


def _by_name(records: list[dict]) -> dict[str, dict]:
    return {r["rel_path"]: r for r in records}


def test_finds_nested_videos_with_awkward_names_and_skips_sidecars(sample_folder: Path) -> None:
    (sample_folder / "a" / "notes.txt").write_text("hello")
    found = _by_name(discover(sample_folder, InputConfig()))
    assert set(found) == {"a/bikes.mp4", "b c/cuts é.mp4", "b c/-dissolve.mp4"}
    assert all(r["status"] == "pending" and len(r["video_id"]) == 16 for r in found.values())


def test_ids_are_stable_and_survive_a_rename(sample_folder: Path) -> None:
    first = _by_name(discover(sample_folder, InputConfig()))
    os.rename(sample_folder / "a" / "bikes.mp4", sample_folder / "a" / "renamed.mp4")
    second = _by_name(discover(sample_folder, InputConfig()))
    assert second["a/renamed.mp4"]["video_id"] == first["a/bikes.mp4"]["video_id"]
    assert second["b c/cuts é.mp4"]["video_id"] == first["b c/cuts é.mp4"]["video_id"]


def test_byte_identical_copy_is_a_duplicate_of_the_first(sample_folder: Path) -> None:
    shutil.copy(sample_folder / "a" / "bikes.mp4", sample_folder / "b c" / "z copy.mp4")
    found = _by_name(discover(sample_folder, InputConfig()))
    original, copy = found["a/bikes.mp4"], found["b c/z copy.mp4"]
    assert original["status"] == "pending"
    assert copy["status"] == "duplicate" and copy["duplicate_of"] == original["video_id"]
    assert copy["video_id"] != original["video_id"] and "a/bikes.mp4" in copy["reason"]


def test_same_sampled_bytes_but_different_content_are_not_duplicates(tmp_path: Path) -> None:
    size = 5 << 20  # the quick fingerprint reads 3 MiB of 5: change a byte it does not read
    data = bytearray(os.urandom(size))
    (tmp_path / "one.mp4").write_bytes(data)
    data[(1 << 20) + 4096] ^= 0xFF  # between the first and middle samples
    (tmp_path / "two.mp4").write_bytes(data)
    found = _by_name(discover(tmp_path, InputConfig()))
    assert {r["status"] for r in found.values()} == {"pending"}
    ids = {found["one.mp4"]["video_id"], found["two.mp4"]["video_id"]}
    assert len(ids) == 2


def test_symlink_loop_is_visited_once_and_dangling_link_fails(sample_folder: Path) -> None:
    os.symlink(sample_folder, sample_folder / "a" / "loop")
    os.symlink(sample_folder / "gone.mp4", sample_folder / "dangling.mp4")
    found = _by_name(discover(sample_folder, InputConfig()))
    assert len([p for p in found if p.endswith("bikes.mp4")]) == 1
    dangling = found["dangling.mp4"]
    assert dangling["status"] == "failed" and "broken symlink" in dangling["reason"]


def test_unknown_extension_is_kept_only_if_ffprobe_sees_video(sample_folder: Path) -> None:
    shutil.copy(sample_folder / "a" / "bikes.mp4", sample_folder / "a" / "clip.video")
    (sample_folder / "a" / "data.bin").write_bytes(random.Random(1).randbytes(4096))  # fixed
    found = discover(sample_folder, InputConfig())
    names = {r["rel_path"] for r in found}
    assert "a/clip.video" in names and "a/data.bin" not in names
    assert "a/clip.video" not in {r["rel_path"] for r in discover(
        sample_folder, InputConfig(probe_unknown=False))}
