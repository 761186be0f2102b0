from bayling.config.train import TrainParams
from bayling.train.launch import already_launched, launch_command


def test_single_node_torchrun():
    cmd = launch_command(TrainParams(num_gpus=8), {}, "/py")
    assert cmd == ["/py", "-m", "torch.distributed.run", "--nproc_per_node", "8", "--nnodes", "1", "--standalone", "-m", "stages.train"]


def test_multi_node_torchrun_reads_the_scheduler_environment():
    env = {"MASTER_ADDR": "trainer-0.svc", "MASTER_PORT": "23456", "NODE_RANK": "1", "JOB_ID": "run42"}
    cmd = launch_command(TrainParams(num_gpus=8, num_nodes=2), env, "/py")
    assert cmd[cmd.index("--nnodes") + 1] == "2" and cmd[cmd.index("--node_rank") + 1] == "1"
    assert cmd[cmd.index("--rdzv_endpoint") + 1] == "trainer-0.svc:23456" and "--standalone" not in cmd
    assert cmd[cmd.index("--rdzv_id") + 1] == "run42"


def test_deepspeed_launcher_with_hostfile():
    params = TrainParams(num_gpus=8, num_nodes=2, launcher="deepspeed", hostfile="infra/hostfile", deepspeed="zero3")
    cmd = launch_command(params, {}, "/py")
    assert cmd[:3] == ["/py", "-m", "deepspeed.launcher.runner"]
    assert cmd[cmd.index("--hostfile") + 1] == "infra/hostfile" and cmd[-2:] == ["--module", "stages.train"]


def test_launched_processes_do_not_launch_again():
    assert already_launched({"LOCAL_RANK": "0"}) and already_launched({"BAYLING_LAUNCHED": "1"})
    assert not already_launched({})
