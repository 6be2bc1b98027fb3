"""Fit the locomotion experts with Augmented Random Search (ARS V2-t, Mania et al. 2018).

ARS searches linear policies ``a = W @ ((s - mean) / std)`` by finite differences along random
directions, with the observation statistics updated from every state visited. It needs no GPU and a
few minutes of CPU per task here (MuJoCo steps ~10k/s per core), which is why the experts are ARS
policies. The script writes ``sim/experts/weights/<task>_expert.npz`` (the best evaluated policy) and
``<task>_medium.npz`` (the evaluated checkpoint whose return is closest to ``MEDIUM_FRACTION`` of the
expert's: the weaker behaviour policy of the medium tier, like D4RL's medium datasets).

Reproduce the shipped weights (deterministic for a given machine; takes minutes per task)::

    MUJOCO_GL=egl python -m sim.experts.fit_locomotion --task hopper --seed 0
    MUJOCO_GL=egl python -m sim.experts.fit_locomotion --task halfcheetah --seed 0
    MUJOCO_GL=egl python -m sim.experts.fit_locomotion --task walker2d --seed 0

Rollouts run in ``--workers`` processes; results do not depend on the worker count (every rollout's
seed and the order results are combined in are fixed by the iteration and direction index).
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from sim.experts.locomotion import LinearPolicy, weights_path

log = logging.getLogger(__name__)

#: The medium checkpoint returns about this fraction of the expert's (D4RL medium/expert is ~0.3-0.45).
MEDIUM_FRACTION = 0.4
#: Episodes per evaluation of the current policy (deterministic, no exploration noise).
EVAL_EPISODES = 5
#: Rollout horizon (the tasks' episode length).
HORIZON = 1000
#: Floor on the observation std so constant dimensions do not blow up the normalisation.
MIN_STD = 1e-2


@dataclass(frozen=True)
class ArsConfig:
    """ARS V2-t hyperparameters (Mania et al. 2018, Table 9) and this project's iteration budget."""

    gym_id: str
    step_size: float       # alpha
    noise: float           # nu, exploration std of the parameter perturbation
    directions: int        # N
    top_directions: int    # b
    iterations: int        # budget (minutes of CPU on 2 cores here)
    eval_every: int
    #: Gaussian action noise (std) in every rollout, training and evaluation: selects gaits that survive
    #: the dataset tiers' action noise (HalfCheetah's noise-free optimum flips over under 0.1 noise).
    action_noise: float = 0.0
    #: Hopper/Walker2d: ARS trains with the survival bonus removed (it otherwise rewards standing still).
    train_kwargs: tuple[tuple[str, float], ...] = ()


CONFIGS = {
    "halfcheetah": ArsConfig("HalfCheetah-v5", step_size=0.02, noise=0.03, directions=32, top_directions=4,
                             iterations=100, eval_every=10, action_noise=0.1),
    "hopper": ArsConfig("Hopper-v5", step_size=0.01, noise=0.025, directions=8, top_directions=4,
                        iterations=500, eval_every=10, train_kwargs=(("healthy_reward", 0.0),)),
    "walker2d": ArsConfig("Walker2d-v5", step_size=0.025, noise=0.01, directions=40, top_directions=30,
                          iterations=130, eval_every=10, train_kwargs=(("healthy_reward", 0.0),)),
}

_worker_envs: dict[tuple, gym.Env] = {}


def _env(gym_id: str, kwargs: tuple) -> gym.Env:
    key = (gym_id, kwargs)
    if key not in _worker_envs:
        _worker_envs[key] = gym.make(gym_id, **dict(kwargs)).unwrapped
    return _worker_envs[key]


def rollout(gym_id: str, kwargs: tuple, weights: np.ndarray, mean: np.ndarray, std: np.ndarray,
            seed: int, action_noise: float) -> tuple[float, int, np.ndarray, np.ndarray]:
    """One episode; returns (return, steps, sum of states, sum of squared states)."""
    env = _env(gym_id, kwargs)
    policy = LinearPolicy(weights, mean, std)
    noise = np.random.default_rng(seed).standard_normal((HORIZON, weights.shape[0])) * action_noise
    s, _ = env.reset(seed=seed)
    total, s_sum, s_sq = 0.0, np.zeros_like(s), np.zeros_like(s)
    for t in range(HORIZON):
        s_sum += s
        s_sq += s * s
        s, r, terminated, _, _ = env.step(np.clip(policy(s) + noise[t], -1.0, 1.0))
        total += r
        if terminated:
            return total, t + 1, s_sum, s_sq
    return total, HORIZON, s_sum, s_sq


class RunningStats:
    """Mean and std of every state seen (ARS V2's observation normalisation)."""

    def __init__(self, dim: int):
        self.n, self.total, self.total_sq = 0, np.zeros(dim), np.zeros(dim)

    def add(self, n: int, s_sum: np.ndarray, s_sq: np.ndarray) -> None:
        self.n += n
        self.total += s_sum
        self.total_sq += s_sq

    @property
    def mean(self) -> np.ndarray:
        return self.total / max(self.n, 1)

    @property
    def std(self) -> np.ndarray:
        if self.n < 2:
            return np.ones_like(self.total)
        var = self.total_sq / self.n - self.mean ** 2
        return np.maximum(np.sqrt(np.maximum(var, 0.0)), MIN_STD)


def fit(task: str, seed: int, workers: int, iterations: int | None = None) -> dict[str, dict]:
    """Run ARS for ``task``; save and return the expert and medium checkpoints."""
    cfg = CONFIGS[task]
    iterations = iterations or cfg.iterations
    probe = gym.make(cfg.gym_id).unwrapped
    obs_dim, act_dim = probe.observation_space.shape[0], probe.action_space.shape[0]
    rng = np.random.default_rng(seed)
    weights = np.zeros((act_dim, obs_dim))
    stats = RunningStats(obs_dim)
    history: list[dict] = []
    start = time.monotonic()
    with ProcessPoolExecutor(max_workers=workers) as pool:
        def run(ws: Sequence[np.ndarray], seeds: Sequence[int], kwargs: tuple, mean, std) -> list:
            n = len(ws)
            return list(pool.map(rollout, [cfg.gym_id] * n, [kwargs] * n, ws, [mean] * n, [std] * n, seeds,
                                 [cfg.action_noise] * n))

        for it in range(iterations + 1):
            mean, std = stats.mean, stats.std
            if it % cfg.eval_every == 0:
                seeds = [10_000_000 + k for k in range(EVAL_EPISODES)]
                results = run([weights] * EVAL_EPISODES, seeds, (), mean, std)
                ret = float(np.mean([r[0] for r in results]))
                history.append({"iteration": it, "return": ret, "weights": weights.copy(), "mean": mean, "std": std,
                                "seconds": time.monotonic() - start})
                log.info("%s iteration %d: eval return %.1f (%.0f s)", task, it, ret, time.monotonic() - start)
                save_checkpoints(task, history, seed)  # a killed run still leaves its best policies
            if it == iterations:
                break
            deltas = rng.standard_normal((cfg.directions, act_dim, obs_dim))
            seeds = [int(x) for x in rng.integers(0, 2**31 - 1, size=cfg.directions)]
            candidates = [weights + cfg.noise * d for d in deltas] + [weights - cfg.noise * d for d in deltas]
            results = run(candidates, seeds * 2, cfg.train_kwargs, mean, std)
            returns = np.array([r[0] for r in results]).reshape(2, cfg.directions)
            for _, n, s_sum, s_sq in results:
                stats.add(n, s_sum, s_sq)
            top = np.argsort(-returns.max(axis=0))[:cfg.top_directions]
            r_plus, r_minus = returns[0, top], returns[1, top]
            sigma = np.concatenate([r_plus, r_minus]).std() + 1e-8
            weights = weights + cfg.step_size / (cfg.top_directions * sigma) * np.einsum(
                "k,kij->ij", r_plus - r_minus, deltas[top])
    log.info("%s: ARS took %.0f s", task, time.monotonic() - start)
    return save_checkpoints(task, history, seed)


def save_checkpoints(task: str, history: Sequence[dict], seed: int) -> dict[str, dict]:
    """Write the best evaluated policy (expert) and the medium one chosen from ``history`` so far."""
    expert = max(history, key=lambda h: h["return"])
    earlier = [h for h in history if h["iteration"] < expert["iteration"]] or [expert]
    medium = min(earlier, key=lambda h: abs(h["return"] - MEDIUM_FRACTION * expert["return"]))
    for name, ckpt in (("expert", expert), ("medium", medium)):
        np.savez(weights_path(task, name), weights=ckpt["weights"], mean=ckpt["mean"], std=ckpt["std"],
                 iteration=ckpt["iteration"], eval_return=ckpt["return"], seed=seed, seconds=ckpt["seconds"])
    log.info("%s: expert = iteration %d (eval return %.1f), medium = iteration %d (%.1f)", task,
             expert["iteration"], expert["return"], medium["iteration"], medium["return"])
    return {"expert": expert, "medium": medium}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", choices=sorted(CONFIGS), required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=None, help="override the task's iteration budget")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    fit(args.task, args.seed, args.workers, args.iterations)


if __name__ == "__main__":
    main()
