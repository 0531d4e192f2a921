"""Throughput of the CPU stages in video-hours per core-hour, against one ffmpeg decode.

Alternates ``ffmpeg -v error -i X -f null -`` and ``curate run`` (default pipeline, captioning
off) on the same Big Buck Bunny input, ``--rounds`` times. Core-hours are counted two ways:
wall seconds x the cores Ray gets (all of this machine's), and CPU seconds actually used, from
the process-tree sampler of :mod:`memory` (curate) and ``getrusage`` (ffmpeg). Per stage, the
CPU seconds the sampler attributed to workers showing that stage's title.

    python benchmarks/throughput.py [--minutes 10] [--rounds 2] [--stop-after STAGE]
                                    [--json out/benchmarks/throughput.json] [--cache DIR]
                                    [--code DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
from pathlib import Path

from bbb import DEFAULT_CACHE, bbb_minutes, timed
from memory import run_curate, stage_wall


def decode(film: Path) -> tuple[float, float]:
    """(wall s, CPU s) of one ``ffmpeg -f null`` decode of ``film``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = timed(["ffmpeg", "-v", "error", "-i", str(film), "-f", "null", "-"])
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--stop-after")
    parser.add_argument("--interval", type=float, default=0.5)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--json", type=Path, default=Path("out/benchmarks/throughput.json"))
    parser.add_argument("--code", type=Path, help="checkout to run, e.g. `git archive` of HEAD")
    args = parser.parse_args()
    film = bbb_minutes(args.cache, args.minutes)
    config = f"stop_after: {args.stop_after}\n" if args.stop_after else "{}\n"
    cores = os.cpu_count() or 1
    args.json.parent.mkdir(parents=True, exist_ok=True)
    rounds = []
    for index in range(args.rounds):
        dec_wall, dec_cpu = decode(film)
        run = run_curate(film, config, args.interval,
                         args.json.with_name(f"{args.json.stem}-{index}.log"), args.code)
        cpu = sum(p["cpu_s"] for p in run["processes"].values())
        rounds.append({"decode_wall_s": dec_wall, "decode_cpu_s": dec_cpu,
                       "curate_wall_s": run["wall_s"], "curate_cpu_s": cpu, "run": run})
        print(f"round {index + 1}: decode {dec_wall:.1f} s wall / {dec_cpu:.1f} s CPU; "
              f"curate {run['wall_s']:.1f} s wall / {cpu:.1f} s CPU", flush=True)
        args.json.write_text(json.dumps({"input": str(film), "cores": cores,
                                         "code": str(args.code),
                                         "rounds": rounds}, indent=1))
    hours = rounds[-1]["run"]["summary"]["accepted_hours"]

    def med(key: str) -> float:
        return statistics.median(r[key] for r in rounds)

    print(f"\ninput {film.name}: {hours * 3600:.0f} s of video; {cores} cores; medians of "
          f"{args.rounds} alternating rounds")
    print("| what | wall s | CPU s | video-h per core-h (wall x cores) | video-h per CPU-h "
          "| ratio to decode, wall x cores | ratio to decode, CPU |")
    print("|---|---|---|---|---|---|---|")
    for name in ("decode", "curate"):
        wall, cpu = med(f"{name}_wall_s"), med(f"{name}_cpu_s")
        print(f"| {name} | {wall:.1f} | {cpu:.1f} | {hours * 3600 / (wall * cores):.2f} "
              f"| {hours * 3600 / cpu:.2f} | {wall / med('decode_wall_s'):.2f} "
              f"| {cpu / med('decode_cpu_s'):.2f} |")
    run = rounds[-1]["run"]
    stage_sum = sum(run["summary"]["stage_seconds"].values())
    print(f"\nPer title, last round (stage wall from summary.json sums to {stage_sum:.0f} s of "
          f"{run['wall_s']:.0f} s; the rest is start-up, hand-offs and shutdown):")
    print("| title | CPU s | stage wall s | video-h per CPU-h |")
    print("|---|---|---|---|")
    for title, row in sorted(run["stages"].items(), key=lambda item: -item[1]["cpu_s"]):
        if row["cpu_s"] >= 0.5:
            wall = stage_wall(run, title)
            print(f"| {title} | {row['cpu_s']:.1f} | {'' if wall is None else f'{wall:.1f}'} "
                  f"| {hours * 3600 / row['cpu_s']:.1f} |")
    print(f"\nJSON: {args.json}")


if __name__ == "__main__":
    main()
