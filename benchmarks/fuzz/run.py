"""Running curate: one command in its own session with a time limit and a stuck check, the
files changed while the run goes on, the root sandbox (private ``/tmp`` through ``unshare``,
no power over file permissions through ``setpriv``) and the run's config."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from benchmarks.fuzz.inputs import Change, Folder

REPO = Path(__file__).resolve().parents[2]
CURATE = [sys.executable, "-m", "curation.cli"]
# Root that keeps its uid but loses the powers to bypass file permissions, so chmod 000 bites.
NO_DAC = ["setpriv", "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search", "--"]


# --- the run --------------------------------------------------------------------------------

@dataclass
class Outcome:
    """One command's end: exit code (None when killed at its limit), seconds and output."""

    code: int | None
    seconds: float
    lines: list[str]


def run_command(cmd: list[str], work: Path, limit: float,
                on_line: Callable[[str], None] = lambda line: None,
                alive: Callable[[float], bool] = lambda seconds: True) -> Outcome:
    """Run ``cmd`` in its own session in ``work/cwd`` with ``HOME`` and ``TMPDIR`` in
    ``work``; kill the whole session at ``limit`` seconds, or once ``alive(seconds)`` says
    it is stuck."""
    started = time.monotonic()
    env = dict(os.environ, HOME=str(work / "home"), TMPDIR=str(work / "tmp"))
    proc = subprocess.Popen(cmd, cwd=work / "cwd", env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    lines: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            lines.append(raw.decode(errors="replace").rstrip("\n"))
            on_line(lines[-1])

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    code: int | None = None
    while code is None:
        try:
            code = proc.wait(timeout=1)
        except subprocess.TimeoutExpired:
            seconds = time.monotonic() - started
            if seconds > limit or not alive(seconds):
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                break
    reader.join(timeout=10)
    return Outcome(code, time.monotonic() - started, lines)


def apply_change(change: Change, bases: dict[str, bytes]) -> None:
    path = change.path
    if change.action == "truncate":
        os.truncate(path, len(change.original) // 3)
    elif change.action == "delete":
        path.unlink()
    elif change.action == "replace":
        staged = path.with_name(path.name + ".new")
        staged.write_bytes(bases["h264.mkv"])
        staged.replace(path)
    else:
        path.chmod(0o000)


def restore_change(change: Change) -> None:
    """Put the file back as it was, so the checks see the tree discovery saw."""
    if not change.path.exists() or change.path.read_bytes() != change.original:
        change.path.write_bytes(change.original)
    change.path.chmod(0o644)
    os.utime(change.path, ns=(change.mtime_ns, change.mtime_ns))


def change_files(folder: Folder, discovered: threading.Event, delay: float,
                 done: threading.Event) -> None:
    """Early changes as soon as discovery has listed the files, late ones ``delay`` s later;
    none once the run is ``done``."""
    while not discovered.wait(0.05):
        if done.is_set():
            return
    for early in (True, False):
        for change in (c for c in folder.changes if c.early == early):
            apply_change(change, folder.bases)
        if early and done.wait(delay):
            return


def sandbox(work: Path) -> list[str]:
    """As root, the prefix that runs a command with a private ``/tmp`` (``work/tmp`` mounted
    there, so every temp write can be seen) and without root's power to ignore file
    permissions (so chmod 000 bites); [] when not root or when that fails (packages must
    import, ``/tmp`` must be empty, a chmod 000 file unreadable). Leaves ``work/cwd``,
    ``work/home`` and ``work/tmp`` empty."""
    if os.geteuid() != 0:
        return []
    prefix = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
              'mount --bind "$0" /tmp && exec "$@"', str(work / "tmp"), *NO_DAC]
    probe = work / "locked"
    probe.write_bytes(b"x")
    probe.chmod(0o000)
    check = ("import os, curation.cli, ray, av, decord, cv2, rapidocr\n"
             "assert not os.listdir('/tmp')\n"
             f"try:\n open({str(probe)!r}).read()\nexcept PermissionError:\n print('ok')")
    out = run_command([*prefix, sys.executable, "-c", check], work, 120)
    probe.unlink()
    for name in ("cwd", "home", "tmp"):
        shutil.rmtree(work / name)
        (work / name).mkdir()
    return prefix if out.lines == ["ok"] else []


def write_config(path: Path, stage_timeout: float) -> Path:
    """pipeline.yaml with every stage's per-video timeout cut to ``stage_timeout`` seconds and
    ffprobe's own timeout to a sixth of that, so either firing shows which one works."""
    config = yaml.safe_load((REPO / "pipeline.yaml").read_text())
    for stage in config["stages"].values():
        stage.setdefault("resources", {})["timeout_s"] = stage_timeout
    config["stages"]["probe"]["timeout_s"] = stage_timeout / 6
    path.write_text(yaml.safe_dump(config))
    return path
