"""rosbag2 MCAP import: bags written with mcap_ros2.writer from the venv's .msg files, resampled like the recorder."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from robot_learning.cli import main as cli
from robot_learning.data.convert import ConvertOptions, convert
from robot_learning.data.store import EpisodeStore
from robot_learning.spec import SpecError, TaskSpec
from tests.ros import helpers

pytest.importorskip("mcap_ros2")

MS = 1_000_000
T0 = 1_700_000_000 * 1_000_000_000
JOINTS = ("j1", "j2")
TASK = {
    "name": "bag_task", "text": "move", "control_hz": 20, "max_episode_steps": 100,
    "observations": {
        "joint_pos": {"shape": [2], "ros": {"topic": "joint_states", "msg": "sensor_msgs/JointState",
                                            "field": "position", "names": list(JOINTS)}},
        "front": {"shape": [8, 8, 3], "kind": "rgb", "ros": {"topic": "camera/image_raw", "msg": "sensor_msgs/Image"}},
    },
    "action": {"dim": 3, "low": -1, "high": 1,
               "ros": {"topic": "cmd", "msg": "geometry_msgs/TwistStamped", "field": "twist.linear",
                       "names": ["x", "y", "z"]}},
}
SPEC = TaskSpec.from_dict(TASK)
JS, IMG, CMD = "sensor_msgs/msg/JointState", "sensor_msgs/msg/Image", "geometry_msgs/msg/TwistStamped"


def episode_messages(start: int, seconds: float, *, jitter: int = 0, seed: int = 0, camera_gap=None, prefix="",
                     camera=True) -> list:
    """Joint states at 100 Hz (value = index), camera and commands at 20 Hz (value = index), logged with
    ``jitter`` ms of random delay (so log order differs from stamp order)."""
    rng = np.random.default_rng(seed)
    msgs = []
    for i in range(int(seconds * 100)):
        t = start + i * 10 * MS
        msgs.append((f"{prefix}/joint_states", JS, helpers.joint_state(t, JOINTS, [i, -i]), t))
    for k in range(int(seconds * 20)):
        t = start + k * 50 * MS
        if camera and not (camera_gap and camera_gap[0] <= k < camera_gap[1]):
            msgs.append((f"{prefix}/camera/image_raw", IMG, helpers.image(t, np.full((8, 8, 3), k, np.uint8)), t))
        msgs.append((f"{prefix}/cmd", CMD, helpers.twist(t, [k / 100, 0, 0]), t))
    delayed = [(topic, mtype, msg, t + int(rng.integers(0, jitter + 1)) * MS + 1) for topic, mtype, msg, t in msgs]
    return sorted(delayed, key=lambda m: m[3])


def check_episode(ep, start: int, steps: int, first: int = 0):
    k = np.arange(first, first + steps)
    assert len(ep) == steps
    assert ep.obs["joint_pos"][:, 0].tolist() == (2 + 5 * k).tolist()      # latest 100 Hz state at each tick
    assert np.allclose(ep.action[:, 0], k / 100) and (ep.obs["front"][:, 0, 0, 0] == k).all()
    assert (ep.extras["stamp/joint_states"] == start + (2 + 5 * k) * 10 * MS).all()
    assert (ep.extras["received/cmd"] > ep.extras["stamp/cmd"]).all()      # log times are kept next to stamps


def config(tmp_path, **cfg) -> str:
    path = tmp_path / "topics.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def test_out_of_order_stamps_and_a_time_gap_split(tmp_path):
    second = T0 + 10_000 * MS
    bag = helpers.write_bag(tmp_path / "run.mcap", episode_messages(T0, 1.0, jitter=40, seed=1)
                            + episode_messages(second, 0.5, jitter=40, seed=2))
    out = convert(bag, SPEC, tmp_path / "out.zarr", ConvertOptions(topics_config=config(
        tmp_path, split={"by": "gap", "gap": 1.0})))
    with EpisodeStore.open(out) as store:
        assert store.n_episodes == 2
        check_episode(store.episode(0), T0, 20)                            # 20 ticks in 1 s at 20 Hz
        check_episode(store.episode(1), second, 10)
        assert store.episode_meta()["source_episode"].tolist() == [0, 1]
        assert not store.episode_meta()["success"].any()


def test_a_stream_missing_for_a_while_skips_those_steps(tmp_path, caplog):
    bag = helpers.write_bag(tmp_path / "gap.mcap", episode_messages(T0, 1.0, camera_gap=(5, 12)))
    out = convert(bag, SPEC, tmp_path / "out.zarr", ConvertOptions(topics_config=config(tmp_path, max_age=0.12)))
    with EpisodeStore.open(out) as store:
        ep = store.episode(0)
        # camera 4 (200 ms) serves ticks 4 and 5 (<= 120 ms old); ticks 6..11 are stale until camera 12
        kept = [k for k in range(20) if not 6 <= k <= 11]
        assert ep.extras["stamp/cmd"].tolist() == [T0 + k * 50 * MS for k in kept]
        assert ep.meta["dropped_steps"] == 6
    assert "6 step(s) skipped" in caplog.text and "stale:/camera/image_raw" in caplog.text


def test_a_stream_absent_from_the_bag_is_an_error_naming_it(tmp_path):
    bag = helpers.write_bag(tmp_path / "nocam.mcap", episode_messages(T0, 0.5, camera=False))
    with pytest.raises(SpecError, match=r"topic '/camera/image_raw' \(for \['front'\]\): expected it in the recording, "
                                        r"found only \['/cmd', '/joint_states'\]"):
        convert(bag, SPEC, tmp_path / "out.zarr", ConvertOptions())
    assert not (tmp_path / "out.zarr").exists() and not (tmp_path / "out.zarr.partial").exists()


def test_recorder_event_markers_split_episodes_with_their_outcome(tmp_path):
    starts = [T0, T0 + 2_000 * MS, T0 + 4_000 * MS]
    msgs = []
    for start, outcome in zip(starts, ["success", "discard", "failure"], strict=True):
        msgs += [("/recorder/events", "std_msgs/msg/String", {"data": "start"}, start - 5 * MS)]
        msgs += episode_messages(start, 0.5)
        msgs += [("/recorder/events", "std_msgs/msg/String", {"data": outcome}, start + 495 * MS)]
    bag = helpers.write_bag(tmp_path / "events.mcap", sorted(msgs, key=lambda m: m[3]))
    out = convert(bag, SPEC, tmp_path / "out.zarr", ConvertOptions(topics_config=config(
        tmp_path, split={"by": "topic", "topic": "recorder/events"})))
    with EpisodeStore.open(out) as store:
        assert store.n_episodes == 2 and store.episode_meta()["success"].tolist() == [True, False]
        check_episode(store.episode(0), T0, 10)
        check_episode(store.episode(1), starts[2], 10)


def test_a_rosbag2_directory_with_renamed_topics_through_the_cli(tmp_path):
    bag = tmp_path / "rosbag2_run"
    bag.mkdir()
    (bag / "metadata.yaml").write_text("rosbag2_bagfile_information: {version: 9, storage_identifier: mcap}\n")
    helpers.write_bag(bag / "run_0.mcap", episode_messages(T0, 0.5, prefix="/arm"))
    helpers.write_bag(bag / "run_1.mcap", episode_messages(T0 + 5_000 * MS, 0.5, prefix="/arm"))
    task = tmp_path / "bag_task.yaml"
    task.write_text(yaml.safe_dump(TASK))
    topics = config(tmp_path, namespace="/arm", topics={"action": {"topic": "/arm/cmd"}}, split={"by": "bag"})
    out = tmp_path / "out.zarr"
    assert cli(["dataset", "convert", str(bag), f"task_file={task}", f"out={out}", f"topics_config={topics}"]) == 0
    with EpisodeStore.open(out) as store:
        assert store.n_episodes == 2 and store.episode_lengths.tolist() == [10, 10]
        assert "stamp/arm/joint_states" in store.extra_keys


def test_malformed_topics_config_names_the_file_and_key(tmp_path):
    bag = helpers.write_bag(tmp_path / "run.mcap", episode_messages(T0, 0.2))
    with pytest.raises(Exception, match=r"topics.yaml: split: expected \{by: bag\}"):
        convert(bag, SPEC, tmp_path / "out.zarr", ConvertOptions(topics_config=config(tmp_path, split={"by": "size"})))
    with pytest.raises(Exception, match=r"topics.yaml.*max_age_topics.*expected one of the bound topics"):
        convert(bag, SPEC, tmp_path / "out.zarr",
                ConvertOptions(topics_config=config(tmp_path, max_age_topics={"/nope": 0.1})))
