"""Peak memory of each Ray worker process (and the driver) during ``curate run``.

Runs ``curate run`` (default pipeline, captioning off) on Big Buck Bunny inputs of 10 and 60
minutes (see :func:`bbb.bbb_minutes`) while a thread walks the run's process tree every
``--interval`` seconds: the driver, the Ray processes it starts, the workers (titles
``ray::Map(shot_split)``, ``ray::IDLE``, ...) and what the workers spawn (ffmpeg encoders).
Per process it keeps the largest RSS seen and its ``VmHWM`` (the kernel's high-water mark,
which catches peaks between polls), and per stage the largest RSS of a worker while its title
named that stage. It also attributes CPU time to stages (see :class:`TreeSampler`).

    python benchmarks/memory.py [--inputs 10,60] [--stop-after STAGE] [--interval 0.5]
                                [--json out/benchmarks/memory.json] [--cache DIR] [--code DIR]
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

try:
    import psutil
except ImportError:  # Ray vendors it and puts it on sys.path on import
    __import__("ray")
    import psutil

from bbb import DEFAULT_CACHE, bbb_minutes

MIB = 1024 * 1024
_STATUS_KEYS = ("VmRSS", "VmHWM", "RssAnon")


def _status(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM and RssAnon of ``pid`` in bytes, from /proc (empty when unreadable)."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return {}
    found = {}
    for line in lines:
        key, _, value = line.partition(":")
        if key in _STATUS_KEYS:
            found[key] = int(value.split()[0]) * 1024
    return found


def _title(proc: psutil.Process) -> str:
    """The process title: Ray workers show ``ray::<task or actor>``."""
    return " ".join(part for part in proc.cmdline() if part).strip()


class TreeSampler(threading.Thread):
    """Polls the process tree under ``root`` until :meth:`stop`.

    Kinds: ``driver`` (root), ``worker`` (title starts with ``ray::``), ``worker_child`` (below a
    worker, e.g. ffmpeg; its stage is its worker's), ``ray_system`` (raylet, GCS, agents).
    CPU: each process's own user+system time; workers add their reaped children's time (the
    encoders), so ``worker_child`` CPU is not counted twice. A poll's CPU delta goes to the
    stage the process shows at that poll. The last < ``interval`` s of an exiting process is
    lost, so CPU is a slight undercount.
    """

    def __init__(self, root: int, interval: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.root, self.interval = psutil.Process(root), interval
        self._halt = threading.Event()
        self.procs: dict[int, dict] = {}
        self.stages: dict[str, dict] = {}
        self.timeline: list[tuple] = []  # (s, pid, title, RSS MiB) on a worker's change
        self.polls = 0
        self._t0 = time.monotonic()

    def stop(self) -> None:
        self._halt.set()
        self.join()

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                self._poll()
            except psutil.Error:
                pass
            self._halt.wait(self.interval)

    def _poll(self) -> None:
        tree = [self.root, *self.root.children(recursive=True)]
        labels: dict[int, tuple[str, str, int]] = {}  # pid -> (kind, stage, owning worker)
        for proc in tree:  # parents come before their children in this walk
            try:
                title, parent = _title(proc), proc.ppid()
            except psutil.Error:
                continue
            if proc.pid == self.root.pid:
                labels[proc.pid] = ("driver", "driver", 0)
            elif title.startswith("ray::") and not title.split(" ")[0].endswith("Agent"):
                labels[proc.pid] = ("worker", title[5:].split(" ")[0] or "?", proc.pid)
            elif labels.get(parent, ("",))[0] in ("worker", "worker_child"):
                labels[proc.pid] = ("worker_child", *labels[parent][1:])
            else:
                labels[proc.pid] = ("ray_system", "ray_system", 0)
        with_children: dict[int, int] = {}
        for proc in tree:
            if proc.pid not in labels:
                continue
            kind, stage, owner = labels[proc.pid]
            mem = _status(proc.pid)
            try:
                times = proc.cpu_times()
                name = proc.name()
            except psutil.Error:
                continue
            if not mem:
                continue
            cpu = times.user + times.system
            if kind == "worker":
                cpu += times.children_user + times.children_system
            entry = self.procs.setdefault(proc.pid, {
                "kind": kind, "name": name, "titles": [], "max_rss": 0, "max_rss_stage": None,
                "max_anon": 0, "vm_hwm": 0, "cpu_s": 0.0})
            entry["kind"] = kind
            if stage not in entry["titles"]:
                entry["titles"].append(stage)
            rss = mem.get("VmRSS", 0)
            if kind == "worker" and (abs(rss - entry.get("logged", -MIB * 99)) > 16 * MIB
                                     or stage != entry.get("logged_stage")):
                entry["logged"], entry["logged_stage"] = rss, stage
                self.timeline.append((round(time.monotonic() - self._t0, 1), proc.pid,
                                      stage, round(rss / MIB)))
            if rss > entry["max_rss"]:
                entry["max_rss"], entry["max_rss_stage"] = rss, stage
            entry["max_anon"] = max(entry["max_anon"], mem.get("RssAnon", 0))
            entry["vm_hwm"] = max(entry["vm_hwm"], mem.get("VmHWM", 0))
            delta = 0.0 if kind == "worker_child" else max(0.0, cpu - entry.get("last_cpu", cpu))
            entry["last_cpu"] = cpu
            entry["cpu_s"] += delta
            if kind in ("worker", "worker_child"):
                with_children[owner] = with_children.get(owner, 0) + rss
            row = self.stages.setdefault(stage, {"max_rss": 0, "max_anon": 0,
                                                 "max_with_children": 0, "cpu_s": 0.0})
            row["cpu_s"] += delta
            if kind != "worker_child":  # ray_system: the largest one process
                row["max_rss"] = max(row["max_rss"], rss)
                row["max_anon"] = max(row["max_anon"], mem.get("RssAnon", 0))
        for owner, total in with_children.items():
            stage = labels[owner][1]
            row = self.stages[stage]
            row["max_with_children"] = max(row["max_with_children"], total)
        self.polls += 1

    def result(self) -> dict:
        hidden = ("last_cpu", "logged", "logged_stage")
        procs = {pid: {k: v for k, v in e.items() if k not in hidden}
                 for pid, e in self.procs.items()}
        return {"polls": self.polls, "interval_s": self.interval, "processes": procs,
                "stages": self.stages, "worker_rss_timeline": self.timeline}


def run_curate(film: Path, config_yaml: str, interval: float, log: Path | None = None,
               code: Path | None = None) -> dict:
    """One sampled ``curate run --overwrite`` of ``film`` alone: wall seconds, summary, sampler.
    ``code``: run the ``curation`` package found there (the driver's working directory, which
    Ray also puts on its workers' path) rather than the installed one."""
    with tempfile.TemporaryDirectory() as tmp:
        raw, out, config = Path(tmp, "raw"), Path(tmp, "out"), Path(tmp, "pipeline.yaml")
        raw.mkdir()
        (raw / film.name).symlink_to(film)
        config.write_text(config_yaml)
        sink = log.open("w") if log else subprocess.DEVNULL
        started = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "curation.cli", "run", str(raw), str(out),
                                 "-c", str(config), "--overwrite", "--progress", "plain"],
                                stdout=sink, stderr=subprocess.STDOUT, cwd=code)
        try:
            sampler = TreeSampler(proc.pid, interval)
            sampler.start()
            rc = proc.wait()
            wall = time.perf_counter() - started
            sampler.stop()
        finally:
            if proc.poll() is None:  # interrupted: let the driver shut its Ray down
                proc.send_signal(signal.SIGINT)
                proc.wait()
        if log:
            sink.close()
        if rc != 0:
            raise RuntimeError(f"curate run exited {rc}" + (f"; see {log}" if log else ""))
        summary = json.loads((out / "summary.json").read_text())
        clips = sum(f.stat().st_size for f in (out / "clips").glob("*.tar"))
    return {"wall_s": wall, "summary": {k: summary[k] for k in (
        "status", "shots", "shots_kept", "samples", "sample_hours", "accepted_hours",
        "stage_seconds", "last_run_wall_seconds", "versions")}, "clips_bytes": clips,
        **sampler.result()}


def peaks(run: dict) -> dict:
    """Driver peak, largest worker peak (and its stage), Ray system total, in MiB."""
    procs = run["processes"].values()
    def top(kind: str, key: str) -> float:
        return max((p[key] for p in procs if p["kind"] == kind), default=0) / MIB
    worker = max((p for p in procs if p["kind"] == "worker"), key=lambda p: p["max_rss"],
                 default=None)
    return {"driver_rss": top("driver", "max_rss"), "driver_hwm": top("driver", "vm_hwm"),
            "worker_rss": top("worker", "max_rss"), "worker_hwm": top("worker", "vm_hwm"),
            "worker_anon": top("worker", "max_anon"),
            "worker_stage": worker["max_rss_stage"] if worker else None,
            "worker_child_rss": top("worker_child", "max_rss"),
            "ray_system_rss_sum": sum(p["max_rss"] for p in procs
                                      if p["kind"] == "ray_system") / MIB}


def stage_wall(run: dict, label: str) -> float | None:
    """summary.json's seconds for the stages a title names (``Map(a)->Map(b)``)."""
    names = re.findall(r"Map\((\w+)\)", label)
    seconds = run["summary"]["stage_seconds"]
    return sum(seconds.get(n) or 0 for n in names) if names else None


def print_tables(results: dict[str, dict]) -> None:
    print("\n| input | source s | wall s | driver peak RSS (HWM) MiB | max worker RSS (HWM) MiB "
          "| worker peak in | worker anon MiB | encoder child MiB | Ray system sum MiB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for label, run in results.items():
        p = peaks(run)
        print(f"| {label} | {run['summary']['accepted_hours'] * 3600:.0f} | {run['wall_s']:.0f} "
              f"| {p['driver_rss']:.0f} ({p['driver_hwm']:.0f}) "
              f"| {p['worker_rss']:.0f} ({p['worker_hwm']:.0f}) | {p['worker_stage']} "
              f"| {p['worker_anon']:.0f} | {p['worker_child_rss']:.0f} "
              f"| {p['ray_system_rss_sum']:.0f} |")
    stages = sorted({s for run in results.values() for s in run["stages"]})
    labels = list(results)
    print("\nPer process title (stage): max RSS MiB (anon) / worker + its children MiB / CPU s"
          " / the stage's wall s from summary.json")
    print("| stage | " + " | ".join(labels) + " |")
    print("|---|" + "---|" * len(labels))
    for stage in stages:
        cells = []
        for label in labels:
            row = results[label]["stages"].get(stage)
            wall = stage_wall(results[label], stage)
            cells.append("–" if row is None else (
                f"{row['max_rss'] / MIB:.0f} ({row['max_anon'] / MIB:.0f}) / "
                f"{row['max_with_children'] / MIB:.0f} / {row['cpu_s']:.0f} s"
                + (f" / wall {wall:.0f} s" if wall is not None else "")))
        print(f"| {stage} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", default="10,60", help="input lengths in minutes (BBB)")
    parser.add_argument("--stop-after", help="stage to stop after (a temporary pipeline yaml)")
    parser.add_argument("--interval", type=float, default=0.5)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--json", type=Path, default=Path("out/benchmarks/memory.json"))
    parser.add_argument("--code", type=Path, help="checkout to run, e.g. `git archive` of HEAD")
    args = parser.parse_args()
    config = f"stop_after: {args.stop_after}\n" if args.stop_after else "{}\n"
    args.json.parent.mkdir(parents=True, exist_ok=True)
    results = {}
    for minutes in (float(m) for m in args.inputs.split(",")):
        film = bbb_minutes(args.cache, minutes)
        label = f"{minutes:g} min"
        print(f"{label}: curate run on {film} ({config.strip()}) ...", flush=True)
        log = args.json.with_name(f"{args.json.stem}-{minutes:g}min.log")
        results[label] = run_curate(film, config, args.interval, log, args.code)
        results[label].update(input=str(film), stop_after=args.stop_after, code=str(args.code))
        print(f"  wall {results[label]['wall_s']:.0f} s, {results[label]['polls']} polls",
              flush=True)
        args.json.write_text(json.dumps(results, indent=1))
    print_tables(results)
    print(f"\nJSON: {args.json}")


if __name__ == "__main__":
    main()
