"""Frozen encoders, loaded from local folders: a Wan VAE (diffusers) and a T5/UMT5 text encoder.

Both are plain ``from_pretrained`` folders, so the real Wan2.1 weights and the tiny models the
tests build go through the same code. Latents and caption embeddings can be cached on disk, keyed
by a fingerprint of the encoder and of what was encoded, so later epochs skip encoding.
"""

from __future__ import annotations

import hashlib
import json
from functools import partial
from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from models.checkpoint import atomic_torch_save
from models.dit import ShotText

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


class EncoderConfig(BaseModel):
    """Where the frozen encoders are and how their outputs are cached."""

    model_config = ConfigDict(extra="forbid")

    vae_path: str = Field(description="diffusers AutoencoderKLWan folder (config.json + weights).")
    text_encoder_path: str = Field(description="transformers T5/UMT5 encoder folder.")
    tokenizer_path: str | None = Field(
        None, description="Tokenizer folder; null: the text encoder folder holds it.")
    text_len: int = Field(128, ge=1, description="Tokens per shot caption (padded/truncated).")
    dtype: Literal["float32", "bfloat16"] = Field(
        "bfloat16", description="Encoder weights' dtype on GPU; always float32 on CPU.")
    cache_dir: str | None = Field(None, description="Cache latents and caption embeddings here.")


def fingerprint(folder: Path) -> str:
    """Short hash of a model folder: configs, plus each weight file's size and first/last MiB."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        digest.update(path.name.encode())
        size = path.stat().st_size
        digest.update(str(size).encode())
        with open(path, "rb") as f:
            digest.update(f.read(1 << 20))
            if size > 2 << 20:
                f.seek(-(1 << 20), 2)
                digest.update(f.read())
    return digest.hexdigest()[:16]


class VideoVAE:
    """Wan VAE: frames in [-1, 1] <-> latents normalised per channel by the VAE's mean/std."""

    def __init__(self, path: str, device: torch.device, dtype: torch.dtype) -> None:
        from diffusers import AutoencoderKLWan

        self.model = AutoencoderKLWan.from_pretrained(path, torch_dtype=dtype).to(device).eval()
        self.model.requires_grad_(False)
        cfg = self.model.config
        self.device, self.dtype = device, dtype
        self.z_dim: int = cfg.z_dim
        self.temporal_stride: int = 2 ** sum(cfg.temperal_downsample)
        self.spatial_stride: int = 2 ** (len(cfg.dim_mult) - 1)
        self.mean = torch.tensor(cfg.latents_mean, device=device).view(1, -1, 1, 1, 1)
        self.std = torch.tensor(cfg.latents_std, device=device).view(1, -1, 1, 1, 1)
        self.fingerprint = fingerprint(Path(path))

    @torch.no_grad()
    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, 3, F, H, W) in [-1, 1], F = 1 + 4k -> (B, z, 1 + k, H/8, W/8) fp32, normalised.

        Takes the posterior mean rather than a sample, so cached latents are deterministic.
        """
        dist = self.model.encode(frames.to(self.device, self.dtype)).latent_dist
        return (dist.mean.float() - self.mean) / self.std

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`encode`: (B, z, T, h, w) -> (B, 3, F, H, W) in [-1, 1]."""
        z = (latents.float() * self.std + self.mean).to(self.dtype)
        return self.model.decode(z).sample.float().clamp(-1, 1)


class TextEncoder:
    """T5/UMT5 encoder: one caption per shot -> (S, L, C) embeddings and an (S, L) mask.

    Padded positions are zeroed and masked out; an empty caption still has its end-of-sequence
    token, so every shot attends to at least one text token.
    """

    def __init__(self, path: str, tokenizer_path: str, text_len: int, device: torch.device,
                 dtype: torch.dtype) -> None:
        from transformers import AutoModelForTextEncoding, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
        self.model = AutoModelForTextEncoding.from_pretrained(path, dtype=dtype).to(device).eval()
        self.model.requires_grad_(False)
        self.text_len, self.device = text_len, device
        self.dim: int = self.model.config.d_model
        self.fingerprint = f"{fingerprint(Path(path))}-{text_len}"

    @torch.no_grad()
    def encode(self, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Captions -> embeddings (S, L, C) fp32 and mask (S, L) bool."""
        tokens = self.tokenizer(captions, padding="max_length", truncation=True,
                                max_length=self.text_len, return_tensors="pt").to(self.device)
        hidden = self.model(input_ids=tokens.input_ids,
                            attention_mask=tokens.attention_mask).last_hidden_state
        mask = tokens.attention_mask.bool()
        return hidden.float() * mask[..., None], mask

    def truncated(self, captions: list[str]) -> int:
        """How many ``captions`` :meth:`encode` cuts: more than ``text_len`` tokens with EOS."""
        return sum(len(ids) > self.text_len
                   for ids in self.tokenizer(captions, truncation=False).input_ids)


class EncodeCache:
    """Tensors on disk under ``folder/kind/ab/<key>.pt``, written atomically."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    @staticmethod
    def key(*parts: str) -> str:
        """A cache key from the encoder fingerprint and what was encoded."""
        return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:32]

    def _path(self, kind: str, key: str) -> Path:
        return self.folder / kind / key[:2] / f"{key}.pt"

    def has(self, kind: str, key: str) -> bool:
        """Whether ``key`` is cached."""
        return self._path(kind, key).exists()

    def load(self, kind: str, key: str) -> dict[str, torch.Tensor] | None:
        """The cached tensors, or None."""
        path = self._path(kind, key)
        return torch.load(path, map_location="cpu") if path.exists() else None

    def save(self, kind: str, key: str, tensors: dict[str, torch.Tensor]) -> None:
        """Store ``tensors`` (moved to CPU) under ``key``."""
        atomic_torch_save({k: v.cpu() for k, v in tensors.items()}, self._path(kind, key))


def latents_cached(cache: EncodeCache, vae_fingerprint: str, clip_key: str) -> bool:
    """Whether the latents of ``clip_key`` are cached (a picklable probe for decode workers)."""
    return cache.has("latents", EncodeCache.key(vae_fingerprint, clip_key))


class Encoders:
    """The VAE and text encoder of a run, with the optional on-disk cache in front of them."""

    def __init__(self, cfg: EncoderConfig, device: torch.device) -> None:
        dtype = DTYPES[cfg.dtype] if device.type == "cuda" else torch.float32
        self.vae = VideoVAE(cfg.vae_path, device, dtype)
        self.text = TextEncoder(cfg.text_encoder_path, cfg.tokenizer_path or cfg.text_encoder_path,
                                cfg.text_len, device, dtype)
        self.cache = EncodeCache(Path(cfg.cache_dir)) if cfg.cache_dir else None
        self.device = device

    def latent_probe(self) -> partial[bool] | None:
        """What the shard stream calls to skip decoding samples whose latents are cached."""
        return partial(latents_cached, self.cache, self.vae.fingerprint) if self.cache else None

    def latents(self, clip_key: str, frames: torch.Tensor | None) -> torch.Tensor:
        """(1, z, T, h, w) latents of a clip, from the cache or by encoding ``frames``."""
        key = EncodeCache.key(self.vae.fingerprint, clip_key)
        cached = self.cache.load("latents", key) if self.cache else None
        if cached is not None:
            return cached["latents"].to(self.device)
        if frames is None:
            raise FileNotFoundError(f"latents of {clip_key} are neither cached nor decoded")
        latents = self.vae.encode(frames[None])
        if self.cache:
            self.cache.save("latents", key, {"latents": latents})
        return latents

    def truncated(self, captions: list[str]) -> int:
        """How many ``captions`` the text encoder cuts to ``text_len`` tokens."""
        return self.text.truncated(captions)

    def captions(self, captions: list[str]) -> ShotText:
        """Embed one caption per shot: a batch of one (1, S, L, C)."""
        keys = [EncodeCache.key(self.text.fingerprint, c) for c in captions]
        cached = [self.cache.load("text", k) if self.cache else None for k in keys]
        missing = [i for i, c in enumerate(cached) if c is None]
        if missing:
            emb, mask = self.text.encode([captions[i] for i in missing])
            for j, i in enumerate(missing):
                cached[i] = {"embeddings": emb[j], "mask": mask[j]}
                if self.cache:
                    self.cache.save("text", keys[i], cached[i])
        emb = torch.stack([c["embeddings"] for c in cached]).to(self.device)
        mask = torch.stack([c["mask"] for c in cached]).to(self.device)
        return ShotText(emb[None], mask[None])
