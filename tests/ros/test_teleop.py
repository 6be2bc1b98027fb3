"""Teleoperation inputs: key and gamepad mappings, a terminal in cbreak mode, and the node's keyboard/joy modes."""

from __future__ import annotations

import os

import numpy as np
import pytest

from ros_nodes.teleop_input import JoyCommand, KeyboardCommand, TtyKeys

EVENT_KEYS = {"start": "n", "success": "o", "failure": "x", "discard": "z"}


def test_keyboard_keys_nudge_sticky_dimensions_and_fire_events():
    kb = KeyboardCommand(3, ["w", "a", "r"], ["s", "d", "f"], step=0.5, stop=" ", events=EVENT_KEYS)
    assert [kb.press(k) for k in "wwwad"] == [None] * 5
    assert kb.value.tolist() == [1.0, 0.0, 0.0]                 # clipped to [-1, 1]; a then d cancel out
    assert kb.press("f") is None and kb.value.tolist() == [1.0, 0.0, -0.5]
    assert kb.press(" ") is None and not kb.value.any()
    assert [kb.press(k) for k in "noxz?"] == ["start", "success", "failure", "discard", None]
    assert "w/s, a/d, r/f" in kb.help()
    with pytest.raises(ValueError, match="distinct single characters"):
        KeyboardCommand(2, ["w", "n"], ["s", "d"], step=0.5, stop=" ", events=EVENT_KEYS)


def test_joy_needs_the_deadman_and_a_recent_message_and_fires_events_on_press():
    joy = JoyCommand(2, axes=[1, 0], scale=[1.0, -0.5], deadman=4, buttons={"start": 7, "success": 0},
                     timeout_ns=100)
    assert joy.update([0.2, 0.8, 0.0], [0] * 8, received=1000) == []
    assert not joy.command(1000).any()                           # deadman released
    assert joy.update([0.2, 0.8, 0.0], [1, 0, 0, 0, 1, 0, 0, 1], received=1050) == ["start", "success"]
    assert np.allclose(joy.command(1060), [0.8, -0.1])
    assert joy.update([0.2, 0.8, 0.0], [1, 0, 0, 0, 1, 0, 0, 1], received=1070) == []   # held: no new event
    assert not joy.command(1200).any()                           # no Joy message for longer than the timeout


def test_terminal_keys_in_cbreak_mode_skip_escape_sequences():
    master, slave = os.openpty()
    with os.fdopen(slave, "r") as stream:
        keys = TtyKeys(stream)
        try:
            os.write(master, b"w\x1b[Ad ")
            assert keys.read() == ["w", "d", " "] and keys.read() == []
        finally:
            keys.close()
    os.close(master)
    with pytest.raises(OSError, match="expected a terminal on stdin"), open(os.devnull) as devnull:
        TtyKeys(devnull)


@pytest.mark.ros
def test_joy_mode_commands_and_episode_control(executor):
    from geometry_msgs.msg import TwistStamped
    from rclpy.node import Node
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import Joy
    from std_srvs.srv import Trigger

    from ros_nodes.common import COMMAND_QOS, sensor_qos, spin_until
    from ros_nodes.teleop import Teleop

    teleop = Teleop(parameter_overrides=[Parameter("mode", value="joy"), Parameter("recorder", value="/fake_recorder"),
                                         Parameter("robot", value="/fake_robot"),
                                         Parameter("joy_axes", value=[1, 0, 3]), Parameter("joy_deadman", value=4),
                                         Parameter("rate_hz", value=50.0)])
    test = Node("joy_test")
    commands, calls = [], []
    test.create_subscription(TwistStamped, "cmd/ee_twist", lambda m: commands.append(
        [m.twist.linear.x, m.twist.linear.y, m.twist.linear.z]), COMMAND_QOS)
    for service in ("/fake_robot/reset", "/fake_recorder/start_episode"):
        test.create_service(Trigger, service, lambda req, res, s=service: (
            calls.append(s.rsplit("/", 1)[-1]), setattr(res, "success", True), res)[-1])
    joy = test.create_publisher(Joy, "joy", sensor_qos())
    executor.add_node(teleop)
    executor.add_node(test)
    assert spin_until(executor, lambda: joy.get_subscription_count() and len(commands) >= 3, 20)
    assert not np.any(commands)                                  # no Joy yet: zero command
    pressed = [0] * 8
    pressed[4] = pressed[7] = 1                                  # deadman + start
    for _ in range(3):
        joy.publish(Joy(axes=[0.5, 1.0, 0.0, -1.0], buttons=pressed))
        executor.spin_once(timeout_sec=0.02)
    # start resets the robot first (a new episode starts from the task's initial state), then records
    assert spin_until(executor, lambda: calls == ["reset", "start_episode"] and commands[-1][0] != 0, 10)
    assert np.allclose(commands[-1], [0.3, 0.15, -0.3])         # axes (1, 0, 3) x the 0.3 m/s limit
