"""The policy node over real rclpy: e-stop latch and re-arm, watchdog, limits, deadman/teleop, task mismatch.

The node runs in this process next to a fake robot (tests/ros/helpers.FakeRobot publishing the arm_reach
topics) and a spy recording every command, its ``~/executed`` twin and ``~/decision``; policies are tiny
exported files with known outputs (tests/deploy/policies.py). Real-time tests stamp observations with the
clock as a robot driver would; the lock-step test answers observation by observation.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest

from robot_learning.spec import TaskSpec
from tests.deploy.policies import constant_policy
from tests.ros.helpers import ROOT, FakeRobot

pytestmark = pytest.mark.ros

SPEC = TaskSpec.load("arm_reach")
RATE = 50.0                      # Hz: the node's real-time rate in these tests (the task's is 20)
PERIOD = 1.0 / RATE


class Rig:
    """A policy node, a fake robot publishing observations, an e-stop publisher and spies, on one executor."""

    def __init__(self, executor, policy, **params):
        from geometry_msgs.msg import TwistStamped
        from rclpy.node import Node
        from rclpy.parameter import Parameter
        from sensor_msgs.msg import Joy
        from std_msgs.msg import Bool, String
        from std_srvs.srv import Trigger

        from robot_learning.data.convert.ros_msgs import stamp_ns
        from ros_nodes.common import COMMAND_QOS, LATCHED_QOS, sensor_qos
        from ros_nodes.policy import PolicyNode

        self.executor = executor
        self.spy = Node("policy_test")
        self.commands: list[tuple[float, int, list[float]]] = []     # (receive time, stamp, action)
        self.executed: list[list[float]] = []
        self.decisions: list[tuple[float, dict]] = []               # (receive time, decision)
        self.status: dict = {}
        self.estop = self.spy.create_publisher(Bool, "estop", LATCHED_QOS)
        if params.pop("estop_first", False):
            self.estop.publish(Bool(data=True))               # latched: the node must see it when it starts
        self.spy.create_subscription(TwistStamped, "cmd/ee_twist", lambda m: self.commands.append(
            (time.monotonic(), stamp_ns(m), _linear(m))), COMMAND_QOS)
        self.spy.create_subscription(TwistStamped, "/policy/executed", lambda m: self.executed.append(_linear(m)),
                                     COMMAND_QOS)
        self.spy.create_subscription(String, "/policy/decision", lambda m: self.decisions.append(
            (time.monotonic(), json.loads(m.data))),
                                     LATCHED_QOS)
        self.spy.create_subscription(String, "/policy/status", lambda m: setattr(self, "status", json.loads(m.data)),
                                     LATCHED_QOS)
        self.teleop = self.spy.create_publisher(TwistStamped, "teleop/cmd", COMMAND_QOS)
        self.joy = self.spy.create_publisher(Joy, "joy", sensor_qos())
        self.rearm = self.spy.create_client(Trigger, "/policy/rearm")
        overrides = {"task": SPEC.name, "policy": str(policy), "realtime": True, "rate_hz": RATE, "status_period": 0.2,
                     **params}
        self.node = PolicyNode(parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()])
        self.robot = FakeRobot(SPEC, name="fake_arm", t0=self.node.get_clock().now().nanoseconds)
        for node in (self.spy, self.robot.node, self.node):
            executor.add_node(node)
        self.k = 0
        assert self.spin_until(lambda: self.robot.publishers["joint_states"][2].get_subscription_count() > 0
                               and self.node.command_pub.get_subscription_count() > 0, 20), "discovery"

    def spin_until(self, predicate, timeout: float) -> bool:
        from ros_nodes.common import spin_until

        return spin_until(self.executor, predicate, timeout)

    def run(self, seconds: float, publish: bool = True) -> None:
        """Spin for ``seconds``, publishing a fresh observation (stamped now) every period while ``publish``."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            now = self.node.get_clock().now().nanoseconds
            if publish and now >= self.robot.stamp(self.k):
                self.k = max(self.k, (now - self.robot.t0) // self.robot.period)
                self.robot.publish(self.k, command=False)
                self.k += 1
            self.executor.spin_once(timeout_sec=0.002)

    @property
    def last_decision(self) -> dict:
        return self.decisions[-1][1]

    def call_rearm(self):
        from std_srvs.srv import Trigger

        from ros_nodes.common import call

        return call(self.executor, self.rearm, Trigger.Request(), 10)

    def recent(self, seconds: float) -> np.ndarray:
        """The command actions received in the last ``seconds``."""
        cutoff = time.monotonic() - seconds
        return np.array([a for t, _, a in self.commands if t >= cutoff])


def _linear(msg) -> list[float]:
    return [msg.twist.linear.x, msg.twist.linear.y, msg.twist.linear.z]


ACTION = [0.1, -0.1, 0.05]       # within the limits and the per-step delta: executed unchanged


@pytest.fixture(scope="module")
def policies(tmp_path_factory):
    root = tmp_path_factory.mktemp("policies")
    maze = TaskSpec.load("point_maze_umaze")
    return {"steady": constant_policy(SPEC, ACTION, root / "steady.onnx"),
            "wild": constant_policy(SPEC, [5.0, -5.0, 0.2], root / "wild.onnx"),
            "maze": constant_policy(maze, [0.1, 0.1], root / "maze.onnx")}


def test_estop_latches_until_rearm_with_the_signal_clear(executor, policies):
    rig = Rig(executor, policies["steady"], estop_first=True)
    rig.run(0.6)
    assert len(rig.recent(0.4)) >= 5 and not rig.recent(0.4).any()          # latched before the node started
    assert rig.last_decision["source"] == "stop" and "e-stop latched" in rig.last_decision["reason"]
    answer = rig.call_rearm()
    assert not answer.success and answer.message == "e-stop signal still asserted"
    from std_msgs.msg import Bool

    rig.estop.publish(Bool(data=False))
    rig.run(0.6)
    assert len(rig.recent(0.4)) >= 5 and not rig.recent(0.4).any()          # clearing alone does not restart
    assert rig.call_rearm().success
    rig.run(0.5)
    assert np.allclose(rig.recent(0.3), ACTION, atol=1e-6)                  # re-armed: the policy drives again
    rig.estop.publish(Bool(data=True))
    rig.run(0.5)
    assert len(rig.recent(0.3)) >= 5 and not rig.recent(0.3).any()
    assert rig.status["estop"]["latched"] and rig.status["decisions"]["sources"]["stop"] > 0
    rig.node.destroy_timer(rig.node.control_timer)                     # stop commanding, then compare the streams
    assert rig.spin_until(lambda: len(rig.executed) == len(rig.commands), 5)
    assert rig.executed == [a for _, _, a in rig.commands]            # ~/executed is exactly what was commanded


@pytest.mark.parametrize("stop_action", ["zero", "hold"])
def test_watchdog_stops_within_the_age_limit_when_observations_stop(executor, policies, stop_action):
    max_age = 0.25                     # generous: on a loaded machine this process itself stalls for ~0.2 s at times
    limit = max_age + 2 * PERIOD + 0.2                                # age limit + tick granularity + load slack
    rig = Rig(executor, policies["steady"], max_obs_age_s=max_age, stop_action=stop_action)
    rig.run(0.6)
    assert rig.last_decision["source"] == "policy" and np.allclose(rig.recent(0.1), ACTION, atol=1e-6)
    silence = time.monotonic()
    rig.run(1.0, publish=False)
    after = [(t - silence, np.array(a)) for t, _, a in rig.commands if t > silence]
    assert after and after[-1][0] > 0.8                               # the node keeps sending the stop command
    t_stop, decision = next((t - silence, d) for t, d in rig.decisions if t > silence)
    assert decision["source"] == "stop" and decision["reason"].startswith("watchdog: observation"), decision
    assert t_stop <= limit, f"stop decided {t_stop:.3f} s after the last observation (limit {limit:.3f} s)"
    if stop_action == "zero":
        first = next(t for t, a in after if not a.any())
        assert first <= limit and all(not a.any() for t, a in after if t >= first)
    else:
        assert all(np.allclose(a, ACTION, atol=1e-6) for _, a in after)  # hold: the last executed command repeats
    rig.run(0.4)
    assert rig.last_decision["source"] == "policy"                    # fresh observations: the policy again


def test_limits_clip_and_rate_limit_in_lockstep(executor, policies):
    from ros_nodes.common import spin_until

    rig = Rig(executor, policies["wild"], realtime=False, max_delta=[0.1])
    answered = []
    for k in range(6):
        rig.robot.publish(k, command=False)
        assert spin_until(executor, lambda k=k: len(rig.commands) > k, 10), f"no command for observation {k}"
        answered.append(rig.commands[-1][1])
    assert answered == [rig.robot.stamp(k) for k in range(6)]          # one command per observation, stamped with it
    executed = np.array([a for _, _, a in rig.commands])
    expected = np.array([[0.1, -0.1, 0.1], [0.2, -0.2, 0.2], [0.3, -0.3, 0.2], [0.3, -0.3, 0.2], [0.3, -0.3, 0.2],
                         [0.3, -0.3, 0.2]])                            # clipped to +-0.3, then at most 0.1 per step
    np.testing.assert_allclose(executed, expected, atol=1e-6)
    assert spin_until(executor, lambda: len(rig.executed) == 6, 5)
    np.testing.assert_allclose(np.array(rig.executed), expected, atol=1e-6)
    assert spin_until(executor, lambda: rig.status.get("decisions", {}).get("clipped") == 6, 5), rig.status
    assert rig.status["decisions"]["rate_limited"] == 2 and rig.status["mode"] == "lock-step"


def test_teleop_overrides_and_the_deadman_gates_the_policy(executor, policies):
    from geometry_msgs.msg import TwistStamped
    from sensor_msgs.msg import Joy

    rig = Rig(executor, policies["steady"], deadman=True, joy_topic="joy", teleop_topic="teleop/cmd",
              joy_deadman=4, teleop_timeout_s=0.2)
    rig.run(0.5)
    assert not rig.recent(0.3).any() and rig.last_decision["reason"] == "deadman released"
    held = Joy(buttons=[0, 0, 0, 0, 1])
    end = time.monotonic() + 0.6
    while time.monotonic() < end:
        rig.joy.publish(held)
        rig.run(0.05)
    assert np.allclose(rig.recent(0.3), ACTION, atol=1e-6) and rig.last_decision["source"] == "policy"
    twist = TwistStamped()
    twist.twist.linear.x, twist.twist.linear.z = -0.2, 0.25
    end = time.monotonic() + 0.6
    while time.monotonic() < end:
        rig.teleop.publish(twist)
        rig.run(0.05)
    assert np.allclose(rig.recent(0.2), [-0.2, 0.0, 0.25], atol=1e-6) and rig.last_decision["source"] == "teleop"
    rig.run(0.6)                                                       # teleop and deadman silent: stop
    assert not rig.recent(0.2).any() and rig.last_decision["reason"] == "deadman released"


def test_a_policy_for_another_task_is_refused_with_every_mismatch(executor, policies):
    from rclpy.parameter import Parameter

    from robot_learning.export.runtime import PolicyFileError
    from ros_nodes.policy import PolicyNode

    with pytest.raises(PolicyFileError, match="policy for task 'point_maze_umaze' does not match the robot's task "
                                              "'arm_reach'") as info:
        PolicyNode(parameter_overrides=[Parameter("task", value="arm_reach"),
                                        Parameter("policy", value=str(policies["maze"]))])
    text = str(info.value)
    for mismatch in ("observation 'position'", "observation 'velocity'", "action dim: expected 3, found 2",
                     "control rate: expected 20.0 Hz, found 10.0 Hz"):
        assert mismatch in text, text
    # as a process: one error line, exit code 1, nothing published
    proc = subprocess.run([sys.executable, "-m", "ros_nodes.policy", "--ros-args", "-p", "task:=arm_reach",
                           "-p", f"policy:={policies['maze']}"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    errors = [line for line in (proc.stdout + proc.stderr).splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "action dim: expected 3, found 2" in errors[0], proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
