"""Runs shot detectors over the evaluation set of :mod:`tests.shot_eval`: scored, timed and
summed into precision, recall and frames per second."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from stages.probe import ProbeConfig, ProbeStage
from stages.shot_split.config import ShotSplitConfig
from stages.shot_split.stage import detect_shots
from tests.shot_eval import Counts, Film, Predicted, predicted_boundaries, score_film


def ratio(part: int, whole: int) -> float | None:
    """``part / whole``, None when ``whole`` is 0."""
    return part / whole if whole else None


@dataclass(frozen=True)
class FilmResult:
    """One detector's boundaries on one film, their counts and the time it took."""

    film: str
    category: str
    predicted: tuple[Predicted, ...]
    counts: Counts
    frames: int
    seconds: float


def detector_config(detector: str | None) -> ShotSplitConfig:
    """Shot split settings for ``detector`` (None: the defaults); a name the ``detector``
    field does not allow raises pydantic's ValidationError."""
    if detector is None:
        return ShotSplitConfig()
    return ShotSplitConfig.model_validate({"detector": detector})


def run_film(film: Film, path: Path, config: ShotSplitConfig) -> FilmResult:
    """``detect_shots`` on ``film`` (at ``path``) with ``config``, scored and timed."""
    record = ProbeStage(ProbeConfig()).process({"path": str(path), "status": "pending"})
    started = time.perf_counter()
    shots, frames, _ = detect_shots(str(path), record["width"], record["height"], record["fps"],
                                    config)
    seconds = time.perf_counter() - started
    predicted = predicted_boundaries(shots)
    return FilmResult(film.name, film.category, tuple(predicted), score_film(film, predicted),
                      frames, seconds)


def evaluate(films: Sequence[Film], paths: dict[str, Path],
             config: ShotSplitConfig) -> list[FilmResult]:
    """Every film of ``films`` (files in ``paths``) through one detector, one after another."""
    return [run_film(film, paths[film.name], config) for film in films]


def summarize(results: Iterable[FilmResult]) -> dict[str, float | int | None]:
    """Cut precision / recall / F1, transition precision / recall, transitions taken for cuts,
    false boundaries on flashes and fast motion, and frames per second of ``results`` together
    (None where nothing was there to measure)."""
    results = list(results)
    c = sum((r.counts for r in results), Counts())
    frames, seconds = sum(r.frames for r in results), sum(r.seconds for r in results)
    return {
        "cut_precision": ratio(c.found_cuts, c.predicted_cuts),
        "cut_recall": ratio(c.found_cuts, c.true_cuts),
        "cut_f1": ratio(2 * c.found_cuts, c.true_cuts + c.predicted_cuts),
        "transition_precision": ratio(c.found_transitions, c.predicted_transitions),
        "transition_recall": ratio(c.found_transitions, c.true_transitions),
        "transition_as_cut": c.transition_as_cut,
        "false_on_no_cut": c.false_on_no_cut,
        "films": len(results),
        "frames": frames,
        "fps": frames / seconds if seconds > 0 else None,
    }
