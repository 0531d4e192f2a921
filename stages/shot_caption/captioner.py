"""The multimodal LLM behind the caption stage: loading, preflight checks and batched generation.

Any ``AutoModelForImageTextToText`` checkpoint works, by hub id or local directory (default
family Qwen2.5-VL). Frames of one clip go in as one video when the processor has a video
processor, otherwise as several images. Both run on the tiny Qwen2.5-VL of the tests; the video
route costs about half the prompt tokens, because Qwen merges each pair of frames into one
temporal patch (8 frames: 64 vs 118 tokens there; at 640x360 about 1,200 vs 2,400), and it tells
the model the frames' real spacing in time. Decoding is greedy: the same frames and prompt
always give the same caption.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch
    from transformers import GenerationConfig

    from stages.shot_caption.config import ShotCaptionConfig

log = logging.getLogger(__name__)

# Weight files one of which a loadable checkpoint holds (transformers' own file names).
WEIGHT_FILES = (
    "model.safetensors", "model.safetensors.index.json",
    "pytorch_model.bin", "pytorch_model.bin.index.json",
)


class CaptionPreflightError(ValueError):
    """The configured caption model or its processor cannot be loaded."""


@dataclass
class Clip:
    """Frames of one shot or sample to caption: (n, H, W, 3) RGB, spanning ``seconds``."""

    frames: np.ndarray
    seconds: float


def preflight(config: ShotCaptionConfig) -> None:
    """Check, before any video is decoded, that ``config.model`` can be loaded.

    Loads the model config and the processor and looks for a weight file (in the local
    directory, the hub cache or, when online, the hub), without loading the weights.
    """
    if config.model is None:
        return
    try:
        _check_loadable(config)
    except Exception as err:  # hub, file-system and parsing errors come in many types
        raise CaptionPreflightError(_preflight_message(config.model, err)) from err


def describe_model(config: ShotCaptionConfig) -> str:
    """One line naming the caption model: where it comes from and its model class."""
    if config.model is None:
        return "captioning disabled (shot_caption.model: null)"
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING

    model_config = AutoConfig.from_pretrained(
        config.model, local_files_only=config.local_files_only
    )
    model_class = MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING[type(model_config)].__name__
    where = "local directory" if os.path.isdir(config.model) else "hub id"
    return f"{model_class} from {where} {config.model}"


def _check_loadable(config: ShotCaptionConfig) -> None:
    from transformers import AutoConfig, AutoProcessor
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING
    from transformers.utils import has_file

    if _looks_like_path(config.model) and not os.path.isdir(config.model):
        raise FileNotFoundError("no such directory")  # transformers would call it a bad repo id
    model_config = AutoConfig.from_pretrained(
        config.model, local_files_only=config.local_files_only
    )
    if type(model_config) not in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING:
        raise ValueError(f"model type {model_config.model_type!r} is not an image-text-to-text "
                         "model (AutoModelForImageTextToText cannot load it)")
    processor = AutoProcessor.from_pretrained(
        config.model, local_files_only=config.local_files_only
    )
    _check_processor(processor, config)
    if not any(has_file(config.model, name, local_files_only=config.local_files_only)
               for name in WEIGHT_FILES):
        raise FileNotFoundError(f"no weight file ({', '.join(WEIGHT_FILES)}) found")


def _check_processor(processor: Any, config: ShotCaptionConfig) -> None:
    if getattr(processor, "chat_template", None) is None:
        raise ValueError("the processor has no chat template, so prompts cannot be built")
    if config.frames_as == "video" and not _has_video_processor(processor):
        raise ValueError("shot_caption.frames_as is 'video' but the processor has no video "
                         "processor; use 'images' or 'auto'")


def _preflight_message(model: str, err: Exception) -> str:
    return (
        f"shot_caption.model: cannot load caption model {model!r}: {type(err).__name__}: {err}\n"
        "  To use weights on this machine, set shot_caption.model to a local directory that "
        "holds the checkpoint (config.json, weights, tokenizer and processor files), "
        "e.g. shot_caption.model: /models/Qwen2.5-VL-7B-Instruct.\n"
        "  To run without captions, set shot_caption.model: null."
    )


def _looks_like_path(model: str) -> bool:
    """Hub ids are ``name`` or ``owner/name``; anything else is meant as a directory."""
    return os.path.isabs(model) or model.startswith(".") or model.count("/") > 1


def _has_video_processor(processor: Any) -> bool:
    return getattr(processor, "video_processor", None) is not None


class Captioner:
    """A loaded model and processor that caption batches of clips with one prompt."""

    def __init__(self, config: ShotCaptionConfig) -> None:
        from transformers import AutoModelForImageTextToText, AutoProcessor

        if config.model is None:
            raise ValueError("shot_caption.model is null: captioning is disabled")
        self.device = resolve_device(config.device)
        kwargs = {"local_files_only": config.local_files_only}
        self.processor = AutoProcessor.from_pretrained(config.model, **kwargs)
        self.processor.tokenizer.padding_side = "left"  # decoder-only: pad before the prompt
        self.model = AutoModelForImageTextToText.from_pretrained(
            config.model, dtype=resolve_dtype(config.dtype, self.device), **kwargs
        ).to(self.device).eval()
        self.as_video = config.frames_as == "video" or (
            config.frames_as == "auto" and _has_video_processor(self.processor)
        )
        self.repetition_penalty = config.repetition_penalty
        log.info("caption model %s (%s) on %s, frames as %s", config.model,
                 type(self.model).__name__, self.device, "video" if self.as_video else "images")

    def caption(self, clips: list[Clip], prompt: str, max_new_tokens: int) -> list[str]:
        """One caption per clip, generated in one batch."""
        import torch

        texts = [self.prompt_text(clip, prompt) for clip in clips]
        inputs = self.processor(text=texts, padding=True, return_tensors="pt",
                                **self._visual_inputs(clips)).to(self.device)
        with torch.inference_mode():
            output = self.model.generate(
                **inputs, generation_config=self._generation_config(max_new_tokens)
            )
        new_tokens = output[:, inputs["input_ids"].shape[1]:]
        decoded = self.processor.batch_decode(new_tokens, skip_special_tokens=True)
        return [text.strip() for text in decoded]

    def prompt_text(self, clip: Clip, prompt: str) -> str:
        """The chat-templated prompt for one clip: a video part or one image part per frame."""
        visual = [{"type": "video"}] if self.as_video else [{"type": "image"}] * len(clip.frames)
        messages = [{"role": "user", "content": [*visual, {"type": "text", "text": prompt}]}]
        return self.processor.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=False
        )

    def _visual_inputs(self, clips: list[Clip]) -> dict[str, Any]:
        if not self.as_video:
            return {"images": [list(clip.frames) for clip in clips]}
        # The sampling rate tells Qwen how far apart in time the frames are (temporal RoPE).
        metadata = [{"total_num_frames": len(c.frames), "fps": len(c.frames) / max(c.seconds, 1e-3),
                     "frames_indices": list(range(len(c.frames)))} for c in clips]
        return {"videos": [clip.frames for clip in clips], "video_metadata": metadata}

    def _generation_config(self, max_new_tokens: int) -> GenerationConfig:
        """Greedy decoding; stop and pad tokens come from the checkpoint's own settings."""
        from transformers import GenerationConfig

        own = self.model.generation_config
        pad = own.pad_token_id if own.pad_token_id is not None else (
            self.processor.tokenizer.pad_token_id)
        return GenerationConfig(
            do_sample=False, num_beams=1, max_new_tokens=max_new_tokens,
            repetition_penalty=self.repetition_penalty, eos_token_id=own.eos_token_id,
            bos_token_id=own.bos_token_id, pad_token_id=pad,
        )


def resolve_device(device: str) -> str:
    """``auto`` is ``cuda`` when a GPU is visible, else ``cpu``; other values pass through."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def resolve_dtype(dtype: str, device: str) -> torch.dtype:
    """``auto`` is bfloat16 on a GPU and float32 on the CPU (bf16 matmuls are slow there)."""
    import torch

    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return getattr(torch, dtype)
