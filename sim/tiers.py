"""Dataset quality tiers and the behaviour policies that realise them.

A tier (``configs/sim/tier/<name>.yaml``) says how episodes are produced: which controller (the expert,
the weaker ``medium`` checkpoint where a task has one, or uniform random actions), how much Gaussian
action noise, how often a uniformly random action replaces the controller's (epsilon), and how
often an episode *wanders*: the expert heads to random goals instead of the task's (D4RL's
"diverse" datasets). A tier can specialise any of these per task family (``overrides``), and a
``mixture`` tier draws each episode's tier from the others.

:class:`BehaviourPolicy` is one such controller-with-corruption, batched over a leading axis;
:class:`TierPolicy` picks a behaviour per episode (mixtures) and labels it for the episode metadata.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from robot_learning.spec import TaskSpec
from sim.config import available, config_error, fraction, load_named, non_negative_number, positive_number
from sim.registry import resolve, task_kind

#: Controllers a tier can name: ``random`` is uniform actions, the others are expert checkpoints.
POLICIES = ("expert", "medium", "random")
#: Task families tiers can specialise (``overrides`` keys).
FAMILIES = ("arm", "maze", "locomotion")


@dataclass(frozen=True)
class Tier:
    """How a tier's episodes are produced (all fractions in [0, 1])."""

    name: str
    policy: str = "expert"
    action_noise: float = 0.0
    epsilon: float = 0.0
    wander: float = 0.0
    mixture: Mapping[str, float] | None = None


def load_tier(name: str, family: str) -> Tier:
    """Tier ``name`` from ``configs/sim/tier``, specialised for task ``family``; errors name file and field."""
    data, path = load_named("tier", name, "tier")
    overrides = data.pop("overrides", None) or {}
    if not isinstance(overrides, Mapping):
        raise config_error(path, "overrides", "a mapping of task family -> tier fields", overrides)
    for fam in overrides:
        if fam not in FAMILIES:
            raise config_error(path, f"overrides.{fam}", f"a task family, one of {list(FAMILIES)}", fam)
    merged = {**data, **(overrides.get(family) or {})}
    known = [f.name for f in fields(Tier) if f.name != "name"]
    for key in merged:
        if key not in known:
            raise config_error(path, str(key), f"one of {known + ['overrides']}", key)
    if merged.get("policy", "expert") not in POLICIES:
        raise config_error(path, "policy", f"one of {list(POLICIES)}", merged["policy"])
    if "action_noise" in merged:
        merged["action_noise"] = non_negative_number(merged["action_noise"], path, "action_noise")
    for key in ("epsilon", "wander"):
        if key in merged:
            merged[key] = fraction(merged[key], path, key)
    mixture = merged.get("mixture")
    if mixture is not None:
        if not isinstance(mixture, Mapping) or not mixture:
            raise config_error(path, "mixture", "a mapping of tier name -> proportion", mixture)
        for tier_name, share in mixture.items():
            if tier_name == name or tier_name not in available("tier"):
                raise config_error(path, f"mixture.{tier_name}", f"another tier, one of {available('tier')}", tier_name)
            positive_number(share, path, f"mixture.{tier_name}")
    return Tier(name=name, **merged)


def available_tiers() -> list[str]:
    return available("tier")


def make_controller(spec: TaskSpec, policy: str) -> Any:
    """The deterministic controller ``policy`` names for ``spec`` (``None`` for ``random``)."""
    if policy == "random":
        return None
    cls = resolve(task_kind(spec).expert)
    checkpoints = getattr(cls, "checkpoints", ("expert",))
    if policy not in checkpoints:
        raise config_error(f"task '{spec.name}'", "policy", f"one of {list(checkpoints) + ['random']} "
                           f"(the {task_kind(spec).family} family's controllers)", policy)
    return cls(spec, checkpoint=policy) if len(checkpoints) > 1 else cls(spec)


def _as_batch(spec: TaskSpec, obs: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], bool]:
    """``obs`` with a leading batch axis (added if it is one observation), and whether it had one."""
    key = next(k for k in obs if k in spec.obs)
    batched = np.ndim(obs[key]) == len(spec.obs[key].shape) + 1
    return {k: np.asarray(v) if batched else np.asarray(v)[None] for k, v in obs.items()}, batched


class BehaviourPolicy:
    """A controller with Gaussian noise, epsilon-random actions and random-goal wandering; batched.

    ``act`` accepts one observation dict or a batch (arrays with a leading axis). ``reset`` starts
    new episodes for every row: it draws which rows wander and their first goals.
    """

    def __init__(self, spec: TaskSpec, controller: Any, *, policy: str = "expert", action_noise: float = 0.0,
                 epsilon: float = 0.0, wander: float = 0.0, rng: np.random.Generator | None = None):
        if wander and not getattr(controller, "goal_directed", False):
            wander = 0.0  # a controller without goals (locomotion, random) cannot wander
        self.spec = spec
        self.controller = controller
        self.policy = policy
        self.action_noise, self.epsilon, self.wander = action_noise, epsilon, wander
        self.rng = rng if rng is not None else np.random.default_rng()
        self.low, self.high = spec.action.low_array, spec.action.high_array
        self._noise_std = action_noise * (self.high - self.low) / 2
        self._wandering = np.zeros(0, dtype=bool)
        self._goals: np.ndarray | None = None

    @property
    def label(self) -> str:
        """What produced the current episode (row 0), for ``meta/episode/policy``."""
        parts = [self.policy + ("/wander" if self._wandering[:1].any() else "")]
        if self.action_noise:
            parts.append(f"noise={self.action_noise:g}")
        if self.epsilon:
            parts.append(f"epsilon={self.epsilon:g}")
        return " ".join(parts)

    def begin_episode(self, obs: Mapping[str, np.ndarray]) -> str:
        """Start a new episode (every row of ``obs``); returns its label."""
        self.reset(obs)
        return self.label

    def reset(self, obs: Mapping[str, np.ndarray]) -> None:
        """Start a new episode in every row of ``obs``."""
        batch, _ = _as_batch(self.spec, obs)
        n = len(next(iter(batch.values())))
        if self.controller is not None:
            self.controller.reset(batch)
        self._wandering = self.rng.random(n) < self.wander if self.wander else np.zeros(n, dtype=bool)
        if self._wandering.any():
            self._goals = np.stack([self.controller.sample_goal(self.rng) for _ in range(n)])

    def act(self, obs: Mapping[str, np.ndarray]) -> np.ndarray:
        batch, batched = _as_batch(self.spec, obs)
        n = len(next(iter(batch.values())))
        if len(self._wandering) != n:
            self.reset(batch)
        if self.controller is None:
            action = self.rng.uniform(self.low, self.high, size=(n, self.spec.action.dim))
        else:
            action = self._controller_action(batch)
            if self.action_noise:
                action = action + self._noise_std * self.rng.standard_normal(action.shape)
            if self.epsilon:
                random = self.rng.uniform(self.low, self.high, size=action.shape)
                action = np.where((self.rng.random(n) < self.epsilon)[:, None], random, action)
        action = np.minimum(np.maximum(action, self.low), self.high).astype(np.float32)
        return action if batched else action[0]

    def _controller_action(self, batch: Mapping[str, np.ndarray]) -> np.ndarray:
        """The controller's action per row: towards the row's wander goal, or the task's goal."""
        if not self._wandering.any():
            return np.asarray(self.controller.act(batch), dtype=np.float64)
        for i in np.flatnonzero(self._wandering & self.controller.goal_reached(batch, self._goals)):
            self._goals[i] = self.controller.sample_goal(self.rng)
        towards = np.asarray(self.controller.act(batch, goal=self._goals), dtype=np.float64)
        if self._wandering.all():
            return towards
        return np.where(self._wandering[:, None], towards, np.asarray(self.controller.act(batch), dtype=np.float64))


class TierPolicy:
    """The behaviour of a tier: one :class:`BehaviourPolicy`, or a mixture drawn per episode."""

    def __init__(self, spec: TaskSpec, tier: Tier, rng: np.random.Generator):
        family = task_kind(spec).family
        self.rng = rng
        tiers = [load_tier(name, family) for name in tier.mixture] if tier.mixture else [tier]
        shares = np.array(list(tier.mixture.values()), dtype=np.float64) if tier.mixture else np.ones(1)
        self.shares = shares / shares.sum()
        self.behaviours = [BehaviourPolicy(spec, make_controller(spec, t.policy), policy=t.policy,
                                           action_noise=t.action_noise, epsilon=t.epsilon, wander=t.wander, rng=rng)
                           for t in tiers]
        self.tier_names = [t.name for t in tiers]
        self.current = self.behaviours[0]

    def begin_episode(self, obs: Mapping[str, np.ndarray]) -> str:
        """Choose this episode's behaviour and reset it; returns its label for the episode metadata."""
        k = int(self.rng.choice(len(self.behaviours), p=self.shares)) if len(self.behaviours) > 1 else 0
        self.current = self.behaviours[k]
        label = self.current.begin_episode(obs)
        return f"{self.tier_names[k]}: {label}" if len(self.behaviours) > 1 else label

    def act(self, obs: Mapping[str, np.ndarray]) -> np.ndarray:
        return self.current.act(obs)
