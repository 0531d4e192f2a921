"""Tiny, randomly initialised Wan VAE and UMT5 encoder, saved as ordinary model folders.

They load through the same ``from_pretrained`` path as the real weights. The VAE keeps Wan's
strides (4 in time, 8 in space) with 4 latent channels; the tokenizer is a byte-level BPE
trained on a few sentences, so any text tokenises without a download.

``python -m tests.tiny_encoders DIR`` writes both to ``DIR/vae`` and ``DIR/text`` (the paths
``configs/train-tiny.yaml`` expects under ``.cache/tiny-encoders``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

CORPUS = ["a red car drives along a coast road at dusk", "a woman in a blue coat walks home",
          "close up of a man smiling at the camera", "waves break on rocks under a grey sky"]


def build_tiny_vae(folder: Path) -> Path:
    """Save a 4-channel Wan VAE with base width 8 to ``folder``."""
    from diffusers import AutoencoderKLWan

    torch.manual_seed(0)
    vae = AutoencoderKLWan(base_dim=8, z_dim=4, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                           temperal_downsample=[False, True, True],
                           latents_mean=[0.0] * 4, latents_std=[0.5] * 4)
    vae.save_pretrained(folder)
    return folder


def build_tiny_text_encoder(folder: Path) -> Path:
    """Save a 2-layer UMT5 encoder (d_model 32) and its BPE tokenizer to ``folder``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast, UMT5Config, UMT5EncoderModel

    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(CORPUS, trainers.BpeTrainer(
        vocab_size=320, special_tokens=["<pad>", "</s>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    bpe.post_processor = processors.TemplateProcessing(single="$A </s>",
                                                       special_tokens=[("</s>", 1)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, pad_token="<pad>",
                                        eos_token="</s>", unk_token="<unk>")
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    config = UMT5Config(vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=64, num_layers=2,
                        num_heads=4, relative_attention_num_buckets=8, pad_token_id=0,
                        eos_token_id=1, decoder_start_token_id=0)
    UMT5EncoderModel(config).save_pretrained(folder)
    return folder


def build_tiny_encoders(root: Path) -> tuple[Path, Path]:
    """Both tiny encoders under ``root``: (vae folder, text encoder folder)."""
    return build_tiny_vae(root / "vae"), build_tiny_text_encoder(root / "text")


if __name__ == "__main__":
    print(*build_tiny_encoders(Path(sys.argv[1])))
