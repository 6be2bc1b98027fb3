"""Malformed robot messages reach the recorder over DDS: reported once per stream, their steps not recorded."""

from __future__ import annotations

import json

import pytest

from robot_learning.data.store import EpisodeStore
from robot_learning.spec import TaskSpec
from tests.ros.helpers import FakeRobot

pytestmark = pytest.mark.ros

SPEC = TaskSpec.load("arm_reach")


def test_wrong_joint_count_and_image_size_are_reported_once_and_skipped(executor, tmp_path):
    from rclpy.node import Node
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import Image, JointState
    from std_msgs.msg import String
    from std_srvs.srv import SetBool, Trigger

    from ros_nodes.common import LATCHED_QOS, call, spin_until
    from ros_nodes.recorder import Recorder

    out = tmp_path / "bad.zarr"
    recorder = Recorder(parameter_overrides=[Parameter("task", value=SPEC.name), Parameter("out", value=str(out)),
                                             Parameter("status_period", value=0.1)])
    reports: list[str] = []
    recorder.rec.on_problem = reports.append
    robot = FakeRobot(SPEC)
    client = Node("client")
    status: dict = {}
    client.create_subscription(String, "/recorder/status", lambda m: status.update(json.loads(m.data)), LATCHED_QOS)
    for node in (recorder, robot.node, client):
        executor.add_node(node)
    assert spin_until(executor, robot.matched, 20)
    start = client.create_client(Trigger, "/recorder/start_episode")
    assert spin_until(executor, lambda: call(executor, start, Trigger.Request(), 10).success, 20)

    for k in range(10):
        overrides = {}
        if k in (3, 4, 5):
            overrides["joint_states"] = JointState(name=["yaw", "shoulder"], position=[k, k], velocity=[0.0, 0.0])
        if k in (6, 7):
            overrides["camera/front/image_raw"] = Image(height=32, width=48, encoding="rgb8", step=144,
                                                        data=bytes(32 * 144))
        robot.publish(k, overrides=overrides)
        executor.spin_once(timeout_sec=0.01)
    robot.publish(10, command=False)
    answer = call(executor, client.create_client(SetBool, "/recorder/end_episode"), SetBool.Request(data=True), 20)
    assert answer.success and "5 dropped" in answer.message

    assert len(reports) == 2                                            # once per stream, not once per message
    joints = next(r for r in reports if "'joint_states'" in r)
    camera = next(r for r in reports if "'camera/front/image_raw'" in r)
    assert "expected joints ['yaw', 'shoulder', 'elbow'], found 2 joint(s) ['yaw', 'shoulder']" in joints
    assert "expected a 64x64 image" in camera and "found 32x48 rgb8" in camera
    streams = {"joint_states", "camera/front/image_raw"}
    assert spin_until(executor, lambda: set(status.get("problems", {})) == streams, 5)
    assert status["drop_reasons"] == {"invalid:joint_states": 3, "invalid:camera/front/image_raw": 2}

    with EpisodeStore.open(out) as store:                               # the malformed steps are not in the store
        ep = store.episode(0)
        assert ep.obs["joint_pos"][:, 0].tolist() == [0, 1, 2, 8, 9] and ep.meta["dropped_steps"] == 5
