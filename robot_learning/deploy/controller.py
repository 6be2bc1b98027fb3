"""One control step of a deployed policy: observation -> ONNX inference -> safety layer -> command.

The ROS policy node (``ros_nodes/policy.py``) and the in-process runner (``deploy/runner.py``) both run
:class:`SafePolicy`, so a policy makes the same decisions in the gymnasium env as on the robot. The node
additionally assembles observations from timestamped streams with :class:`StreamObservation`:

- lock-step: act once per new complete observation (the sampler's watermark), so a lock-step robot
  advances one step per command; the observation's age is the skew between its streams (simulated time
  has no wall-clock age). With a ``gate`` stream, an observation is complete only when the gate carries
  exactly its stamp: an episode driver's permission to act on that state.
- real-time: on every control tick take the newest message of each stream; the observation's age is
  the wall-clock age of the oldest stream read (header stamps), which the watchdog checks.

Commands are stamped with the newest stamp the observation holds: the observation they answer.
Nothing here imports rclpy.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from robot_learning.config import ConfigError, build
from robot_learning.deploy.safety import SOURCES, Decision, SafetyConfig, SafetyLayer
from robot_learning.deploy.timing import Histogram
from robot_learning.export.runtime import OnnxPolicy
from robot_learning.spec import SpecError, TaskSpec
from robot_learning.streams import NS_PER_S, StreamSampler, StreamSpec


def max_delta_values(value: float | Sequence[float] | None, dim: int, where: str = "max_delta") -> list[float] | None:
    """The per-dimension delta cap of a config value: None, 0 or [0] -> the task's ``action.max_delta``
    (None); one number -> that cap for every dimension; ``dim`` numbers -> per dimension.

    ROS parameters cannot hold an empty list or null, hence 0 for "the task's".
    """
    values = [] if value is None else [float(value)] if isinstance(value, (int, float)) else [float(v) for v in value]
    if not values or values == [0.0]:
        return None
    if len(values) == 1:
        values = values * dim
    if len(values) != dim or any(v <= 0 for v in values):
        raise ConfigError(f"{where}: expected 0 (the task's), one positive number or {dim} positive numbers, "
                          f"found {list(value) if not isinstance(value, (int, float)) else value}")
    return values


def safety_config(values: Mapping[str, Any], spec: TaskSpec, where: str) -> SafetyConfig:
    """A :class:`SafetyConfig` from config values or node parameters of the same names (``max_delta`` as in
    :func:`max_delta_values`); errors name ``where``, the field, expected and found."""
    values = dict(values)
    if "max_delta" in values:
        values["max_delta"] = max_delta_values(values["max_delta"], spec.action.dim, where=f"{where}.max_delta")
    return build(SafetyConfig, values, where=where)


@dataclass
class HumanInput:
    """The latest teleop command and deadman state, with their receive times (ns)."""

    action: np.ndarray | None = None
    action_at: int | None = None
    deadman: bool = False
    deadman_at: int | None = None

    def ages(self, now_ns: int) -> dict[str, Any]:
        """Keyword arguments of :meth:`SafetyLayer.step` at ``now_ns``."""
        return {"teleop_action": self.action,
                "teleop_age_s": None if self.action_at is None else (now_ns - self.action_at) / NS_PER_S,
                "deadman_held": self.deadman,
                "deadman_age_s": None if self.deadman_at is None else (now_ns - self.deadman_at) / NS_PER_S}


class SafePolicy:
    """An :class:`OnnxPolicy` behind a :class:`SafetyLayer`: one call per control step, timed and counted.

    Refuses (PolicyFileError) a policy whose TaskSpec does not match the robot's ``spec``. Inference is
    skipped when the safety layer would not execute it (e-stop latched, stale observation, teleop
    override); an observation the policy rejects (wrong shape, NaN) gives the stop command and is kept in
    :attr:`last_error`.
    """

    def __init__(self, policy: OnnxPolicy, spec: TaskSpec, config: SafetyConfig):
        policy.check_task(spec)
        self.policy = policy
        self.spec = spec
        self.layer = SafetyLayer(spec, config)
        self.inference = Histogram()
        self.sources = dict.fromkeys(SOURCES, 0)
        self.clipped = 0
        self.rate_limited = 0
        self.last_error = ""

    def step(self, obs: Mapping[str, np.ndarray] | None, *, obs_age_s: float | None,
             human: Mapping[str, Any] | None = None) -> Decision:
        """The command for this step from one (unbatched) observation; ``human`` from :meth:`HumanInput.ages`."""
        human = dict(human or {})
        action = None
        if obs is not None and self.layer.needs_policy(obs_age_s=obs_age_s, teleop_action=human.get("teleop_action"),
                                                       teleop_age_s=human.get("teleop_age_s")):
            start = time.perf_counter()
            try:
                action = self.policy(obs)
            except SpecError as e:
                self.last_error = str(e)
            self.inference.add(time.perf_counter() - start)
        decision = self.layer.step(action, obs_age_s=obs_age_s, **human)
        self.sources[decision.source] += 1
        self.clipped += decision.clipped
        self.rate_limited += decision.rate_limited
        return decision

    def stats(self) -> dict[str, Any]:
        """Decision counts and inference latency (what status topics and summaries report)."""
        return {"sources": dict(self.sources), "clipped": self.clipped, "rate_limited": self.rate_limited,
                "inference_ms": self.inference.summary_ms()}


@dataclass(frozen=True)
class Observation:
    """The observation a control step acts on: merged values, the stamp a command answering it carries, its age."""

    values: dict[str, np.ndarray] | None
    stamp: int | None
    age_s: float | None


class StreamObservation:
    """The policy's observation from timestamped streams (one per topic, values already decoded)."""

    def __init__(self, topics: Sequence[str], *, lockstep: bool, gate: str | None = None):
        if gate is not None and not lockstep:
            raise ValueError("gate: expected lock-step mode (a gate permits states one by one), found real-time")
        self.sampler = StreamSampler([StreamSpec(t) for t in [*topics, *([gate] if gate else [])]])
        self.lockstep = lockstep
        self.gate = gate
        self._answered: int | None = None

    def push(self, topic: str, stamp: int, received: int, values: Mapping[str, np.ndarray]) -> None:
        self.sampler.push(topic, stamp, received, values)

    def take(self, now_ns: int) -> Observation | None:
        """The observation to act on now; None in lock-step when no new complete observation has arrived."""
        if self.lockstep:
            sample = self.sampler.complete(self._answered)
            if sample is None or (self.gate is not None and sample.entries[self.gate].stamp != sample.time):
                return None   # nothing new, or a gate for a later state arrived before that state did
        else:
            frontier = self.sampler.frontier()
            sample = self.sampler.sample(now_ns if frontier is None else max(now_ns, frontier))
            if sample.missing:
                return Observation(None, None, None)
        stamps = [e.stamp for e in sample.entries.values()]
        values: dict[str, np.ndarray] = {}
        for part in sample.values.values():
            values.update(part)
        oldest, newest = min(stamps), max(stamps)
        age_ns = newest - oldest if self.lockstep else max(0, now_ns - oldest)
        self._answered = newest
        self.sampler.prune(oldest)
        return Observation(values, newest, age_ns / NS_PER_S)
