"""``python3 -m benchmarks.fuzz``: make the inputs, run curate once on them, check and report
(the campaign is described in the package docstring)."""

from __future__ import annotations

import argparse
import shutil
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pyarrow.dataset as pads

from benchmarks import fuzz
from benchmarks.fuzz.checks import (
    changed_paths,
    check_changes,
    check_rows,
    hung_videos,
    outside_writes,
    print_tables,
    show,
    snapshot,
)
from benchmarks.fuzz.inputs import CATEGORIES, Folder, build_inputs
from benchmarks.fuzz.media import make_bases
from benchmarks.fuzz.run import (
    CURATE,
    change_files,
    restore_change,
    run_command,
    sandbox,
    write_config,
)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python3 -m benchmarks.fuzz",
                                     description=fuzz.__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--count", type=int, default=200, help="about this many inputs")
    parser.add_argument("--out", type=Path, default=Path("/var/tmp/curate-fuzz"),
                        help="work folder, emptied first; outside /tmp (runs get a private one)")
    parser.add_argument("--time-limit", type=float, default=900,
                        help="seconds the curate run may take before it counts as a hang")
    parser.add_argument("--discovery-limit", type=float, default=120,
                        help="seconds until the run must have listed its inputs")
    parser.add_argument("--stage-timeout", type=float, default=60,
                        help="each stage's per-video timeout_s in the run's config")
    parser.add_argument("--strict", action="store_true", help="run curate with --strict")
    parser.add_argument("--skip", default="", help=f"comma-separated categories of {CATEGORIES}")
    parser.add_argument("--num-cpus", type=int, default=2)
    args = parser.parse_args()
    skip = {s for s in args.skip.split(",") if s}
    if unknown := skip - set(CATEGORIES):
        parser.error(f"unknown categories {sorted(unknown)}")
    work = args.out.resolve()
    if work.is_relative_to("/tmp"):
        parser.error("--out must be outside /tmp: the run gets a private /tmp")
    started = time.monotonic()
    shutil.rmtree(work, ignore_errors=True)
    for name in ("cwd", "home", "tmp"):
        (work / name).mkdir(parents=True)
    prefix = sandbox(work)
    if not prefix:
        print("note: no sandbox (not root, or unshare/setpriv failed): /tmp unchecked, "
              "perms skipped")
        skip.add("perms")
    folder = build_inputs(work / "input", make_bases(work / "bases"), args.seed, args.count, skip)
    print(f"fuzz: seed {args.seed}, {len(folder.category)} inputs tried "
          f"({time.monotonic() - started:.0f} s to make), skipped: {sorted(skip) or 'none'}")
    print("  " + ", ".join(f"{c} {n}" for c, n in Counter(folder.category.values()).items()))
    crashes = run_and_check(args, folder, work, prefix)
    print(f"\ncrashes: {len(crashes)}")
    for crash in crashes:
        print(f"  {crash}")
    print(f"wall: {time.monotonic() - started:.0f} s")
    sys.exit(1 if crashes else 0)


def run_and_check(args: argparse.Namespace, folder: Folder, work: Path,
                  prefix: list[str]) -> list[str]:
    """Run curate once on the folder (changing files under it) and check the output."""
    out = work / "out"
    config = write_config(work / "fuzz.yaml", args.stage_timeout)
    for path, mode in folder.modes.items():
        path.chmod(mode)
    inputs_before = snapshot(folder.root)
    discovered, done = threading.Event(), threading.Event()
    changer = threading.Thread(target=change_files, daemon=True, args=(
        folder, discovered, folder.rng.uniform(3, 8), done))
    changer.start()
    cmd = [*prefix, *CURATE, "run", str(folder.root), str(out), "-c", str(config),
           "--num-cpus", str(args.num_cpus), "--progress", "plain", *(
               ["--strict"] if args.strict else [])]
    run = run_command(cmd, work, args.time_limit,
                      lambda line: "curation.runner: found" in line and discovered.set(),
                      lambda seconds: discovered.is_set() or seconds < args.discovery_limit)
    done.set()
    changer.join()
    for change in folder.changes:
        restore_change(change)
    print(f"\ncurate run: exit {run.code} in {run.seconds:.0f} s (limit {args.time_limit:.0f} s)")
    if run.code is None and not discovered.is_set():
        return [f"hang in discovery: no 'found N files' after {run.seconds:.0f} s"]
    if run.code is None:
        return [f"hang: run killed after {run.seconds:.0f} s; in flight: "
                + "; ".join(hung_videos(out, folder))]
    crashes = []
    rows = pads.dataset(out / "videos").to_table().to_pylist() if (out / "videos").is_dir() else []
    expected_code = 1 if args.strict and any(r["status"] == "failed" for r in rows) else 0
    if run.code != expected_code:
        crashes.append(f"exit {run.code} (expected {expected_code}): "
                       + " | ".join(run.lines[-4:]))
    if rows:
        print_tables(rows, folder)
        crashes += check_rows(rows, folder) + check_changes(rows, folder)
        check = run_command([*prefix, *CURATE, "validate", str(out), "--raw", str(folder.root)],
                            work, 600)
        crashes += [f"validate: {line}" for line in check.lines if check.code != 0]
    crashes += [f"input tree changed: {show(p)}"
                for p in changed_paths(inputs_before, snapshot(folder.root))]
    outside, known = outside_writes(work)
    if known:
        print(f"known third-party files outside OUT (not counted): {', '.join(known)}")
    return crashes + outside


if __name__ == "__main__":
    main()
