"""Per-stage compute resources: what the runner asks Ray for when it maps a stage."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

# ``json_schema_extra`` of a setting that changes how fast a run goes, never what it writes (how
# many CPUs, workers, pieces): left out of the config fingerprint, so a run may resume with it
# changed (:meth:`curation.config.PipelineConfig.fingerprint`).
SPEED_ONLY = {"speed_only": True}


class Resources(BaseModel):
    """CPU/GPU share one worker of a stage reserves, how many workers may run at once, and how
    long one video may take in the stage."""

    model_config = ConfigDict(extra="forbid")

    num_cpus: float = Field(1.0, gt=0, description="CPUs reserved per worker of this stage.",
                            json_schema_extra=SPEED_ONLY)
    num_gpus: float = Field(0.0, ge=0, description="GPUs reserved per worker (0 = CPU only).")
    gpu_when_available: bool = Field(
        False, description="Take gpu_share of a GPU per worker when the cluster has GPUs, else "
        "run on CPU."
    )
    gpu_share: float = Field(
        1.0, gt=0, le=1, description="The GPU share a worker takes under gpu_when_available "
        "(below 1: workers share a GPU).", json_schema_extra=SPEED_ONLY)
    max_workers: int | None = Field(
        None, ge=1, description="Upper bound on concurrent workers; null lets Ray decide.",
        json_schema_extra=SPEED_ONLY,
    )
    timeout_s: float | None = Field(
        600.0, gt=0, description="Seconds one video may spend in this stage (plus "
        "timeout_per_video_second per second of its duration) before the worker is stopped and "
        "the video fails with rule timeout; null: no limit.",
    )
    timeout_per_video_second: float = Field(
        4.0, ge=0, description="Extra seconds of the stage's limit per second of video."
    )

    def gpus_per_worker(self, cluster_gpus: float) -> float:
        """GPUs one worker reserves on a cluster with ``cluster_gpus`` GPUs."""
        if self.gpu_when_available and cluster_gpus:
            return self.gpu_share
        return self.num_gpus
