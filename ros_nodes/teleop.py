"""teleop: drive the robot by keyboard, gamepad or the simulator's scripted expert, and run episodes.

Modes (parameter ``mode``):
- ``scripted``: the task's expert (``sim.make_expert``, Gaussian action ``noise``), or a dataset quality
  ``tier`` (``configs/sim/tier``: expert | medium | noisy | random | mixed, drawn per episode) reads the observation
  from the robot's topics like any controller would and answers each new observation with a command
  stamped with that observation's stamp. It runs ``episodes`` episodes: start the recording, reset the
  robot, act until the robot's ``success`` service says so (``success_source: service``) or the step
  budget ends it (``budget``: always run the whole budget), end the recording with the outcome; then it
  exits. This is how CI and the demo collect.
- ``keyboard``: keys nudge each action dimension (sticky, a stop key zeroes), other keys start, end
  (success/failure) or discard episodes. Raw terminal input: works over SSH without a display.
- ``joy``: ``sensor_msgs/Joy`` axes -> command while the deadman button is held; buttons control episodes.

Episode control calls the recorder's services (``<recorder>/start_episode``, ``end_episode``,
``discard_episode``); the robot's are ``<robot>/reset`` and ``<robot>/success``. Commands are reliable.

    python -m ros_nodes.teleop --ros-args -p task:=arm_reach -p mode:=scripted -p episodes:=5
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from sensor_msgs.msg import Joy
from std_srvs.srv import SetBool, Trigger

from robot_learning.data.convert.ros_msgs import (ACTION_KEY, MessageMismatch, bindings, set_stamp, stamp_ns,
                                                  topic_codecs)
from robot_learning.spec import SpecError, TaskSpec
from robot_learning.streams import NS_PER_S, StreamSampler, StreamSpec
from ros_nodes.common import (COMMAND_QOS, RobotLearningNode, call, declare_parameters, message_class, now_ns,
                              run_node, sensor_qos, spin_until)
from ros_nodes.teleop_input import JoyCommand, KeyboardCommand, TtyKeys


PARAMETERS = {
    "task": "arm_reach",          # configs/task/<name>.yaml or a task YAML path
    "mode": "scripted",           # scripted | keyboard | joy
    "robot": "/sim_robot",        # node whose ~/reset and ~/success services the scripted mode calls
    "reset_on_start": True,       # keyboard/joy: reset the robot (its ~/reset, when offered) before each episode
    "recorder": "/recorder",      # node whose episode services are called ("" = no recording)
    "rate_hz": 0.0,               # keyboard/joy command rate; 0 = the task's control_hz
    "timeout": 10.0,              # s to wait for services, observations and the recorder to accept a start
    # scripted
    "episodes": 1,                # episodes to run, then exit
    "noise": 0.0,                 # Gaussian action noise std as a fraction of the action half-range
    "tier": "",                   # a quality tier (configs/sim/tier) instead of expert + noise; "" = expert + noise
    "seed": 0,                    # seeds the expert's noise and the tier's draws
    "max_steps": 0,               # step budget per episode; 0 = the task's max_episode_steps
    "success_source": "service",  # service: end on the robot's success; budget: run to max_steps (outcome at the end)
    "command_subscribers": 1,     # wait until this many nodes (robot, recorder) subscribe to the commands
    # keyboard
    "key_plus": ["w", "a", "r", "t", "g", "b"],   # per action dimension: increase
    "key_minus": ["s", "d", "f", "h", "j", "k"],  # per action dimension: decrease
    "key_step": 0.25,             # change per press, as a fraction of the half-range
    "key_stop": " ",              # zero every dimension
    "key_start": "n", "key_success": "o", "key_failure": "x", "key_discard": "z",
    # joy
    "joy_topic": "joy",
    "joy_axes": [1, 0, 4],        # Joy axis per action dimension
    "joy_scale": [1.0, 1.0, 1.0], # scale (sign) per action dimension
    "joy_deadman": 4,             # button that must be held for commands to move the robot (-1: none)
    "joy_start": 7, "joy_success": 0, "joy_failure": 1, "joy_discard": 2,
    "joy_timeout": 0.5,           # s without a Joy message before the command drops to zero
}


class Teleop(RobotLearningNode):
    """Publishes commands on the task's action topic and drives the recorder's episodes."""

    default_name = "teleop"

    def __init__(self, **kwargs: Any):
        super().__init__(self.default_name, **kwargs)
        p = self.params = declare_parameters(self, PARAMETERS)
        for name, value, allowed in (("mode", p.mode, ("scripted", "keyboard", "joy")),
                                     ("success_source", p.success_source, ("service", "budget"))):
            if value not in allowed:
                raise SpecError(f"node '{self.get_name()}': parameter '{name}': expected one of {list(allowed)}, "
                                f"found {value!r}")
        self.spec = TaskSpec.load(p.task)
        (self.command,) = topic_codecs(self.spec, bindings(self.spec, [], action=True)).values()
        self.command_class = message_class(self.command.msg)
        self.command_pub = self.create_publisher(self.command_class, self.command.topic, COMMAND_QOS)
        self.low, self.high = self.spec.action.low_array, self.spec.action.high_array
        recorder = p.recorder.rstrip("/")
        self.recorder = {name: self.create_client(srv, f"{recorder}/{name}") for name, srv in
                         (("start_episode", Trigger), ("end_episode", SetBool), ("discard_episode", Trigger))} \
            if recorder else {}
        robot = p.robot.rstrip("/")
        self.robot = {name: self.create_client(Trigger, f"{robot}/{name}") for name in ("reset", "success")}
        self.period = 1.0 / (p.rate_hz or self.spec.control_hz)
        self._keys: TtyKeys | None = None
        getattr(self, f"_setup_{p.mode}")()

    # ------------------------------------------------------------------------------ commands
    def publish_command(self, action: np.ndarray, stamp: int) -> None:
        """Publish ``action`` (task units) stamped ``stamp``."""
        msg = self.command_class()
        set_stamp(msg, stamp)
        self.command_pub.publish(self.command.encode(msg, {ACTION_KEY: np.asarray(action, dtype=np.float32)}))

    def _scaled(self, normalised: np.ndarray) -> np.ndarray:
        return (self.low + self.high) / 2 + normalised * (self.high - self.low) / 2

    def _request(self, event: str) -> None:
        """Episode control from keyboard/joy: call the recorder asynchronously and log its answer.

        ``start`` first resets the robot when it offers a reset service (``reset_on_start``; sim_robot does).
        """
        if not self.recorder:
            self.get_logger().warning(f"{event}: no recorder configured (parameter 'recorder')")
            return
        if event == "start":
            start = (self.recorder["start_episode"], Trigger.Request())
            reset = self.robot["reset"]
            if self.params.reset_on_start and reset.service_is_ready():
                reset.call_async(Trigger.Request()).add_done_callback(lambda f: self._call(event, *start))
                return
            self._call(event, *start)
        elif event == "discard":
            self._call(event, self.recorder["discard_episode"], Trigger.Request())
        else:
            self._call(event, self.recorder["end_episode"], SetBool.Request(data=event == "success"))

    def _call(self, event: str, client: Any, request: Any) -> None:
        if not client.service_is_ready():
            self.get_logger().error(f"{event}: service '{client.srv_name}' is not available")
            return
        client.call_async(request).add_done_callback(
            lambda f: self.get_logger().info(f"{event}: {f.result().message}"))

    # ------------------------------------------------------------------------------ keyboard / joy
    def _setup_keyboard(self) -> None:
        p = self.params
        self.keyboard = KeyboardCommand(self.spec.action.dim, p.key_plus, p.key_minus, step=p.key_step, stop=p.key_stop,
                                        events={e: getattr(p, f"key_{e}") for e in ("start", "success", "failure",
                                                                                     "discard")})
        self._keys = TtyKeys()
        self.create_timer(self.period, self._on_keyboard_tick)
        self.get_logger().info(self.keyboard.help())

    def _on_keyboard_tick(self) -> None:
        for key in self._keys.read():
            event = self.keyboard.press(key)
            if event:
                self._request(event)
        self.publish_command(self._scaled(self.keyboard.value), now_ns(self))

    def _setup_joy(self) -> None:
        p = self.params
        self.joy = JoyCommand(self.spec.action.dim, p.joy_axes, p.joy_scale, deadman=p.joy_deadman,
                              buttons={e: getattr(p, f"joy_{e}") for e in ("start", "success", "failure", "discard")},
                              timeout_ns=int(p.joy_timeout * NS_PER_S))
        self.create_subscription(Joy, p.joy_topic, self._on_joy, sensor_qos())
        self.create_timer(self.period, lambda: self.publish_command(self._scaled(self.joy.command(now_ns(self))),
                                                                    now_ns(self)))

    def _on_joy(self, msg: Joy) -> None:
        for event in self.joy.update(msg.axes, msg.buttons, now_ns(self)):
            self._request(event)

    # ------------------------------------------------------------------------------ scripted
    def _setup_scripted(self) -> None:
        import sim  # local: only the scripted mode needs the simulator's expert
        from sim.registry import task_kind
        from sim.tiers import TierPolicy, load_tier

        p = self.params
        if p.tier:
            tier = load_tier(p.tier, task_kind(self.spec).family)
            self.expert = TierPolicy(self.spec, tier, np.random.default_rng(p.seed))
        else:
            self.expert = sim.make_expert(self.spec, noise=p.noise, seed=p.seed)
        self.observations = topic_codecs(self.spec, bindings(self.spec))
        self.sampler = StreamSampler([StreamSpec(t) for t in self.observations])
        self.obs_subs = [self.create_subscription(message_class(c.msg), t, lambda m, t=t: self._on_observation(t, m),
                                                  sensor_qos(10)) for t, c in self.observations.items()]
        self._used = -1

    def _on_observation(self, topic: str, msg: Any) -> None:
        try:
            value = self.observations[topic].decode(msg)
        except MessageMismatch as e:
            raise SpecError(f"scripted teleop: {e}") from None
        self.sampler.push(topic, stamp_ns(msg), now_ns(self), value)

    def _next_observation(self, executor: Any) -> tuple[int, dict[str, np.ndarray]]:
        """The next complete observation no command answered yet, and its stamp."""
        if not spin_until(executor, lambda: self.sampler.complete(self._used) is not None, self.params.timeout):
            raise TimeoutError(f"scripted teleop: expected a new observation on {sorted(self.observations)} within "
                               f"{self.params.timeout} s, found none")
        sample = self.sampler.complete(self._used)
        self._used = sample.time
        obs: dict[str, np.ndarray] = {}
        for values in sample.values.values():
            obs.update(values)
        self.sampler.prune(sample.time)
        return sample.time, obs

    def _wait_ready(self, executor: Any) -> None:
        p = self.params
        ready = spin_until(executor, lambda: all(s.get_publisher_count() for s in self.obs_subs)
                           and self.command_pub.get_subscription_count() >= p.command_subscribers, p.timeout)
        if not ready:
            raise TimeoutError(f"scripted teleop: expected publishers on {sorted(self.observations)} and "
                               f"{p.command_subscribers} subscriber(s) on '{self.command.topic}' within {p.timeout} s")

    def _start_recording(self, executor: Any) -> None:
        """Ask the recorder to start an episode, retrying while it waits for its streams' publishers."""
        if not self.recorder:
            return
        timeout = self.params.timeout
        deadline = time.monotonic() + timeout
        while not (answer := call(executor, self.recorder["start_episode"], Trigger.Request(), timeout)).success:
            if time.monotonic() > deadline:
                raise TimeoutError(f"scripted teleop: expected the recorder to start an episode within "
                                   f"{timeout} s, found: {answer.message}")
            spin_until(executor, lambda: False, 0.1)  # wait a moment, spinning

    def run(self, executor: Any) -> int:
        if self.params.mode != "scripted":
            return super().run(executor)
        p = self.params
        budget = p.max_steps or self.spec.max_episode_steps
        self._wait_ready(executor)
        successes = 0
        for episode in range(p.episodes):
            self._start_recording(executor)
            call(executor, self.robot["reset"], Trigger.Request(), p.timeout)
            steps, success = 0, False
            while True:
                stamp, obs = self._next_observation(executor)
                if steps == 0:
                    self.expert.begin_episode(obs)
                ends = steps >= budget
                if p.success_source == "service" or ends:
                    success = call(executor, self.robot["success"], Trigger.Request(), p.timeout).success
                if ends or (success and p.success_source == "service"):
                    break
                self.publish_command(np.asarray(self.expert.act(obs)).reshape(-1), stamp)
                steps += 1
            successes += success
            if self.recorder:
                answer = call(executor, self.recorder["end_episode"], SetBool.Request(data=success), p.timeout)
                self.get_logger().info(f"episode {episode + 1}/{p.episodes}: {answer.message}")
            else:
                self.get_logger().info(f"episode {episode + 1}/{p.episodes}: {steps} steps, success={success}")
        self.get_logger().info(f"done: {p.episodes} episodes, {successes} successful")
        return 0

    def close(self) -> None:
        if self._keys is not None:
            self._keys.close()


def main() -> None:
    """Console entry point: ``ros2 run robot_learning teleop --ros-args ...``."""
    raise SystemExit(run_node(Teleop))


if __name__ == "__main__":
    main()
