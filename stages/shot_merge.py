"""Shot merge stage: adjacent kept shots of one video become samples of about a minute.

Samples are contiguous spans of the source, cut only at shot boundaries: shots are packed in
order until the sample reaches ``target_s``, and a shot that would push it past ``max_s`` starts
the next sample. A dropped shot breaks the run. At each sample end that falls on a fade or dissolve,
the blended frames are trimmed so the sample starts and ends clean. The sample is cropped with one
rectangle: the largest source-aspect rectangle of the active picture (inside the black borders)
clear of every text place any of its shots excludes (their ``crop_obstacles``, from the OCR crop
stage), so text read on any sampled frame of any of its shots stays out; a shot whose text would
shrink it below ``min_crop_fraction`` starts a new sample. A single shot longer than ``max_s`` is
split into equal pieces (``split_long_shots``) or dropped.

Writes ``samples`` (one dict per sample, spans in source frames) and ``sample_index`` on each
shot that landed in a sample; kept shots that could not form a long enough sample are dropped with
rule ``min_sample_s``.
"""

from __future__ import annotations

import math
from enum import StrEnum
from typing import ClassVar, NamedTuple

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, model_validator

from stages.base import ConfiguredStage
from stages.records import Column, Record, drop_shot
from stages.resources import Resources
from stages.shot_crop.geometry import active_picture, even_crop

Rect = tuple[int, int, int, int]  # x, y, w, h in source pixels


class ShotMergeConfig(BaseModel):
    """How shots are packed into samples."""

    model_config = ConfigDict(extra="forbid")

    target_s: float = Field(60.0, gt=0, description="Close a sample once it is this long.")
    max_s: float = Field(65.0, gt=0, description="No sample is longer than this.")
    min_sample_s: float = Field(2.0, ge=0, description="Shorter samples are not written.")
    min_crop_fraction: float = Field(0.5, ge=0, le=1, description="Smallest share of the frame "
                                     "the sample's common crop may keep.")
    split_long_shots: bool = Field(True, description="Split a shot longer than max_s into "
                                   "pieces (otherwise drop it).")
    resources: Resources = Resources(num_cpus=0.1)

    @model_validator(mode="after")
    def _target_within_max(self) -> ShotMergeConfig:
        if self.target_s > self.max_s:
            raise ValueError(f"target_s ({self.target_s}) is above max_s ({self.max_s})")
        return self


class ShotMergeRule(StrEnum):
    """Why the merge drops a shot."""

    MIN_SAMPLE_S = "min_sample_s"  # its run of adjacent shots is shorter than a sample
    SPLIT_LONG_SHOTS = "split_long_shots"  # the part of a long shot that fits no sample


class ShotMergeStage(ConfiguredStage[ShotMergeConfig]):
    """Plans the samples of one video from its kept shots."""

    name: ClassVar[str] = "shot_merge"
    rules: ClassVar[type[StrEnum]] = ShotMergeRule
    columns: ClassVar[tuple[Column, ...]] = (
        Column("num_samples", pa.int32(), "samples planned from the video"),
        Column("samples", None, "the planned samples: OUT/clips_index and the shards"),
    )
    shot_columns: ClassVar[tuple[Column, ...]] = (
        Column("sample_index", pa.int32(), "the sample the shot landed in"),
    )

    def process(self, record: Record) -> Record:
        """Add ``samples`` to ``record``."""
        fps = float(record["fps"])
        picture = Picture(active_picture(record), (record["width"], record["height"]))
        groups: list[list[dict]] = []
        for run in kept_runs(record.get("shots") or []):
            groups += self._pack(run, fps, picture)
        samples = []
        for group in groups:
            sample = make_sample(group, fps, picture)
            seconds = (sample["end_frame"] - sample["start_frame"]) / fps
            originals = [shot.get("original", shot) for shot in group]
            if seconds < self.config.min_sample_s:
                for shot in originals:
                    drop_shot(shot, self.name, ShotMergeRule.MIN_SAMPLE_S, round(seconds, 3),
                              f"its sample would last {seconds:.2f} s < "
                              f"{self.config.min_sample_s:g} s")
                continue
            sample["sample_index"] = len(samples)
            sample["sample_id"] = f"{record['video_id']}-{len(samples):04d}"
            for shot in originals:
                shot.setdefault("sample_index", sample["sample_index"])
            samples.append(sample)
        record["samples"] = samples
        record["num_samples"] = len(samples)
        return record

    def _pack(self, run: list[dict], fps: float, picture: Picture) -> list[list[dict]]:
        """Greedy packing of one run of adjacent kept shots into sample groups."""
        groups: list[list[dict]] = []
        current: list[dict] = []
        for shot in run:
            start, end = trimmed_span([shot])
            if (end - start) / fps > self.config.max_s:
                groups += [current] if current else []
                current = []
                groups += self._split_long(shot, fps)
                continue
            candidate = [*current, shot]
            start, end = trimmed_span(candidate)
            fits = (end - start) / fps <= self.config.max_s and crop_fraction(
                common_crop(candidate, picture), picture.frame) >= self.config.min_crop_fraction
            if not fits and current:
                groups.append(current)
                candidate = [shot]
                start, end = trimmed_span(candidate)
            current = candidate
            if (end - start) / fps >= self.config.target_s:
                groups.append(current)
                current = []
        return groups + ([current] if current else [])

    def _split_long(self, shot: dict, fps: float) -> list[list[dict]]:
        """Equal pieces (at most ``max_s`` each) of a too-long shot, or none if splitting is off."""
        start, end = trimmed_span([shot])
        seconds = (end - start) / fps
        if not self.config.split_long_shots:
            drop_shot(shot, self.name, ShotMergeRule.SPLIT_LONG_SHOTS, round(seconds, 3),
                      f"the shot lasts {seconds:.1f} s > max_s {self.config.max_s:g} s")
            return []
        pieces = math.ceil(seconds / self.config.target_s)
        edges = [start + round(k * (end - start) / pieces) for k in range(pieces + 1)]
        return [[dict(shot, piece_start=a, piece_end=b, original=shot)]
                for a, b in zip(edges, edges[1:], strict=False)]


def kept_runs(shots: list[dict]) -> list[list[dict]]:
    """Maximal runs of consecutive kept shots."""
    runs: list[list[dict]] = [[]]
    for shot in shots:
        if shot.get("kept", True):
            runs[-1].append(shot)
        elif runs[-1]:
            runs.append([])
    return [run for run in runs if run]


def trimmed_span(group: list[dict]) -> tuple[int, int]:
    """Source frames ``[start, end)`` of a group with blended frames trimmed at both ends."""
    first, last = group[0], group[-1]
    if "piece_start" in first:
        return first["piece_start"], first["piece_end"]
    start = first["start_frame"]
    if first.get("boundary_in") == "transition" and first.get("transition_in_end") is not None:
        start = max(start, min(first["transition_in_end"], last["end_frame"] - 1))
    end = last["end_frame"]
    if last.get("boundary_out") == "transition" and last.get("transition_out_start") is not None:
        end = min(end, max(last["transition_out_start"], start + 1))
    return start, end


class Picture(NamedTuple):
    """Where a video's samples may crop: its active picture (x0, y0, x1, y1, inside the black
    borders) and its frame (width, height), whose aspect every crop keeps."""

    active: tuple[int, int, int, int]
    frame: tuple[int, int]


def common_crop(group: list[dict], picture: Picture) -> Rect:
    """The largest rectangle of the frame's aspect in the active picture that keeps clear of
    every shot's ``crop_obstacles``, with even corners (for 4:2:0 video); all zeros when none
    fits."""
    obstacles = {tuple(int(v) for v in o) for shot in group
                 for o in _listed(shot.get("crop_obstacles"))}
    crop = even_crop(picture.active, sorted(obstacles), picture.frame)
    return (0, 0, 0, 0) if crop is None else (crop[0], crop[1], crop[2] - crop[0],
                                              crop[3] - crop[1])


def _listed(value: object) -> list:
    """A list column's value as a list (None: empty)."""
    return [] if value is None else list(value)


def crop_fraction(rect: Rect, frame: tuple[int, int]) -> float:
    """Share of the frame's area that ``rect`` keeps."""
    return rect[2] * rect[3] / float(frame[0] * frame[1])


def make_sample(group: list[dict], fps: float, picture: Picture) -> dict:
    """The sample dict of a packed group: span, per-shot spans and the common crop."""
    start, end = trimmed_span(group)
    shots = [shot.get("original", shot) for shot in group]
    spans = [[max(start, s["start_frame"]), min(end, s["end_frame"])] for s in shots]
    if "piece_start" in group[0]:
        spans = [[start, end]]
    x, y, w, h = common_crop(group, picture)
    return {
        "start_frame": start,
        "end_frame": end,
        "shot_indices": [s["shot_index"] for s in shots],
        "shot_spans": spans,
        "crop_x": x, "crop_y": y, "crop_w": w, "crop_h": h,
        "crop_kept_fraction": round(crop_fraction((x, y, w, h), picture.frame), 6),
        "split_shot": "piece_start" in group[0],
    }
