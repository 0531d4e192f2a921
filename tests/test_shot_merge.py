"""Shot merge: packing adjacent kept shots into samples of at most max_s, cut at boundaries."""

from __future__ import annotations

from stages.shot_crop.geometry import area, intersection
from stages.shot_merge import ShotMergeConfig, ShotMergeStage

FPS = 24.0
FRAME = (640, 360)


def _shots(lengths_s: list[float], kept: list[bool] | None = None) -> list[dict]:
    shots, start = [], 0
    for i, seconds in enumerate(lengths_s):
        end = start + int(seconds * FPS)
        shots.append({"shot_index": i, "start_frame": start, "end_frame": end,
                      "boundary_in": "clean", "boundary_out": "clean",
                      "kept": True if kept is None else kept[i]})
        start = end
    return shots


def _merge(shots: list[dict], border: dict | None = None, **config: object) -> dict:
    record = {"video_id": "v", "fps": FPS, "width": FRAME[0], "height": FRAME[1], "shots": shots,
              **(border or {})}
    return ShotMergeStage(ShotMergeConfig(**config)).process(record)


def test_samples_never_exceed_max_and_cut_only_at_boundaries() -> None:
    shots = _shots([20, 25, 18, 30, 12, 40, 9, 22])
    samples = _merge(shots)["samples"]
    starts = {s["start_frame"] for s in shots}
    ends = {s["end_frame"] for s in shots}
    assert len(samples) >= 3
    for sample in samples:
        assert (sample["end_frame"] - sample["start_frame"]) / FPS <= 65.0
        assert sample["start_frame"] in starts and sample["end_frame"] in ends
    covered = [i for s in samples for i in s["shot_indices"]]
    assert covered == list(range(len(shots)))  # every kept shot lands once, in order


def test_a_dropped_shot_breaks_the_run() -> None:
    shots = _shots([10, 10, 10, 10], kept=[True, False, True, True])
    samples = _merge(shots)["samples"]
    assert [s["shot_indices"] for s in samples] == [[0], [2, 3]]
    assert shots[1].get("sample_index") is None


def test_transition_frames_trimmed_at_sample_ends() -> None:
    shots = _shots([10, 10])
    shots[0].update(boundary_in="transition", transition_in_start=0, transition_in_end=12)
    shots[1].update(boundary_out="transition", transition_out_start=400, transition_out_end=480)
    sample = _merge(shots)["samples"][0]
    assert sample["start_frame"] == 12 and sample["end_frame"] == 400
    assert sample["shot_spans"] == [[12, 240], [240, 400]]


def test_long_shot_is_split_or_dropped() -> None:
    samples = _merge(_shots([150]))["samples"]
    assert [(s["end_frame"] - s["start_frame"]) / FPS for s in samples] == [50.0, 50.0, 50.0]
    assert all(s["split_shot"] for s in samples)
    shots = _shots([150])
    assert _merge(shots, split_long_shots=False)["samples"] == []
    assert shots[0]["kept"] is False and shots[0]["drop_rule"] == "split_long_shots"


def test_short_leftover_is_dropped_with_reason() -> None:
    shots = _shots([1.0])
    assert _merge(shots, min_sample_s=2.0)["samples"] == []
    assert shots[0]["reason"].startswith("shot_merge.min_sample_s")


def test_sample_crop_avoids_the_text_of_every_shot_and_keeps_the_most() -> None:
    shots = _shots([10, 10, 10])
    shots[0]["crop_obstacles"] = [[520, 0, 640, 40]]  # a watermark read on this shot only
    shots[1]["crop_obstacles"] = [[100, 310, 540, 360]]  # a subtitle
    (sample,) = _merge(shots)["samples"]
    x, y, w, h = sample["crop_x"], sample["crop_y"], sample["crop_w"], sample["crop_h"]
    assert all(area(intersection((x, y, x + w, y + h), tuple(o))) == 0
               for shot in shots[:2] for o in shot["crop_obstacles"])
    # left of the watermark and above the subtitle; the largest crop inside both shots' own
    # crops (570x320 below the watermark, 552x310 above the subtitle) keeps only 480x270
    assert (x, y, w, h) == (0, 18, 520, 292) and x % 2 == y % 2 == 0
    letterboxed = _merge(_shots([10]), {"border_x": 0, "border_y": 40, "border_w": 640,
                                         "border_h": 280})["samples"][0]
    assert (letterboxed["crop_y"], letterboxed["crop_h"]) == (40, 280)


def test_crop_that_shrinks_too_much_starts_a_new_sample() -> None:
    shots = _shots([10, 10])
    shots[1]["crop_obstacles"] = [[0, 0, 640, 200]]  # keeps 284x160 below
    samples = _merge(shots, min_crop_fraction=0.5)["samples"]
    assert [s["shot_indices"] for s in samples] == [[0], [1]]
