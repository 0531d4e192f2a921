"""Find the videos under an input folder and give each a stable, content-derived ``video_id``.

``video_id`` hashes the file size and three 1 MiB samples (start, middle, end), so it survives
renames and moves and costs three reads per file however long the video is. Files that share
that id are compared in full: byte-identical ones become ``duplicate`` rows pointing at the first
(by path), different ones get an id from their full hash.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import stat
import subprocess
from pathlib import Path

from curation.config import InputConfig
from curation.rules import DiscoverRule
from stages.probe import ProbeError, apply_probe, playlist_kind, run_ffprobe
from stages.records import Record, Status, fail

log = logging.getLogger(__name__)

_SAMPLE_BYTES = 1 << 20


def discover(root: Path, config: InputConfig) -> list[Record]:
    """One record per video file under ``root``, sorted by path, duplicates marked; a folder
    that cannot be listed is a ``failed`` record too, since its files cannot be named."""
    found, unlistable = _walk(root, config)
    records = [_new_record(path, root) for path in found]
    records += [_unlistable_record(err, root) for err in unlistable]
    _assign_ids(records)
    return sorted(records, key=lambda r: r["path"])


def _walk(root: Path, config: InputConfig) -> tuple[list[Path], list[OSError]]:
    """Candidate files, each directory visited once even through symlink loops, and the
    errors of folders that could not be listed."""
    known = {e.lower().lstrip(".") for e in config.extensions}
    ignored = {e.lower().lstrip(".") for e in config.ignore_extensions}
    seen_dirs: set[str] = set()
    found: list[Path] = []
    unlistable: list[OSError] = []
    for directory, subdirs, files in os.walk(root, onerror=unlistable.append,
                                             followlinks=config.follow_symlinks):
        real = os.path.realpath(directory)
        if real in seen_dirs:
            subdirs.clear()
            continue
        seen_dirs.add(real)
        subdirs.sort()
        for name in sorted(files):
            path = Path(directory, name)
            suffix = path.suffix.lower().lstrip(".")
            if _is_link(path) and not config.follow_symlinks:
                continue
            if suffix in known or (
                config.probe_unknown and suffix not in ignored and _ffprobe_sees_video(path)
            ):
                found.append(path)
    return found, unlistable


def _ffprobe_sees_video(path: Path) -> bool:
    try:
        if path.stat().st_size == 0 or playlist_kind(str(path)):
            return False
        info = run_ffprobe(str(path.absolute()), timeout_s=20)
        record = apply_probe({"status": Status.PENDING.value}, info, "discover")
    except (OSError, ProbeError, subprocess.TimeoutExpired, ValueError, TypeError) as err:
        log.debug("not a video: %s (%s)", path, err)
        return False
    return record["status"] == Status.PENDING.value


def _new_record(path: Path, root: Path) -> Record:
    record: Record = {
        "path": str(path.absolute()),
        "rel_path": str(path.relative_to(root)),
        "path_bytes": os.fsencode(path.absolute()),
        "status": Status.PENDING.value,
        "reason": None,
        "duplicate_of": None,
    }
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):  # a FIFO or device would block the read forever
            raise OSError(errno.EINVAL, "not a regular file (a FIFO, socket or device)")
        record["size_bytes"] = info.st_size
        record["mtime_ns"] = info.st_mtime_ns  # with the size, what the runner checks at the end
        record["video_id"] = quick_fingerprint(path, record["size_bytes"])
    except OSError as err:
        cause = _unreadable_cause(path, err)
        record.update(size_bytes=None, video_id=_hash_text(f"unreadable:{record['rel_path']}"))
        fail(record, "discover", DiscoverRule.UNREADABLE, f"cannot read file: {cause}")
    return record


def _is_link(path: Path) -> bool:
    """Whether ``path`` is a symlink; False when even that cannot be asked (a folder that can be
    listed but not entered), so the file gets its unreadable row."""
    try:
        return path.is_symlink()
    except OSError:
        return False


def _unreadable_cause(path: Path, err: OSError) -> str:
    """Why ``path`` cannot be read, in words."""
    if err.errno == errno.ELOOP:
        return "symlink loop (too many levels of symbolic links)"
    if err.errno == errno.ENOENT and _is_link(path):
        return "broken symlink"
    return err.strerror or str(err)


def _unlistable_record(err: OSError, root: Path) -> Record:
    """The ``failed`` record of a folder under ``root`` that could not be listed."""
    folder = Path(err.filename or root)
    rel_path = str(folder.relative_to(root)) if folder != root else "."
    return {
        "path": str(folder.absolute()),
        "rel_path": rel_path,
        "path_bytes": os.fsencode(folder.absolute()),
        "size_bytes": None,
        "video_id": _hash_text(f"unlistable:{rel_path}"),
        "status": Status.FAILED.value,
        "duplicate_of": None,
        "reject_stage": "discover",
        "reject_rule": DiscoverRule.UNLISTABLE_FOLDER.value,
        "reason": f"discover.{DiscoverRule.UNLISTABLE_FOLDER}: cannot list the folder: "
                  f"{err.strerror}",
    }


def quick_fingerprint(path: Path, size: int) -> str:
    """16-hex id from the size and three 1 MiB samples of the file."""
    digest = hashlib.blake2b(str(size).encode(), digest_size=8)
    with open(path, "rb") as handle:
        middle = max(0, size // 2 - _SAMPLE_BYTES // 2)
        for offset in sorted({0, middle, max(0, size - _SAMPLE_BYTES)}):
            handle.seek(offset)
            digest.update(handle.read(_SAMPLE_BYTES))
    return digest.hexdigest()


def full_hash(path: Path) -> str:
    """16-hex blake2b of the whole file."""
    digest = hashlib.blake2b(digest_size=8)
    with open(path, "rb") as handle:
        while chunk := handle.read(8 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _assign_ids(records: list[Record]) -> None:
    """Resolve records sharing a quick fingerprint: duplicates or distinct files."""
    groups: dict[str, list[Record]] = {}
    for record in records:
        if record["status"] == Status.PENDING.value:
            groups.setdefault(record["video_id"], []).append(record)
    for group in groups.values():
        if len(group) < 2:
            continue
        firsts: dict[str, Record] = {}
        for record in sorted(group, key=lambda r: r["path"]):
            content = full_hash(Path(record["path"]))
            original = firsts.setdefault(content, record)
            if original is record:
                record["video_id"] = record["video_id"] if len(firsts) == 1 else content
                continue
            record.update(
                video_id=_hash_text(f"{original['video_id']}:{record['rel_path']}"),
                status=Status.DUPLICATE.value,
                duplicate_of=original["video_id"],
                reject_stage="discover",
                reject_rule=DiscoverRule.DUPLICATE.value,
                reason=f"discover.{DiscoverRule.DUPLICATE}: byte-identical to "
                       f"{original['rel_path']}",
            )


def _hash_text(text: str) -> str:
    return hashlib.blake2b(os.fsencode(text), digest_size=8).hexdigest()
