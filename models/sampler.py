"""Generate a multi-shot video from per-shot prompts with a trained checkpoint, and write an mp4.

Euler steps on the rectified flow from pure noise (t = 1) to data (t = 0), with optional
classifier-free guidance against empty captions (training drops captions to '' for this).
Shots get equal runs of latent frames, in prompt order.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import torch

from models.dcp_checkpoint import unsharded_model
from models.dit import MoGADiT, ShotText
from models.encoders import Encoders
from models.train_config import TrainConfig


def load_model(checkpoint: Path, device: torch.device, use_ema: bool = True
               ) -> tuple[MoGADiT, TrainConfig]:
    """The model of a training checkpoint (EMA weights when saved and ``use_ema``), in eval mode."""
    if checkpoint.is_dir():  # a sharded (FSDP) run's checkpoint folder
        model, cfg = unsharded_model(checkpoint, use_ema)
        return model.to(device).eval(), cfg
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    cfg = TrainConfig.model_validate(state["config"])
    model = MoGADiT(cfg.model)
    model.load_state_dict(state["model"])
    if use_ema and state["ema"] is not None:
        with torch.no_grad():
            for name, param in model.named_parameters():
                param.copy_(state["ema"][name])
    return model.to(device).eval(), cfg


def even_shot_starts(num_shots: int, num_frames: int) -> list[int]:
    """Latent-frame starts splitting ``num_frames`` into ``num_shots`` near-equal shots."""
    if not 1 <= num_shots <= num_frames:
        raise ValueError(f"{num_shots} prompts need 1 to {num_frames} latent frames")
    return [num_frames * i // num_shots for i in range(num_shots)]


@torch.no_grad()
def generate(model: MoGADiT, enc: Encoders, prompts: list[str], num_frames: int, height: int,
             width: int, steps: int = 30, guidance: float = 5.0, shift: float = 5.0,
             seed: int = 0) -> torch.Tensor:
    """Frames (3, F, H, W) in [-1, 1]; ``num_frames`` = 1 + k * the VAE's temporal stride."""
    stride, space = enc.vae.temporal_stride, enc.vae.spatial_stride
    if (num_frames - 1) % stride or height % space or width % space:
        raise ValueError(f"need frames = 1 + {stride}k and sizes divisible by {space}")
    latent_frames = (num_frames - 1) // stride + 1
    shot_starts = even_shot_starts(len(prompts), latent_frames)
    cond = enc.captions(prompts)
    uncond = enc.captions([""] * len(prompts))
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn((1, enc.vae.z_dim, latent_frames, height // space, width // space),
                    generator=generator).to(enc.device)
    ts = flow_times(steps, shift)
    for t, t_next in zip(ts[:-1], ts[1:], strict=True):
        x = euler_step(model, x, t, t_next, cond, uncond, shot_starts, guidance)
    return enc.vae.decode(x)[0]


def flow_times(steps: int, shift: float) -> torch.Tensor:
    """The ``steps + 1`` flow times from 1 (noise) to 0 (data), shifted towards noise."""
    ts = torch.linspace(1.0, 0.0, steps + 1)
    return shift * ts / (1 + (shift - 1) * ts)


@torch.no_grad()
def euler_step(model: MoGADiT, x: torch.Tensor, t: torch.Tensor, t_next: torch.Tensor,
               cond: ShotText, uncond: ShotText, shot_starts: list[int],
               guidance: float) -> torch.Tensor:
    """Latents (1, C, F, H, W) moved from flow time t to t_next: one model call on ``cond``,
    and with guidance (!= 1) a second on ``uncond``; bf16 autocast on CUDA."""
    autocast = torch.autocast(x.device.type, dtype=torch.bfloat16,
                              enabled=x.device.type == "cuda")
    grid = tuple(s // p for s, p in zip(x.shape[2:], model.cfg.patch_size, strict=True))
    with autocast:
        v = _velocity(model, x, t, cond, shot_starts, grid)
        if guidance != 1.0:
            v_uncond = _velocity(model, x, t, uncond, shot_starts, grid)
            v = v_uncond + guidance * (v - v_uncond)
    return x + (t_next - t).item() * v


def _velocity(model: MoGADiT, x: torch.Tensor, t: torch.Tensor, text: ShotText,
              shot_starts: list[int], grid: tuple[int, int, int]) -> torch.Tensor:
    timestep = torch.full((x.shape[0],), float(t) * 1000, device=x.device)
    tokens, _ = model(x, timestep, text, shot_starts)
    return model.unpatchify(tokens, grid).float()


def write_mp4(frames: torch.Tensor, path: Path, fps: float) -> None:
    """Write frames (3, F, H, W) in [-1, 1] as H.264 yuv420p."""
    import av

    pixels = ((frames.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 3, 0).cpu().numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height = pixels.shape[2], pixels.shape[1]
        stream.pix_fmt = "yuv420p"
        for image in pixels:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
