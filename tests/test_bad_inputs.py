"""Awkward inputs through a real run: 10-bit, HDR, rotated, variable frame rate, odd sizes,
hostile names (a newline, bytes that are not UTF-8), a symlink loop, a FIFO, and files deleted
or changed while the run is in progress. Each ends as a row with a precise reason or is
processed; nothing escapes OUT."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

import pyarrow.dataset as ds
import pytest

from curation import runner
from curation.config import parse_config
from curation.plan import PlannedStage, build_plan
from stages.records import Record
from stages.resources import Resources
from tests import media
from tests.conftest import NonRoot

NAMES = {
    "ten": "-10bit 'single' \"double\".mp4",
    "hdr": "hdr\nnew line ünï 🎬.mp4",
    "rotated": "--rotated.mp4",
}


class TamperStage:
    """Test-only first stage: deletes or rewrites a file while its video is being processed."""

    name: ClassVar[str] = "tamper"

    def setup(self) -> None:
        """Nothing to load."""

    def process(self, record: Record) -> Record:
        path = Path(record["path"])
        if path.name == "deleted.mp4":
            path.unlink()
        if path.name == "changed.mp4":
            with open(path, "ab") as handle:
                handle.write(b"\0" * 4096)
        return record


@pytest.mark.slow
def test_awkward_inputs_each_get_a_precise_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = tmp_path / "raw"
    (raw / "sub").mkdir(parents=True)
    media.make_encoded(raw / NAMES["ten"], 72, 320, 180, pix_fmt="yuv420p10le")
    media.make_hdr(raw / NAMES["hdr"], 60)
    media.make_cuts(tmp_path / "upright.mp4", [36, 36], w=320, h=180, moving=True)
    media.make_rotated(tmp_path / "upright.mp4", raw / NAMES["rotated"], 90)
    media.make_variable_fps(raw / "vfr.mp4")
    media.make_encoded(raw / "tiny 2x2.mp4", 48, 2, 2)
    media.make_encoded(raw / "wide 4098x32.mp4", 48, 4098, 32)
    media.make_huge(raw / "huge 8704x4896.mp4", 8704, 4896)
    media.make_encoded(raw / "deleted.mp4", 50, 256, 144)
    media.make_encoded(raw / "changed.mp4", 52, 256, 144)
    os.symlink("loop.mp4", raw / "loop.mp4")  # a file symlink pointing at itself
    os.symlink("..", raw / "sub" / "back")  # a directory loop: each directory is walked once
    os.mkfifo(raw / "fifo.mp4")  # opening it for reading blocks forever
    latin1 = os.fsencode(raw) + b"/caf\xe9 latin-1.mp4"  # not UTF-8: Python holds \udce9
    media.make_encoded(Path(os.fsdecode(latin1)), 48, 256, 144)
    os.symlink("nowhere", os.fsdecode(os.fsencode(raw) + b"/gone\xff.mp4"))

    def plan_with_tampering(config, out_dir):  # noqa: ANN001, ANN202 - build_plan's signature
        return [PlannedStage(TamperStage(), Resources()), *build_plan(config, out_dir)]

    media.make_encoded(raw / "swapped.mp4", 46, 256, 144)
    real_discover = runner.discover

    def discover_then_swap(root, config):  # noqa: ANN001, ANN202 - discover's signature
        found = real_discover(root, config)
        media.make_encoded(raw / "swapped.mp4", 40, 256, 144)  # after its stamp, before a stage
        return found

    monkeypatch.setattr(runner, "build_plan", plan_with_tampering)
    monkeypatch.setattr(runner, "discover", discover_then_swap)
    out = tmp_path / "out"
    runner.run(raw, out, parse_config({}), runner.RunOptions(num_cpus=2))

    rows = {r["rel_path"]: r for r in ds.dataset(out / "videos").to_table().to_pylist()}
    assert len(rows) == 14
    outcome = {name: (r["status"], r["reject_stage"], r["reject_rule"]) for name, r in rows.items()}
    for name in (*NAMES.values(), "vfr.mp4"):
        assert outcome[name] == ("accepted", None, None), rows[name]["reason"]
    assert rows[NAMES["ten"]]["pix_fmt"] == rows[NAMES["hdr"]]["pix_fmt"] == "yuv420p10le"
    assert rows[NAMES["rotated"]]["rotation"] == 90
    assert rows["vfr.mp4"]["fps_variable"] is True
    assert outcome["wide 4098x32.mp4"] == ("rejected", "video_filter", "min_short_side")
    assert outcome["huge 8704x4896.mp4"] == ("rejected", "video_filter", "max_pixels")
    assert rows["wide 4098x32.mp4"]["reject_value"] == "32"
    # Metadata rules run before any decoding, so the size rule names the problem.
    assert outcome["tiny 2x2.mp4"] == ("rejected", "video_filter", "min_short_side")
    assert outcome["loop.mp4"] == ("failed", "discover", "unreadable")
    assert rows["loop.mp4"]["reason"].endswith("cannot read file: symlink loop (too many levels "
                                               "of symbolic links)")
    assert rows["gone\\xff.mp4"]["reason"].endswith("cannot read file: broken symlink")
    assert outcome["fifo.mp4"] == ("failed", "discover", "unreadable")
    assert "not a regular file" in rows["fifo.mp4"]["reason"]
    # Names that are not UTF-8: escaped in the text columns, exact in path_bytes
    assert outcome["caf\\xe9 latin-1.mp4"] == ("accepted", None, None)
    assert rows["caf\\xe9 latin-1.mp4"]["path_bytes"] == latin1
    assert outcome["gone\\xff.mp4"] == ("failed", "discover", "unreadable")
    for name, what in (("deleted.mp4", "deleted"), ("changed.mp4", "changed"),
                       ("swapped.mp4", "changed")):
        assert outcome[name] == ("failed", "runner", "changed_during_run")
        assert f"the file was {what}" in rows[name]["reason"]

    index = ds.dataset(out / "clips_index").to_table().to_pylist()
    accepted = {rows[n]["video_id"] for n in (*NAMES.values(), "vfr.mp4", "caf\\xe9 latin-1.mp4")}
    assert {r["video_id"] for r in index} == accepted
    assert all(re.fullmatch(r"[0-9a-f]{16}-\d{4}", r["key"]) for r in index)
    by_video = {r["video_id"]: r for r in index}
    assert by_video[rows[NAMES["rotated"]]["video_id"]]["rotation"] == 90
    assert by_video[rows[NAMES["hdr"]]["video_id"]]["tone_mapped_from"] == "smpte2084"
    assert by_video[rows[NAMES["ten"]]["video_id"]]["tone_mapped_from"] is None
    shots = ds.dataset(out / "shots").to_table().to_pylist()
    assert {s["video_id"] for s in shots} == accepted
    written = [p for p in out.rglob("*")]
    assert all(p.resolve().is_relative_to(out.resolve()) for p in written)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "raw", "upright.mp4"]


def test_a_non_root_user_curates_a_read_only_folder_with_locked_files(
        non_root: NonRoot, bikes: Path) -> None:
    raw = non_root.folder / "raw"
    (raw / "locked folder").mkdir(parents=True)
    shutil.copy(bikes, raw / "bikes.mp4")
    shutil.copy(bikes, raw / "locked.mp4")
    shutil.copy(bikes, raw / "locked folder" / "inner.mp4")
    (raw / "no entry").mkdir()
    shutil.copy(bikes, raw / "no entry" / "inner.mp4")
    (raw / "locked.mp4").chmod(0)
    (raw / "locked folder").chmod(0)
    (raw / "no entry").chmod(0o444)  # its names can be listed, its files not reached
    raw.chmod(0o555)  # read-only input: nothing may be written beside the videos
    out = non_root.folder / "out"
    curate = [*non_root.prefix, sys.executable, "-m", "curation.cli"]
    done = subprocess.run([*curate, "run", str(raw), str(out), "--num-cpus", "2"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    rows = {r["rel_path"]: r for r in ds.dataset(out / "videos").to_table().to_pylist()}
    assert {name: (r["status"], r["reject_rule"]) for name, r in rows.items()} == {
        "bikes.mp4": ("accepted", None),
        "locked.mp4": ("failed", "unreadable"),
        "locked folder": ("failed", "unlistable_folder"),
        "no entry/inner.mp4": ("failed", "unreadable"),
    }
    assert rows["no entry/inner.mp4"]["reason"].endswith("cannot read file: Permission denied")
    assert rows["locked.mp4"]["reason"].endswith("cannot read file: Permission denied")
    assert rows["locked folder"]["reason"].endswith("cannot list the folder: Permission denied")
    assert sorted(p.name for p in raw.iterdir()) == ["bikes.mp4", "locked folder", "locked.mp4",
                                                     "no entry"]
    valid = subprocess.run([*curate, "validate", str(out)], capture_output=True, text=True,
                           timeout=300)
    assert valid.returncode == 0, valid.stdout + valid.stderr
