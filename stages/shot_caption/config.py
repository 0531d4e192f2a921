"""Settings of the caption stage and its default prompts."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from stages.resources import Resources

# The trainer embeds each shot's caption (the sample's caption where a shot has none) in
# ``encoders.text_len`` UMT5 tokens, EOS included: 128 in configs/train-wan1.3b.yaml, and it
# counts the captions it cuts. English runs about 1.3 tokens a word, so the prompts ask for 60
# and 70 words, and max_new_tokens stops a caption that ignores that near 128 tokens.
SHOT_PROMPT = (
    "Describe this video shot in one to three sentences and at most 60 words: the main "
    "subjects and what they do, the setting, and how the camera moves. Give only the description."
)
SAMPLE_PROMPT = (
    "These frames are sampled in order from one video made of several shots. Describe the whole "
    "video in at most 70 words: the setting, the main subjects, and what happens from shot to "
    "shot. Give only the description."
)


class ShotCaptionConfig(BaseModel):
    """Settings of the caption stage."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(
        None, description="Hub id or local directory of an AutoModelForImageTextToText "
        "checkpoint (e.g. Qwen/Qwen2.5-VL-7B-Instruct); null disables captioning."
    )
    prompt: str = Field(SHOT_PROMPT, description="Instruction given with each shot's frames.")
    global_prompt: str = Field(
        SAMPLE_PROMPT, description="Instruction given with frames from across a whole sample."
    )
    prompt_version: str = Field(
        "v2", description="Recorded with every caption; change it whenever a prompt changes."
    )
    frames_per_shot: int = Field(8, ge=1, description="Frames spread over each shot's span.")
    frames_per_sample: int = Field(16, ge=1, description="Frames spread over a whole sample.")
    decode_width: int = Field(640, ge=32, description="Width frames are decoded at, then cropped.")
    max_pixels: int = Field(
        640 * 360, ge=28 * 28, description="Cropped frames are downscaled (aspect kept) to at most "
        "this many pixels before the processor sees them."
    )
    frames_as: Literal["auto", "video", "images"] = Field(
        "auto", description="Give a clip's frames as one video (Qwen merges frame pairs) or as "
        "separate images; auto uses video when the processor has a video processor."
    )
    max_new_tokens: int = Field(100, ge=1, description="Longest shot caption, in tokens.")
    global_max_new_tokens: int = Field(120, ge=1, description="Longest sample caption, in tokens.")
    repetition_penalty: float = Field(
        1.05, ge=1.0, description="Greedy decoding's penalty on repeated tokens (1 = none)."
    )
    batch_size: int = Field(8, ge=1, description="Clips captioned in one generate call.")
    max_decode_frames: int = Field(
        512, ge=1, description="Frames held in memory at once; a video's samples are captioned "
        "in chunks that stay under this."
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Model weights dtype; auto = bfloat16 on a GPU, float32 on the CPU."
    )
    device: str = Field("auto", description="torch device; auto = cuda if available, else cpu.")
    local_files_only: bool = Field(
        False, description="Never contact the hub; load from a local directory or the cache."
    )
    resources: Resources = Resources(num_cpus=1.0, gpu_when_available=True)

