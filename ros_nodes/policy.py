"""policy: run an exported ONNX policy on the robot at the control rate, every command through the safety layer.

A thin adapter around :class:`robot_learning.deploy.controller.SafePolicy` (inference, limits, watchdog,
e-stop latch, teleop priority: the logic lives and is tested there): it subscribes to the topics the
TaskSpec binds for the observation keys the policy reads (sensor-data QoS, header stamps), samples them
with :class:`~robot_learning.deploy.controller.StreamObservation` and publishes the command on the task's
action topic, stamped with the observation it answers.

- ``realtime: false`` (lock-step, for simulation and tests): act once per new complete observation, so
  sim_robot in lock-step advances one step per command. With ``gate_topic`` an observation is complete only
  once a ``std_msgs/Header`` with its stamp arrived there too: an episode driver's permission to act on
  that state (it judges each state before the robot moves on, so episodes end exactly).
- ``realtime: true``: a timer at the control rate acts on the newest observation; the watchdog sends the
  stop command when it is older than ``max_obs_age_s``.

A policy file whose TaskSpec does not match the robot's ``task`` is refused: one error listing every
mismatch, exit code 1.

Topics and services:
- ``estop`` (std_msgs/Bool, reliable, TRANSIENT_LOCAL; parameter ``estop_topic``): true latches the e-stop.
- ``~/rearm`` (std_srvs/Trigger): re-arms only while the e-stop signal is clear.
- ``teleop_topic`` (the task's command type) and ``joy_topic`` (sensor_msgs/Joy, button ``joy_deadman``): a
  fresh human command overrides the policy; with ``deadman`` the policy drives only while the button is held.
- ``~/executed`` (the command type): the executed post-safety command; ``~/decision`` (std_msgs/String JSON,
  latched, on change): source (policy|teleop|stop) and reason; ``~/status`` (std_msgs/String JSON, latched,
  every ``status_period``): decision counts, inference latency, loop period/jitter (summaries, and the
  histograms for windowed percentiles), e-stop, connections.

    python -m ros_nodes.policy --ros-args -p task:=arm_reach -p policy:=policy.onnx -p realtime:=true
"""

from __future__ import annotations

import json
import time
from functools import partial
from typing import Any

from rclpy.time import Time
from sensor_msgs.msg import Joy
from std_msgs.msg import Bool, Header, String
from std_srvs.srv import Trigger

from robot_learning.config import ConfigError
from robot_learning.data.convert.ros_msgs import (ACTION_KEY, MessageMismatch, bindings, set_stamp, stamp_ns,
                                                  topic_codecs)
from robot_learning.deploy.controller import HumanInput, SafePolicy, StreamObservation, safety_config
from robot_learning.deploy.timing import LoopStats, realtime_scheduling
from robot_learning.export.runtime import OnnxPolicy
from robot_learning.spec import TaskSpec
from ros_nodes.common import (COMMAND_QOS, LATCHED_QOS, RobotLearningNode, declare_parameters, message_class, now_ns,
                              run_node, sensor_qos)

SAFETY_KEYS = ("clip_to_limits", "max_delta", "max_obs_age_s", "stop_action", "deadman", "teleop_timeout_s")

PARAMETERS = {
    "task": "arm_reach",         # the robot's task: configs/task/<name>.yaml or a task YAML path
    "policy": "",                # exported ONNX policy file (robot-learning export); required
    "realtime": False,           # true: a timer at the control rate; false: lock-step (act per new observation)
    "rate_hz": 0.0,              # real-time control rate; 0 = the task's control_hz
    "device": "auto",            # onnxruntime providers: auto (CUDA when present) | cpu | cuda
    "intra_op_threads": 1,       # onnxruntime threads (1 is fastest for batch-1 MLPs, measurements.md)
    # safety layer (robot_learning/deploy/safety.py SafetyConfig)
    "clip_to_limits": True,      # clip every command to the task's action limits
    "max_delta": [0.0],          # per-step change cap: [0.0] = the task's action.max_delta, [x] = x for every dim
    "max_obs_age_s": 0.2,        # s: an older observation is stale; the watchdog sends the stop command
    "stop_action": "zero",       # zero (velocity commands) | hold (repeat the last executed command)
    "deadman": False,            # the policy drives only while the Joy deadman button is held (needs joy_topic)
    "teleop_timeout_s": 0.3,     # s: a teleop command or deadman signal older than this no longer counts
    "estop_topic": "estop",      # std_msgs/Bool, latched: true asserts the e-stop
    "teleop_topic": "",          # human commands (the task's command type) overriding the policy; "" = none
    "joy_topic": "",             # sensor_msgs/Joy carrying the deadman button; "" = none
    "joy_deadman": 4,            # Joy button index of the deadman
    "gate_topic": "",            # lock-step: also wait for a std_msgs/Header stamped like the observation here
    "rt_priority": 0,            # 1-99: run under SCHED_FIFO at this priority (needs CAP_SYS_NICE); 0 = normal
    "status_period": 1.0,        # s between ~/status messages
    "depth": 5,                  # observation subscription queue depth (sensor-data QoS)
}


class PolicyNode(RobotLearningNode):
    """Publishes the safe command of an ONNX policy for each observation (lock-step) or tick (real-time)."""

    default_name = "policy"

    def __init__(self, **kwargs: Any):
        super().__init__(self.default_name, **kwargs)
        p = self.params = declare_parameters(self, PARAMETERS)
        where = f"node '{self.get_fully_qualified_name()}'"
        if not p.policy:
            raise ConfigError(f"{where}: parameter 'policy': expected an ONNX policy file, found none (-p policy:=...)")
        if p.realtime and p.gate_topic:
            raise ConfigError(f"{where}: parameter 'gate_topic': expected '' in real-time mode (a gate paces "
                              f"lock-step only), found {p.gate_topic!r}")
        if p.deadman and not p.joy_topic:
            raise ConfigError(f"{where}: parameter 'deadman': true needs a 'joy_topic' carrying the deadman button, "
                              "found joy_topic ''")
        self.spec = TaskSpec.load(p.task)
        policy = OnnxPolicy(p.policy, device=p.device, intra_op_threads=p.intra_op_threads)
        config = safety_config({k: getattr(p, k) for k in SAFETY_KEYS}, self.spec, where=f"{where} parameters")
        self.safe = SafePolicy(policy, self.spec, config)   # refuses a policy for another task
        self.period_s = 1.0 / (p.rate_hz or self.spec.control_hz)
        self.loop = LoopStats(self.period_s)
        self.human = HumanInput()
        self._decision_key: tuple[str, str] | None = None
        self._problems: set[str] = set()

        codecs = topic_codecs(self.spec, bindings(self.spec, policy.obs_keys))
        self.observations = StreamObservation(list(codecs), lockstep=not p.realtime, gate=p.gate_topic or None)
        self.subs = {topic: self.create_subscription(message_class(codec.msg), topic,
                                                     partial(self._on_observation, topic, codec), sensor_qos(p.depth))
                     for topic, codec in codecs.items()}
        if p.gate_topic:
            self.create_subscription(Header, p.gate_topic, self._on_gate, COMMAND_QOS)
        (self.command,) = topic_codecs(self.spec, bindings(self.spec, [], action=True)).values()
        self.command_class = message_class(self.command.msg)
        self.command_pub = self.create_publisher(self.command_class, self.command.topic, COMMAND_QOS)
        self.executed_pub = self.create_publisher(self.command_class, "~/executed", COMMAND_QOS)
        self.decision_pub = self.create_publisher(String, "~/decision", LATCHED_QOS)
        self.status_pub = self.create_publisher(String, "~/status", LATCHED_QOS)
        self.create_subscription(Bool, p.estop_topic, self._on_estop, LATCHED_QOS)
        self.create_service(Trigger, "~/rearm", self._on_rearm)
        if p.teleop_topic:
            (self.teleop,) = topic_codecs(self.spec, bindings(self.spec, [], action=True, overrides={
                ACTION_KEY: {"topic": p.teleop_topic}})).values()
            self.create_subscription(self.command_class, p.teleop_topic, self._on_teleop, COMMAND_QOS)
        if p.joy_topic:
            self.create_subscription(Joy, p.joy_topic, self._on_joy, sensor_qos())
        self.control_timer = self.create_timer(self.period_s, self._on_tick) if p.realtime else None
        self.create_timer(p.status_period, self._publish_status)
        self._publish_status()
        if p.rt_priority:
            problem = realtime_scheduling(p.rt_priority)
            if problem:
                self.get_logger().warning(f"real-time scheduling not enabled: {problem}; running at normal priority")
        self.get_logger().info(
            f"{policy.algorithm} policy {p.policy} on task '{self.spec.name}': "
            f"{f'real-time at {1 / self.period_s:g} Hz' if p.realtime else 'lock-step'}, observations "
            f"{sorted(codecs)}, commands on '{self.command.topic}', e-stop on '{p.estop_topic}'")

    # ------------------------------------------------------------------------------ control
    def _on_observation(self, topic: str, codec: Any, msg: Any) -> None:
        try:
            values = codec.decode(msg)
        except MessageMismatch as e:
            self._problem(topic, f"{e} (such messages are ignored)")
            return
        received = now_ns(self)
        stamp = stamp_ns(msg)
        self.observations.push(topic, received if stamp is None else stamp, received, values)
        if not self.params.realtime:
            self._act(received)

    def _on_gate(self, msg: Header) -> None:
        received = now_ns(self)
        self.observations.push(self.params.gate_topic, Time.from_msg(msg.stamp).nanoseconds, received, {})
        self._act(received)

    def _on_tick(self) -> None:
        self._act(now_ns(self))

    def _act(self, now: int) -> None:
        start = time.perf_counter()
        obs = self.observations.take(now)
        if obs is None:
            return
        if self.params.realtime:
            self.loop.tick(start)
        decision = self.safe.step(obs.values, obs_age_s=obs.age_s, human=self.human.ages(now))
        msg = self.command_class()
        set_stamp(msg, now if obs.stamp is None else obs.stamp)
        self.command.encode(msg, {ACTION_KEY: decision.action})
        self.command_pub.publish(msg)
        self.executed_pub.publish(msg)
        key = (decision.source, decision.reason.partition(":")[0])
        if key != self._decision_key:
            self._decision_key = key
            self._on_decision_change(decision.source, decision.reason, obs.stamp)
        if self.safe.last_error:
            self._problem("policy", f"policy input rejected: {self.safe.last_error}")
        self.loop.done(start, time.perf_counter())

    def _on_decision_change(self, source: str, reason: str, stamp: int | None) -> None:
        """Publish the new decision source/reason and log it (rare: only when it changes)."""
        self.decision_pub.publish(String(data=json.dumps({"source": source, "reason": reason, "stamp": stamp})))
        if source == "stop":
            self.get_logger().warning(f"stop command: {reason}")
        else:
            self.get_logger().info(f"{source} drives" + (f" ({reason})" if reason else ""))

    def _problem(self, key: str, text: str) -> None:
        """Log a recurring problem once per source (no log line per message in the control path)."""
        if key not in self._problems:
            self._problems.add(key)
            self.get_logger().error(text)

    # ------------------------------------------------------------------------------ safety inputs
    def _on_estop(self, msg: Bool) -> None:
        was = self.safe.layer.estopped
        self.safe.layer.set_estop(msg.data, reason=f"'{self.params.estop_topic}' topic")
        if self.safe.layer.estopped and not was:
            self.get_logger().warning(f"e-stop latched by '{self.params.estop_topic}'; re-arm with ~/rearm once clear")

    def _on_rearm(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        response.success, response.message = self.safe.layer.rearm()
        self.get_logger().info(f"re-arm: {response.message}")
        self._publish_status()
        return response

    def _on_teleop(self, msg: Any) -> None:
        try:
            self.human.action = self.teleop.decode(msg)[ACTION_KEY]
        except MessageMismatch as e:
            self._problem("teleop", f"{e} (such commands are ignored)")
            return
        self.human.action_at = now_ns(self)

    def _on_joy(self, msg: Joy) -> None:
        button = self.params.joy_deadman
        self.human.deadman = 0 <= button < len(msg.buttons) and bool(msg.buttons[button])
        self.human.deadman_at = now_ns(self)

    # ------------------------------------------------------------------------------ status
    def status(self) -> dict[str, Any]:
        """What ``~/status`` reports (JSON)."""
        layer = self.safe.layer
        return {"node": self.get_fully_qualified_name(), "task": self.spec.name, "policy": self.params.policy,
                "algorithm": self.safe.policy.algorithm, "mode": "real-time" if self.params.realtime else "lock-step",
                "rate_hz": 1.0 / self.period_s, "estop": {"latched": layer.estopped, "reason": layer.estop_reason},
                "decisions": self.safe.stats(), "loop": self.loop.summary(), "last_error": self.safe.last_error,
                "histograms": {name: h.state() for name, h in
                               {**self.loop.histograms(), "inference": self.safe.inference}.items()},
                "connected": {"command_subscribers": self.command_pub.get_subscription_count(),
                              "observation_publishers": {t: s.get_publisher_count() for t, s in self.subs.items()}},
                "time_ns": now_ns(self)}

    def _publish_status(self) -> None:
        self.status_pub.publish(String(data=json.dumps(self.status())))


def main() -> None:
    """Console entry point: ``ros2 run robot_learning policy --ros-args ...``."""
    raise SystemExit(run_node(PolicyNode))


if __name__ == "__main__":
    main()
