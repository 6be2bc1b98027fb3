"""The recorder as a process: SIGKILL loses nothing committed, SIGTERM ends cleanly (exit code 0)."""

from __future__ import annotations

import itertools
import json
import signal

import numpy as np
import pytest

from robot_learning.data.store import EpisodeStore
from robot_learning.data.tools.verify import verify
from robot_learning.spec import TaskSpec
from tests.ros.helpers import FakeRobot, node_process

pytestmark = pytest.mark.ros

SPEC = TaskSpec.load("arm_reach")
#: Recorder node names unique within the test run.
SESSION_IDS = itertools.count()


class Session:
    """A recorder process, a fake robot and the recorder's services, driven from the test."""

    def __init__(self, executor, tmp_path, **params):
        from rclpy.node import Node
        from std_msgs.msg import String
        from std_srvs.srv import SetBool, Trigger

        from ros_nodes.common import LATCHED_QOS

        self.out = tmp_path / "rec.zarr"
        # A name of its own: a SIGKILLed recorder's endpoints outlive it in DDS discovery until their lease
        # expires, and a request to a service of the same name could go to the dead one.
        name = f"recorder_{next(SESSION_IDS)}"
        self.proc = node_process("recorder", {"task": SPEC.name, "out": self.out, "flush_steps": 2,
                                              "status_period": 0.1, **params}, name=name,
                                 log=tmp_path / "recorder.log")
        self.robot = FakeRobot(SPEC)
        self.client = Node("recorder_client")
        self.status: dict = {}
        self.client.create_subscription(String, f"/{name}/status", lambda m: self.status.update(json.loads(m.data)),
                                        LATCHED_QOS)
        self.start_srv = self.client.create_client(Trigger, f"/{name}/start_episode")
        self.end_srv = self.client.create_client(SetBool, f"/{name}/end_episode")
        self.Trigger, self.SetBool = Trigger, SetBool
        self.executor = executor
        executor.add_node(self.robot.node)
        executor.add_node(self.client)
        self.k = 0

    def spin_until(self, predicate, timeout=20.0) -> None:
        from ros_nodes.common import spin_until

        assert spin_until(self.executor, predicate, timeout), "timed out"

    def call(self, client, request):
        from ros_nodes.common import call

        return call(self.executor, client, request, 20.0)

    def start(self) -> None:
        self.spin_until(self.robot.matched, 30.0)
        self.spin_until(lambda: self.call(self.start_srv, self.Trigger.Request()).success, 30.0)

    def steps(self, n: int) -> None:
        for _ in range(n):
            self.robot.publish(self.k)
            self.k += 1
            self.executor.spin_once(timeout_sec=0.01)

    def episode(self, n: int, success: bool) -> None:
        self.start()
        self.steps(n)
        self.robot.publish(self.k, command=False)              # the final observation
        self.k += 1
        assert self.call(self.end_srv, self.SetBool.Request(data=success)).success


@pytest.fixture
def session(executor, tmp_path):
    """Sessions whose recorder processes are killed after the test, however it ends."""
    made: list[Session] = []

    def make(**params) -> Session:
        made.append(Session(executor, tmp_path, **params))
        return made[-1]

    yield make
    for s in made:
        if s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait(timeout=10)


def _assert_episodes(out, lengths, successes):
    with EpisodeStore.open(out) as store:
        assert store.episode_lengths.tolist() == lengths and store.episode_meta()["success"].tolist() == successes
        first = store.episode(0)
        assert np.allclose(first.obs["joint_pos"][:, 0], np.arange(lengths[0]))
        assert np.allclose(first.action[:, 0], (np.arange(lengths[0]) % 7) / 100)


def test_sigkill_mid_episode_keeps_every_committed_episode(session):
    s = session()
    s.episode(5, True)
    s.episode(4, False)
    s.start()
    s.steps(8)
    s.spin_until(lambda: s.status.get("recording") and s.status.get("steps", 0) >= 6)   # written to disk (flush 2)
    s.proc.send_signal(signal.SIGKILL)
    assert s.proc.wait(timeout=10) == -signal.SIGKILL
    with EpisodeStore.open(s.out) as store:
        assert store.pending_leftover()                       # rows of the killed episode are on disk...
    _assert_episodes(s.out, [5, 4], [True, False])            # ...and ignored: committed episodes intact
    with EpisodeStore.open(s.out, mode="a") as store:         # appending recovers (drops the leftovers)
        assert not store.recovery.clean and not store.pending_leftover()
    assert verify(s.out).ok


@pytest.mark.parametrize("keep", [False, True])
def test_sigterm_ends_the_active_episode_cleanly(session, keep):
    s = session(keep_on_shutdown=keep)
    s.episode(5, True)
    s.start()
    s.steps(6)
    s.spin_until(lambda: s.status.get("steps", 0) >= 4)
    s.proc.send_signal(signal.SIGTERM)
    assert s.proc.wait(timeout=20) == 0
    with EpisodeStore.open(s.out) as store:
        assert not store.pending_leftover()                   # nothing half-written
        assert store.n_episodes == (2 if keep else 1) and store.episode_lengths[0] == 5
        if keep:                                              # kept as a failure, with the steps recorded so far
            assert not store.episode_meta()["success"][1] and store.episode_lengths[1] >= 4
    assert verify(s.out).ok
