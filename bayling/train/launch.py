"""Multi-process launch: the train stage re-executes itself under torchrun or the deepspeed launcher
when params ask for more than one process, on one node or several (hostfile, or the MASTER_ADDR /
MASTER_PORT / NODE_RANK environment that Kubernetes PyTorchJobs and most schedulers provide)."""

from __future__ import annotations

import os
from collections.abc import Mapping

from bayling.config.train import TrainParams

LAUNCHED_MARKERS = ("LOCAL_RANK", "BAYLING_LAUNCHED")


def already_launched(env: Mapping[str, str]) -> bool:
    return any(marker in env for marker in LAUNCHED_MARKERS)


def launch_command(params: TrainParams, env: Mapping[str, str], python: str, module: str = "stages.train") -> list[str]:
    """The command that runs `module` as params.num_gpus processes on each of params.num_nodes nodes."""
    if params.launcher == "deepspeed":
        cmd = [python, "-m", "deepspeed.launcher.runner", "--num_gpus", str(params.num_gpus), "--num_nodes", str(params.num_nodes)]
        if params.hostfile:
            cmd += ["--hostfile", params.hostfile]
        if params.num_nodes > 1 and "MASTER_ADDR" in env:
            cmd += ["--master_addr", env["MASTER_ADDR"], "--master_port", env.get("MASTER_PORT", "29500")]
        return cmd + ["--module", module]
    cmd = [python, "-m", "torch.distributed.run", "--nproc_per_node", str(params.num_gpus), "--nnodes", str(params.num_nodes)]
    if params.num_nodes == 1:
        cmd += ["--standalone"]
    else:
        master, port = env.get("MASTER_ADDR", "localhost"), env.get("MASTER_PORT", "29500")
        node_rank = env.get("NODE_RANK", env.get("RANK"))
        if node_rank is not None:
            # Static rendezvous keeps the scheduler's node rank, so global rank 0 (the one that logs and exports
            # models/final) runs on node 0, where the flow and DVC look for it. Under c10d torchrun ignores
            # --node_rank and numbers nodes by sorted (host, pid), which can put rank 0 on any node.
            cmd += ["--node_rank", node_rank, "--master_addr", master, "--master_port", port]
        else:
            # No node rank given: an elastic c10d rendezvous; rank 0 may land on any node, so outputs need a shared disk.
            cmd += ["--rdzv_backend", "c10d", "--rdzv_endpoint", f"{master}:{port}", "--rdzv_id", env.get("JOB_ID", "bayling-train")]
    return cmd + ["-m", module]


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_main_process() -> bool:
    return rank() == 0
