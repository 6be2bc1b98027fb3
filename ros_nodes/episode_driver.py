"""episode_driver: run episodes of whatever controls the robot, count successes, report, exit.

Generic over the controller (the policy node, a teleoperator): it never commands the robot. Per episode
it calls the robot's ``<robot>/reset``, follows the robot's observation stamps to count steps (step k is
stamped k periods after the episode's first state; the reset answer's ``stamped <ns>`` gives that first
stamp, as sim_robot's does, else the first observation after the answer), and after each new observation
asks ``<robot>/success``; the episode ends at the first success within ``max_steps`` steps or when the
budget is used up (the same rule as ``robot-learning deploy robot=sim`` and evaluation). The success
answer's ``stamped <ns>`` names the state it judged, so success is attributed to the right step even when
the robot has moved on; a short success between two polls can be missed.

With ``gate_topic`` (lock-step) nothing is missed: after judging a state the driver publishes a
``std_msgs/Header`` with its stamp there, and the policy node (same ``gate_topic``) acts on a state only
then; a finished episode's last state is never acted on. Episodes then match the in-process run step by
step.

At the end it reads the controller's ``<policy>/status`` (timings, decision counts), writes the summary
JSON (``robot_learning.deploy.report``), optionally a PNG strip of the first episode's camera frames, logs
the result and exits 0: launch files mark it ``on_exit: shutdown``.

    python -m ros_nodes.episode_driver --ros-args -p task:=arm_reach -p episodes:=10 -p summary:=deploy.json
"""

from __future__ import annotations

import json
import re
import time
from functools import partial
from pathlib import Path
from typing import Any

from rclpy.time import Time
from std_msgs.msg import Header, String
from std_srvs.srv import Trigger

from robot_learning.data.convert.ros_msgs import bindings, stamp_ns, topic_codecs
from robot_learning.deploy.report import EpisodeOutcome, describe, summarize, write_summary
from robot_learning.spec import TaskSpec
from robot_learning.streams import NS_PER_S, StreamSampler, StreamSpec
from ros_nodes.common import (COMMAND_QOS, LATCHED_QOS, RobotLearningNode, call, declare_parameters, message_class,
                              now_ns, run_node, sensor_qos, spin_until)

PARAMETERS = {
    "task": "arm_reach",      # the robot's task: configs/task/<name>.yaml or a task YAML path
    "robot": "/sim_robot",    # node with the ~/reset and ~/success services (std_srvs/Trigger)
    "policy": "/policy",      # controller whose ~/status (JSON) reports timings; "" = none
    "episodes": 10,           # episodes to run, then exit
    "max_steps": 0,           # step budget per episode; 0 = the task's max_episode_steps
    "rate_hz": 0.0,           # the robot's step rate (stamp spacing); 0 = the task's control_hz
    "summary": "",            # JSON file for the summary; "" = log it only
    "frames": "",             # PNG file for a strip of the first episode's camera frames; "" = none
    "frame_count": 8,         # frames in that strip
    "gate_topic": "",         # lock-step: permit the controller to act on each judged state (std_msgs/Header)
    "timeout": 20.0,          # s to wait for the robot, the controller and each observation
    "depth": 100,             # observation subscription queue depth
}

_STAMPED = re.compile(r"stamped (\d+)")


def answered_stamp(message: str) -> int | None:
    """The ``stamped <ns>`` a robot's service answer names (sim_robot's reset and success), if any."""
    m = _STAMPED.search(message)
    return int(m.group(1)) if m else None


class EpisodeDriver(RobotLearningNode):
    """Resets the robot, watches its observations and success, and summarises the episodes."""

    default_name = "episode_driver"

    def __init__(self, **kwargs: Any):
        super().__init__(self.default_name, **kwargs)
        p = self.params = declare_parameters(self, PARAMETERS)
        self.spec = TaskSpec.load(p.task)
        self.period = round(NS_PER_S / (p.rate_hz or self.spec.control_hz))
        self.budget = p.max_steps or self.spec.max_episode_steps
        codecs = topic_codecs(self.spec, bindings(self.spec))
        self.cameras = {t: c for t, c in codecs.items() if any(f.image for f in c.fields)} if p.frames else {}
        self.sampler = StreamSampler([StreamSpec(t) for t in codecs])
        self.subs = [self.create_subscription(message_class(c.msg), t, partial(self._on_observation, t),
                                              sensor_qos(p.depth)) for t, c in codecs.items()]
        self.frames: list[tuple[int, dict[str, Any]]] = []
        self._collect_frames = bool(self.cameras)
        robot = p.robot.rstrip("/")
        self.robot = {name: self.create_client(Trigger, f"{robot}/{name}") for name in ("reset", "success")}
        self.gate = self.create_publisher(Header, p.gate_topic, COMMAND_QOS) if p.gate_topic else None
        self.status: tuple[int, dict[str, Any]] | None = None
        if p.policy:
            self.create_subscription(String, f"{p.policy.rstrip('/')}/status", self._on_status, LATCHED_QOS)

    # ------------------------------------------------------------------------------ callbacks
    def _on_observation(self, topic: str, msg: Any) -> None:
        stamp = stamp_ns(msg)
        self.sampler.push(topic, stamp, now_ns(self), None)
        if self._collect_frames and topic in self.cameras:
            self.frames.append((stamp, self.cameras[topic].decode(msg)))

    def _on_status(self, msg: String) -> None:
        self.status = (time.monotonic_ns(), json.loads(msg.data))

    # ------------------------------------------------------------------------------ episodes
    def _wait_ready(self, executor: Any) -> None:
        """Robot streams publishing, and the controller up and heard by the robot (its command has a subscriber)."""
        p = self.params

        def ready() -> bool:
            if not all(s.get_publisher_count() for s in self.subs):
                return False
            if self.gate is not None and not self.gate.get_subscription_count():
                return False
            return not p.policy or (self.status is not None and
                                    self.status[1].get("connected", {}).get("command_subscribers", 0) > 0)

        if not spin_until(executor, ready, p.timeout):
            raise TimeoutError(f"episode driver: expected publishers on {sorted(self.sampler.names)}"
                               + (f" and '{p.policy}/status' with a command subscriber" if p.policy else "")
                               + f" within {p.timeout} s, found none")

    def _next_stamp(self, executor: Any, after: int | None) -> int:
        """The stamp of the newest complete observation newer than ``after``."""
        if not spin_until(executor, lambda: self.sampler.complete(after) is not None, self.params.timeout):
            raise TimeoutError(f"episode driver: expected a new observation on {sorted(self.sampler.names)} within "
                               f"{self.params.timeout} s, found none")
        stamp = self.sampler.complete(after).time
        self.sampler.prune(stamp)
        return stamp

    def _episode(self, executor: Any) -> tuple[int, EpisodeOutcome]:
        """Reset, then poll success after each new observation until success or the step budget; returns the
        stamp of the episode's first state and the outcome."""
        timeout = self.params.timeout
        answer = call(executor, self.robot["reset"], Trigger.Request(), timeout)
        first = answered_stamp(answer.message)
        if first is None:
            first = self._next_stamp(executor, self.sampler.watermark())
        seen = first - 1
        while True:
            seen = self._next_stamp(executor, seen)
            judged = call(executor, self.robot["success"], Trigger.Request(), timeout)
            step = round(((answered_stamp(judged.message) or seen) - first) / self.period)
            if judged.success and 1 <= step <= self.budget:
                return first, EpisodeOutcome(True, step)
            if step >= self.budget:
                return first, EpisodeOutcome(False, self.budget)
            if self.gate is not None:
                self.gate.publish(Header(stamp=Time(nanoseconds=seen).to_msg()))

    def _fresh_status(self, executor: Any, since: int) -> dict[str, Any]:
        """The controller's status received after ``since`` (monotonic ns), else the latest one."""
        if self.params.policy:
            spin_until(executor, lambda: self.status is not None and self.status[0] > since, self.params.timeout)
        return self.status[1] if self.status else {}

    def _write_frames(self, first: int, steps: int) -> str | None:
        """Camera frames of the first episode (stamps within it) as a PNG strip; None when none arrived."""
        from robot_learning.train.media import write_strip  # local: only needed when frames are asked for

        last = first + steps * self.period
        series: dict[str, list[Any]] = {}
        for stamp, values in sorted(self.frames, key=lambda f: f[0]):
            if first <= stamp <= last:
                for key, image in values.items():
                    series.setdefault(key, []).append(image)
        if not series:
            return None
        return str(write_strip(series, Path(self.params.frames), self.params.frame_count))

    def run(self, executor: Any) -> int:
        p = self.params
        self._wait_ready(executor)
        outcomes, frames = [], None
        for episode in range(p.episodes):
            self.frames.clear()
            first, outcome = self._episode(executor)
            outcomes.append(outcome)
            if self._collect_frames:
                self._collect_frames = False
                frames = self._write_frames(first, outcome.steps)
            self.get_logger().info(f"episode {episode + 1}/{p.episodes}: {'success' if outcome.success else 'failure'}"
                                   f" after {outcome.steps} steps")
        status = self._fresh_status(executor, time.monotonic_ns())
        summary = summarize(outcomes, robot="ros", task=self.spec.name, policy=status.get("policy", ""),
                            algorithm=status.get("algorithm", "?"), mode=status.get("mode", "?"),
                            decisions=status.get("decisions", {}), loop=status.get("loop"), frames=frames)
        if p.summary:
            write_summary(summary, p.summary)
        self.get_logger().info(describe(summary))
        return 0


def main() -> None:
    """Console entry point: ``ros2 run robot_learning episode_driver --ros-args ...``."""
    raise SystemExit(run_node(EpisodeDriver))


if __name__ == "__main__":
    main()
