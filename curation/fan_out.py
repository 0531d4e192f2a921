"""The pieces of one video's work as parallel Ray tasks: the runner's mapper for
:class:`~stages.base.ChunkedStage`.

The first piece runs in the calling worker, the others as tasks. The stage object goes into
the object store once, before any worker has set it up; each task worker keeps one set-up copy
per stage (:data:`_READY`), so a model loads once per process, not once per piece. The record
goes into the store once per video and every piece reads it from there. A task whose worker
dies is retried by Ray (``max_retries`` times); a piece whose workers keep dying becomes a
:class:`~stages.base.ChunkFailure` with rule ``worker_lost``, and an exception in a piece one with
rule ``error``, as :class:`~curation.plan.StageCall` does for a whole video.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import ray

from stages.base import ChunkedStage, ChunkFailure
from stages.records import Record, StageRule
from stages.resources import Resources

MAX_RETRIES = 2
_READY: dict[str, ChunkedStage] = {}


@ray.remote
def _run_piece(stage_box: list[ray.ObjectRef], record: Record, chunk: Any) -> Any:
    """One piece on a task worker; ``stage_box`` keeps the stage's ref unresolved, so it is
    fetched and set up only the first time this worker sees it."""
    key = stage_box[0].hex()
    stage = _READY.get(key)
    if stage is None:
        stage = ray.get(stage_box[0])
        stage.setup()
        _READY[key] = stage
    return _process(stage, record, chunk)


def _process(stage: ChunkedStage, record: Record, chunk: Any) -> Any:
    """One piece's result, or the exception in it as a failure with rule ``error``."""
    try:
        return stage.process_chunk(record, chunk)
    except Exception as err:  # one piece's bug fails its video, as in StageCall
        return ChunkFailure(StageRule.ERROR, f"{type(err).__name__}: {err}")


class RayPieceMapper:
    """Maps the pieces of one video as Ray tasks holding the stage's CPU/GPU reservation. The
    first piece runs in the calling worker, which holds that reservation already and has the
    stage set up, while the others wait for a worker of their own."""

    def __init__(self, stage: ChunkedStage, resources: Resources, gpus: float) -> None:
        self._stage_ref = ray.put(stage)
        self._options = {"num_cpus": resources.num_cpus, "num_gpus": gpus or None,
                         "max_retries": MAX_RETRIES, "retry_exceptions": False}

    def __call__(self, stage: ChunkedStage, record: Record, chunks: Sequence[Any]) -> list[Any]:
        record_ref = ray.put(record)
        task = _run_piece.options(**self._options)
        pieces = [task.remote([self._stage_ref], record_ref, chunk) for chunk in chunks[1:]]
        first = _process(stage, record, chunks[0])
        return [first, *(_result(piece, number) for number, piece in enumerate(pieces, 1))]


def _result(piece: ray.ObjectRef, number: int) -> Any:
    """A piece's result, or a ``worker_lost`` failure when its workers kept dying."""
    try:
        return ray.get(piece)
    except ray.exceptions.RayError as err:  # worker crash, OOM kill, node loss
        return ChunkFailure(StageRule.WORKER_LOST, f"piece {number}: its worker died "
                            f"{MAX_RETRIES + 1} times ({type(err).__name__})")
