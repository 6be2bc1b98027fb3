"""Evaluation: a deterministic policy on a vector env, summarised as return, success and normalised score.

Each evaluation resets the env with the same seed, so successive evaluations of a run (and of runs with
the same seed) face the same start states; ``episodes`` are spread over the sub-environments and only
that many finished episodes count. Success is success at any step of the episode (``info["success"]``).
Returns are in the task's own reward (``default_reward``), which ``normalized_score`` is defined on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from robot_learning.spec import TaskSpec
from robot_learning.train.envs import EnvRunner, EpisodeTracker

#: A policy as evaluation sees it: a batch of raw observations (on the device) -> task-unit actions.
Policy = Callable[[Mapping[str, torch.Tensor]], torch.Tensor]


@dataclass
class EvalResult:
    """Summary of one evaluation (returns are undiscounted, in the environment's reward)."""

    episodes: int
    return_mean: float
    return_std: float
    success_rate: float
    length_mean: float
    normalized_score: float | None
    returns: list[float]

    def scalars(self) -> dict[str, float]:
        """The numbers worth plotting (no per-episode list)."""
        out = {"return_mean": self.return_mean, "return_std": self.return_std, "success_rate": self.success_rate,
               "length_mean": self.length_mean}
        if self.normalized_score is not None:
            out["normalized_score"] = self.normalized_score
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def deterministic_policy(algo: torch.nn.Module) -> Policy:
    """``algo.act(obs, deterministic=True)`` with the learner in eval mode (dropout off), no gradient."""
    def policy(obs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        mode = algo.training
        algo.eval()
        try:
            with torch.no_grad():
                return algo.act(obs, deterministic=True)
        finally:
            algo.train(mode)

    return policy


def episode_quota(episodes: int, num_envs: int) -> np.ndarray:
    """How many of the ``episodes`` each sub-environment runs (as even as possible)."""
    return np.array([episodes // num_envs + (i < episodes % num_envs) for i in range(num_envs)])


def evaluate(policy: Policy, runner: EnvRunner, episodes: int, seed: int, spec: TaskSpec) -> EvalResult:
    """Run ``episodes`` episodes of ``policy`` on ``runner`` from a reset with ``seed``."""
    quota = episode_quota(episodes, runner.num_envs)
    counts = np.zeros(runner.num_envs, dtype=np.int64)
    tracker = EpisodeTracker(runner.num_envs)
    returns, lengths, success = [], [], []
    obs = runner.reset(seed)
    while (counts < quota).any():
        step = runner.step(policy(obs).cpu().numpy())
        obs = runner.obs
        finished = tracker.update(step)
        for i, env in enumerate(np.flatnonzero(step.done)):
            if counts[env] < quota[env]:
                returns.append(float(finished.returns[i]))
                lengths.append(int(finished.lengths[i]))
                success.append(bool(finished.success[i]))
                counts[env] += 1
    r = np.asarray(returns)
    score = spec.normalized_score(float(r.mean()))
    return EvalResult(episodes=len(r), return_mean=float(r.mean()), return_std=float(r.std()),
                      success_rate=float(np.mean(success)), length_mean=float(np.mean(lengths)),
                      normalized_score=None if score is None else float(score), returns=r.tolist())
