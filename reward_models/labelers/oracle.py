"""``oracle`` labeler: the simulator's ground-truth progress, with label noise (the upper bound).

A segment's score is the sum of ``sim.progress`` over its steps (computed from the stored low-dim
observations, so it works on any store of a simulated task). The higher sum wins; pairs within
``margin`` are can't-tell; each decided answer is then flipped with probability ``noise``, drawn from a
hash of (seed, pair), so the same pair gets the same answer however the queries are batched or resumed.
Confidence is ``1 - noise``: the probability that a decided answer is right.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from robot_learning.config import ConfigError
from robot_learning.data.store import EpisodeStore
from reward_models.frames import read_obs
from reward_models.labelers.base import CANT_TELL, Labeler, Labels, Pairs, compare, register


@dataclass
class OracleConfig:
    """configs/labeler/oracle.yaml."""

    # Probability of flipping each decided answer (0 = perfect labels).
    noise: float = 0.0
    # Can't tell when the segments' summed progress differs by at most this much (task progress units).
    margin: float = 0.0
    # Seed of the label noise.
    seed: int = 0


def pair_uniform(seed: int, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """A uniform [0, 1) number per (seed, first, second), from a SplitMix64-style hash (order-independent of batching)."""
    first, second = np.atleast_1d(np.asarray(first, np.uint64)), np.atleast_1d(np.asarray(second, np.uint64))
    salt = np.full(first.shape, seed, np.uint64) * np.uint64(0xBF58476D1CE4E5B9)
    x = (first * np.uint64(0x9E3779B97F4A7C15)) ^ (second + salt)
    for shift, mult in ((30, 0xBF58476D1CE4E5B9), (27, 0x94D049BB133111EB)):
        x = (x ^ (x >> np.uint64(shift))) * np.uint64(mult)
    x ^= x >> np.uint64(31)
    return (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)


@register
class OracleLabeler(Labeler):
    name = "oracle"
    Config = OracleConfig

    def __init__(self, cfg: OracleConfig, store: EpisodeStore, workdir: Path):
        super().__init__(cfg, store, workdir)
        if not 0.0 <= cfg.noise <= 1.0:
            raise ConfigError(f"labeler.noise: expected a flip probability in [0, 1], found {cfg.noise}")
        if store.spec.env is None:
            raise ConfigError(f"{store.path}: labeler 'oracle': expected a store of a simulated task (TaskSpec with env), "
                              f"found task '{store.spec.name}' without one; use labeler=clip or labeler=chat_vlm")
        import sim

        self._progress = sim.progress

    def progress(self, rows: np.ndarray) -> np.ndarray:
        """Ground-truth progress of the steps at global indices ``rows`` (any shape)."""
        flat = np.asarray(rows).reshape(-1)
        obs = read_obs(self.store, self.store.spec.low_dim_keys, flat)
        return np.asarray(self._progress(self.store.spec, obs), np.float64).reshape(np.shape(rows))

    def label(self, pairs: Pairs) -> Labels:
        s1 = self.progress(pairs.rows("first")).sum(axis=1)
        s2 = self.progress(pairs.rows("second")).sum(axis=1)
        choice = compare(s1, s2, self.cfg.margin)
        flip = (pair_uniform(self.cfg.seed, pairs.first, pairs.second) < self.cfg.noise) & (choice != CANT_TELL)
        choice = np.where(flip, 1 - choice, choice).astype(np.int8)
        confidence = np.where(choice == CANT_TELL, 1.0, 1.0 - self.cfg.noise).astype(np.float32)
        return Labels(choice, confidence)
