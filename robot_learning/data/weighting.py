"""Trajectory-weighted offline sampling (Hong et al., "Harnessing Mixed Offline RL Datasets via Trajectory
Weighting", ICLR 2023).

A sampler, not a loss: every transition gets the weight of its trajectory and batches are drawn in
proportion, so any off-policy learner trains mostly on the better trajectories of a mixed dataset.
Reference: Improbable-AI/harness-offline-rl implicit_q_learning/dataset_utils.py (RW, AW, TopK) and
shared/reference/algorithms.md section 10. With G_i the undiscounted return of trajectory i (of the
rewards the learner trains on, i.e. after its reward transform, as the reference weights the
preprocessed dataset) and T the temperature:

    RW:    g_i = (G_i - min G) / (max G - min G);            p(transition in i) ∝ exp(g_i / T)
    AW:    A_i = G_i - V(s0_i), V a linear regression G ~ s0; min-max normalised; p ∝ exp(A_i / T)
    Top-K: uniform over the transitions of the top floor(K * #trajectories) trajectories by return

Min-max comes first, then a softmax over transitions (so a trajectory's mass grows with its length);
the reference README's 2023/06/15 fix settled this order. Weights are static: computed once, as in the
reference. Sampling is ``torch.searchsorted`` on the cumulative distribution, on the data's device.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch

from robot_learning.config import ConfigError
from robot_learning.data.replay import draw_rows, sampling_cdf
from robot_learning.data.tensors import Batch, TransitionData

log = logging.getLogger(__name__)

#: Sampler names accepted by ``dataset.sampler``.
SAMPLERS = ("uniform", "rw", "aw", "topk")
#: Softmax temperature per learner (harness experiments/d4rl/run_*.py: 0.2 for CQL runs, 0.1 for IQL and TD3+BC).
TEMPERATURE_BY_ALGO = {"cql": 0.2, "calql": 0.2}
#: Temperature of every other learner (harness: IQL and TD3+BC runs).
DEFAULT_TEMPERATURE = 0.1
#: Fraction of trajectories kept by Top-K (harness: Top-10%).
DEFAULT_TOP_FRACTION = 0.1


def default_temperature(algo: str) -> float:
    """The reference temperature for learner ``algo`` (0.2 CQL family, else 0.1)."""
    return TEMPERATURE_BY_ALGO.get(algo, DEFAULT_TEMPERATURE)


def min_max(x: torch.Tensor) -> torch.Tensor:
    """(x - min x) / (max x - min x); all zeros when x is constant (every trajectory equally good)."""
    span = x.max() - x.min()
    if not span > 0:
        log.warning("trajectory weights: every trajectory has the same score; sampling is uniform")
        return torch.zeros_like(x)
    return (x - x.min()) / span


def transition_episodes(data: TransitionData) -> tuple[torch.Tensor, torch.Tensor]:
    """(episode of every transition in ``data.valid`` order, indices of the episodes that have transitions)."""
    episode = data.episode_id[data.valid]
    return episode, torch.unique(episode)


def softmax_over_transitions(score: torch.Tensor, episode: torch.Tensor, temperature: float) -> torch.Tensor:
    """p_j = exp(score[episode_j] / T) / sum_k exp(score[episode_k] / T) over transitions j (float64)."""
    if not temperature > 0:
        raise ConfigError(f"dataset.sampler_temperature: expected a positive temperature, found {temperature}")
    return torch.softmax(score.double()[episode] / temperature, dim=0)


def return_weights(data: TransitionData, temperature: float) -> torch.Tensor:
    """RW: softmax over transitions of the min-max normalised return of their trajectory / T."""
    episode, used = transition_episodes(data)
    returns = data.episode_returns().double()
    score = torch.zeros_like(returns)
    score[used] = min_max(returns[used])
    return softmax_over_transitions(score, episode, temperature)


def initial_states(data: TransitionData) -> torch.Tensor:
    """The first low-dimensional observation of every episode, keys concatenated, (E, D) float64."""
    keys = [k for k, v in data.obs.items() if v.dim() == 2 and v.is_floating_point()]
    if not keys:
        raise ConfigError(f"{data.source}: dataset.sampler=aw: expected low-dimensional observation keys to regress "
                         f"returns on, found only {sorted(data.obs)}")
    starts = torch.cat([data.episode_ends.new_zeros(1), data.episode_ends[:-1]])
    return torch.cat([data.obs[k][starts].double() for k in keys], dim=1)


def linear_value(s0: torch.Tensor, returns: torch.Tensor) -> torch.Tensor:
    """Least-squares fit G ~ w.s0 + b, evaluated at s0 (sklearn LinearRegression: centred, min-norm lstsq)."""
    x, y = s0.cpu().numpy(), returns.cpu().numpy()
    x_mean, y_mean = x.mean(0), y.mean()
    coef = np.linalg.lstsq(x - x_mean, y - y_mean, rcond=None)[0]
    return torch.from_numpy((x - x_mean) @ coef + y_mean).to(returns)


def advantage_weights(data: TransitionData, temperature: float) -> torch.Tensor:
    """AW: softmax over transitions of the min-max normalised G_i - V(s0_i), V linear in the initial state."""
    episode, used = transition_episodes(data)
    returns = data.episode_returns().double()
    advantage = returns[used] - linear_value(initial_states(data)[used], returns[used])
    score = torch.zeros_like(returns)
    score[used] = min_max(advantage)
    return softmax_over_transitions(score, episode, temperature)


def top_k_weights(data: TransitionData, fraction: float) -> torch.Tensor:
    """Top-K%: uniform over the transitions of the floor(fraction * E) best trajectories (at least one)."""
    if not 0.0 < fraction <= 1.0:
        raise ConfigError(f"dataset.sampler_top_fraction: expected a fraction in (0, 1], found {fraction}")
    episode, used = transition_episodes(data)
    returns = data.episode_returns().double()[used]
    keep = max(1, math.floor(len(used) * fraction))
    top = used[torch.argsort(returns, descending=True, stable=True)[:keep]]
    chosen = torch.zeros(data.n_episodes, dtype=torch.float64, device=data.device)
    chosen[top] = 1.0
    weights = chosen[episode]
    return weights / weights.sum()


def trajectory_weights(data: TransitionData, sampler: str, temperature: float, top_fraction: float
                       ) -> torch.Tensor | None:
    """Sampling probabilities of ``data``'s transitions (``data.valid`` order) for ``sampler``; None = uniform."""
    if sampler not in SAMPLERS:
        raise ConfigError(f"dataset.sampler: expected one of {list(SAMPLERS)}, found '{sampler}'")
    if sampler == "uniform":
        return None
    if sampler == "rw":
        weights = return_weights(data, temperature)
    elif sampler == "aw":
        weights = advantage_weights(data, temperature)
    else:
        weights = top_k_weights(data, top_fraction)
    ess = float(1.0 / weights.square().sum())
    log.info("%s sampler: effective sample size %.0f of %d transitions", sampler, ess, data.n_transitions)
    return weights


class OfflineSampler:
    """Batches of offline transitions: uniform (``weights`` None) or in proportion to per-transition ``weights``."""

    def __init__(self, data: TransitionData, weights: torch.Tensor | None = None):
        if weights is not None and weights.shape != (data.n_transitions,):
            raise ValueError(f"sampler weights: expected one per transition ({data.n_transitions}), "
                             f"found shape {tuple(weights.shape)}")
        self.data = data
        self.weights = weights
        self._cdf = None if weights is None else sampling_cdf(weights.to(data.device))

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> Batch:
        if self._cdf is None:
            return self.data.sample(batch_size, generator)
        pick = draw_rows(self.data.n_transitions, batch_size, generator, self.data.device, self._cdf)
        return self.data.transitions(self.data.valid[pick])


def make_offline_sampler(data: TransitionData, sampler: str = "uniform", temperature: float | None = None,
                         top_fraction: float = DEFAULT_TOP_FRACTION, algo: str = "") -> OfflineSampler:
    """The offline sampler of a run (``dataset.sampler*`` keys); ``temperature`` None = the learner's reference."""
    temperature = default_temperature(algo) if temperature is None else temperature
    return OfflineSampler(data, trajectory_weights(data, sampler, temperature, top_fraction))
