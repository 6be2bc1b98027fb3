"""Which pairs to ask about: uniform over the store, or where the reward-model ensemble disagrees most.

Pairs are segments of ``length`` consecutive steps inside one episode each (any two episodes, or
the same one), drawn with a seeded generator so a labelling command is reproducible. Disagreement
sampling is PEBBLE's: draw ``candidates`` times more uniform pairs, score each by the standard
deviation over ensemble members of P(second > first) = sigmoid(R_k(second) - R_k(first)), and keep the
top ones. These are the pairs whose labels the current model finds most informative.
"""

from __future__ import annotations

import numpy as np

from robot_learning.data.store import EpisodeStore, StoreError
from reward_models.labelers.base import Pairs


def segment_starts(store: EpisodeStore, length: int) -> np.ndarray:
    """Global step indices t from which ``length`` steps stay inside t's episode."""
    rows = np.arange(store.n_steps, dtype=np.int64)
    ends = store.episode_ends
    end_of_row = np.repeat(ends, store.episode_lengths)
    starts = rows[rows + length <= end_of_row]
    if len(starts) < 2:
        raise StoreError(f"{store.path}: segment length {length}: expected episodes at least that long (two segments), "
                         f"found {len(starts)} start(s) in {store.n_episodes} episode(s)")
    return starts


def sample_uniform(store: EpisodeStore, n: int, length: int, rng: np.random.Generator) -> Pairs:
    """``n`` pairs of distinct segments drawn uniformly."""
    starts = segment_starts(store, length)
    first = rng.integers(len(starts), size=n)
    second = (first + rng.integers(1, len(starts), size=n)) % len(starts)
    return Pairs(starts[first], starts[second], length)


def segment_returns(member_rewards: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
    """(K, N) sums of per-step rewards (K, T) over the segments starting at ``starts``."""
    csum = np.concatenate([np.zeros((len(member_rewards), 1)), np.cumsum(member_rewards, axis=1, dtype=np.float64)], axis=1)
    return csum[:, starts + length] - csum[:, starts]


def disagreement(member_rewards: np.ndarray, pairs: Pairs) -> np.ndarray:
    """Per pair, the std over members of P_k(second preferred)."""
    diff = segment_returns(member_rewards, pairs.second, pairs.length) - segment_returns(member_rewards, pairs.first, pairs.length)
    return (1.0 / (1.0 + np.exp(-diff))).std(axis=0)


def sample_disagreement(store: EpisodeStore, n: int, length: int, rng: np.random.Generator,
                        member_rewards: np.ndarray, candidates: int) -> Pairs:
    """The ``n`` of ``n * candidates`` uniform pairs on which the ensemble (per-step rewards (K, T)) disagrees most."""
    if member_rewards.shape[1] != store.n_steps or member_rewards.shape[0] < 2:
        raise StoreError(f"{store.path}: disagreement sampling: expected per-step rewards of at least two ensemble "
                         f"members for {store.n_steps} steps, found shape {member_rewards.shape}")
    pool = sample_uniform(store, n * max(1, candidates), length, rng)
    top = np.argsort(-disagreement(member_rewards, pool), kind="stable")[:n]
    return pool[top]
