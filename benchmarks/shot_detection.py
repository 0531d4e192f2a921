"""Score shot detectors on the evaluation set of ``tests/shot_eval.py``: hard cuts (precision,
recall, F1), transitions (precision, recall), false cuts on flashes and fast motion, and frames per
second of ``detect_shots`` (wall seconds of one process, films one after another).

The generated films are built once into ``--cache`` (their names hash what makes them); the real
clips (bikes.mp4, trailer_bbb.mp4) are read where they are. A detector name the shot split
config does not accept (its ``detector`` field not there yet, or a name it does not allow) is
reported and skipped. Learned detectors run on the GPU when there is one (``device: auto``).

    python3 -m benchmarks.shot_detection [--detectors content,transnetv2,autoshot,fused]
                                         [--films NAME,...] [--cache DIR] [--json PATH]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pydantic import ValidationError  # noqa: E402

from stages.shot_split.config import ShotSplitConfig  # noqa: E402
from tests.shot_eval import FILMS, build_set  # noqa: E402
from tests.shot_eval_run import FilmResult, detector_config, evaluate, summarize  # noqa: E402

DETECTORS = ("content", "transnetv2", "autoshot", "fused")
DEFAULT_CACHE = Path.home() / ".cache" / "moga-curate" / "shot_eval"
COLUMNS = [("films", "films"), ("frames", "frames"), ("cut_precision", "cut P"),
           ("cut_recall", "cut R"), ("cut_f1", "cut F1"), ("transition_precision", "trans P"),
           ("transition_recall", "trans R"), ("transition_as_cut", "trans as cut"),
           ("false_on_no_cut", "flash/motion false"), ("fps", "fps")]


def configs(names: list[str]) -> tuple[dict[str, ShotSplitConfig], dict[str, str]]:
    """(settings of each detector the config accepts, why each other one is skipped)."""
    accepted, skipped = {}, {}
    for name in names:
        try:
            accepted[name] = detector_config(name)
        except ValidationError as err:
            skipped[name] = err.errors()[0]["msg"]
    return accepted, skipped


def by_category(results: list[FilmResult]) -> dict[str, dict]:
    """Summaries of all films together, then of each category in the set's order."""
    categories = list(dict.fromkeys(result.category for result in results))
    return {"all": summarize(results),
            **{c: summarize(r for r in results if r.category == c) for c in categories}}


def cell(value: float | int | None) -> str:
    """A table cell: counts as they are, ratios to two places, fps to whole frames."""
    if value is None:
        return "–"
    if isinstance(value, int):
        return str(value)
    return f"{value:.0f}" if value > 1 else f"{value:.2f}"


def table(detector: str, rows: dict[str, dict]) -> str:
    """A markdown table of ``rows`` (group: summary) under the detector's name."""
    lines = [f"### {detector}", "",
             "| group (films) | " + " | ".join(title for _, title in COLUMNS[1:]) + " |",
             "|---" * len(COLUMNS) + "|"]
    for group, summary in rows.items():
        lines.append(f"| {group} ({summary['films']}) | "
                     + " | ".join(cell(summary[key]) for key, _ in COLUMNS[1:]) + " |")
    return "\n".join(lines)


def film_lines(results: list[FilmResult]) -> str:
    """One line per film: its boundaries as the detector put them (c: clean, t: transition)."""
    return "\n".join(
        f"- {r.film}: " + ", ".join(f"{b.frame}{b.kind[0]}" + (f"{list(b.span)}" if b.span else "")
                                    for b in r.predicted) for r in results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--detectors", default=",".join(DETECTORS),
                        help="comma-separated names (default: all the config accepts)")
    parser.add_argument("--films", default="", help="comma-separated film names (default: all)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    accepted, skipped = configs([name for name in args.detectors.split(",") if name])
    for name, why in skipped.items():
        print(f"skipped detector {name!r}: {why}")
    wanted = set(args.films.split(",")) - {""}
    films = [film for film in FILMS if not wanted or film.name in wanted]
    started = time.perf_counter()
    paths = build_set(args.cache, films)
    build_seconds = time.perf_counter() - started
    print(f"evaluation set: {len(films)} films, {sum(f.num_frames for f in films)} frames, "
          f"ready in {build_seconds:.1f} s ({args.cache})\n")
    report: dict = {"build_seconds": build_seconds, "skipped": skipped, "detectors": {}}
    for name, config in accepted.items():
        results = evaluate(films, paths, config)
        rows = by_category(results)
        print(table(name, rows) + "\n\n" + film_lines(results) + "\n", flush=True)
        report["detectors"][name] = {
            "summary": rows,
            "films": [dataclasses.asdict(result) for result in results]}
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
