"""``curate train``, ``curate sample`` and ``curate export`` (also ``python -m models.train_cli``,
e.g. under torchrun).

Heavy imports (torch, diffusers, transformers) happen inside the commands, so ``--help`` is fast.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import click

SET_HELP = "Override a config key, e.g. --set train.steps=100 (repeatable; value is YAML)."


@click.command("train")
@click.option("-c", "--config", "config_path", required=True,
              type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Training YAML, e.g. configs/train-tiny.yaml.")
@click.option("--data", required=True,
              help="OUT/clips (tars), OUT/clips_index (Parquet), one .tar, or an fsspec URL.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Run folder: checkpoints/ and train_log.jsonl.")
@click.option("--resume/--no-resume", default=True, show_default=True,
              help="Continue from the newest checkpoint in --out.")
@click.option("--set", "overrides", multiple=True, help=SET_HELP)
def train_command(config_path: Path, data: str, out_dir: Path, resume: bool,
                  overrides: tuple[str, ...]) -> None:
    """Train MoGA-DiT on curated shards."""
    from models.train_config import TrainConfigError, load_train_config
    from models.trainer import train

    try:
        cfg = load_train_config(config_path, list(overrides))
    except TrainConfigError as err:
        click.echo(f"curate train: error: {err}", err=True)
        sys.exit(2)
    records = train(cfg, data, out_dir, resume)
    if records and os.environ.get("RANK", "0") == "0":
        last = records[-1]
        click.echo(f"step {last['step']}: loss {last['loss']:.4f}; run in {out_dir}")


@click.command("sample")
@click.argument("checkpoint", type=click.Path(exists=True, path_type=Path))
@click.option("-p", "--prompt", "prompts", multiple=True, required=True,
              help="One per shot, in order (repeat for more shots).")
@click.option("-o", "--out", "out_path", required=True, type=click.Path(path_type=Path),
              help="mp4 to write.")
@click.option("--frames", type=click.IntRange(min=1), help="Default: the last stage's max_frames.")
@click.option("--steps", default=30, show_default=True, type=click.IntRange(min=1))
@click.option("--guidance", default=5.0, show_default=True, help="1 turns guidance off.")
@click.option("--shift", type=float, help="Timestep shift (default: the config's flow.shift).")
@click.option("--seed", default=0, show_default=True)
@click.option("--ema/--no-ema", default=True, show_default=True, help="Use EMA weights if saved.")
@click.option("--set", "overrides", multiple=True, help=SET_HELP + " E.g. encoders.vae_path=...")
def sample_command(checkpoint: Path, prompts: tuple[str, ...], out_path: Path,
                   frames: int | None, steps: int, guidance: float, shift: float | None,
                   seed: int, ema: bool, overrides: tuple[str, ...]) -> None:
    """Generate a video from per-shot prompts with CHECKPOINT (a .pt file, or the step folder of
    an FSDP run) and write it to --out."""
    import torch

    from models.encoders import Encoders
    from models.sampler import generate, load_model, write_mp4
    from models.train_config import TrainConfigError, parse_train_config

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, cfg = load_model(checkpoint, device, ema)
    try:
        cfg = parse_train_config(cfg.model_dump(mode="json"), list(overrides), str(checkpoint))
    except TrainConfigError as err:
        click.echo(f"curate sample: error: {err}", err=True)
        sys.exit(2)
    enc = Encoders(cfg.encoders, device)
    data = cfg.stage_at(cfg.train.steps - 1)[1]  # what the run's last steps trained on
    video = generate(model, enc, list(prompts), frames or data.max_frames, data.height,
                     data.width, steps, guidance, cfg.flow.shift if shift is None else shift, seed)
    write_mp4(video, out_path, data.fps)
    click.echo(f"wrote {out_path}: {video.shape[1]} frames {video.shape[3]}x{video.shape[2]}")


@click.command("export")
@click.argument("checkpoint", type=click.Path(exists=True, path_type=Path))
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--ema/--no-ema", default=True, show_default=True, help="Use EMA weights if saved.")
def export_command(checkpoint: Path, out_dir: Path, ema: bool) -> None:
    """Write CHECKPOINT's model to OUT_DIR as a diffusers WanTransformer3DModel folder, with
    MoGA's router beside it in moga_router.safetensors."""
    import torch

    from models.sampler import load_model
    from models.wan_weights import WanWeightsError, export_diffusers

    model, cfg = load_model(checkpoint, torch.device("cpu"), ema)
    try:
        export_diffusers(model.state_dict(), cfg.model, out_dir)
    except WanWeightsError as err:
        click.echo(f"curate export: error: {err}", err=True)
        sys.exit(2)
    click.echo(f"wrote {out_dir}: diffusers Wan transformer, MoGA router beside it")


@click.group("moga-train")
def main() -> None:
    """Train MoGA-DiT and sample from it."""
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


main.add_command(train_command)
main.add_command(sample_command)
main.add_command(export_command)

if __name__ == "__main__":
    main()
