"""``curate run`` end to end through the real command: Ray Data, resume, SIGKILL, a cluster."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import media
from tests.outputs import assert_same_output, tables

pytestmark = pytest.mark.slow
CURATE = [sys.executable, "-m", "curation.cli"]


def _curate(*args: str, **kwargs: object) -> subprocess.CompletedProcess:
    return subprocess.run([*CURATE, "run", *args, "--num-cpus", "2"], capture_output=True,
                          text=True, timeout=600, **kwargs)


def _assert_shots_tile(out: Path) -> None:
    videos, shots = tables(out)
    for video in (v for v in videos if v["status"] == "accepted"):
        mine = [s for s in shots if s["video_id"] == video["video_id"]]
        assert mine[0]["start_frame"] == 0 and mine[-1]["end_frame"] == video["frames_decoded"]
        assert all(a["end_frame"] == b["start_frame"] for a, b in zip(mine, mine[1:], strict=False))
        assert len(mine) == video["num_shots"]


def test_every_file_appears_once_with_a_status(
    tmp_path: Path, sample_folder: Path, bad_inputs: dict
) -> None:
    for path, _, _ in bad_inputs.values():
        if path.is_symlink():
            os.symlink(os.readlink(path), sample_folder / path.name)
        else:
            os.replace(path, sample_folder / path.name)
    shutil.copy(sample_folder / "a" / "bikes.mp4", sample_folder / "bikes again.mp4")
    out = tmp_path / "out"
    done = _curate(str(sample_folder), str(out), "--strict")
    assert done.returncode == 1, done.stderr  # --strict: some inputs failed
    videos, _ = tables(out)
    by_name = {v["rel_path"]: v for v in videos}
    assert len(by_name) == len(videos) == 3 + len(bad_inputs) + 1
    for name, (_, status, rule) in bad_inputs.items():
        assert (by_name[name]["status"], by_name[name]["reject_rule"]) == (status, rule), name
    assert by_name["bikes again.mp4"]["status"] == "duplicate"
    assert {by_name[n]["status"] for n in ("a/bikes.mp4", "b c/cuts é.mp4")} == {"accepted"}
    assert by_name["a/bikes.mp4"]["num_shots"] == 6
    _assert_shots_tile(out)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["inputs"] == len(videos) and summary["shots"] == 6 + 4 + 2
    assert summary["failed_by_rule"]["probe.empty_file"] == 1
    assert "inputs 11" in done.stdout

    before = tables(out)
    again = _curate(str(sample_folder), str(out))
    assert again.returncode == 0 and "0 files processed" in again.stdout
    assert tables(out) == before
    assert len(list((out / "videos").glob("part-*.parquet"))) == len(
        list((out / "shots").glob("part-*.parquet")))


def test_sigkill_then_resume_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    for i in range(10):
        media.make_cuts(raw / f"v{i}.mp4", [24 + 6 * i, 30, 36], w=256, h=144, moving=True)
    config = tmp_path / "small-parts.yaml"
    config.write_text("output: {videos_per_part: 1}\n")
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    assert _curate(str(raw), str(reference), "-c", str(config)).returncode == 0

    proc = subprocess.Popen([*CURATE, "run", str(raw), str(killed), "-c", str(config),
                             "--num-cpus", "2"], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list((killed / "videos").glob("part-*.parquet")) and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    committed = len(list((killed / "videos").glob("part-*.parquet")))
    assert 1 <= committed < 10 and not (killed / "summary.json").exists()

    resumed = _curate(str(raw), str(killed), "-c", str(config))
    assert resumed.returncode == 0, resumed.stderr
    assert f"{10 - committed} files processed" in resumed.stdout
    assert_same_output(killed, reference)
    assert not list(killed.glob("clips/.*.tmp")) and not (killed / ".staging").exists()


def test_invalid_config_fails_before_any_work(tmp_path: Path, sample_folder: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("stages:\n  shot_split:\n    detektor: magic\n")
    done = _curate(str(sample_folder), str(tmp_path / "out"), "-c", str(config))
    assert done.returncode == 2
    assert "stages.shot_split.detektor: unknown key" in done.stderr
    assert "cut_threshold" in done.stderr and not (tmp_path / "out").exists()


def test_resume_with_changed_settings_is_refused(tmp_path: Path, sample_folder: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "run.json").write_text(json.dumps({"config_fingerprint": "something-else"}))
    done = _curate(str(sample_folder), str(out))
    assert done.returncode == 2 and "--overwrite" in done.stderr
