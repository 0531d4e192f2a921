"""Actor pools must leave CPUs for the task stages, or a small machine deadlocks."""

from __future__ import annotations

from pathlib import Path

from curation.config import parse_config
from curation.plan import build_plan
from curation.runner import actor_cpu_shares
from stages.resources import Resources


def _plan(tmp_path: Path, caption: bool, aesthetic: bool) -> list:
    stages: dict = {}
    if caption:
        stages["shot_caption"] = {"model": "some/model"}
    if aesthetic:
        stages["shot_score"] = {"aesthetic": {"clip_model": "c", "mlp_weights": "m"}}
    return build_plan(parse_config({"stages": stages}), tmp_path)


def test_two_model_stages_on_two_cpus_leave_one_for_tasks(tmp_path: Path) -> None:
    shares = actor_cpu_shares(_plan(tmp_path, caption=True, aesthetic=True), cluster_cpus=2)
    assert set(shares) == {"shot_caption", "shot_score"}
    assert sum(shares.values()) <= 1.0 + 1e-9


def test_big_cluster_keeps_the_configured_reservations(tmp_path: Path) -> None:
    shares = actor_cpu_shares(_plan(tmp_path, caption=True, aesthetic=False), cluster_cpus=64)
    assert shares == {"shot_caption": 1.0}
    assert actor_cpu_shares(_plan(tmp_path, caption=False, aesthetic=False), 2) == {}


def test_a_gpu_share_is_taken_only_where_the_cluster_has_gpus() -> None:
    shared = Resources(gpu_when_available=True, gpu_share=0.25)
    assert shared.gpus_per_worker(cluster_gpus=8) == 0.25
    assert shared.gpus_per_worker(cluster_gpus=0) == 0.0
    assert Resources(gpu_when_available=True).gpus_per_worker(2) == 1.0
    assert Resources(num_gpus=0.5).gpus_per_worker(0) == 0.5
