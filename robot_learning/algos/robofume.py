"""RoboFuME (Yang, Sobol Mark, Vu, Sharma, Bohg, Finn; ICRA 2024): Cal-QL pre-training, success-classifier
rewards online, reset-free fine-tuning with forward and backward policies.

RoboFuME's code was never released (robofume/robofume.github.io: "Code (Coming Soon)"); what is verified
is the system (shared/reference/algorithms.md section 7): (1) calibrated offline RL (Cal-QL) on diverse
prior data plus target-task demos, (2) a success classifier as the reward, (3) reset-free online
fine-tuning. The losses are Cal-QL's (robot_learning.algos.cql, nakamotoo/Cal-QL), unchanged:

    forward:   Cal-QL on the task, r = 1[success] from the success classifier online (or the simulator's
               sparse reward), transformed to {-5, +5} like Cal-QL's sparse tasks, MC returns on that reward
    backward:  a second Cal-QL learner whose task is to return to the initial-state distribution (MEDAL-style):
               d = || x(s') - x(s_0) || over ``reset_free.return_keys``, s_0 the observation after the last
               hard reset; r_back = 1[d < tolerance] (sparse) or -d (dense); it learns from its own online data

Pre-training data is one or several stores (``dataset.extra`` adds the target demos to the prior data,
train/resolve.py); images go through Cal-QL's encoder (DrQ convs); the online reward is the runtime's
reward hook (train/rewards.py); the reset-free schedule is the runtime's reset-free loop
(train/reset_free.py). docs/algorithms/robofume.md says which parts follow the paper and which are ours.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

import torch

from robot_learning.algos.base import register
from robot_learning.algos.common import check_choice
from robot_learning.algos.cql import CalQL, CalQLConfig
from robot_learning.config import ConfigError
from robot_learning.data.tensors import Batch, TransitionData
from robot_learning.spec import TaskSpec

#: Backward rewards: 1[returned] (transformed like the forward reward) or -distance (untransformed).
BACKWARD_REWARDS = ("sparse", "dense")


@dataclass
class ResetFreeConfig:
    """The reset-free option (MEDAL, Sharma et al. 2022; RoboFuME). Its numbers are our choices: RoboFuME's are
    unpublished, and the defaults suit the sim arm tasks (a few cm tolerance, 50-step attempts)."""

    # Train a backward policy and run the online phase reset-free; False = episodic fine-tuning.
    enabled: bool = False
    # Forward + backward attempt pairs between hard resets (the interventions of a real setup).
    attempts_per_reset: int = 5
    # Steps of one attempt before it counts as failed; None = the task's max_episode_steps.
    attempt_steps: int | None = None
    # Hard reset after a backward attempt that did not return (the next forward attempt would not start from
    # the initial-state distribution).
    reset_on_failure: bool = True
    # Low-dimensional observation keys whose distance to their value after the last hard reset defines
    # "returned" (e.g. [ee_pos] for the arm tasks); required when enabled.
    return_keys: list[str] = field(default_factory=list)
    # Returned when that Euclidean distance is below this (observation units: 5 cm for ee_pos).
    return_tolerance: float = 0.05
    # Backward reward: sparse 1[returned] | dense -distance.
    backward_reward: str = "sparse"

    def __post_init__(self) -> None:
        check_choice("reset_free.backward_reward", self.backward_reward, BACKWARD_REWARDS)
        if self.attempts_per_reset < 1:
            raise ValueError(f"reset_free.attempts_per_reset: expected >= 1, found {self.attempts_per_reset}")
        if self.attempt_steps is not None and self.attempt_steps < 1:
            raise ValueError(f"reset_free.attempt_steps: expected >= 1 or null, found {self.attempt_steps}")
        if self.return_tolerance <= 0:
            raise ValueError(f"reset_free.return_tolerance: expected > 0, found {self.return_tolerance}")
        if self.enabled and not self.return_keys:
            raise ValueError("reset_free.return_keys: expected the low-dimensional keys that define the initial state "
                             "(e.g. [ee_pos]) when reset_free.enabled, found none")


@dataclass
class RoboFuMEConfig(CalQLConfig):
    """Cal-QL's defaults (nakamotoo/Cal-QL) with its sparse-task reward recipe; RoboFuME's own values are unpublished."""

    name: str = "robofume"
    # Success rewards {0, 1} -> {-5, +5}: Cal-QL's sparse-goal transform 10 r - 5 (scripts/run_antmaze.sh); a
    # failed step's raw reward is 0 (ENV_CONFIG antmaze reward_neg), so an all-failure attempt gets MC = -5/(1-gamma).
    reward_scale: float = 10.0
    reward_bias: float = -5.0
    sparse_failure_reward: float | None = 0.0
    # Forward/backward reset-free fine-tuning (MEDAL-style; see ResetFreeConfig).
    reset_free: ResetFreeConfig = field(default_factory=ResetFreeConfig)


def return_reward(distance: torch.Tensor, tolerance: float, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Backward task: (reward, success) with success = 1[d < tol] and reward = success (sparse) or -d (dense).

    d = || x(s') - x(s_0) || is the distance of the next observation's return keys to their values after the
    last hard reset (the initial-state distribution's sample this attempt should return to).
    """
    success = distance < tolerance
    return (success.float() if kind == "sparse" else -distance), success


@register
class RoboFuME(CalQL):
    """Cal-QL forward learner plus, with ``reset_free.enabled``, a Cal-QL backward learner (see the module docstring)."""

    name = "robofume"
    Config = RoboFuMEConfig
    config: RoboFuMEConfig

    def __init__(self, config: RoboFuMEConfig, spec: TaskSpec, device: torch.device | str = "cpu"):
        super().__init__(config, spec, device)
        rf = config.reset_free
        self.backward: CalQL | None = None
        if rf.enabled:
            bad = [k for k in rf.return_keys if k not in spec.low_dim_keys]
            if bad:
                raise ConfigError(f"algo.reset_free.return_keys: expected low-dimensional keys of task '{spec.name}' "
                                  f"{list(spec.low_dim_keys)}, found '{bad[0]}'")
            self.backward = CalQL(self.backward_config(), spec, device)

    @property
    def reset_free_enabled(self) -> bool:
        """True when the online phase runs reset-free (the runtime then uses train/reset_free.py)."""
        return self.backward is not None

    def backward_config(self) -> CalQLConfig:
        """The backward learner's config: the forward's Cal-QL settings; a dense backward reward is not transformed
        and has no all-failure rule."""
        c = self.config
        base = CalQLConfig(**{f.name: getattr(c, f.name) for f in fields(CalQLConfig) if f.name != "name"})
        if c.reset_free.backward_reward == "dense":
            base = replace(base, reward_scale=1.0, reward_bias=0.0, sparse_failure_reward=None)
        return base

    # ------------------------------------------------------------------------------ contract
    def prepare(self, data: TransitionData) -> TransitionData:
        """Cal-QL's preparation of the forward data; the backward learner shares the fitted observation normaliser."""
        data = super().prepare(data)
        if self.backward is not None:
            self.backward.encoder.normalizer.load_state_dict(self.encoder.normalizer.state_dict())
        return data

    def check_finite(self) -> None:
        super().check_finite()
        if self.backward is not None:
            self.backward.check_finite()

    def training_state(self) -> dict[str, Any]:
        state = super().training_state()
        if self.backward is not None:
            state["backward"] = self.backward.training_state()
        return state

    def load_training_state(self, state: Mapping[str, Any]) -> None:
        super().load_training_state(state)
        if self.backward is not None:
            self.backward.load_training_state(state["backward"])

    # ------------------------------------------------------------------------------ backward policy
    def act_backward(self, obs: Mapping[str, torch.Tensor], deterministic: bool = False) -> torch.Tensor:
        """Task-unit actions of the backward (return) policy."""
        return self.backward.act(obs, deterministic)

    def update_backward(self, batch: Batch) -> dict[str, torch.Tensor]:
        """One Cal-QL step of the backward learner on its own online transitions; metrics prefixed ``backward_``."""
        return {f"backward_{k}": v for k, v in self.backward.update(batch).items()}

    def backward_reward(self, next_obs: Mapping[str, torch.Tensor], start_obs: Mapping[str, torch.Tensor]
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        """(raw backward reward, returned) of each row: :func:`return_reward` on the return keys."""
        rf = self.config.reset_free
        x = torch.cat([next_obs[k].reshape(len(next_obs[k]), -1) for k in rf.return_keys], dim=-1)
        x0 = torch.cat([start_obs[k].reshape(len(start_obs[k]), -1) for k in rf.return_keys], dim=-1)
        return return_reward(torch.linalg.vector_norm(x - x0, dim=-1), rf.return_tolerance, rf.backward_reward)
