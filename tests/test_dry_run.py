"""``curate run --dry-run``: the listing, the plan and each go/no-go check; no Ray, no writes."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from curation.cli import main
from tests.test_report import SAMPLES, curate_small


@pytest.fixture
def raw(tmp_path: Path) -> Path:
    folder = tmp_path / "raw"
    folder.mkdir()
    for name in ("series/ep 01/four shots.mp4", "series/soundtrack.mp4", "film/bikes.mp4"):
        shutil.copy(SAMPLES / name, folder)
    shutil.copy(SAMPLES / "film/bikes.mp4", folder / "bikes_copy.mp4")  # sorts after bikes.mp4
    return folder


def _dry_run(*args: str) -> Result:
    return CliRunner().invoke(main, ["run", "--dry-run", *args, "--num-cpus", "2"])


def test_lists_inputs_and_plan_and_creates_nothing(raw: Path, tmp_path: Path) -> None:
    out = tmp_path / "new" / "out"
    result = _dry_run(str(raw), str(out))
    assert result.exit_code == 0, result.output
    assert not out.parent.exists()
    lines = result.output.splitlines()
    assert lines[0].startswith(f"inputs under {raw}: 4 files; 0 already done in {out}, 4 to do")
    assert re.search(r"^  duplicate .* bikes_copy\.mp4  \(discover\.duplicate", result.output, re.M)
    processed = [line.split(maxsplit=3)[-1] for line in lines if line.startswith("  process")]
    assert processed == ["bikes.mp4", "four shots.mp4", "soundtrack.mp4"]
    assert re.search(r"^  shot_crop +tasks +1 CPU, CPU only$", result.output, re.M)
    assert "not run: shot_caption" in result.output
    assert re.search(r"^  ok    space: .*min of video to do x 10 MB per minute", result.output,
                     re.M)
    assert result.output.rstrip().endswith("dry run: a run could start")


def test_limit_leaves_files_for_later(raw: Path, tmp_path: Path) -> None:
    result = _dry_run(str(raw), str(tmp_path / "out"), "--limit", "1")
    assert result.exit_code == 0, result.output
    assert "1 to do, 3 left for later runs (--limit)" in result.output
    assert len(re.findall(r"^  later ", result.output, re.M)) == 3


def test_committed_videos_are_done(tmp_path_factory: pytest.TempPathFactory) -> None:
    out = curate_small(tmp_path_factory)
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    result = _dry_run(str(out.parent / "raw"), str(out))
    assert result.exit_code == 0, result.output
    assert "3 already done" in result.output and "0 to do" in result.output
    assert len(re.findall(r"^  done ", result.output, re.M)) == 3
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before


def _config(tmp_path: Path, settings: dict) -> str:
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(settings))
    return str(path)


def test_missing_model_fails(raw: Path, tmp_path: Path) -> None:
    config = _config(tmp_path, {"stages": {"shot_caption": {"model": str(tmp_path / "none")}}})
    result = _dry_run(str(raw), str(tmp_path / "out"), "-c", config)
    assert result.exit_code == 2, result.output
    assert re.search(r"^  FAIL  models: shot_caption\.model", result.output, re.M)
    assert re.search(r"^  shot_caption +actor pool ", result.output, re.M)


def test_missing_ffmpeg_fails(raw: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    result = _dry_run(str(raw), str(tmp_path / "out"))
    assert result.exit_code == 2, result.output
    assert "  FAIL  ffmpeg: not on PATH: ffmpeg, ffprobe" in result.output


def test_full_disk_fails(raw: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(1, 1, 0))
    result = _dry_run(str(raw), str(tmp_path / "a" / "b"))
    assert result.exit_code == 2, result.output
    assert re.search(rf"^  FAIL  space: 0\.0 GB free at {tmp_path}; need about", result.output,
                     re.M)


def test_gpu_stage_without_gpu_fails(
    raw: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("curation.dry_run.local_gpus", lambda: 0)
    config = _config(tmp_path, {"stages": {"encode": {"resources": {"num_gpus": 1}}}})
    result = _dry_run(str(raw), str(tmp_path / "out"), "-c", config)
    assert result.exit_code == 2, result.output
    assert "  FAIL  GPUs: encode need a GPU and this machine has none" in result.output
