"""Synthesis shards fanned out on Dask through prefect-dask, used when synthesize.dask.enabled is true:
a LocalCluster by default, or the scheduler at synthesize.dask.address.

Shards are submitted a window at a time and written back in order, so the driver's memory stays
bounded and the output is byte-identical to a sequential run with the same shard size.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from prefect import flow, task
from prefect_dask import DaskTaskRunner

from bayling.config.synthesize import SynthesizeParams
from bayling.core.progress import progress
from bayling.core.records import CorpusRow
from bayling.synthesize.engine import BlockResult, BlockSummary, iter_blocks, shard_count, synthesize_block, write_block


@task(name="synthesize-shard", retries=1)
def shard_task(block: list[CorpusRow], heldout: list[bool], params: SynthesizeParams, root: str) -> BlockResult:
    return synthesize_block(block, heldout, params, root)


@flow(name="synthesize-shards")
def synthesize_shards(work_dir: str, params: SynthesizeParams, root: str) -> BlockSummary:
    work = Path(work_dir)
    flags = np.load(work / "flags.npy")  # read here: flow parameters are stored by the API, so keep them small
    window = 2 * params.dask.n_workers
    pending: deque = deque()
    total = BlockSummary.empty()
    shards = progress(shard_count(len(flags), params.shard_size), "synthesize", "shard")

    def drain() -> None:
        index, future = pending.popleft()
        total.add(write_block(work, index, future.result()))
        shards.update()

    with shards:
        for i, block in enumerate(iter_blocks(work / "rows.jsonl", params.shard_size)):
            offset = i * params.shard_size
            pending.append((i, shard_task.submit(block, flags[offset : offset + len(block)].tolist(), params, root)))
            if len(pending) >= window:
                drain()
        while pending:
            drain()
    return total


def run_on_dask(work: Path, flags: Sequence[bool], params: SynthesizeParams, root: Path) -> BlockSummary:
    if params.dask.address:
        runner = DaskTaskRunner(address=params.dask.address)
    else:
        runner = DaskTaskRunner(cluster_kwargs={"n_workers": params.dask.n_workers, "threads_per_worker": 1, "processes": True})
    np.save(work / "flags.npy", np.asarray(flags, dtype=bool))
    return synthesize_shards.with_options(task_runner=runner)(str(work), params, str(root))
