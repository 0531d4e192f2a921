"""``curate validate`` on a real output and on copies broken in one way each."""

from __future__ import annotations

import io
import json
import re
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from curation.cli import main
from curation.inspect.validate import tiling_gaps, validate
from tests.test_report import curate_small


@pytest.fixture(scope="module")
def curated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return curate_small(tmp_path_factory)


def _drop_rows(part: Path, column: str, value: object) -> None:
    table = pq.read_table(part)
    pq.write_table(table.filter(pc.invert(pc.equal(table[column], value))), part)


def _delete_video_row(out: Path) -> None:
    _drop_rows(out / "videos" / "part-000000.parquet", "rel_path", "soundtrack.mp4")


def _delete_shot_row(out: Path) -> None:
    _drop_rows(out / "shots" / "part-000000.parquet", "shot_index", 1)


def _truncate_shard(out: Path) -> None:
    shard = out / "clips" / "clips-000000.tar"
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])


def _edit_json_num_frames(out: Path) -> None:
    """Rewrite the shard with the first sample's ``num_frames`` raised by 5."""
    shard = out / "clips" / "clips-000000.tar"
    with tarfile.open(shard) as tar:
        members = [(m.name, tar.extractfile(m).read()) for m in tar]
    with tarfile.open(shard, "w", format=tarfile.USTAR_FORMAT) as tar:
        for index, (name, data) in enumerate(members):
            if index == 1:
                meta = json.loads(data)
                data = json.dumps(dict(meta, num_frames=meta["num_frames"] + 5)).encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _leave_staging(out: Path) -> None:
    (out / ".staging" / "abc").mkdir(parents=True)
    (out / "shots" / ".part-000001.parquet.0123.tmp").write_bytes(b"half")


CASES: dict[str, tuple[Callable[[Path], None], list[str]]] = {
    "videos row deleted": (_delete_video_row, [
        r"^videos: input soundtrack\.mp4 \(video_id \w+\) has no row$",
        r"^summary\.json: inputs is 3, the tables hold 2$"]),
    "shot row deleted": (_delete_shot_row, [
        r"^shots/part-000000\.parquet: video four shots\.mp4 \(\w+\): shot_index is not "
        r"0\.\.2$",
        r"^shots/part-000000\.parquet: video four shots\.mp4 \(\w+\): gap between frames 72 "
        r"and 132$"]),
    "shard truncated": (_truncate_shard, [
        r"^clips/clips-000000\.tar: unreadable shard: unexpected end of data$"]),
    "json num_frames edited": (_edit_json_num_frames, [
        r"^clips/clips-000000\.tar: \w+-0000: JSON num_frames is 77, "
        r"clips_index/part-000000\.parquet says 72$",
        r"^clips/clips-000000\.tar: \w+-0000: mp4 decodes to 72 frames of 848x480; JSON says "
        r"77 frames of 848x480$",
        r"^clips/clips-000000\.tar: \w+-0000: shot frames: last span ends at 72, not 77$"]),
    "staging left": (_leave_staging, [
        r"^\.staging/: staging folder left behind",
        r"^shots/\.part-000001\.parquet\.0123\.tmp: temp file left behind$"]),
}


def test_a_fresh_output_is_valid(curated: Path) -> None:
    result = CliRunner().invoke(main, ["validate", str(curated)])
    assert result.exit_code == 0, result.output
    assert result.output.strip().endswith(": valid")


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_each_corruption_is_reported(curated: Path, tmp_path: Path, case: str) -> None:
    out = tmp_path / "out"
    shutil.copytree(curated, out)
    corrupt, expected = CASES[case]
    corrupt(out)
    problems = validate(out)
    for pattern in expected:
        assert any(re.search(pattern, p) for p in problems), (pattern, problems)


def test_cli_lists_violations_and_exits_1(curated: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    shutil.copytree(curated, out)
    _truncate_shard(out)
    result = CliRunner().invoke(main, ["validate", str(out)])
    assert result.exit_code == 1
    assert "clips/clips-000000.tar: unreadable shard" in result.output


def test_tiling_gaps_names_gaps_and_overlaps() -> None:
    assert tiling_gaps([(0, 5), (5, 9)], 0, 9) == []
    assert tiling_gaps([(0, 5), (6, 9)], 0, 9) == ["gap between frames 5 and 6"]
    assert tiling_gaps([(1, 5), (4, 8)], 0, 9) == [
        "first span starts at 1, not 0", "last span ends at 8, not 9",
        "overlap between frames 5 and 4"]
    assert tiling_gaps([(3, 3)], 3, 3) == ["span [3, 3) is empty"]
