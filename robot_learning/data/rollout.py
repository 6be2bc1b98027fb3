"""On-policy rollout batches: what a PPO-style learner collects and trains on.

A rollout is ``T`` steps of ``N`` vectorised environments, every field time-major ``(T, N, ...)`` and
resident on the training device. Each step is a real transition: when a sub-environment finishes an
episode, the runner stores the true final observation's value in ``next_value`` and continues from the
reset observation, so no step of the batch is an autoreset filler.

Generalised advantage estimation (Schulman et al. 2016) runs on the device, vectorised over the
environments, in one reverse pass over time::

    delta_t = r_t + gamma * (1 - terminal_t) * V(s_{t+1}) - V(s_t)
    A_t     = delta_t + gamma * lambda * (1 - terminal_t) * (1 - truncated_t) * A_{t+1}

A time-limit truncation is not a terminal: it bootstraps from the value of the final observation but
stops the advantage recursion (the next step belongs to a new episode).

Learners that train on rollouts (``batch_kind == "rollout"``) implement :class:`RolloutPolicy` so the
runner can collect with them; :func:`synthetic_rollout` builds a random rollout for a TaskSpec (the
algorithm test harness uses it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Protocol

import torch

from robot_learning.spec import TaskSpec


class RolloutPolicy(Protocol):
    """What an on-policy learner offers the rollout collector (besides the Algorithm contract)."""

    def rollout_action(self, obs: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Sample actions for raw observations: (action in task units, unclipped; log-prob; value)."""

    def predict_value(self, obs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """V(s) for raw observations (bootstraps truncated episodes and the rollout's last step)."""

    def transform_reward(self, reward: torch.Tensor) -> torch.Tensor:
        """The learner's reward transform (the Algorithm contract's), applied to every collected reward."""


@dataclass
class RolloutBatch:
    """``T`` steps of ``N`` environments; every field has leading dims ``(T, N)`` (or ``(B,)`` once flat).

    ``action`` is what the learner sampled (task units, before clipping to the limits for the env);
    ``reward`` is already through the learner's ``transform_reward``; ``next_value`` is V of the true
    next observation (the final observation where an episode ended). ``advantage`` and ``returns`` are
    filled by :meth:`compute_gae`.
    """

    obs: dict[str, torch.Tensor]
    action: torch.Tensor
    log_prob: torch.Tensor
    value: torch.Tensor
    reward: torch.Tensor
    terminal: torch.Tensor
    truncated: torch.Tensor
    next_value: torch.Tensor
    advantage: torch.Tensor | None = None
    returns: torch.Tensor | None = None

    @property
    def num_steps(self) -> int:
        return int(self.reward.shape[0])

    @property
    def num_envs(self) -> int:
        return int(self.reward.shape[1])

    def __len__(self) -> int:
        return int(self.reward.numel())

    def compute_gae(self, gamma: float, lam: float) -> RolloutBatch:
        """Fill ``advantage`` and ``returns`` (= advantage + value) with GAE(gamma, lambda); returns self."""
        if self.reward.dim() != 2:
            raise ValueError(f"compute_gae: expected a time-major (T, N) rollout, "
                             f"found reward shape {tuple(self.reward.shape)}")
        not_terminal = 1.0 - self.terminal.float()
        carry = gamma * lam * not_terminal * (1.0 - self.truncated.float())
        delta = self.reward + gamma * not_terminal * self.next_value - self.value
        advantage = torch.empty_like(delta)
        last = torch.zeros_like(delta[0])
        for t in range(self.num_steps - 1, -1, -1):
            last = delta[t] + carry[t] * last
            advantage[t] = last
        self.advantage = advantage
        self.returns = advantage + self.value
        return self

    def flatten(self) -> RolloutBatch:
        """The same steps with ``(T, N)`` merged into one batch axis (for minibatching)."""
        def flat(x):
            if x is None:
                return None
            if isinstance(x, dict):
                return {k: v.reshape(-1, *v.shape[2:]) for k, v in x.items()}
            return x.reshape(-1, *x.shape[2:])

        return RolloutBatch(**{f.name: flat(getattr(self, f.name)) for f in fields(self)})

    def take(self, index: torch.Tensor) -> RolloutBatch:
        """Rows ``index`` of a flat rollout (a minibatch)."""
        def pick(x):
            if x is None:
                return None
            if isinstance(x, dict):
                return {k: v[index] for k, v in x.items()}
            return x[index]

        return RolloutBatch(**{f.name: pick(getattr(self, f.name)) for f in fields(self)})

    def replace(self, **changes) -> RolloutBatch:
        return replace(self, **changes)


def random_observations(spec: TaskSpec, keys: Sequence[str], shape: Sequence[int], device: torch.device | str,
                        generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Random observations of ``spec`` with leading ``shape``: standard-normal vectors, uint8 images."""
    obs = {}
    for key in keys:
        o = spec.obs[key]
        if o.is_image:
            obs[key] = torch.randint(0, 256, (*shape, *o.shape), dtype=torch.uint8, device=device, generator=generator)
        else:
            obs[key] = torch.randn(*shape, *o.shape, device=device, generator=generator)
    return obs


def synthetic_rollout(spec: TaskSpec, num_steps: int = 16, num_envs: int = 2, obs_keys: Sequence[str] | None = None,
                      device: torch.device | str = "cpu", seed: int = 0) -> RolloutBatch:
    """A random rollout for ``spec``: valid shapes and dtypes, actions within the limits, some episode ends.

    For tests of rollout learners (the parametrised algorithm harness); the numbers carry no meaning.
    """
    gen = torch.Generator(device=device).manual_seed(seed)
    keys = list(obs_keys) if obs_keys is not None else list(spec.obs_keys)
    shape = (num_steps, num_envs)
    low = torch.as_tensor(spec.action.low_array, device=device)
    high = torch.as_tensor(spec.action.high_array, device=device)
    action = low + (high - low) * torch.rand(*shape, spec.action_dim, device=device, generator=gen)
    ends = torch.rand(*shape, device=device, generator=gen)
    return RolloutBatch(
        obs=random_observations(spec, keys, shape, device, gen),
        action=action,
        log_prob=-torch.rand(*shape, device=device, generator=gen) * spec.action_dim,
        value=torch.randn(*shape, device=device, generator=gen),
        reward=torch.randn(*shape, device=device, generator=gen),
        terminal=ends < 0.05,
        truncated=(ends >= 0.05) & (ends < 0.1),
        next_value=torch.randn(*shape, device=device, generator=gen),
    )
