from bayling.config.train import TrainParams
from bayling.train.launch import already_launched, launch_command


def test_single_node_torchrun():
    cmd = launch_command(TrainParams(num_gpus=8), {}, "/py")
    assert cmd == ["/py", "-m", "torch.distributed.run", "--nproc_per_node", "8", "--nnodes", "1", "--standalone", "-m", "stages.train"]


def test_multi_node_torchrun_keeps_the_schedulers_node_rank():
    env = {"MASTER_ADDR": "trainer-0.svc", "MASTER_PORT": "23456", "NODE_RANK": "1", "JOB_ID": "run42"}
    cmd = launch_command(TrainParams(num_gpus=8, num_nodes=2), env, "/py")
    assert cmd[cmd.index("--nnodes") + 1] == "2" and cmd[cmd.index("--node_rank") + 1] == "1"
    assert cmd[cmd.index("--master_addr") + 1] == "trainer-0.svc" and cmd[cmd.index("--master_port") + 1] == "23456"
    assert "--rdzv_backend" not in cmd and "--standalone" not in cmd  # c10d would ignore the node rank
    pytorchjob = launch_command(TrainParams(num_gpus=8, num_nodes=2), {"MASTER_ADDR": "m", "RANK": "1"}, "/py")
    assert pytorchjob[pytorchjob.index("--node_rank") + 1] == "1"  # Kubeflow's PyTorchJob names the node rank RANK


def test_multi_node_without_a_node_rank_is_an_elastic_c10d_rendezvous():
    cmd = launch_command(TrainParams(num_gpus=8, num_nodes=2), {"MASTER_ADDR": "trainer-0.svc", "JOB_ID": "run42"}, "/py")
    assert cmd[cmd.index("--rdzv_backend") + 1] == "c10d" and cmd[cmd.index("--rdzv_endpoint") + 1] == "trainer-0.svc:29500"
    assert cmd[cmd.index("--rdzv_id") + 1] == "run42" and "--node_rank" not in cmd


def test_deepspeed_launcher_with_hostfile():
    params = TrainParams(num_gpus=8, num_nodes=2, launcher="deepspeed", hostfile="infra/hostfile", deepspeed="zero3")
    cmd = launch_command(params, {}, "/py")
    assert cmd[:3] == ["/py", "-m", "deepspeed.launcher.runner"]
    assert cmd[cmd.index("--hostfile") + 1] == "infra/hostfile" and cmd[-2:] == ["--module", "stages.train"]


def test_launched_processes_do_not_launch_again():
    assert already_launched({"LOCAL_RANK": "0"}) and already_launched({"BAYLING_LAUNCHED": "1"})
    assert not already_launched({})
