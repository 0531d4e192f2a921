"""The tiny MoGA-DiT trained on shards in ``curate run``'s format, with tiny encoders."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner

from models.dit import MoGADiT
from models.encoders import Encoders
from models.train_cli import sample_command, train_command
from models.train_config import TrainConfig, load_train_config
from models.trainer import flow_loss, train
from tests.test_shards_reader import LATENT_STARTS, write_clip_shards
from tests.tiny_encoders import build_tiny_encoders

TINY_YAML = Path(__file__).parents[1] / "configs" / "train-tiny.yaml"


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """Curated output folder and the --set overrides pointing at the tiny encoders."""
    root = tmp_path_factory.mktemp("train")
    vae, text = build_tiny_encoders(root / "encoders")
    write_clip_shards(root / "out", samples_per_shard=2, count=4)
    return root / "out", [f"encoders.vae_path={vae}", f"encoders.text_encoder_path={text}"]


def _config(overrides: list[str], *more: str) -> TrainConfig:
    return load_train_config(TINY_YAML, [*overrides, *more])


def test_training_logs_and_resumes_bit_for_bit(setup: tuple[Path, list[str]],
                                               tmp_path: Path) -> None:
    out, enc = setup
    full = train(_config(enc, "train.steps=6", "train.checkpoint_every=3"), str(out / "clips"),
                 tmp_path / "a")
    for r in full:
        assert math.isfinite(r["loss"]) and r["tokens_per_s"] > 0
        assert 1.0 <= r["balance_metric"] <= r["balance_metric_max"] <= 2.0  # M = 2
        assert 0 < r["balance_loss"] <= 0.1 * 2  # alpha * M bounds it
        assert sum(r["group_sizes"]) == 5 * 4 * 4
    assert [p.name for p in sorted((tmp_path / "a" / "checkpoints").iterdir())] == [
        "step-00000003.pt", "step-00000006.pt"]
    train(_config(enc, "train.steps=3"), str(out / "clips"), tmp_path / "b")
    resumed = train(_config(enc, "train.steps=6"), str(out / "clips"), tmp_path / "b")
    assert [r["step"] for r in resumed] == [4, 5, 6]
    assert [r["loss"] for r in resumed] == [r["loss"] for r in full[3:]]
    assert [r["position"] for r in resumed] == [r["position"] for r in full[3:]]
    a = torch.load(tmp_path / "a" / "checkpoints" / "step-00000006.pt", weights_only=False)
    b = torch.load(tmp_path / "b" / "checkpoints" / "step-00000006.pt", weights_only=False)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert all(torch.equal(a["ema"][k], b["ema"][k]) for k in a["ema"])


def test_loss_on_a_fixed_batch_falls_when_overfitting(setup: tuple[Path, list[str]]) -> None:
    out, enc_overrides = setup
    cfg = _config(enc_overrides)
    enc = Encoders(cfg.encoders, torch.device("cpu"))
    latents = enc.vae.encode(torch.rand(1, 3, 17, 64, 64) * 2 - 1)
    text = enc.captions(["a red car", "a man smiles", "waves on rocks"])
    torch.manual_seed(0)
    model = MoGADiT(cfg.model)
    opt = torch.optim.AdamW(model.parameters(), lr=5e-3)

    def fixed_loss() -> float:
        with torch.no_grad():
            g = torch.Generator().manual_seed(123)
            return float(flow_loss(model, model, latents, text, LATENT_STARTS, cfg.flow, g)[0])

    before = fixed_loss()
    g = torch.Generator().manual_seed(0)
    balances = []
    for _ in range(25):
        loss, info = flow_loss(model, model, latents, text, LATENT_STARTS, cfg.flow, g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        balances.append(float(info["balance_loss"]))
    assert fixed_loss() < 0.6 * before
    assert max(balances) <= 0.2


def test_cli_trains_with_null_captions_and_cache_then_samples(
        setup: tuple[Path, list[str]], tmp_path: Path) -> None:
    _, enc = setup
    write_clip_shards(tmp_path / "nocap", count=2, captions=False)
    cache = tmp_path / "cache"
    args = ["-c", str(TINY_YAML), "--data", str(tmp_path / "nocap" / "clips_index"),
            "--out", str(tmp_path / "run"), "--set", "train.steps=3",
            "--set", f"encoders.cache_dir={cache}", *[a for o in enc for a in ("--set", o)]]
    result = CliRunner().invoke(train_command, args)
    assert result.exit_code == 0, result.output
    assert len(list((cache / "latents").rglob("*.pt"))) == 2
    assert len(list((cache / "text").rglob("*.pt"))) == 1  # every shot caption is ''
    video = tmp_path / "sample.mp4"
    result = CliRunner().invoke(sample_command, [
        str(tmp_path / "run" / "checkpoints" / "step-00000003.pt"), "-p", "a red car",
        "-p", "waves on rocks", "-o", str(video), "--steps", "3"])
    assert result.exit_code == 0, result.output
    import decord

    reader = decord.VideoReader(str(video))
    assert len(reader) == 17 and reader[0].shape == (64, 64, 3)


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    data = yaml.safe_load(TINY_YAML.read_text())
    data["optim"]["learning_rate"] = 1.0
    config.write_text(yaml.safe_dump(data))
    result = CliRunner().invoke(train_command, ["-c", str(config), "--data", "x", "--out", "y",
                                                "--set", "train.steps=0"])
    assert result.exit_code == 2
    assert "optim.learning_rate: Extra inputs" in result.output
    assert "train.steps: Input should be greater than or equal to 1" in result.output
