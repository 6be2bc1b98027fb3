"""The recorder's logic without ROS: ticks -> steps, staleness, malformed streams, episode boundaries."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from robot_learning.data.recording import SamplingConfig, StreamRecorder
from robot_learning.data.store import EpisodeStore
from robot_learning.spec import TaskSpec
from tests.ros import helpers

SPEC = TaskSpec.load("arm_reach")
P = 50_000_000                       # 20 Hz
T0 = 1_000 * 1_000_000_000


def ns(x):
    """A dict message as attribute-access objects (what rclpy and mcap_ros2 hand out)."""
    if isinstance(x, dict):
        return SimpleNamespace(**{k: ns(v) for k, v in x.items()})
    return x


def observation(t: int, k: float, joints=("yaw", "shoulder", "elbow"), size=64) -> dict:
    return {
        "joint_states": ns(helpers.joint_state(t, joints, [k] * len(joints), [0.0] * len(joints))),
        "ee/position": ns(helpers.point(t, [k, 0, 0])),
        "target/position": ns(helpers.point(t, [0.3, 0, 0.1])),
        "camera/front/image_raw": ns(helpers.image(t, np.full((size, size, 3), int(k) % 256, np.uint8))),
    }


@pytest.fixture
def recorder(tmp_path):
    store = EpisodeStore.create(tmp_path / "rec.zarr", SPEC)
    problems = []
    rec = StreamRecorder(SPEC, store.writer(), SamplingConfig(max_age=0.12), on_problem=problems.append)
    rec.problems_seen = problems
    yield rec
    store.close()


def play(rec, steps, *, first=0, cmd_missing=(), skip=(), bad=(), order=None, obs_at_end=True):
    """Lock-step style traffic: observation k at T0 + k*P, then the command answering it (action k/100)."""
    for k in range(first, first + steps + (1 if obs_at_end else 0)):
        t = T0 + k * P
        msgs = observation(t, k, joints=("yaw", "shoulder") if k in bad else ("yaw", "shoulder", "elbow"))
        for topic in order or msgs:
            if (k, topic) not in skip:
                rec.push(topic, msgs[topic], t, t + 1000)
        if k < first + steps and k not in cmd_missing:
            rec.push("cmd/ee_twist", ns(helpers.twist(t, [k / 100, 0, 0])), t, t + 2000)


def test_steps_pair_each_observation_with_the_command_that_answered_it(recorder):
    recorder.start(operator="test")
    play(recorder, 5)
    assert recorder.end(True, recorder.end_frontier()) == 0
    ep = recorder.writer.store.episode(0)
    assert len(ep) == 5 and np.allclose(ep.action[:, 0], np.arange(5) / 100)
    assert ep.obs["joint_pos"][:, 0].tolist() == [0, 1, 2, 3, 4]
    assert ep.terminal.tolist() == [False] * 4 + [True]                 # a successful episode ends terminal
    assert np.allclose(ep.timestamp, np.arange(5) * 0.05)
    assert (ep.extras["stamp/joint_states"] == T0 + np.arange(5) * P).all()
    assert (ep.extras["received/cmd/ee_twist"] == T0 + np.arange(5) * P + 2000).all()
    assert (ep.extras["tick"] == T0 + np.arange(5) * P + P // 2).all()
    assert ep.meta["success"] and ep.meta["operator"] == "test" and ep.meta["dropped_steps"] == 0


def test_out_of_order_arrival_across_streams_changes_nothing(recorder):
    recorder.start()
    play(recorder, 4, order=["camera/front/image_raw", "target/position", "ee/position", "joint_states"])
    recorder.end(False, recorder.end_frontier())
    ep = recorder.writer.store.episode(0)
    assert len(ep) == 4 and not ep.terminal.any() and not ep.meta["success"]


def test_stale_streams_skip_and_count_the_step(recorder):
    recorder.start()
    play(recorder, 8, skip={(k, "camera/front/image_raw") for k in (3, 4, 5)})
    recorder.end(True, recorder.end_frontier())
    ep = recorder.writer.store.episode(0)
    # camera at 2 is 125 ms old at tick 4.5 and 175 ms at 5.5 (max_age 120 ms); 3.5 still sees it at 75 ms
    assert recorder.dropped == 2 and recorder.drop_reasons == {"stale:camera/front/image_raw": 2}
    assert ep.extras["stamp/joint_states"].tolist() == [T0 + k * P for k in (0, 1, 2, 3, 6, 7)]
    assert ep.meta["dropped_steps"] == 2


def test_a_malformed_stream_is_reported_once_and_its_steps_are_not_recorded(recorder):
    recorder.start()
    play(recorder, 6, bad={2, 3, 4})
    recorder.end(True, recorder.end_frontier())
    assert len(recorder.problems_seen) == 1
    text = recorder.problems_seen[0]
    assert "topic 'joint_states'" in text and "expected joints ['yaw', 'shoulder', 'elbow']" in text \
        and "found 2 joint(s) ['yaw', 'shoulder']" in text
    assert recorder.drop_reasons == {"invalid:joint_states": 3}
    assert recorder.writer.store.episode(0).obs["joint_pos"][:, 0].tolist() == [0, 1, 5]
    assert text.startswith(recorder.status(T0)["problems"]["joint_states"])


def test_an_old_state_arriving_after_start_does_not_anchor_the_episode(recorder):
    play(recorder, 3)                          # episode traffic seen before the start (no episode active)
    recorder.start()
    late_copy = observation(T0 + 2 * P, 2)     # a re-sent state from before the start
    for topic, msg in late_copy.items():
        recorder.push(topic, msg, T0 + 2 * P, T0 + 10 * P)
    play(recorder, 3, first=10)
    recorder.end(True, recorder.end_frontier())
    ep = recorder.writer.store.episode(0)
    assert ep.extras["stamp/joint_states"].tolist() == [T0 + k * P for k in (10, 11, 12)]


def test_end_stops_at_the_last_answered_observation_and_discard_drops_everything(recorder):
    recorder.start()
    play(recorder, 4, cmd_missing={3})          # the answer to observation 3 never came
    assert not recorder.caught_up(recorder.end_frontier())
    recorder.end(True, recorder.end_frontier())
    assert len(recorder.writer.store.episode(0)) == 3
    recorder.start()
    play(recorder, 4, first=20)
    recorder.discard()
    recorder.start()
    assert recorder.end(False, recorder.end_frontier()) == -1   # no step: nothing written
    store = recorder.writer.store
    assert store.n_episodes == 1 and store.n_steps == 3 and not store.pending_leftover()


def test_status_reports_rates_and_skew(recorder):
    recorder.start()
    play(recorder, 10)
    status = recorder.status(T0 + 10 * P + 2000)
    assert status["recording"] and status["episode"] == 0 and status["steps"] >= 8
    assert status["rates_hz"]["joint_states"] == pytest.approx(5.5, abs=0.6)   # 11 messages in the 2 s window
    assert status["skew_ms"] == {"last": 0.0, "max": 0.0}
