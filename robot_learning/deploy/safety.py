"""The safety layer between a policy and the robot: every command the policy node publishes passes here.

Layers, in priority order (ecosystem.md §5.9):
1. **E-stop** (latched): once asserted, the robot gets the stop command until the e-stop signal is clear
   AND someone explicitly re-arms; clearing the signal alone never restarts motion.
2. **Watchdog**: observations older than ``max_obs_age_s`` (or none yet) mean no inference on stale
   data: the stop command is sent.
3. **Human priority**: a fresh teleop command overrides the policy; with ``deadman`` enabled the policy
   may drive only while the deadman signal is held and fresh.
4. **Limits**: clip to the TaskSpec's action limits, then cap the per-step change from the last
   executed command (``max_delta``). Stops are never rate-limited.

The stop command is zero (velocity-like commands) or a hold of the last executed command
(position-like commands), by configuration. The layer is plain numpy: the node feeds it timestamps,
so it is tested without ROS or wall-clock time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from robot_learning.spec import TaskSpec

SOURCES = ("policy", "teleop", "stop")


@dataclass
class SafetyConfig:
    """Safety parameters of the policy node (ROS parameters of the same names)."""

    # Clip every command to the TaskSpec's action limits.
    clip_to_limits: bool = True
    # Largest change per control step, per action dimension (task units); None = the TaskSpec's action.max_delta.
    max_delta: list[float] | None = None
    # Observations older than this many seconds are stale: the watchdog sends the stop command.
    max_obs_age_s: float = 0.2
    # The stop command: "zero" (velocity commands: the safe command is no motion) or "hold" (repeat the last executed).
    stop_action: str = "zero"
    # Deadman: the policy drives only while the teleop deadman signal is held (and fresh).
    deadman: bool = False
    # A teleop command or deadman signal older than this many seconds no longer counts.
    teleop_timeout_s: float = 0.3

    def __post_init__(self) -> None:
        if self.stop_action not in ("zero", "hold"):
            raise ValueError(f"stop_action: expected 'zero' or 'hold', found {self.stop_action!r}")
        if self.max_obs_age_s <= 0 or self.teleop_timeout_s <= 0:
            raise ValueError("max_obs_age_s and teleop_timeout_s: expected positive seconds")


@dataclass(frozen=True)
class Decision:
    """What the layer executes this step, and why."""

    action: np.ndarray
    source: str          # "policy" | "teleop" | "stop"
    reason: str          # "" for normal operation; else why the stop command or an override was chosen
    clipped: bool        # limits changed the command
    rate_limited: bool   # the per-step delta cap changed the command


class SafetyLayer:
    """Stateful safety filter for one robot (see the module docstring for the rules)."""

    def __init__(self, spec: TaskSpec, config: SafetyConfig | None = None):
        self.spec = spec
        self.config = config or SafetyConfig()
        self.low = spec.action.low_array
        self.high = spec.action.high_array
        delta = self.config.max_delta if self.config.max_delta is not None else spec.action.max_delta
        if delta is not None and len(delta) != spec.action.dim:
            raise ValueError(f"max_delta: expected {spec.action.dim} values (one per action dimension), found {len(delta)}")
        self.max_delta = None if delta is None else np.asarray(delta, dtype=np.float32)
        self.last = np.zeros(spec.action.dim, dtype=np.float32)
        self._estop_signal = False
        self._latched = False
        self.estop_reason = ""

    # ------------------------------------------------------------------------------ e-stop
    @property
    def estopped(self) -> bool:
        return self._latched

    def set_estop(self, asserted: bool, reason: str = "estop topic") -> None:
        """Feed the e-stop signal; asserting latches, clearing only allows a later re-arm."""
        self._estop_signal = bool(asserted)
        if asserted and not self._latched:
            self._latched = True
            self.estop_reason = reason

    def rearm(self) -> tuple[bool, str]:
        """Explicit re-arm: succeeds only when the e-stop signal is clear."""
        if not self._latched:
            return True, "not e-stopped"
        if self._estop_signal:
            return False, "e-stop signal still asserted"
        self._latched = False
        self.estop_reason = ""
        return True, "re-armed"

    # ------------------------------------------------------------------------------ step
    def _obs_fresh(self, obs_age_s: float | None) -> bool:
        return obs_age_s is not None and obs_age_s <= self.config.max_obs_age_s

    def _teleop_fresh(self, teleop_action: np.ndarray | None, teleop_age_s: float | None) -> bool:
        return (teleop_action is not None and teleop_age_s is not None
                and teleop_age_s <= self.config.teleop_timeout_s)

    def needs_policy(self, *, obs_age_s: float | None, teleop_action: np.ndarray | None = None,
                     teleop_age_s: float | None = None) -> bool:
        """Whether :meth:`step` with these inputs could execute a policy action (else: skip inference)."""
        return not self._latched and self._obs_fresh(obs_age_s) and not self._teleop_fresh(teleop_action, teleop_age_s)

    def _stop(self, reason: str) -> Decision:
        action = self.last.copy() if self.config.stop_action == "hold" else np.zeros_like(self.last)
        self.last = action
        return Decision(action, "stop", reason, False, False)

    def step(self, policy_action: np.ndarray | None, *, obs_age_s: float | None,
             teleop_action: np.ndarray | None = None, teleop_age_s: float | None = None,
             deadman_held: bool = False, deadman_age_s: float | None = None) -> Decision:
        """Decide the command for this control step.

        ``obs_age_s`` is the age of the oldest observation stream the policy read (None: nothing yet);
        ``teleop_*``/``deadman_*`` describe the latest human input (ages in seconds, None: never seen).
        """
        cfg = self.config
        if self._latched:
            return self._stop(f"e-stop latched ({self.estop_reason}); re-arm required")
        if self._teleop_fresh(teleop_action, teleop_age_s):
            command, source, reason = np.asarray(teleop_action, dtype=np.float32), "teleop", "teleop override"
        else:
            if not self._obs_fresh(obs_age_s):
                age = "no observation yet" if obs_age_s is None else f"observation {obs_age_s * 1e3:.0f} ms old"
                return self._stop(f"watchdog: {age} (limit {cfg.max_obs_age_s * 1e3:.0f} ms)")
            if cfg.deadman:
                held = deadman_held and deadman_age_s is not None and deadman_age_s <= cfg.teleop_timeout_s
                if not held:
                    return self._stop("deadman released")
            if policy_action is None:
                return self._stop("no policy action")
            command, source, reason = np.asarray(policy_action, dtype=np.float32), "policy", ""
        if command.shape != self.last.shape or not np.all(np.isfinite(command)):
            return self._stop(f"invalid {source} command {command.tolist()}")
        clipped = False
        if cfg.clip_to_limits:
            limited = np.clip(command, self.low, self.high)
            clipped = bool(np.any(limited != command))
            command = limited
        rate_limited = False
        if self.max_delta is not None:
            limited = np.clip(command, self.last - self.max_delta, self.last + self.max_delta)
            rate_limited = bool(np.any(limited != command))
            command = limited
        self.last = command.astype(np.float32)
        return Decision(self.last.copy(), source, reason, clipped, rate_limited)
