"""Vector environments for training and evaluation, stepped so that every step is a real transition.

Gymnasium's vector envs autoreset on the step *after* an episode ends (``AutoresetMode.NEXT_STEP``): that
step ignores its action and returns the reset observation, a filler no learner should see. The
:class:`EnvRunner` instead resets finished sub-environments right away (``reset_mask``), so each
:meth:`EnvRunner.step` returns the true next observation of every sub-environment (the final one where
an episode ended) and :attr:`EnvRunner.obs` is already the first observation of the new episode.
Observations reach the training device once per step, as one batch per key.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from robot_learning.config import ConfigError
from robot_learning.spec import TaskSpec

#: Reward sources the simulator computes itself (sim.generate writes them; an env returns one by name).
SIM_REWARD_KINDS = ("dense", "sparse")


def to_device(obs: Mapping[str, np.ndarray], keys: Sequence[str], device: torch.device) -> dict[str, torch.Tensor]:
    """A batch of numpy observations as tensors on ``device`` (one copy per key)."""
    return {k: torch.from_numpy(np.ascontiguousarray(obs[k])).to(device, non_blocking=True) for k in keys}


def sim_reward_kwargs(spec: TaskSpec, reward_source: str | None) -> dict[str, Any]:
    """The env arguments that make the simulator return the reward the offline data was labelled with.

    Online training rewards must match the offline ones (algorithms.md section 13): ``dense``/``sparse``
    select the simulator's reward, ``env`` is its default. A learned source (a VLM-preference reward model,
    a success classifier) has no simulator twin: the model rewards online steps (robot_learning.train.rewards);
    any other source is refused.
    """
    source = reward_source or spec.default_reward
    if source in SIM_REWARD_KINDS:
        return {"reward": source}
    if source == "env":
        return {}
    raise ConfigError(f"dataset.reward={source}: online training needs the environment or a reward model to compute "
                      f"the same reward as the offline data, found a source neither computes; use one of "
                      f"{['env', *SIM_REWARD_KINDS]}, a relabelled source (vlm_pref_*, success_clf_*) or "
                      "online.reward_model=<dir>")


def eval_reward_kwargs(spec: TaskSpec) -> dict[str, Any]:
    """Evaluation scores the task's own reward (``default_reward``), whatever reward a learner trained on, so
    returns and ``normalized_score`` (whose reference returns use that reward) compare across runs."""
    return {"reward": spec.default_reward} if spec.default_reward in SIM_REWARD_KINDS else {}


def make_vector_env(spec: TaskSpec, num_envs: int, obs_keys: Sequence[str], seed: int, *, asynchronous: bool = False,
                    dynamics: str | None = None, env_kwargs: Mapping[str, Any] | None = None,
                    max_episode_steps: int | None = None):
    """``sim.make_vector_env`` for ``spec`` with only ``obs_keys`` observed (no camera rendering unless read);
    ``max_episode_steps`` replaces the task's time limit (reset-free training runs many attempts per episode)."""
    if spec.env is None:
        raise ConfigError(f"task '{spec.name}': expected a simulated task (an 'env' entry in its YAML) to run "
                          "episodes, found none")
    import sim

    return sim.make_vector_env(spec, num_envs, obs_keys=list(obs_keys), seed=seed, asynchronous=asynchronous,
                               dynamics=dynamics, max_episode_steps=max_episode_steps, **dict(env_kwargs or {}))


@dataclass
class Step:
    """One vector step: the true next observations and the per-sub-env outcome (numpy, host)."""

    next_obs: dict[str, torch.Tensor]
    reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    success: np.ndarray

    @property
    def done(self) -> np.ndarray:
        return self.terminated | self.truncated


class EnvRunner:
    """Steps a gymnasium vector env with immediate resets (see the module docstring)."""

    def __init__(self, envs, obs_keys: Sequence[str], device: torch.device, spec: TaskSpec,
                 reward: Callable[[Step], np.ndarray] | None = None):
        from gymnasium.vector import AutoresetMode

        mode = envs.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
        if mode != AutoresetMode.NEXT_STEP:
            raise ValueError(f"vector env: expected autoreset mode NEXT_STEP (gymnasium's default), found {mode}")
        self.envs = envs
        self.obs_keys = list(obs_keys)
        self.device = device
        self.low = spec.action.low_array
        self.high = spec.action.high_array
        self.obs: dict[str, torch.Tensor] = {}
        #: Rewards each step from its transition (a learned reward model, train/rewards.py); None = the env's reward.
        self.reward = reward

    @property
    def num_envs(self) -> int:
        return int(self.envs.num_envs)

    def reset(self, seed: int) -> dict[str, torch.Tensor]:
        """Start new episodes in every sub-environment (sub-env ``i`` seeded ``seed + i``)."""
        obs, _ = self.envs.reset(seed=seed)
        self.obs = to_device(obs, self.obs_keys, self.device)
        return self.obs

    def step(self, action: np.ndarray) -> Step:
        """Apply task-unit actions (clipped to the limits); finished sub-environments restart at once."""
        action = np.clip(np.asarray(action, dtype=np.float32), self.low, self.high)
        obs, reward, terminated, truncated, info = self.envs.step(action)
        next_obs = to_device(obs, self.obs_keys, self.device)
        success = np.asarray(info.get("success", np.zeros(self.num_envs, bool)), dtype=bool) & \
            np.asarray(info.get("_success", np.ones(self.num_envs, bool)), dtype=bool)
        step = Step(next_obs, np.asarray(reward, dtype=np.float32), np.asarray(terminated, bool),
                    np.asarray(truncated, bool), success)
        if self.reward is not None:
            step.reward = np.asarray(self.reward(step), dtype=np.float32)
        self.obs = next_obs
        if step.done.any():
            self.restart(step.done)
        return step

    def restart(self, mask: np.ndarray) -> None:
        """Start new episodes in the sub-environments where ``mask`` is true (their random streams continue)."""
        fresh, _ = self.envs.reset(options={"reset_mask": mask})
        rows = torch.from_numpy(np.flatnonzero(mask)).to(self.device)
        self.obs = {k: v.clone() for k, v in self.obs.items()}
        for k, v in to_device({k: fresh[k][mask] for k in self.obs_keys}, self.obs_keys, self.device).items():
            self.obs[k][rows] = v

    def close(self) -> None:
        self.envs.close()


@dataclass
class EpisodeStats:
    """Finished episodes of a tracker: returns, lengths, success flags (numpy)."""

    returns: np.ndarray
    lengths: np.ndarray
    success: np.ndarray

    def __len__(self) -> int:
        return len(self.returns)


class EpisodeTracker:
    """Running return/length/success of each sub-environment's episode; collects finished ones."""

    def __init__(self, num_envs: int):
        self.num_envs = num_envs
        self.reset()

    def reset(self) -> None:
        """Forget the episodes in progress (after the envs were reset)."""
        self._ret = np.zeros(self.num_envs)
        self._len = np.zeros(self.num_envs, dtype=np.int64)
        self._succ = np.zeros(self.num_envs, dtype=bool)

    def update(self, step: Step) -> EpisodeStats:
        """Account one vector step; return the episodes it finished (success = success at any step)."""
        self._ret += step.reward
        self._len += 1
        self._succ |= step.success
        done = step.done
        finished = EpisodeStats(self._ret[done].copy(), self._len[done].copy(), self._succ[done].copy())
        self._ret[done], self._len[done], self._succ[done] = 0.0, 0, False
        return finished
