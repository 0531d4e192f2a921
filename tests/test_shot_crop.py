"""Shot crop stage: exact crop geometry, and OCR crops on drawtext videos and a real trailer."""

from __future__ import annotations

import random
from itertools import product
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from media.readers import open_reader
from stages.probe import ProbeConfig, ProbeStage
from stages.shot_crop import stage as shot_crop_stage
from stages.shot_crop.config import ShotCropConfig
from stages.shot_crop.geometry import (
    Rect,
    area,
    even_crop,
    group_by_place,
    intersection,
    largest_crop,
)
from stages.shot_crop.ocr import (
    OcrEngine,
    TextShape,
    build_engine,
    distinct_texts,
    ocr_device,
    read_text,
    text_shape,
)
from stages.shot_crop.places import excluded_places, persistent_places, shot_places
from stages.shot_crop.stage import CropResult, ShotCropStage, crop_shot, shot_frames
from stages.shot_merge import ShotMergeConfig, ShotMergeStage
from stages.video_score import VideoScoreConfig, VideoScoreStage
from tests.media_text import FootageText, TextVideo, make_footage_text_video, make_text_video

TRAILER_CUTS = [12, 240, 336, 593, 769, 864, 900, 988, 1049, 1224]  # as shot_split finds them
SUBTITLED = TextVideo([["HELLO WORLD", "SCENE ONE TEST", "SEE YOU SOON"],
                       ["GOODBYE FRIENDS", "THE END"]], watermark="MOGA TV")
MIDDLE = TextVideo([["SMALL PRINT"]], middle="BREAKING NEWS TONIGHT")
LETTERBOXED = TextVideo([["HELLO WORLD", "IN THE PICTURE"]], bar=40)
# bikes.mp4 at 854x480 under a faint corner watermark (about 170x22 px) that OCR reads on
# some shots and misses on every sampled frame of others (shots 1 and 3, measured)
WATERMARKED = FootageText(["WHERE ARE WE GOING", "TO THE MARKET", "ON OUR BIKES",
                           "IT IS A SUNNY DAY", "SEE YOU LATER"], watermark="MOGA TV 24")
BIKES_CUTS = [30, 76, 137, 187, 242]


# --- geometry: exact answers on a 160x90 frame (aspect 16:9) ---------------------------------

FRAME = (0, 0, 160, 90)


@pytest.mark.parametrize(("bounds", "obstacles", "expected"), [
    pytest.param(FRAME, [], FRAME, id="no-text"),
    # 70 rows: widest w with w * 9 // 16 <= 70 is 126 (126 * 9 / 16 = 70.9); centred across
    pytest.param(FRAME, [(0, 70, 160, 90)], (17, 0, 143, 70), id="bottom-band"),
    pytest.param((0, 10, 160, 80), [], (17, 10, 143, 80), id="letterbox"),
    # left of the watermark (130x72) beats below it (126x70)
    pytest.param(FRAME, [(130, 0, 160, 20)], (0, 9, 130, 81), id="corner-watermark"),
    pytest.param(FRAME, [(50, 35, 110, 55)], (49, 1, 111, 35), id="middle-text"),
    pytest.param(FRAME, [(0, 0, 160, 90)], None, id="all-text"),
])
def test_largest_crop_exact(bounds: Rect, obstacles: list[Rect], expected: Rect | None) -> None:
    assert largest_crop(bounds, obstacles, (16, 9)) == expected


def _brute_force_area(bounds: Rect, obstacles: list[Rect], aspect: tuple[int, int],
                      step: int = 1) -> int:
    """Area of the even-sized crop from the widest free rectangle over every step-th corner."""
    best = 0
    first_x, first_y = -(-bounds[0] // step) * step, -(-bounds[1] // step) * step
    for x, y in product(range(first_x, bounds[2], step), range(first_y, bounds[3], step)):
        for w in range(bounds[2] - x, 0, -1):
            rect = (x, y, x + w, y + w * aspect[1] // aspect[0])
            if rect[3] <= bounds[3] and all(area(intersection(rect, o)) == 0 for o in obstacles):
                even = w // 2 * 2
                best = max(best, even * (even * aspect[1] // aspect[0] // 2 * 2))
                break
    return best


def _random_case(rng: random.Random) -> tuple[tuple[int, int, int, int],
                                             list[tuple[int, int, int, int]], tuple[int, int]]:
    """(bounds, up to four text boxes, aspect) of a small random crop problem."""
    bounds = (rng.randrange(4), rng.randrange(4), rng.randrange(20, 32), rng.randrange(14, 22))
    obstacles = []
    for _ in range(rng.randrange(5)):
        x, y = rng.randrange(32), rng.randrange(22)
        obstacles.append((x, y, x + rng.randrange(1, 12), y + rng.randrange(1, 8)))
    return bounds, obstacles, rng.choice([(16, 9), (4, 3), (1, 1), (9, 16)])


def test_largest_crop_matches_brute_force() -> None:
    rng = random.Random(3)
    for _ in range(60):
        bounds, obstacles, aspect = _random_case(rng)
        crop = largest_crop(bounds, obstacles, aspect)
        assert (area(crop) if crop else 0) == _brute_force_area(bounds, obstacles, aspect)
        if crop:
            assert intersection(crop, bounds) == crop
            assert all(area(intersection(crop, o)) == 0 for o in obstacles)


def test_even_crop_has_even_corners_and_the_largest_such_area() -> None:
    rng = random.Random(5)
    for _ in range(60):
        bounds, obstacles, aspect = _random_case(rng)
        crop = even_crop(bounds, obstacles, aspect)
        inner = (bounds[0] + bounds[0] % 2, bounds[1] + bounds[1] % 2, bounds[2] // 2 * 2,
                 bounds[3] // 2 * 2)
        grown = [(o[0] // 2 * 2, o[1] // 2 * 2, o[2] + o[2] % 2, o[3] + o[3] % 2)
                 for o in obstacles]
        assert (area(crop) if crop else 0) == _brute_force_area(inner, grown, aspect, 2)
        if crop:
            assert all(v % 2 == 0 for v in crop) and intersection(crop, bounds) == crop
            assert all(area(intersection(crop, o)) == 0 for o in obstacles)


def test_boxes_group_by_place_across_frames() -> None:
    boxes = [
        (0, (200, 300, 440, 340)), (1, (150, 302, 490, 338)), (2, (230, 300, 410, 341)),  # band
        (0, (560, 10, 630, 30)), (2, (561, 11, 629, 31)),  # watermark, missed on frame 1
        (1, (20, 100, 60, 120)),  # seen once
    ]
    assert group_by_place(boxes, 0.5) == [[0, 1, 2], [3, 4], [5]]


def _crop_alone(reads: list[tuple[int, Rect, str]], frames: int, config: ShotCropConfig) -> dict:
    """A 640x360 shot's columns from its reads, with no text from other shots."""
    places = excluded_places(shot_places(reads, config.same_place_overlap), [], config)
    return crop_shot(places, frames, (0, 0, 640, 360), (640, 360), config)


def test_transient_text_is_excluded_unless_configured_off() -> None:
    reads = [(0, (0, 300, 640, 360), "BAND"), (1, (0, 300, 640, 360), "BAND"),
             (1, (300, 0, 340, 40), "LOGO")]  # the logo is seen on one of two frames
    safe = _crop_alone(reads, 2, ShotCropConfig(read_text=True))
    assert safe["ocr_texts"] == ["BAND", "LOGO"] and safe["ocr_seen"] == [2, 1]
    assert safe["crop_obstacles"] == [[0, 292, 640, 360], [292, 0, 348, 48]]  # 8 px margin
    unread = _crop_alone([(f, box, "") for f, box, _ in reads], 2, ShotCropConfig())
    assert unread == dict(safe, ocr_texts=None)  # the boxes alone decide the crop
    lenient = _crop_alone(reads, 2, ShotCropConfig(exclude_transient=False, read_text=True))
    assert lenient["ocr_texts"] == ["BAND"]
    assert lenient["crop_w"] * lenient["crop_h"] > safe["crop_w"] * safe["crop_h"]


def test_text_read_in_several_shots_is_excluded_from_every_shot() -> None:
    config = ShotCropConfig(exclude_transient=False, read_text=True)
    shots = [shot_places(reads, 0.5) for reads in [
        [(0, (700, 10, 840, 36), "MOGA TV 24"), (1, (702, 12, 838, 35), "MOGA TV 24"),
         (1, (300, 420, 560, 450), "HELLO")],
        [(5, (280, 420, 580, 450), "GOODBYE")],  # the watermark missed on every frame
        [(9, (698, 11, 839, 37), "Moga TV 24."), (9, (300, 420, 560, 450), "SO LONG")],
        [(12, (300, 200, 560, 240), "HELLO"), (13, (704, 12, 836, 34), "MOGA TV 24")],
    ]]
    # the watermark, not the changing subtitles nor a word read at two places
    (video,) = persistent_places(shots, config)
    assert video.box == (698, 10, 840, 37) and not video.frames
    missed = excluded_places(shots[1], [video], config)
    assert [(p.box, len(p.frames)) for p in missed] == [((698, 10, 840, 37), 0)]
    seen_once = excluded_places(shots[3], [video], config)  # transient, yet the video's text
    assert [(p.box, len(p.frames)) for p in seen_once] == [((698, 10, 840, 37), 1)]
    assert persistent_places(shots, ShotCropConfig(min_static_shots=4)) == []
    assert persistent_places(shots, ShotCropConfig(min_static_shots=0)) == []


def test_unread_text_at_one_place_in_several_shots_is_the_videos() -> None:
    """Without recognition a place is the video's text by place alone: the watermark and the
    subtitle band, each seen in two shots; not the caption seen once mid-frame."""
    config = ShotCropConfig(exclude_transient=False)
    shots = [shot_places(reads, 0.5) for reads in [
        [(0, (700, 10, 840, 36), ""), (1, (300, 420, 560, 450), "")],
        [(5, (280, 420, 580, 450), "")],
        [(9, (698, 11, 839, 37), ""), (9, (300, 200, 560, 240), "")],
    ]]
    found = sorted(p.box for p in persistent_places(shots, config))
    assert found == [(280, 420, 580, 450), (698, 10, 840, 37)]


def test_a_films_title_in_a_few_shots_is_not_the_videos_text() -> None:
    """Opening titles at one place in 2 of 60 shots (the BBB film's case: 3 of 135) stay their
    shots'; the same 2 shots of 10 are the video's text."""
    title = shot_places([(0, (306, 288, 956, 360), ""), (1, (310, 290, 950, 358), "")], 0.5)
    shots = [title, title] + [[] for _ in range(58)]
    assert persistent_places(shots, ShotCropConfig()) == []
    assert [p.box for p in persistent_places(shots[:10], ShotCropConfig())] == [
        (306, 288, 956, 360)]
    assert persistent_places(shots[:10], ShotCropConfig(min_static_share=0.3)) == []


def test_the_videos_text_never_drops_a_shot_that_did_not_show_it() -> None:
    """Text at mid-frame in two shots of three is the video's; the third shot, whose frames
    did not show it, keeps its whole frame instead of being dropped; the corner text it shares
    with them is still excluded."""
    stage = ShotCropStage(ShotCropConfig())
    centre, corner = (200, 150, 1080, 570), (1100, 10, 1270, 40)
    seen = [(f, box, "") for f in (0, 1) for box in (centre, corner)]
    record = {"width": 1280, "height": 720,
              "shots": [{"shot_index": i, "start_frame": 10 * i, "end_frame": 10 * i + 10}
                        for i in range(3)]}
    result = CropResult([(0, 2, shot_places(seen, 0.5)), (1, 2, shot_places(seen, 0.5)),
                         (2, 2, shot_places([(0, corner, "")], 0.5))], "cpu")
    shots = stage.join(record, [result])["shots"]
    assert [s.get("drop_rule") for s in shots] == ["text_covers_frame"] * 2 + [None]
    assert shots[2]["ocr_boxes"] == [list(corner)]
    assert shots[2]["crop_kept_fraction"] == pytest.approx((720 - 48) ** 2 / 720**2, abs=0.01)


class _ListedBoxes:
    """An OCR engine that finds ``boxes`` and reads each crop by its size from ``reads``."""

    name, device = "listed", "cpu"

    def __init__(self, boxes: list[Rect], reads: dict[tuple[int, int], tuple[str, float]]):
        self.boxes, self.reads, self.asked = boxes, reads, []

    def detect(self, image: np.ndarray) -> list[Rect]:
        return self.boxes

    def recognize(self, crops: list[np.ndarray]) -> list[tuple[str, float]]:
        self.asked += [c.shape[:2] for c in crops]
        return [self.reads[c.shape[:2]] for c in crops]


def test_doubtful_boxes_are_kept_only_when_recognition_reads_text() -> None:
    """The BBB film's boxes at 640x360 (measured): a subtitle line is kept unread; its two-line
    title (0.51 high, 1.89 wide, read 0.81) is kept; grass read at 0.16 and a one-letter read
    are dropped; a box 0.8 of the frame high is never asked."""
    line, title, grass, letter, tall = ((100, 300, 540, 330), (155, 47, 500, 230),
                                        (176, 71, 489, 249), (244, 119, 265, 131),
                                        (10, 20, 300, 308))
    assert [text_shape(b, 360) for b in (line, title, grass, letter, tall)] == [
        TextShape.LINE, TextShape.DOUBTFUL, TextShape.DOUBTFUL, TextShape.DOUBTFUL,
        TextShape.TEXTURE]
    engine = _ListedBoxes([line, title, grass, letter, tall],
                          {(183, 345): ("BUNKY", 0.81), (178, 313): ("中", 0.16),
                           (12, 21): ("A", 0.80), (30, 440): ("HELLO WORLD", 0.95)})
    frame = np.zeros((360, 640, 3), np.uint8)
    found = read_text(engine, frame, ShotCropConfig())
    assert [(t.box, t.text) for t in found] == [(line, ""), (title, "")]
    assert engine.asked == [(183, 345), (178, 313), (12, 21)]  # not the line, not the tall box
    engine.asked = []
    found = read_text(engine, frame, ShotCropConfig(read_text=True))
    assert [(t.box, t.text) for t in found] == [(line, "HELLO WORLD"), (title, "BUNKY")]
    assert len(engine.asked) == 4


def test_distinct_texts_merge_noisy_reads_of_one_line() -> None:
    reads = ["A (slightly overweight) bunny", "A (slightl", "yeight) bunny", "THE END",
             "Revenge is coming..", "Revenge is coming..."]
    assert distinct_texts(reads) == ["A (slightly overweight) bunny", "THE END",
                                     "Revenge is coming..."]


def test_shot_frames_avoid_the_ends_and_stay_decodable() -> None:
    assert shot_frames({"start_frame": 48, "end_frame": 96}, 3, 96) == [56, 72, 88]
    assert shot_frames({"start_frame": 10, "end_frame": 12}, 3, 100) == [10, 11]
    assert shot_frames({"start_frame": 90, "end_frame": 101}, 1, 95) == [92]


def test_paddleocr_needs_local_model_dirs() -> None:
    with pytest.raises(ValidationError, match="paddle_det_model_dir"):
        ShotCropConfig(engine="paddleocr")
    with pytest.raises(ValidationError, match="extra"):
        ShotCropConfig(frames=3)


# --- the stage on real media ----------------------------------------------------------------

@pytest.fixture(scope="module")
def stage() -> ShotCropStage:
    """The default: detection only (the crop needs boxes, not words)."""
    built = ShotCropStage(ShotCropConfig())
    built.setup()
    return built


@pytest.fixture(scope="module")
def reading_stage() -> ShotCropStage:
    """With recognition: ``ocr_texts`` filled, persistent text matched by its words."""
    built = ShotCropStage(ShotCropConfig(read_text=True))
    built.setup()
    return built


@pytest.fixture(scope="module")
def text_videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """name -> (video, its text mask) for the drawtext videos."""
    root = tmp_path_factory.mktemp("text")
    videos = {}
    for name, spec in (("subtitled", SUBTITLED), ("middle", MIDDLE), ("letterboxed", LETTERBOXED)):
        video, mask = root / f"{name}.mp4", root / f"{name}-mask.mp4"
        make_text_video(video, spec)
        make_text_video(mask, spec, mask=True)
        videos[name] = (video, mask)
    return videos


@pytest.fixture(scope="module")
def watermarked(bikes: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(video, its text mask) of :data:`WATERMARKED` over bikes.mp4's 250 frames."""
    root = tmp_path_factory.mktemp("watermarked")
    video, mask = root / "watermarked.mp4", root / "watermarked-mask.mp4"
    make_footage_text_video(video, bikes, 250, WATERMARKED)
    make_footage_text_video(mask, bikes, 250, WATERMARKED, mask=True)
    return video, mask


def _record(path: Path, cuts: list[int]) -> dict:
    """A record as the shot stages get it: probed, scored, with shots between ``cuts``."""
    record = ProbeStage(ProbeConfig()).process({"path": str(path), "status": "pending"})
    record = VideoScoreStage(VideoScoreConfig()).process(record)
    bounds = [0, *cuts, record["num_frames"]]
    record["shots"] = [{"shot_index": i, "start_frame": a, "end_frame": b}
                       for i, (a, b) in enumerate(zip(bounds, bounds[1:], strict=False))]
    return record


def _text_mask(mask_video: Path, shot: dict) -> np.ndarray:
    """(H, W): where any frame of ``shot`` shows text."""
    frames = open_reader(str(mask_video)).frames_at(list(range(shot["start_frame"],
                                                              shot["end_frame"])))
    return frames.max(axis=3).max(axis=0) > 0


def _squeezed(texts: list[str]) -> str:
    """All reads in one string without spaces (small text sometimes loses them)."""
    return "|".join(texts).replace(" ", "")


def _crop(shot: dict) -> Rect:
    return (shot["crop_x"], shot["crop_y"], shot["crop_x"] + shot["crop_w"],
            shot["crop_y"] + shot["crop_h"])


def _assert_source_aspect(shot: dict, width: int, height: int) -> None:
    assert shot["crop_w"] % 2 == 0 and shot["crop_h"] % 2 == 0
    assert abs(shot["crop_w"] / shot["crop_h"] - width / height) < 0.01 * width / height
    kept = shot["crop_w"] * shot["crop_h"] / (width * height)
    assert shot["crop_kept_fraction"] == round(kept, 6)


@pytest.mark.parametrize("read", [False, True], ids=["boxes", "read"])
def test_subtitles_and_watermark_are_cropped_out(
    read: bool, request: pytest.FixtureRequest, text_videos: dict[str, tuple[Path, Path]]
) -> None:
    stage = request.getfixturevalue("reading_stage" if read else "stage")
    video, mask = text_videos["subtitled"]
    record = stage.process(_record(video, SUBTITLED.cuts))
    assert record["status"] == "pending" and record["ocr_engine"] == "rapidocr"
    assert record["ocr_device"] == ocr_device("auto")  # cpu here: the CPU onnxruntime wheel
    for shot, lines in zip(record["shots"], SUBTITLED.subtitles, strict=True):
        assert shot.get("kept", True) and shot["crop_kept_fraction"] >= 0.5  # measured 0.62
        x0, y0, x1, y1 = _crop(shot)
        assert not _text_mask(mask, shot)[y0:y1, x0:x1].any()
        _assert_source_aspect(shot, 640, 360)
        if read:
            texts = _squeezed(shot["ocr_texts"])
            assert all(line.replace(" ", "") in texts for line in lines + ["MOGA TV"])
        else:
            assert shot["ocr_texts"] is None
        assert shot["ocr_seen"] == [3, 3] and shot["ocr_frames"] == 3  # band and watermark


def test_text_over_the_middle_drops_the_shot(
    stage: ShotCropStage, text_videos: dict[str, tuple[Path, Path]]
) -> None:
    video, mask = text_videos["middle"]
    (shot,) = stage.process(_record(video, MIDDLE.cuts))["shots"]
    assert shot["kept"] is False and shot["drop_rule"] == "text_covers_frame"
    assert float(shot["drop_value"]) == shot["crop_kept_fraction"] < 0.25  # measured 0.18
    x0, y0, x1, y1 = _crop(shot)
    assert not _text_mask(mask, shot)[y0:y1, x0:x1].any()


def test_crop_stays_inside_the_letterbox(
    stage: ShotCropStage, text_videos: dict[str, tuple[Path, Path]]
) -> None:
    video, mask = text_videos["letterboxed"]
    record = stage.process(_record(video, LETTERBOXED.cuts))
    (shot,) = record["shots"]
    assert (record["border_y"], record["border_h"]) == (40, 280)
    x0, y0, x1, y1 = _crop(shot)
    assert y0 >= 40 and y1 <= 320 and y1 - y0 >= 200
    assert not _text_mask(mask, shot)[y0:y1, x0:x1].any()
    _assert_source_aspect(shot, 640, 360)


@pytest.mark.parametrize("read", [False, True], ids=["boxes", "read"])
def test_trailer_captions_are_found_and_excluded(
        read: bool, request: pytest.FixtureRequest, trailer: Path) -> None:
    stage = request.getfixturevalue("reading_stage" if read else "stage")
    shots = stage.process(_record(trailer, TRAILER_CUTS))["shots"]
    assert all("crop_kept_fraction" in s for s in shots)
    if read:
        texts = _squeezed([t for s in shots for t in s["ocr_texts"]])
        for caption in ("Anunluckybird", "Andthreerodentpests", "Revengeiscoming"):
            assert caption in texts
    for shot in shots:
        crop = _crop(shot)
        assert all(area(intersection(crop, tuple(b))) == 0 for b in shot["ocr_boxes"])
        if shot["ocr_boxes"]:
            _assert_source_aspect(shot, 1280, 720)
        else:
            assert crop == (0, 0, 1280, 720)
        assert shot.get("kept", True) == (shot["crop_kept_fraction"] >= 0.5)
    assert sum(not s.get("kept", True) for s in shots) >= 4  # the captions sit mid-frame


def test_faint_watermark_stays_out_of_every_sample(
    stage: ShotCropStage, watermarked: tuple[Path, Path]
) -> None:
    video, mask = watermarked
    record = dict(stage.process(_record(video, BIKES_CUTS)), video_id="w")
    corner = [[n for box, n in zip(s["ocr_boxes"], s["ocr_seen"], strict=True) if box[1] < 60]
              for s in record["shots"]]
    assert [0] in corner and [3] in corner  # read on every frame of some shots, none of others
    missed = corner.index([0])  # a shot that missed it, alone: its neighbours dropped
    alone = dict(record, shots=[dict(s, kept=s["shot_index"] == missed) for s in record["shots"]])
    merge = ShotMergeStage(ShotMergeConfig(min_sample_s=0))  # shot 1 lasts 1.84 s
    merged = [merge.process(r) for r in (record, alone)]
    assert [[s["shot_indices"] for s in r["samples"]] for r in merged] == [
        [[0, 1, 2, 3, 4, 5]], [[missed]]]
    for sample in (s for r in merged for s in r["samples"]):
        for shot in (record["shots"][i] for i in sample["shot_indices"]):
            text = _text_mask(mask, shot)
            for x0, y0, x1, y1 in (_crop(sample), _crop(shot)):
                assert not text[y0:y1, x0:x1].any()
        _assert_source_aspect(sample, 854, 480)
        assert sample["crop_kept_fraction"] >= 0.55  # measured 0.589


def test_ocr_reads_few_small_frames_and_recognises_only_boxes_when_asked(
    text_videos: dict[str, tuple[Path, Path]], monkeypatch: pytest.MonkeyPatch
) -> None:
    shapes: list[tuple[int, ...]] = []
    boxes: list[int] = []
    crops: list[int] = []

    class Counting:
        def __init__(self, engine: OcrEngine) -> None:
            self.name, self.device, self._engine = engine.name, engine.device, engine

        def detect(self, image: np.ndarray) -> list[Rect]:
            found = self._engine.detect(image)
            shapes.append(image.shape)
            boxes.append(len(found))
            return found

        def recognize(self, images: list[np.ndarray]) -> list[tuple[str, float]]:
            crops.append(len(images))
            return self._engine.recognize(images)

    monkeypatch.setattr(shot_crop_stage, "build_engine", lambda c: Counting(build_engine(c)))
    for read in (False, True):
        shapes.clear(), boxes.clear(), crops.clear()
        counting = ShotCropStage(ShotCropConfig(detect_width=480, frames_per_shot=2,
                                                read_text=read))
        counting.setup()
        counting.process(_record(text_videos["subtitled"][0], SUBTITLED.cuts))
        assert shapes == [(272, 480, 3)] * 4  # 2 shots x 2 frames, at the detect width
        assert sum(boxes) >= 4
        assert crops == ([n for n in boxes if n] if read else [])  # recognition only if asked


def test_unreadable_video_fails_with_decode_error(stage: ShotCropStage, tmp_path: Path) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 4096)
    record = {"path": str(broken), "status": "pending", "width": 640, "height": 360, "fps": 24.0,
              "border_w": 0, "shots": [{"shot_index": 0, "start_frame": 0, "end_frame": 24}]}
    record = stage.process(record)
    assert record["status"] == "failed" and record["reject_rule"] == "decode_error"


def test_dropped_shots_are_left_alone(stage: ShotCropStage, text_videos: dict) -> None:
    record = _record(text_videos["subtitled"][0], SUBTITLED.cuts)
    record["shots"][0]["kept"] = False
    record = stage.process(record)
    assert "crop_w" not in record["shots"][0] and record["shots"][1]["crop_w"] > 0


def test_ocr_runs_on_the_gpu_only_where_onnxruntime_and_the_worker_have_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import onnxruntime
    import torch

    assert ocr_device("cpu") == "cpu" and ocr_device("cuda") == "cuda"
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert ocr_device("auto") == "cpu"  # the CPU-only onnxruntime wheel: no CUDA provider
    monkeypatch.setattr(onnxruntime, "get_available_providers",
                        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert ocr_device("auto") == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert ocr_device("auto") == "cpu"  # a worker Ray gave no GPU
