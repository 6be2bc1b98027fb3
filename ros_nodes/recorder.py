"""recorder: sample every stream the TaskSpec binds at the control rate and write episodes.

A thin adapter around :class:`robot_learning.data.recording.StreamRecorder` (where the sampling,
staleness, shape checks and writing live): one subscription per bound topic (sensor-data QoS; the
command topic reliable) feeds it messages with their header stamps and DDS reception times.

Services (std_srvs):
- ``~/start_episode`` (Trigger): refused while a bound topic has no publisher yet (messages sent
  before discovery completes are lost) or an episode is active.
- ``~/end_episode`` (SetBool, ``data`` = success): processes every message already received, waits up
  to ``end_timeout`` s for the action answering the last observation, records the remaining steps and
  commits the episode.
- ``~/discard_episode`` (Trigger).

Topics: ``~/status`` (std_msgs/String, JSON, latched: episode index, steps, dropped steps, per-stream
rates, skew, problems) and ``~/events`` (std_msgs/String: start, success, failure, discard; a bag that
records it can be split into the same episodes by the rosbag2 importer).

On Ctrl-C or SIGTERM the active episode is discarded (or kept as a failure with
``keep_on_shutdown:=true``) and the store closed; a SIGKILL loses only the uncommitted episode.

    python -m ros_nodes.recorder --ros-args -p task:=arm_reach -p out:=data/demo.zarr
"""

from __future__ import annotations

import json
import logging
from functools import partial
from typing import Any

import yaml
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.subscription import MessageInfo
from rclpy.task import Future
from std_msgs.msg import String
from std_srvs.srv import SetBool, Trigger

from robot_learning.config import ConfigError, build
from robot_learning.data.convert.ros_msgs import stamp_ns
from robot_learning.data.recording import SamplingConfig, StreamRecorder
from robot_learning.data.store import EpisodeStore
from robot_learning.spec import TaskSpec
from ros_nodes.common import (COMMAND_QOS, LATCHED_QOS, RobotLearningNode, declare_parameters, message_class, now_ns,
                              reliable_qos, run_node, sensor_qos)

log = logging.getLogger("recorder")

PARAMETERS = {
    "task": "arm_reach",        # configs/task/<name>.yaml or a task YAML path
    "out": "data/recording.zarr",  # episode store: appended to if it exists (same task), else created
    "rate_hz": 0.0,             # control rate of the steps; 0 = the task's control_hz
    "max_age": 0.25,            # s: a stream whose message at a tick is older makes the step stale (skipped)
    "phase": 0.5,               # tick position between anchor-stream messages (fraction of the period)
    "anchor": "",               # topic anchoring the ticks; "" = the first observation's topic
    "timeout": 0.5,             # s of stamp time after which a tick is taken without every stream
    "topics_config": "",        # YAML with 'topics' (binding overrides) and 'max_age_topics' (s per topic)
    "end_timeout": 0.5,         # s end_episode waits for the action answering the last observation
    "keep_on_shutdown": False,  # on Ctrl-C/SIGTERM keep the active episode as a failure instead of discarding it
    "status_period": 1.0,       # s between status messages (also sent on every episode event)
    "depth": 1000,              # subscription queue depth: the backlog absorbed while the store is written
                                # (lock-step runs faster than the store writes: up to an episode's messages)
    "flush_steps": 64,          # steps buffered in memory before they are written to the store
    "operator": "",             # meta/episode/operator of the episodes recorded
}


def sampling_config(p: Any) -> SamplingConfig:
    """The sampling configuration from the node parameters and the optional topics file."""
    extra: dict[str, Any] = {}
    if p.topics_config:
        where = f"{p.topics_config} (parameter topics_config)"
        try:
            with open(p.topics_config) as f:
                extra = yaml.safe_load(f) or {}
        except (OSError, yaml.YAMLError) as e:
            raise ConfigError(f"{where}: expected a readable YAML file, found {type(e).__name__}: {e}") from None
        unknown = sorted(set(extra) - {"topics", "max_age_topics"})
        if unknown:
            raise ConfigError(f"{where}: key '{unknown[0]}': expected 'topics' or 'max_age_topics' (set the "
                              "other sampling settings as node parameters), found it")
    return build(SamplingConfig, {"rate_hz": p.rate_hz, "max_age": p.max_age, "phase": p.phase, "anchor": p.anchor,
                                  "timeout": p.timeout, **extra}, where="recorder parameters")


class Recorder(RobotLearningNode):
    """Records episodes of the task's streams into an episode store."""

    default_name = "recorder"

    def __init__(self, **kwargs: Any):
        super().__init__(self.default_name, **kwargs)
        p = self.params = declare_parameters(self, PARAMETERS)
        self.spec = TaskSpec.load(p.task)
        self.store = EpisodeStore.open_or_create(p.out, self.spec, source=f"ros2:{self.get_fully_qualified_name()}")
        self.writer = self.store.writer(flush_steps=p.flush_steps)
        self.rec = StreamRecorder(self.spec, self.writer, sampling_config(p), clock=lambda: now_ns(self),
                                  on_problem=lambda text: self.get_logger().error(text))
        self.subs = {}
        for topic, codec in self.rec.codecs.items():
            qos = reliable_qos(p.depth) if topic == self.rec.action_topic else sensor_qos(p.depth)
            self.subs[topic] = self.create_subscription(message_class(codec.msg), topic,
                                                        partial(self._on_message, topic), qos)
        self.status_pub = self.create_publisher(String, "~/status", LATCHED_QOS)
        self.events_pub = self.create_publisher(String, "~/events", COMMAND_QOS)
        self.create_service(Trigger, "~/start_episode", self._on_start)
        # Own callback group: while end_episode awaits the last action, the subscriptions (default group) run.
        self.create_service(SetBool, "~/end_episode", self._on_end, callback_group=MutuallyExclusiveCallbackGroup())
        self.create_service(Trigger, "~/discard_episode", self._on_discard)
        self.create_timer(p.status_period, self._publish_status)
        self._ending: tuple[int | None, Future] | None = None
        self._publish_status()
        self.get_logger().info(f"recording task '{self.spec.name}' into {self.store.path} "
                               f"({self.store.n_episodes} episodes so far) at {self.rec.rate_hz:g} Hz from "
                               f"{sorted(self.rec.codecs)}")

    # ------------------------------------------------------------------------------ streams
    def _on_message(self, topic: str, msg: Any, info: MessageInfo) -> None:
        received = info["received_timestamp"] or now_ns(self)
        stamp = stamp_ns(msg)
        self.rec.push(topic, msg, received if stamp is None else stamp, received)
        if self._ending is not None and self.rec.caught_up(self._ending[0]) and not self._ending[1].done():
            self._ending[1].set_result(True)

    def _drain(self) -> None:
        """Process every message already received, one per stream in turn (as the executor does, so no stream
        runs ahead). The executor takes one message per subscription per turn: a recorder behind its streams
        would otherwise end an episode before the data that was sent ahead of the request."""
        pending = dict(self.subs)
        while pending:
            for topic, sub in list(pending.items()):
                with sub.handle:
                    taken = sub.handle.take_message(sub.msg_type, sub.raw)
                if taken is None:
                    del pending[topic]
                else:
                    self._on_message(topic, *taken)

    def _publish_status(self) -> None:
        self.status_pub.publish(String(data=json.dumps(self.rec.status(now_ns(self)))))

    def _event(self, name: str) -> None:
        self.events_pub.publish(String(data=name))
        self._publish_status()

    # ------------------------------------------------------------------------------ services
    def _on_start(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        silent = sorted(t for t, sub in self.subs.items() if sub.get_publisher_count() == 0)
        if self.rec.active or self._ending is not None:
            response.success, response.message = False, f"episode {self.store.n_episodes} is already being recorded"
        elif silent:
            response.success, response.message = False, f"not started: no publisher on {silent} yet"
        else:
            self.rec.start(operator=self.params.operator, source=f"ros2:{self.get_fully_qualified_name()}")
            response.success, response.message = True, f"recording episode {self.store.n_episodes}"
            self._event("start")
        return response

    async def _on_end(self, request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
        if not self.rec.active or self._ending is not None:
            response.success, response.message = False, "no episode is being recorded"
            return response
        self._drain()
        frontier = self.rec.end_frontier()
        if not self.rec.caught_up(frontier):
            done = Future()
            self._ending = (frontier, done)
            timer = self.create_timer(self.params.end_timeout, lambda: done.done() or done.set_result(False))
            caught_up = await done
            self.destroy_timer(timer)
            self._ending = None
            if not caught_up:
                self.get_logger().warning(f"end_episode: streams {self._behind(frontier)} did not catch up within "
                                          f"{self.params.end_timeout} s; the episode ends before the steps they miss")
        index = self.rec.end(bool(request.data), frontier)
        outcome = "success" if request.data else "failure"
        if index < 0:
            response.success, response.message = False, "episode had no complete step: nothing written"
            self._event("discard")
        else:
            response.success = True
            reasons = f" ({self.rec.episode_drop_reasons})" if self.rec.dropped else ""
            response.message = (f"episode {index}: {outcome}, {self.rec.steps} steps, "
                                f"{self.rec.dropped} dropped{reasons}")
            self._event(outcome)
        self.get_logger().info(response.message)
        return response

    def _behind(self, frontier: int | None) -> list[str]:
        limit = (frontier or 0) - self.rec.period
        return sorted(t for t in self.rec.codecs if (e := self.rec.sampler.newest(t)) is None or e.stamp < limit)

    def _on_discard(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        if not self.rec.active or self._ending is not None:
            response.success, response.message = False, "no episode is being recorded"
        else:
            self.rec.discard()
            response.success, response.message = True, f"episode {self.store.n_episodes} discarded"
            self._event("discard")
        return response

    # ------------------------------------------------------------------------------ shutdown
    def close(self) -> None:
        """End cleanly: the active episode is discarded (or kept as a failure), the store closed."""
        if self.rec.active:
            if self.params.keep_on_shutdown:
                index = self.rec.end(False, self.rec.end_frontier())
                log.info("shutdown: active episode kept as failure (episode %d)", index)
            else:
                self.rec.discard()
                log.info("shutdown: active episode discarded")
        self.writer.close()
        self.store.close()
        log.info("%s: closed with %d episodes", self.store.path, self.store.n_episodes)


def main() -> None:
    """Console entry point: ``ros2 run robot_learning recorder --ros-args ...``."""
    raise SystemExit(run_node(Recorder))


if __name__ == "__main__":
    main()
