"""What the run must cover, the checks of its output and of what it wrote, and the report."""

from __future__ import annotations

import os
import stat
from collections import Counter
from pathlib import Path

from benchmarks.fuzz.inputs import Folder
from curation.config import load_config
from curation.discover import quick_fingerprint

# --- what the run must cover ----------------------------------------------------------------

def expected_inputs(folder: Folder) -> dict[str, bool]:
    """Rel paths that must (True) or may (False: hostile content under an extension discovery
    probes) have a row, walking as a user without root's powers would: a folder that cannot
    be listed is one row; the entries of a folder without search permission are files that
    cannot be stat'ed. Extensions from the built-in config."""
    config = load_config(None).input
    known = {e.lower().lstrip(".") for e in config.extensions}
    ignored = {e.lower().lstrip(".") for e in config.ignore_extensions}
    found: dict[str, bool] = {}
    seen: set[str] = set()

    def visit(directory: str) -> None:
        mode = os.stat(directory).st_mode
        if not mode & stat.S_IRUSR:
            found[os.path.relpath(directory, folder.root)] = True
            return
        searchable = bool(mode & stat.S_IXUSR)
        names = sorted(os.listdir(directory))
        subdirs = [n for n in names if searchable and os.path.isdir(os.path.join(directory, n))]
        real = os.path.realpath(directory)
        if real in seen:
            return
        seen.add(real)
        for name in (n for n in names if n not in subdirs):
            rel = os.path.relpath(os.path.join(directory, name), folder.root)
            suffix = Path(name).suffix.lower().lstrip(".")
            if suffix in known:
                found[rel] = True
            elif searchable and suffix not in ignored and rel in folder.unknown:
                found[rel] = folder.unknown[rel] == "video"
        for name in subdirs:
            visit(os.path.join(directory, name))

    visit(str(folder.root))
    return found


# --- checks ---------------------------------------------------------------------------------

Snapshot = dict[str, tuple[int, int, int]]


def snapshot(top: Path) -> Snapshot:
    """(size, mtime, mode) of every file under ``top`` and the mode of every folder."""
    found: Snapshot = {}
    for directory, subdirs, files in os.walk(top):
        for name in files + subdirs:
            info = os.lstat(os.path.join(directory, name))
            kept = name in files
            found[os.path.join(directory, name)] = (
                info.st_size if kept else 0, info.st_mtime_ns if kept else 0, info.st_mode)
    return found


def changed_paths(before: Snapshot, after: Snapshot) -> list[str]:
    return sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))


# Files a dependency writes on import, whatever the program does: onnxruntime (RapidOCR's engine)
# keeps a telemetry device id under ~/.cache and a session file in /tmp
# (https://github.com/microsoft/onnxruntime/issues/32476). Listed, not counted.
THIRD_PARTY = (("home", ".cache/Microsoft/DeveloperTools/.onnxruntime/"), ("tmp", ".ses"))


def outside_writes(work: Path) -> tuple[list[str], list[str]]:
    """What the run left in its working folder, ``HOME`` and (private) ``/tmp``, which hold
    nothing else: (crashes, known third-party files). Ray's session folder ``/tmp/ray`` is
    allowed."""
    left, known = [], []
    for name in ("cwd", "home", "tmp"):
        top = work / name
        for entry in sorted(top.rglob("*")):
            rel = str(entry.relative_to(top))
            if entry.is_dir() or (name == "tmp" and rel.startswith("ray/")):
                continue
            third_party = any(name == top_name and rel.startswith(prefix)
                              for top_name, prefix in THIRD_PARTY)
            (known if third_party else left).append(f"{name}/{show(rel)}")
    return [f"written outside OUT: {entry}" for entry in left], known


def show(name: str | bytes) -> str:
    """A file name on one printable line."""
    text = os.fsdecode(name) if isinstance(name, bytes) else name
    return repr(text)[1:-1]


def row_key(row: dict) -> bytes:
    """The exact path bytes of a videos row (``path_bytes`` when the table has it)."""
    if row.get("path_bytes") is not None:
        return bytes(row["path_bytes"])
    return os.fsencode(row["path"])


def path_keys(path: Path) -> set[bytes]:
    """Forms a row may give ``path`` in: its bytes, or UTF-8 with ``\\xNN`` escapes."""
    raw = os.fsencode(path)
    return {raw, raw.decode("utf-8", "backslashreplace").encode()}


def check_rows(rows: list[dict], folder: Folder) -> list[str]:
    """Exactly one row per input, no row for anything else, a reason on every row not accepted,
    no stage stopped by its watchdog or killing its worker."""
    crashes = []
    by_key = Counter(row_key(row) for row in rows)
    claimed: set[bytes] = set()
    for rel, required in sorted(expected_inputs(folder).items()):
        keys = path_keys(folder.root / rel)
        n = sum(by_key[k] for k in keys)
        claimed |= keys
        if n > 1 or (required and n == 0):
            crashes.append(f"{'missing row' if n == 0 else f'{n} rows'}: {show(rel)}")
    crashes += [f"row for a non-input: {show(key)}" for key in by_key if key not in claimed]
    for row in rows:
        status, rule, stage = row["status"], row["reject_rule"], row["reject_stage"]
        if status not in ("accepted", "rejected", "failed", "duplicate"):
            crashes.append(f"unknown status {status!r}: {show(row['rel_path'])}")
        elif status != "accepted" and not (rule and (row["reason"] or "").startswith(
                f"{stage}.{rule}:")):
            crashes.append(f"{status} without rule and reason: {show(row['rel_path'])}")
        elif rule in ("timeout", "worker_lost"):  # nothing in a 4 s file takes a minute
            crashes.append(f"hang or dead worker: {show(row['rel_path'])}: {row['reason']}")
    return crashes


def check_changes(rows: list[dict], folder: Folder) -> list[str]:
    """A file changed before any video was processed must fail with ``changed_during_run``
    (a lock changes no content: any reasoned row will do)."""
    by_path = {row_key(row): row for row in rows}
    crashes = []
    for change in folder.changes:
        row = next((by_path[k] for k in path_keys(change.path) if k in by_path), None)
        if row and change.early and change.action != "lock" and row[
                "reject_rule"] != "changed_during_run":
            crashes.append(f"change not detected ({change.action} after discovery): "
                           f"{show(row['rel_path'])} is {row['status']} {row['reason']}")
    return crashes


def hung_videos(out: Path, folder: Folder) -> list[str]:
    """The inputs whose stage calls were still in flight, from the watchdog's markers."""
    names = {}
    for directory, _, files in os.walk(folder.root):
        for path in (Path(directory, name) for name in files):
            try:
                if stat.S_ISREG(path.lstat().st_mode):
                    names[quick_fingerprint(path, path.stat().st_size)] = path
            except OSError:
                continue
    markers = sorted((out / ".inflight").glob("*.json"))
    return [f"{show(str(names.get(m.name.split('.')[0], m.name)))} in {m.name.split('.')[1]}"
            for m in markers]


# --- report ---------------------------------------------------------------------------------

def print_tables(rows: list[dict], folder: Folder) -> None:
    """Statuses per rule, per category, unexpected stage exceptions, the slowest videos."""
    per_rule = Counter((r["status"], f"{r['reject_stage']}.{r['reject_rule']}"
                        if r["reject_rule"] else "-") for r in rows)
    print(f"\n{'status':10s} {'rule':36s} {'count':>5s}")
    for (status, rule), n in sorted(per_rule.items()):
        print(f"{status:10s} {rule:36s} {n:5d}")
    per_category: dict[str, Counter] = {}
    for row in rows:
        rel = os.path.relpath(os.fsdecode(row_key(row)), folder.root)
        per_category.setdefault(rel.split(os.sep)[0], Counter())[row["status"]] += 1
    print("\nper category: " + "; ".join(
        f"{c} " + ", ".join(f"{s} {n}" for s, n in sorted(k.items()))
        for c, k in sorted(per_category.items())))
    errors = Counter(r["reason"][:160] for r in rows if r["reject_rule"] == "error")
    for reason, n in errors.most_common():
        print(f"unexpected exception x{n}: {reason}")
    seconds = {r["rel_path"]: sum(v or 0 for k, v in r.items() if k.startswith("seconds_"))
               for r in rows}
    slowest = sorted(seconds.items(), key=lambda item: -item[1])[:5]
    print("slowest: " + ", ".join(f"{show(rel)} {s:.1f} s" for rel, s in slowest))
