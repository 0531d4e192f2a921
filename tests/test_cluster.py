"""``curate run --ray-address`` against a two-node Ray cluster on this machine (a head and a
worker node, each its own ``ray start`` with its own CPUs and resources, on loopback ports)
gives exactly the tables and shard contents of a local run."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import media
from tests.outputs import assert_same_output, tables

pytestmark = pytest.mark.slow
CURATE = [sys.executable, "-m", "curation.cli", "run"]
ENV = dict(os.environ, RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")



def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]

def _ray_node(*args: str) -> subprocess.Popen:
    """``ray start --block`` in its own session, so the node and everything it spawned can be
    stopped by process group (not ``ray stop``, which would stop every Ray on the machine)."""
    ray = shutil.which("ray", path=os.path.dirname(sys.executable)) or "ray"
    return subprocess.Popen([ray, "start", "--block", "--node-ip-address=127.0.0.1",
                             "--disable-usage-stats", *args], env=ENV, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _nodes_alive(address: str) -> int:
    probe = (f"import ray; ray.init(address={address!r}, log_to_driver=False); "
             "print(sum(n['Alive'] for n in ray.nodes()))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=ENV,
                          timeout=120)
    return int(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else 0


@pytest.fixture
def two_node_cluster() -> Iterator[str]:
    """A head with 1 CPU and a worker node with 2 CPUs and a custom resource; its address."""
    port = _free_port()
    address = f"127.0.0.1:{port}"
    nodes = [_ray_node("--head", f"--port={port}", "--num-cpus=1", "--include-dashboard=false",
                       '--resources={"head_node": 1}')]
    try:
        deadline = time.monotonic() + 120
        while _nodes_alive(address) < 1 and time.monotonic() < deadline:
            time.sleep(1)
        nodes.append(_ray_node(f"--address={address}", "--num-cpus=2",
                               '--resources={"worker_node": 1}'))
        while _nodes_alive(address) < 2 and time.monotonic() < deadline:
            time.sleep(1)
        assert _nodes_alive(address) == 2, "the worker node did not join"
        yield address
    finally:
        for node in reversed(nodes):
            os.killpg(node.pid, signal.SIGKILL)
            node.wait(timeout=60)


def test_a_two_node_cluster_gives_the_output_of_a_local_run(
    tmp_path: Path, two_node_cluster: str
) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    for i in range(4):
        media.make_cuts(raw / f"v{i}.mp4", [24 + 6 * i, 30, 36], w=256, h=144, moving=True)
    local, cluster = tmp_path / "local", tmp_path / "cluster"
    done = subprocess.run([*CURATE, str(raw), str(local), "--num-cpus", "2"], capture_output=True,
                          text=True, env=ENV, timeout=600)
    assert done.returncode == 0, done.stderr
    # On the cluster, each shot's OCR is a piece of its own, mapped as parallel tasks.
    pieces = tmp_path / "pieces.yaml"
    pieces.write_text("stages:\n  shot_crop:\n    chunk_s: 1.0\n")
    done = subprocess.run([*CURATE, str(raw), str(cluster), "--ray-address", two_node_cluster,
                           "-c", str(pieces)], capture_output=True, text=True, env=ENV,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    videos, shots = tables(cluster)
    assert [v["status"] for v in videos] == ["accepted"] * 4 and len(shots) == 12
    assert_same_output(cluster, local)
