"""sim_robot: a simulated task behind the robot interface (DESIGN.md section 7).

Publishes the task's observations on the topics its TaskSpec binds (``sensor_msgs/JointState``,
``sensor_msgs/Image`` rgb8 per camera, ``geometry_msgs/PointStamped``, ... all stamped), optionally also
``sensor_msgs/CompressedImage`` on ``<camera topic>/compressed``, and consumes the task's command topic.
A real robot driver publishing the same topics takes its place.

- ``realtime: true``: a timer at the control rate applies the latest command (zero when none arrived
  within ``command_timeout``), steps the simulation and publishes the new state stamped with the clock.
- ``realtime: false`` (lock-step, as fast as possible): nothing is published before the first reset
  (simulated time starts with an episode). After publishing a state stamped ``t`` the robot waits for a
  command stamped ``t`` or later (a controller stamps its command with the observation it answers),
  steps, and publishes the next state stamped ``t + period``. While it waits it re-sends the current
  state every ``heartbeat`` seconds (same stamp, so subscribers ignore the copy), which heals a message
  lost in transit.

Services: ``~/reset`` (Trigger: new episode, publishes its first state before answering) and
``~/success`` (Trigger: ``success`` is the task's success test on the current state).

    python -m ros_nodes.sim_robot --ros-args -p task:=arm_reach -p realtime:=true
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from std_srvs.srv import Trigger

from robot_learning.data.convert.ros_msgs import (ACTION_KEY, MessageMismatch, bindings, set_stamp, stamp_ns,
                                                  topic_codecs)
from robot_learning.spec import SpecError
from robot_learning.streams import NS_PER_S
from ros_nodes.common import (COMMAND_QOS, RobotLearningNode, declare_parameters, message_class, now_ns, run_node,
                              sensor_qos)

PARAMETERS = {
    "task": "arm_reach",       # configs/task/<name>.yaml (must name a simulated env)
    "seed": 0,                 # seeds the simulator's reset distribution
    "realtime": False,         # true: paced by a timer at the control rate; false: lock-step
    "rate_hz": 0.0,            # control rate; 0 = the task's control_hz
    "command_timeout": 0.25,   # realtime: a command older than this (s) is replaced by zeros
    "heartbeat": 0.2,          # lock-step: re-send the current state after this long without a step (s)
    "compressed": "",          # "", "jpeg" or "png": also publish CompressedImage on <camera topic>/compressed
    "frame_id": "world",       # header.frame_id of published messages
    "depth": 5,                # publisher queue depth (sensor-data QoS)
}


class SimRobot(RobotLearningNode):
    """A gymnasium task from ``sim`` published and commanded over ROS 2."""

    default_name = "sim_robot"

    def __init__(self, **kwargs: Any):
        super().__init__(self.default_name, **kwargs)
        import sim  # local: the simulator is only needed by this node

        p = self.params = declare_parameters(self, PARAMETERS)
        if p.compressed not in ("", "jpeg", "png"):
            raise SpecError(f"node '{self.get_name()}': parameter 'compressed': expected '', 'jpeg' or 'png', "
                            f"found {p.compressed!r}")
        self.spec = sim.registry.load_spec(p.task)
        self.env = sim.make_env(self.spec, seed=p.seed, terminate_on_success=False)
        self.period = round(NS_PER_S / (p.rate_hz or self.spec.control_hz))
        codecs = topic_codecs(self.spec, bindings(self.spec))
        if p.compressed:
            raw = bindings(self.spec, self.spec.image_keys)
            codecs |= topic_codecs(self.spec, bindings(self.spec, self.spec.image_keys, overrides={
                k: {"topic": f"{raw[k].topic}/compressed", "msg": "sensor_msgs/msg/CompressedImage"} for k in raw}))
        self.outputs = []
        for topic, codec in codecs.items():
            cls = message_class(codec.msg)
            self.outputs.append((codec, cls, self.create_publisher(cls, topic, sensor_qos(p.depth))))
        action = topic_codecs(self.spec, bindings(self.spec, [], action=True))
        (self.command_codec,) = action.values()
        self.create_subscription(message_class(self.command_codec.msg), self.command_codec.topic, self._on_command,
                                 COMMAND_QOS)
        self.create_service(Trigger, "~/reset", self._on_reset)
        self.create_service(Trigger, "~/success", self._on_success)
        self._command: tuple[np.ndarray, int] | None = None
        self._command_problem = False
        self.obs, info = self.env.reset(seed=p.seed)
        self.success = bool(info["success"])
        self.stamp = now_ns(self)
        self._published_at: float | None = None
        if p.realtime:
            self.create_timer(self.period / NS_PER_S, self._on_tick)
            self._publish()
        else:
            self.create_timer(p.heartbeat, self._on_heartbeat)
        self.get_logger().info(f"task '{self.spec.name}' at {NS_PER_S / self.period:g} Hz, "
                               f"{'realtime' if p.realtime else 'lock-step'}; commands on '{self.command_codec.topic}'")

    # ------------------------------------------------------------------------------ state
    def _publish(self) -> None:
        values = self.obs
        for codec, cls, pub in self.outputs:
            if codec.msg.endswith("/CompressedImage"):
                msg = cls(format=self.params.compressed)
            else:
                msg = cls()
            set_stamp(msg, self.stamp, self.params.frame_id)
            pub.publish(codec.encode(msg, values))
        self._published_at = time.monotonic()

    def _step(self, action: np.ndarray) -> None:
        self.obs, _, _, _, info = self.env.step(action)
        self.success = bool(info["success"])

    # ------------------------------------------------------------------------------ callbacks
    def _on_command(self, msg: Any) -> None:
        try:
            action = self.command_codec.decode(msg)[ACTION_KEY]
        except MessageMismatch as e:
            if not self._command_problem:
                self._command_problem = True
                self.get_logger().error(f"{e} (such commands are ignored)")
            return
        stamp = stamp_ns(msg)
        if self.params.realtime:
            self._command = (action, now_ns(self))
        elif self._published_at is not None and stamp >= self.stamp:
            self._step(action)
            self.stamp += self.period
            self._publish()

    def _on_tick(self) -> None:
        fresh = self._command is not None and now_ns(self) - self._command[1] <= self.params.command_timeout * NS_PER_S
        self._step(self._command[0] if fresh else np.zeros(self.spec.action.dim, dtype=np.float32))
        self.stamp = now_ns(self)
        self._publish()

    def _on_heartbeat(self) -> None:
        if self._published_at is not None and time.monotonic() - self._published_at >= self.params.heartbeat:
            self._publish()

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        self.obs, info = self.env.reset()
        self.success = bool(info["success"])
        self._command = None
        self.stamp = now_ns(self) if self.params.realtime else self.stamp + self.period
        self._publish()
        response.success, response.message = True, f"reset: first state stamped {self.stamp}"
        return response

    def _on_success(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        response.success = self.success
        response.message = f"state stamped {self.stamp}: {'success' if self.success else 'not yet successful'}"
        return response

    def close(self) -> None:
        self.env.close()


def main() -> None:
    """Console entry point: ``ros2 run robot_learning sim_robot --ros-args ...``."""
    raise SystemExit(run_node(SimRobot))


if __name__ == "__main__":
    main()
