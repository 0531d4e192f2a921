"""benchmarks/scaling.py on the CPU: 2 gloo processes, Ulysses degree 2, the tiny MoGA-DiT."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

from tests.test_shards_reader import write_clip_shards
from tests.tiny_encoders import build_tiny_encoders

ROOT = Path(__file__).parents[1]
TINY = ["--device", "cpu", "--config", str(ROOT / "configs" / "train-tiny.yaml"), "--sp", "2",
        "--groups", "2", "--window-grid", "2", "2", "--warmup", "1", "--steps", "2"]


def _scaling(out: Path, *args: str) -> dict:
    """Run the benchmark under torchrun with 2 CPU processes; the JSON rank 0 wrote."""
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc-per-node", "2", str(ROOT / "benchmarks" / "scaling.py"),
                           *TINY, *args, "--json", str(out)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text())


def _check(result: dict, tokens: int) -> None:
    assert (result["world"], result["sp"], result["dp"]) == (2, 2, 1)
    assert len(result["steps"]) == 3
    for step in result["steps"]:
        assert math.isfinite(step["step_s"]) and step["step_s"] > 0
        assert 0 <= step["all_to_all_share"] <= 1
        assert step["all_to_all_gib_per_rank"] > 0  # q, k, v and the output went through it
        assert math.isfinite(step["loss"])
        assert sum(step["group_sizes"]) == tokens
    assert 0 <= result["all_to_all_share"] <= 1
    assert result["tokens_per_s_per_gpu"] > 0 and result["tokens_per_step"] == tokens


def test_synthetic_sample_on_two_ranks(tmp_path: Path) -> None:
    result = _scaling(tmp_path / "synthetic.json", "--frames", "5", "--height", "4",
                      "--width", "4", "--shots", "2")
    assert result["data"] == {"grid": [5, 4, 4], "tokens": 80, "shots": 2}
    _check(result, 80)


def test_real_shards_through_the_trainers_data_path(tmp_path: Path) -> None:
    write_clip_shards(tmp_path / "out", samples_per_shard=2, count=2)
    vae, text = build_tiny_encoders(tmp_path / "encoders")
    result = _scaling(tmp_path / "shards.json", "--real-shards", str(tmp_path / "out" / "clips"),
                      "--set", f"encoders.vae_path={vae}",
                      "--set", f"encoders.text_encoder_path={text}")
    assert result["data"] == str(tmp_path / "out" / "clips")
    _check(result, 5 * 4 * 4)  # 17 frames at 64x64: 5 latent frames of 4x4 tokens
