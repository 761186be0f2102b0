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
        endpoint = f"{env.get('MASTER_ADDR', 'localhost')}:{env.get('MASTER_PORT', '29500')}"
        cmd += ["--node_rank", env.get("NODE_RANK", env.get("RANK", "0")), "--rdzv_backend", "c10d",
                "--rdzv_endpoint", endpoint, "--rdzv_id", env.get("JOB_ID", "bayling-train")]
    return cmd + ["-m", module]


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_main_process() -> bool:
    return rank() == 0
