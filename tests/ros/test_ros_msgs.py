"""Message <-> numpy per TaskSpec binding, on rclpy messages and on messages decoded from MCAP."""

from __future__ import annotations

import numpy as np
import pytest

from robot_learning.data.convert.ros_msgs import (ACTION_KEY, MessageMismatch, bindings, msg_type, set_stamp, stamp_ns,
                                                  topic_codecs)
from robot_learning.spec import SpecError, TaskSpec
from tests.ros import helpers

pytestmark = pytest.mark.ros
rclpy_msgs = pytest.importorskip("sensor_msgs.msg")
from geometry_msgs.msg import PointStamped, TwistStamped
from sensor_msgs.msg import CompressedImage, Image, JointState

SPEC = TaskSpec.load("arm_reach")
CODECS = topic_codecs(SPEC, bindings(SPEC, action=True))
RNG = np.random.default_rng(0)
IMG = RNG.integers(0, 255, (64, 64, 3), dtype=np.uint8)


def test_topics_group_keys_bound_to_the_same_message():
    assert set(CODECS) == {"joint_states", "ee/position", "target/position", "camera/front/image_raw", "cmd/ee_twist"}
    assert CODECS["joint_states"].keys == ("joint_pos", "joint_vel")
    assert CODECS["joint_states"].msg == "sensor_msgs/msg/JointState"
    assert msg_type("std_msgs/String") == "std_msgs/msg/String"
    assert CODECS["camera/front/image_raw"].stream == "camera/front/image_raw"


def test_round_trip_through_rclpy_messages():
    values = {"joint_pos": np.float32([0.1, -0.2, 0.3]), "joint_vel": np.float32([1, 2, 3]),
              "ee_pos": np.float32([0.3, 0.0, 0.1]), "front": IMG, ACTION_KEY: np.float32([0.1, -0.3, 0.25])}
    for topic, cls in (("joint_states", JointState), ("ee/position", PointStamped),
                       ("camera/front/image_raw", Image), ("cmd/ee_twist", TwistStamped)):
        codec = CODECS[topic]
        msg = codec.encode(cls(), values)
        set_stamp(msg, 1_700_000_000_123_456_789, "world")
        assert stamp_ns(msg) == 1_700_000_000_123_456_789 and msg.header.frame_id == "world"
        for key, out in codec.decode(msg).items():
            assert np.array_equal(out, values[key]) and out.dtype == values[key].dtype
    js = CODECS["joint_states"].encode(JointState(), values)
    assert list(js.name) == ["yaw", "shoulder", "elbow"] and len(js.velocity) == 3


def test_joint_states_are_matched_by_name_not_position():
    msg = JointState(name=["elbow", "gripper", "yaw", "shoulder"], position=[3.0, 9.0, 1.0, 2.0],
                     velocity=[30.0, 90.0, 10.0, 20.0])
    out = CODECS["joint_states"].decode(msg)
    assert out["joint_pos"].tolist() == [1, 2, 3] and out["joint_vel"].tolist() == [10, 20, 30]


@pytest.mark.parametrize("msg, expected, found", [
    (JointState(name=["yaw", "shoulder"], position=[0.0, 0.0], velocity=[0.0, 0.0]),
     "joints ['yaw', 'shoulder', 'elbow']", "2 joint(s) ['yaw', 'shoulder']"),
    (JointState(name=["yaw", "shoulder", "elbow"], position=[0.0] * 3, velocity=[]),
     "one value per joint (3)", "0 value(s)"),
])
def test_joint_state_mismatches_name_expected_and_found(msg, expected, found):
    with pytest.raises(MessageMismatch) as e:
        CODECS["joint_states"].decode(msg)
    assert "topic 'joint_states'" in str(e.value) and expected in str(e.value) and found in str(e.value)


def test_images_of_other_sizes_or_encodings_are_mismatches_and_bgr_is_converted():
    codec = CODECS["camera/front/image_raw"]
    small = Image(height=32, width=32, encoding="rgb8", step=96, data=bytes(32 * 32 * 3))
    with pytest.raises(MessageMismatch, match=r"expected a 64x64 image .* found 32x32 rgb8"):
        codec.decode(small)
    with pytest.raises(MessageMismatch, match="found 64x64 16UC1"):
        codec.decode(Image(height=64, width=64, encoding="16UC1", step=128, data=bytes(64 * 128)))
    padded = np.zeros((64, 200), np.uint8)                # rows padded beyond width * 3 = 192 bytes
    padded[:, :192] = IMG[..., ::-1].reshape(64, 192)
    bgr = Image(height=64, width=64, encoding="bgr8", step=200, data=padded.tobytes())
    assert np.array_equal(codec.decode(bgr)["front"], IMG)


def test_compressed_images_decode_to_rgb():
    spec = TaskSpec.load("arm_reach")
    compressed = {"topic": "cam/compressed", "msg": "sensor_msgs/CompressedImage"}
    keyed = bindings(spec, ["front"], overrides={"front": compressed})
    codec = topic_codecs(spec, keyed)["cam/compressed"]
    msg = codec.encode(CompressedImage(format="png"), {"front": IMG})
    assert "png" in msg.format and np.array_equal(codec.decode(msg)["front"], IMG)
    with pytest.raises(MessageMismatch, match="undecodable"):
        codec.decode(CompressedImage(format="jpeg", data=b"not an image"))


def test_binding_overrides_and_errors_name_the_key():
    keyed = bindings(SPEC, action=True, overrides={"action": {"topic": "teleop/cmd"}}, namespace="/robot")
    assert keyed[ACTION_KEY].topic == "/robot/teleop/cmd" and keyed["joint_pos"].topic == "/robot/joint_states"
    with pytest.raises(SpecError, match="topics.gripper: expected one of the task's keys"):
        bindings(SPEC, overrides={"gripper": {"topic": "x"}})
    with pytest.raises(SpecError, match="expected one message type for all keys bound to it"):
        topic_codecs(SPEC, bindings(SPEC, overrides={"ee_pos": {"topic": "joint_states"}}))


def test_messages_decoded_from_mcap_convert_the_same(tmp_path):
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    path = helpers.write_bag(tmp_path / "one.mcap", [
        ("/joint_states", "sensor_msgs/msg/JointState",
         helpers.joint_state(5, ["shoulder", "yaw", "elbow"], [2, 1, 3], [20, 10, 30]), 10),
        ("/camera/front/image_raw", "sensor_msgs/msg/Image", helpers.image(5, IMG), 11),
        ("/cmd/ee_twist", "geometry_msgs/msg/TwistStamped", helpers.twist(6, [0.1, 0.2, -0.3]), 12),
    ])
    with open(path, "rb") as f:
        decoded = {ch.topic: msg for _, ch, _, msg in make_reader(f, decoder_factories=[DecoderFactory()])
                   .iter_decoded_messages()}
    assert CODECS["joint_states"].decode(decoded["/joint_states"])["joint_pos"].tolist() == [1, 2, 3]
    assert np.array_equal(CODECS["camera/front/image_raw"].decode(decoded["/camera/front/image_raw"])["front"], IMG)
    assert np.allclose(CODECS["cmd/ee_twist"].decode(decoded["/cmd/ee_twist"])[ACTION_KEY], [0.1, 0.2, -0.3])
    assert stamp_ns(decoded["/cmd/ee_twist"]) == 6
