"""Caption stage: the real transformers path on a tiny random Qwen2.5-VL, and preflight errors.

The tiny model (tests/tiny_models.py) writes gibberish; these tests check the path: captions are
produced for exactly the shots in samples and for each sample, batching does not change them,
greedy decoding repeats them, and the model and prompt version are recorded.
"""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from media.readers import open_reader
from models.encoders import EncoderConfig
from stages.shot_caption.captioner import CaptionPreflightError, describe_model, preflight
from stages.shot_caption.config import ShotCaptionConfig
from stages.shot_caption.stage import (
    CaptionJob,
    ShotCaptionStage,
    chunk_jobs,
    decode_clips,
    fit_pixels,
    plan_jobs,
    scale_crop,
    spread_indices,
)
from tests import media
from tests.tiny_models import build_tiny_qwen25vl

CUTS = [0, 30, 80, 120, 180]  # four lavfi shots of 30, 50, 40, 60 frames, 320x180 at 24 fps


@pytest.fixture(scope="session")
def tiny_qwen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_qwen25vl(tmp_path_factory.mktemp("tiny-qwen25vl"))


@pytest.fixture(scope="session")
def cuts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("caption") / "cuts.mp4"
    media.make_cuts(path, np.diff(CUTS).tolist())
    return path


def _record(path: Path) -> dict:
    """Two samples over the ``cuts`` video: shots 0+1 (trimmed, bottom band cropped off) and
    shot 3 (cropped on all sides); shot 2 is in no sample."""
    shots = [{"shot_index": i, "start_frame": CUTS[i], "end_frame": CUTS[i + 1],
              "start_time": CUTS[i] / 24, "end_time": CUTS[i + 1] / 24, "kept": True,
              "crop_x": 0, "crop_y": 0, "crop_w": 320, "crop_h": 180} for i in range(4)]
    samples = [
        {"sample_index": 0, "shot_indices": [0, 1], "start_frame": 2, "end_frame": 78,
         "crop_x": 0, "crop_y": 0, "crop_w": 320, "crop_h": 150, "shot_spans": [[2, 28], [32, 78]]},
        {"sample_index": 1, "shot_indices": [3], "start_frame": 122, "end_frame": 178,
         "crop_x": 40, "crop_y": 10, "crop_w": 240, "crop_h": 160, "shot_spans": [[122, 178]]},
    ]
    return {"path": str(path), "video_id": "cuts", "status": "pending", "width": 320,
            "height": 180, "fps": 24.0, "num_frames": 180, "shots": shots, "samples": samples}


def _stage(model: Path, **overrides: object) -> ShotCaptionStage:
    settings = {"model": str(model), "max_new_tokens": 8, "global_max_new_tokens": 8,
                "frames_per_shot": 4, "frames_per_sample": 6, **overrides}
    stage = ShotCaptionStage(ShotCaptionConfig(**settings))
    stage.setup()
    return stage


def _captions(record: dict) -> list[str | None]:
    return [s.get("caption") for s in record["shots"]] + [s["caption"] for s in record["samples"]]


def test_tiny_model_captions_each_shot_in_a_sample_and_each_sample(
    tiny_qwen: Path, cuts: Path
) -> None:
    record = _record(cuts)
    outside = copy.deepcopy(record["shots"][2])
    result = _stage(tiny_qwen).process(record)
    assert result["status"] == "pending"
    assert result["shots"][2] == outside  # in no sample: untouched
    captioned = [result["shots"][i] for i in (0, 1, 3)] + result["samples"]
    for row in captioned:
        assert isinstance(row["caption"], str)
        assert row["caption_model"] == str(tiny_qwen)
        assert row["caption_prompt_version"] == "v2"
    texts = [row["caption"] for row in captioned]
    assert all(texts) and len(set(texts)) > 1  # different frames, different (gibberish) text
    assert [s["shot_captions"] for s in result["samples"]] == [texts[:2], texts[2:3]]


def test_pieces_of_one_split_shot_keep_their_own_captions(tiny_qwen: Path, cuts: Path) -> None:
    record = _record(cuts)
    record["samples"] = [  # shot 3 split in two pieces, one sample each
        {"sample_index": i, "shot_indices": [3], "start_frame": a, "end_frame": b, "crop_x": 0,
         "crop_y": 0, "crop_w": 320, "crop_h": 180, "shot_spans": [[a, b]]}
        for i, (a, b) in enumerate([(120, 150), (150, 180)])]
    result = _stage(tiny_qwen).process(record)
    first, second = (s["shot_captions"][0] for s in result["samples"])
    assert first and second and result["shots"][3]["caption"] == second  # the shot keeps the last


def test_batched_captions_equal_one_by_one_greedy_captions(
    tiny_qwen: Path, cuts: Path
) -> None:
    stage = _stage(tiny_qwen, batch_size=2)
    batch_sizes: list[int] = []
    generate = stage.captioner.model.generate

    def counting_generate(**inputs: object) -> object:
        batch_sizes.append(len(inputs["input_ids"]))
        return generate(**inputs)

    stage.captioner.model.generate = counting_generate
    batched = _captions(stage.process(_record(cuts)))
    assert batch_sizes == [2, 1, 2]  # three shots in batches of two, then both samples
    one_by_one = _stage(tiny_qwen, batch_size=1).process(_record(cuts))
    assert _captions(one_by_one) == batched


@pytest.mark.parametrize("frames_as", ["video", "images"])
def test_frames_go_in_as_one_video_or_as_separate_images(
    tiny_qwen: Path, cuts: Path, frames_as: str
) -> None:
    stage = _stage(tiny_qwen, frames_as=frames_as)
    assert stage.captioner.as_video == (frames_as == "video")
    jobs = plan_jobs(_record(cuts), stage.config)[:2]
    clips = decode_clips(open_reader(str(cuts), (320, 180)), jobs, (1.0, 1.0),
                         stage.config.max_pixels)
    text = stage.captioner.prompt_text(clips[0], "Describe.")
    pads = text.count("<|video_pad|>"), text.count("<|image_pad|>")
    assert pads == ((1, 0) if frames_as == "video" else (0, 4))
    captions = stage.captioner.caption(clips, "Describe.", max_new_tokens=8)
    assert len(captions) == 2 and all(isinstance(text, str) and text for text in captions)


def test_auto_uses_video_when_the_processor_has_one(tiny_qwen: Path) -> None:
    assert _stage(tiny_qwen).captioner.as_video


def test_unreadable_video_fails_the_record_with_decode_error(
    tiny_qwen: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 1000)
    record = _stage(tiny_qwen).process(_record(broken))
    assert (record["status"], record["reject_stage"], record["reject_rule"]) == (
        "failed", "shot_caption", "decode_error")


def test_generation_error_fails_the_record(tiny_qwen: Path, cuts: Path) -> None:
    stage = _stage(tiny_qwen)

    def out_of_memory(**inputs: object) -> object:
        raise RuntimeError("CUDA out of memory")

    stage.captioner.model.generate = out_of_memory
    record = stage.process(_record(cuts))
    assert record["status"] == "failed" and record["reject_rule"] == "generate_error"
    assert "CUDA out of memory" in record["reason"]


def test_video_without_samples_is_returned_unchanged(tiny_qwen: Path) -> None:
    record = _record(Path("/nonexistent.mp4"))
    record["samples"] = []
    before = copy.deepcopy(record)
    assert _stage(tiny_qwen).process(record) == before


def test_disabled_captioning_refuses_to_set_up() -> None:
    with pytest.raises(ValueError, match="captioning is disabled"):
        ShotCaptionStage(ShotCaptionConfig()).setup()


# Frame planning and cropping, without the model.

def test_spread_indices_takes_the_middle_of_equal_shares_across_spans() -> None:
    assert spread_indices([(0, 8)], 4) == [1, 3, 5, 7]
    assert spread_indices([(10, 14), (20, 24)], 2) == [12, 22]
    assert spread_indices([(5, 8)], 10) == [5, 6, 7]


def test_plan_uses_trimmed_spans_and_the_sample_crop(cuts: Path) -> None:
    jobs = plan_jobs(_record(cuts), ShotCaptionConfig(frames_per_sample=6))
    assert [(job.kind, job.target.get("shot_index")) for job in jobs] == [
        ("shot", 0), ("shot", 1), ("sample", None), ("shot", 3), ("sample", None)]
    assert all(2 <= i < 28 for i in jobs[0].indices)
    assert jobs[2].indices == [8, 20, 36, 48, 60, 72]  # over 26 + 46 frames; none in 28..31
    assert jobs[1].crop == jobs[2].crop == (0, 0, 320, 150)
    assert jobs[3].seconds == pytest.approx(56 / 24)


def test_chunks_bound_the_distinct_frames_held_at_once() -> None:
    jobs = [CaptionJob({}, "shot", list(range(s, s + 4)), (0, 0, 8, 8), 1.0, {}) for s in (0, 2, 8)]
    assert [len(c) for c in chunk_jobs(jobs, 6)] == [2, 1]  # frames 0..5, then 8..11
    assert [len(c) for c in chunk_jobs(jobs, 3)] == [1, 1, 1]  # an oversized job stands alone


def test_crop_is_scaled_to_decoded_pixels_and_clamped() -> None:
    assert scale_crop((40, 10, 240, 160), (0.5, 0.5), 160, 90) == (20, 5, 120, 80)
    assert scale_crop((300, 0, 100, 50), (1.0, 1.0), 320, 180) == (300, 0, 20, 50)
    assert scale_crop((320, 180, 0, 0), (1.0, 1.0), 320, 180) == (318, 178, 2, 2)


def test_fit_pixels_downscales_keeping_aspect() -> None:
    frames = np.zeros((2, 180, 320, 3), np.uint8)
    assert fit_pixels(frames, 320 * 180).shape == (2, 180, 320, 3)
    assert fit_pixels(frames, 160 * 90).shape == (2, 90, 160, 3)


def test_decoded_clip_is_the_cropped_region_of_the_decoded_frames(
    cuts: Path
) -> None:
    reader = open_reader(str(cuts), (160, 90))
    job = CaptionJob({}, "shot", [125, 150, 170], (40, 10, 240, 160), 2.0, {})
    clip = decode_clips(reader, [job], (0.5, 0.5), 10**6)[0]
    assert clip.frames.shape == (3, 80, 120, 3)
    np.testing.assert_array_equal(clip.frames, reader.frames_at([125, 150, 170])[:, 5:85, 20:140])


def test_frames_past_the_decoders_last_frame_repeat_it(cuts: Path) -> None:
    reader = open_reader(str(cuts), (160, 90))  # 180 frames; shot split may have counted more
    job = CaptionJob({}, "shot", [179, 180, 181], (0, 0, 320, 180), 0.125, {})
    clip = decode_clips(reader, [job], (0.5, 0.5), 10**6)[0]
    np.testing.assert_array_equal(clip.frames, reader.frames_at([179, 179, 179]))


# Preflight: loading failures are caught before the run, with a message saying what to do.

def test_preflight_passes_for_a_loadable_checkpoint(tiny_qwen: Path) -> None:
    preflight(ShotCaptionConfig(model=str(tiny_qwen)))
    preflight(ShotCaptionConfig())  # captioning disabled: nothing to check
    assert describe_model(ShotCaptionConfig(model=str(tiny_qwen))) == (
        f"Qwen2_5_VLForConditionalGeneration from local directory {tiny_qwen}")
    assert describe_model(ShotCaptionConfig()).startswith("captioning disabled")


@pytest.mark.parametrize(("model", "cause"), [
    ("/no/such/Qwen2.5-VL-3B", "no such directory"),
    ("moga-curate-tests/no-such-model", "OSError"),  # offline (conftest): not in the hub cache
])
def test_preflight_message_names_the_key_the_model_and_both_ways_out(
    model: str, cause: str
) -> None:
    with pytest.raises(CaptionPreflightError) as caught:
        preflight(ShotCaptionConfig(model=model))
    message = str(caught.value)
    assert message.startswith(f"shot_caption.model: cannot load caption model {model!r}")
    assert cause in message
    assert "local directory" in message and "shot_caption.model: null" in message


def test_preflight_catches_missing_weights(tiny_qwen: Path, tmp_path: Path) -> None:
    partial = shutil.copytree(tiny_qwen, tmp_path / "no-weights")
    (partial / "model.safetensors").unlink()
    with pytest.raises(CaptionPreflightError, match="no weight file"):
        preflight(ShotCaptionConfig(model=str(partial)))


def test_preflight_rejects_a_text_only_model(tmp_path: Path) -> None:
    from transformers import Qwen2Config

    text_only = Qwen2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2)
    text_only.save_pretrained(tmp_path)
    with pytest.raises(CaptionPreflightError, match="not an image-text-to-text model"):
        preflight(ShotCaptionConfig(model=str(tmp_path)))


def test_default_prompts_ask_for_captions_that_fit_the_trainers_text_len() -> None:
    """The trainer embeds a shot caption in encoders.text_len tokens (EOS included) and counts
    the captions it cuts; the default prompts ask for short captions and cap their length."""
    config = ShotCaptionConfig()
    wan = yaml.safe_load((Path(__file__).parents[1] / "configs" / "train-wan1.3b.yaml").read_text())
    text_len = wan["encoders"]["text_len"]
    assert text_len == EncoderConfig.model_fields["text_len"].default == 128
    assert "at most 60 words" in config.prompt and "at most 70 words" in config.global_prompt
    assert config.max_new_tokens < text_len and config.global_max_new_tokens < text_len
    assert config.prompt_version == "v2"
