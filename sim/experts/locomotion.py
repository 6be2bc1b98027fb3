"""Locomotion experts: linear policies on normalised observations, shipped as ``.npz`` data.

The weights are fitted by Augmented Random Search (``sim/experts/fit_locomotion.py``): the action is
``clip(W @ ((s - mean) / std), -1, 1)``. Each task ships two checkpoints: ``<task>_expert.npz`` (the
best policy found) and ``<task>_medium.npz`` (an earlier, weaker one, the behaviour policy of the
medium tier, like D4RL's medium datasets).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from robot_learning.spec import TaskSpec

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
#: The checkpoints every locomotion task ships.
CHECKPOINTS = ("expert", "medium")


def weights_path(task: str, checkpoint: str) -> Path:
    return WEIGHTS_DIR / f"{task}_{checkpoint}.npz"


class LinearPolicy:
    """``clip(W @ ((s - mean) / std), -1, 1)``, batched over a leading axis."""

    def __init__(self, weights: np.ndarray, mean: np.ndarray, std: np.ndarray):
        self.weights = np.asarray(weights, dtype=np.float64)
        self.mean = np.asarray(mean, dtype=np.float64)
        self.std = np.asarray(std, dtype=np.float64)

    @classmethod
    def load(cls, path: Path) -> LinearPolicy:
        if not path.exists():
            raise FileNotFoundError(f"{path}: locomotion policy weights not found "
                                    "(fit them with python -m sim.experts.fit_locomotion)")
        with np.load(path) as z:
            return cls(z["weights"], z["mean"], z["std"])

    def __call__(self, state: np.ndarray) -> np.ndarray:
        return np.clip(((state - self.mean) / self.std) @ self.weights.T, -1.0, 1.0)


class LocomotionExpert:
    """The deterministic ARS controller of a locomotion task (no goals, no internal state)."""

    goal_directed = False
    checkpoints = CHECKPOINTS

    def __init__(self, spec: TaskSpec, checkpoint: str = "expert"):
        if checkpoint not in CHECKPOINTS:
            raise ValueError(f"checkpoint: expected one of {list(CHECKPOINTS)}, found {checkpoint!r}")
        self.spec = spec
        self.policy = LinearPolicy.load(weights_path(spec.name, checkpoint))

    def reset(self, obs: Mapping[str, np.ndarray]) -> None:
        """Nothing to reset: the policy is a stateless linear map."""

    def act(self, obs: Mapping[str, np.ndarray]) -> np.ndarray:
        return self.policy(np.asarray(obs["state"], dtype=np.float64)).astype(np.float32)
