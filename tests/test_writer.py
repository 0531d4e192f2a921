"""Part writer: atomic parts, commit order, cleanup of a crash between the two renames."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow.dataset as ds

from curation.output.names import one_line, utf8_text, utf8_values
from curation.output.writer import PartWriter

RECORD = {"video_id": "v1", "path": "/x/a.mp4", "status": "accepted", "num_shots": 2,
          "shots": [{"shot_index": 0, "start_frame": 0, "end_frame": 5},
                    {"shot_index": 1, "start_frame": 5, "end_frame": 9}]}


def test_write_commits_both_tables_and_reports_done(tmp_path: Path) -> None:
    writer = PartWriter(tmp_path)
    writer.write([RECORD, dict(RECORD, video_id="v2", shots=[])])
    assert writer.done_ids() == {"v1", "v2"}
    shots = ds.dataset(tmp_path / "shots").to_table()
    assert shots.column("video_id").to_pylist() == ["v1", "v1"]
    assert shots.column("end_frame").to_pylist() == [5, 9]


def test_uncommitted_shots_part_and_temp_files_are_removed_on_resume(tmp_path: Path) -> None:
    writer = PartWriter(tmp_path)
    writer.write([RECORD])
    orphan = tmp_path / "shots" / "part-000001.parquet"
    orphan.write_bytes((tmp_path / "shots" / "part-000000.parquet").read_bytes())
    temp = tmp_path / "videos" / ".part-000002.parquet.abc.tmp"
    temp.write_bytes(b"half")
    resumed = PartWriter(tmp_path)
    assert not orphan.exists() and not temp.exists()
    assert resumed.done_ids() == {"v1"}
    resumed.write([dict(RECORD, video_id="v3")])
    assert (tmp_path / "videos" / "part-000001.parquet").exists()
    assert ds.dataset(tmp_path / "shots").count_rows() == 4


def test_a_record_the_tables_cannot_hold_fails_alone(tmp_path: Path) -> None:
    writer = PartWriter(tmp_path)
    odd = dict(RECORD, video_id="v2", path="/x/b.mp4", num_shots="two")  # int32 column
    writer.write([RECORD, odd])
    rows = {r["video_id"]: r for r in ds.dataset(tmp_path / "videos").to_table().to_pylist()}
    assert rows["v1"]["status"] == "accepted" and rows["v1"]["num_shots"] == 2
    assert (rows["v2"]["status"], rows["v2"]["reject_rule"]) == ("failed", "unwritable_row")
    assert rows["v2"]["reason"].startswith("commit.unwritable_row: ArrowInvalid: ")
    assert rows["v2"]["path"] == "/x/b.mp4"
    assert ds.dataset(tmp_path / "shots").to_table().column("video_id").to_pylist() == ["v1"] * 2


def test_names_that_are_not_utf8_are_stored_escaped_and_shown_on_one_line() -> None:
    name = os.fsdecode(b"caf\xe9\nnight.mp4")  # Python holds the byte 0xE9 as '\udce9'
    assert utf8_text(name) == "caf\\xe9\nnight.mp4"
    assert one_line(name) == "caf\\xe9\\nnight.mp4"
    assert utf8_text("ünï 🎬.mp4") == one_line("ünï 🎬.mp4") == "ünï 🎬.mp4"
    assert utf8_values({"a": [name], "b": 3}) == {"a": ["caf\\xe9\nnight.mp4"], "b": 3}
