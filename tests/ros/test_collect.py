"""End to end: collect.launch.yaml through the launcher (sim_robot + scripted teleop + recorder as processes)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from robot_learning.data.convert.ros_msgs import stamp_ns
from robot_learning.data.store import EpisodeStore
from robot_learning.data.tools.verify import verify
from tests.ros.helpers import ROOT

pytestmark = pytest.mark.ros

TASK, EPISODES, NOISE, SEED = "arm_reach", 3, 0.5, 3


def expert_rollouts(task: str, episodes: int, noise: float, seed: int) -> tuple[list[int], list[bool]]:
    """What sim_robot + the scripted teleop do, in one process: episode lengths and outcomes."""
    import sim

    low_dim = ["joint_pos", "joint_vel", "ee_pos", "target_pos"]
    env = sim.make_env(task, seed=seed, terminate_on_success=False, obs_keys=low_dim)
    env.reset(seed=seed)
    expert = sim.make_expert(task, noise=noise, seed=seed)
    budget = env.unwrapped.task_spec.max_episode_steps
    lengths, successes = [], []
    for _ in range(episodes):
        obs, info = env.reset()
        expert.reset(obs)
        steps = 0
        while not info["success"] and steps < budget:
            obs, _, _, _, info = env.step(expert.act(obs))
            steps += 1
        lengths.append(steps)
        successes.append(bool(info["success"]))
    return lengths, successes


def test_collect_launch_records_the_commands_teleop_published(tmp_path, executor):
    from geometry_msgs.msg import TwistStamped
    from rclpy.node import Node

    from ros_nodes.common import reliable_qos

    published: dict[int, list[float]] = {}
    spy = Node("command_spy")
    spy.create_subscription(TwistStamped, "cmd/ee_twist", lambda m: published.__setitem__(
        stamp_ns(m), [m.twist.linear.x, m.twist.linear.y, m.twist.linear.z]), reliable_qos(1000))
    executor.add_node(spy)                      # the teleop waits for it (command_subscribers) before commanding
    out = tmp_path / "demo.zarr"
    args = [f"task:={TASK}", f"episodes:={EPISODES}", f"out:={out}", f"noise:={NOISE}", f"seed:={SEED}",
            "command_subscribers:=3"]
    proc = subprocess.Popen([sys.executable, "-m", "robot_learning.cli", "launch", "collect.launch.yaml", *args],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 150
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)           # the launcher stops its nodes in order
            proc.wait(timeout=30)
    output = proc.communicate()[0]
    assert proc.returncode == 0, output
    assert "shutting down: required node teleop exited" in output

    assert verify(out).ok
    lengths, successes = expert_rollouts(TASK, EPISODES, NOISE, SEED)
    with EpisodeStore.open(out) as store:
        assert store.n_episodes == EPISODES
        assert store.episode_lengths.tolist() == lengths                      # no step lost or added
        assert store.episode_meta()["success"].tolist() == successes        # the expert's success, as in-process
        assert store.episode_meta()["dropped_steps"].tolist() == [0] * EPISODES
        recorded = 0
        for i in range(EPISODES):
            ep = store.episode(i)
            sent = np.array([published[s] for s in ep.extras["stamp/cmd/ee_twist"]], dtype=np.float32)
            assert np.array_equal(ep.action, sent)                          # the actions teleop published
            assert (ep.extras["stamp/cmd/ee_twist"] == ep.extras["stamp/joint_states"]).all()
            recorded += len(ep)
        assert recorded == len(published)                                   # every command is in the store
