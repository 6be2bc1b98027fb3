"""Running behaviour policies in a task's env: one episode at a time, optionally written to a store.

Dataset generation and evaluation (reference returns, tier ordering) share this loop, so the
episodes a store holds are exactly the episodes evaluation measures.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import gymnasium as gym
import numpy as np

from robot_learning.data.writer import EpisodeWriter
from robot_learning.spec import TaskSpec
from sim.dynamics import Dynamics
from sim.envs import make_env
from sim.registry import load_spec, task_kind
from sim.tiers import TierPolicy, load_tier


class Behaviour(Protocol):
    """What produces actions for an episode (a TierPolicy or a BehaviourPolicy)."""

    def begin_episode(self, obs: Mapping[str, np.ndarray]) -> str: ...

    def act(self, obs: Mapping[str, np.ndarray]) -> np.ndarray: ...


@dataclass(frozen=True)
class EpisodeResult:
    seed: int
    policy: str
    success: bool
    ret: float
    length: int


def reward_sources(spec: TaskSpec) -> tuple[str, ...]:
    """The reward sources an episode of ``spec`` records: dense and sparse, or locomotion's ``env``."""
    return ("env",) if task_kind(spec).family == "locomotion" else ("dense", "sparse")


def episode_seeds(seed: int, episodes: int) -> list[int]:
    """The reset seed of every episode of a run seeded ``seed``."""
    return [int(s) for s in np.random.SeedSequence(seed).generate_state(episodes, dtype=np.uint32)]


def run_episode(env: gym.Env, spec: TaskSpec, behaviour: Behaviour, seed: int,
                writer: EpisodeWriter | None = None, **meta: Any) -> EpisodeResult:
    """Reset with ``seed``, act until termination or the time limit; write the steps if ``writer``.

    The return is under the task's default reward source; ``terminal`` is written only for true
    terminations (never the time limit).
    """
    sources = reward_sources(spec)
    obs, _ = env.reset(seed=seed)
    label = behaviour.begin_episode(obs)
    if writer is not None:
        writer.begin(seed=seed, policy=label, **meta)
    success, total, steps, done = False, 0.0, 0, False
    while not done:
        action = behaviour.act(obs)
        next_obs, reward, terminated, truncated, info = env.step(action)
        rewards = {"env": reward} if sources == ("env",) else {"dense": info["reward_dense"], "sparse": info["reward_sparse"]}
        if writer is not None:
            writer.add_step(obs, action, rewards, terminal=terminated)
        success = success or bool(info["success"])
        total += float(rewards.get(spec.default_reward, reward))
        steps += 1
        obs, done = next_obs, terminated or truncated
    if writer is not None:
        writer.end(success, **{"return": total})
    return EpisodeResult(seed, label, success, total, steps)


def evaluate(task: str | TaskSpec, behaviour: Behaviour | str, episodes: int, seed: int, *,
             dynamics: Dynamics | Mapping[str, Any] | str | None = None) -> list[EpisodeResult]:
    """Run ``episodes`` episodes of a behaviour (or of tier ``behaviour``) without recording images."""
    spec = load_spec(task)
    if isinstance(behaviour, str):
        behaviour = TierPolicy(spec, load_tier(behaviour, task_kind(spec).family), np.random.default_rng([seed, 1]))
    low_dim = [k for k in spec.obs_keys if not spec.obs[k].is_image]
    env = make_env(spec, dynamics=dynamics, obs_keys=low_dim)
    try:
        return [run_episode(env, spec, behaviour, s) for s in episode_seeds(seed, episodes)]
    finally:
        env.close()
