"""Synthesis shards fanned out on Dask through prefect-dask (stages.synthesize uses this when
synthesize.dask.enabled is true): a LocalCluster by default, or the scheduler at synthesize.dask.address.

Shards are submitted a window at a time and written back in order, so the driver's memory stays
bounded and the output is byte-identical to a sequential run with the same shard size.
"""

from __future__ import annotations

import os
from collections import deque
from pathlib import Path
from typing import Any

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

import numpy as np  # noqa: E402
from prefect import flow, task  # noqa: E402
from prefect_dask import DaskTaskRunner  # noqa: E402

from bayling import synth_engine as engine  # noqa: E402


@task(name="synthesize-shard", retries=1)
def shard_task(block: list[dict[str, Any]], heldout: list[bool], params: Any, root: str) -> engine.BlockResult:
    return engine.synthesize_block(block, heldout, params, root)


@flow(name="synthesize-shards")
def synthesize_shards(work_dir: str, params: Any, root: str) -> engine.BlockSummary:
    work = Path(work_dir)
    flags = np.load(work / "flags.npy")
    window = 2 * params.dask.n_workers
    pending: deque = deque()
    total = engine.BlockSummary.empty()

    def drain() -> None:
        index, future = pending.popleft()
        total.add(engine.write_block(work, index, future.result()))

    for i, block in enumerate(engine.iter_blocks(work / "rows.jsonl", params.shard_size)):
        offset = i * params.shard_size
        pending.append((i, shard_task.submit(block, flags[offset : offset + len(block)].tolist(), params, root)))
        if len(pending) >= window:
            drain()
    while pending:
        drain()
    return total


def run_on_dask(work_dir: str, params: Any, root: str) -> engine.BlockSummary:
    if params.dask.address:
        runner = DaskTaskRunner(address=params.dask.address)
    else:
        runner = DaskTaskRunner(cluster_kwargs={"n_workers": params.dask.n_workers, "threads_per_worker": 1, "processes": True})
    return synthesize_shards.with_options(task_runner=runner)(work_dir, params, root)
