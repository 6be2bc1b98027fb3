"""Export and deploy verbs end to end: a trained arm_reach policy exported, evaluated, and run in the gym env
and over ROS 2 (sim_robot + policy node + episode driver), which must agree episode by episode."""

from __future__ import annotations

import json

import numpy as np
import pytest

from robot_learning.cli import main
from robot_learning.export import contract as c
from robot_learning.export.command import parity_observations
from robot_learning.export.onnx_export import file_sha256
from robot_learning.export.runtime import OnnxPolicy
from robot_learning.spec import TaskSpec
from robot_learning.train import checkpoint as ckpt
from tests.deploy.policies import constant_policy

EPISODES = 10


def test_export_writes_a_self_describing_file_from_a_run_dir(reach_policy, capsys):
    policy = OnnxPolicy(reach_policy.onnx, device="cpu")
    latest = ckpt.resolve(reach_policy.run_dir)
    assert policy.algorithm == "iql" and policy.spec.name == "arm_reach"
    assert policy.metadata[c.META_CHECKPOINT_SHA256] == file_sha256(latest)
    assert float(policy.metadata[c.META_PARITY_MAX_ABS]) <= 1e-4
    assert policy.obs_keys == ["joint_pos", "joint_vel", "ee_pos", "target_pos"]
    capsys.readouterr()
    out = reach_policy.onnx.with_name("again.onnx")
    assert main(["export", f"ckpt={latest}", f"out={out}", "parity_samples=64"]) == 0
    printed = capsys.readouterr().out
    assert f"on 64 observations from {reach_policy.dataset}" in printed and "iql" in printed


def test_export_parity_failure_stops_loudly_and_writes_nothing(reach_policy, capsys):
    out = reach_policy.onnx.with_name("strict.onnx")
    assert main(["export", f"ckpt={reach_policy.run_dir}", f"out={out}", "tolerance=1e-12"]) == 1
    assert "torch/ONNX parity on 256 stored observations: expected max |difference| <= 1e-12" in capsys.readouterr().err
    assert not out.exists() and not list(out.parent.glob(f".{out.name}*"))


def test_parity_observations_come_from_the_simulator_when_the_dataset_is_gone(reach_policy):
    algo, data = ckpt.load_algorithm(reach_policy.run_dir)
    data["config"]["dataset"]["path"] = str(reach_policy.dataset.with_name("moved.zarr"))
    obs, source = parity_observations(algo, data, 40, seed=0)
    assert source == "arm_reach simulator (random actions)"
    assert {k: v.shape for k, v in obs.items()} == {k: (40, 3) for k in algo.obs_keys}


def test_eval_runs_the_onnx_file_like_the_checkpoint(reach_policy, tmp_path):
    for name, target in (("onnx", reach_policy.onnx), ("ckpt", reach_policy.run_dir)):
        assert main(["eval", f"ckpt={target}", "episodes=6", "num_envs=3", "frames=0", f"out={tmp_path / name}"]) == 0
    onnx, torch_ = (json.loads((tmp_path / n / "eval.json").read_text()) for n in ("onnx", "ckpt"))
    assert onnx["algo"] == "iql" and onnx["onnx"][c.META_ALGORITHM] == "iql"
    assert onnx["returns"] == torch_["returns"] and onnx["success_rate"] == torch_["success_rate"]


def test_deploy_sim_passes_every_action_through_the_safety_layer(tmp_path):
    spec = TaskSpec.load("arm_reach")
    wild = constant_policy(spec, [5.0, -5.0, 0.2], tmp_path / "wild.onnx")
    summary = tmp_path / "wild.json"
    assert main(["deploy", f"policy={wild}", "robot=sim", "episodes=2", "safety.max_delta=0.1",
                 f"summary={summary}"]) == 0
    result = json.loads(summary.read_text())
    steps = sum(o["steps"] for o in result["outcomes"])
    assert result["decisions"]["sources"]["policy"] == steps and result["decisions"]["clipped"] == steps
    assert result["decisions"]["rate_limited"] == 2     # 0 -> 0.1 -> 0.2 -> 0.3; the layer persists across episodes
    assert result["timing"]["inference_ms"]["n"] == steps


def test_deploy_refuses_a_policy_for_another_task(tmp_path, capsys):
    maze = constant_policy(TaskSpec.load("point_maze_umaze"), [0.1, 0.1], tmp_path / "maze.onnx")
    assert main(["deploy", f"policy={maze}", "task=arm_reach", "robot=sim", "episodes=1"]) == 1
    err = capsys.readouterr().err
    assert "policy for task 'point_maze_umaze' does not match the robot's task 'arm_reach'" in err
    assert "action dim: expected 3, found 2" in err


@pytest.mark.ros
def test_the_policy_node_over_ros_matches_the_gym_env(reach_policy, tmp_path):
    from PIL import Image

    runs = {}
    for robot in ("sim", "ros"):
        summary = tmp_path / f"{robot}.json"
        frames = tmp_path / f"{robot}.png"
        assert main(["deploy", f"policy={reach_policy.onnx}", f"robot={robot}", f"episodes={EPISODES}", "seed=3",
                     f"summary={summary}", f"frames={frames}", "frame_count=6"]) == 0
        runs[robot] = json.loads(summary.read_text())
        assert Image.open(frames).size == (6 * 64, 64)                  # six 64x64 frames of the front camera
    sim, ros = runs["sim"], runs["ros"]
    assert 0.0 < sim["success_rate"] < 1.0, sim                        # a policy that can fail both ways
    # Lock-step with the driver's gate: the same start states, the same decisions, episode by episode.
    assert ros["success_rate"] == sim["success_rate"]
    def outcomes(run: dict) -> list[tuple[bool, int]]:
        return [(o["success"], o["steps"]) for o in run["outcomes"]]

    assert outcomes(ros) == outcomes(sim)
    assert ros["decisions"] == sim["decisions"]                        # one safe action per step, limits alike
    assert ros["decisions"]["sources"]["policy"] == sum(o["steps"] for o in ros["outcomes"])
    assert ros["mode"] == "lock-step" and ros["algorithm"] == "iql" and ros["return_mean"] is None
    assert ros["timing"]["inference_ms"]["p99"] is not None and sim["timing"]["inference_ms"]["n"] > 0
    assert np.isclose(sim["return_mean"], sim["success_rate"])        # sparse reward: 1 at success


@pytest.mark.ros
def test_realtime_deploy_over_ros_paces_the_policy_and_polls_success(reach_policy, tmp_path):
    summary = tmp_path / "rt.json"
    assert main(["deploy", f"policy={reach_policy.onnx}", "robot=ros", "realtime=true", "episodes=2",
                 f"summary={summary}"]) == 0
    result = json.loads(summary.read_text())
    assert result["mode"] == "real-time" and result["episodes"] == 2
    loop = result["timing"]["loop"]
    assert loop["nominal_period_ms"] == 50.0 and loop["jitter_ms"]["n"] > 40
    assert loop["period_ms"]["p50"] == pytest.approx(50.0, abs=5.0)   # the node's timer at the task's 20 Hz
    assert result["decisions"]["sources"]["policy"] >= sum(o["steps"] for o in result["outcomes"]) // 2


def test_deploy_launch_gates_lockstep_only_and_passes_the_safety_arguments():
    from robot_learning.launcher import find_launch_file, load_launch

    for realtime, gate in (("false", "/episode_driver/gate"), ("true", '""')):
        launch = load_launch(find_launch_file("deploy.launch.yaml"), {"policy": "p.onnx", "realtime": realtime,
                                                                       "max_delta": "[0.1]", "stop_action": "hold"})
        nodes = {n.label: dict(n.params) for n in launch.nodes}
        assert set(nodes) == {"sim_robot", "policy", "episode_driver"}
        assert nodes["policy"]["gate_topic"] == gate and nodes["episode_driver"]["gate_topic"] == gate
        assert nodes["policy"]["max_delta"] == "[0.1]" and nodes["policy"]["stop_action"] == "hold"
        assert [n.required for n in launch.nodes] == [False, True, True]
