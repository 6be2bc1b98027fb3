"""The contract every learner implements, and the registry that builds learners by name.

An algorithm is a ``torch.nn.Module`` built from its config dataclass and a TaskSpec. It owns its
networks, optimisers, observation normaliser and action scaling, so the runtime only moves batches:

- batches arrive in the task's units (raw observations, actions within ``spec.action`` limits) and the
  algorithm normalises inside ``update``; ``act`` and the exported actor return actions in task units;
- ``prepare(data)`` runs once before offline training on the loaded dataset: fit the observation
  normaliser, apply the algorithm's reward transform, compute Monte-Carlo returns, ...; it returns the
  (possibly transformed) data the runtime will sample from. ``transform_reward`` applies the same
  reward transform to online transitions;
- ``update(batch)`` is one gradient step and returns metrics as 0-d tensors (the runtime reads them
  only when it logs, so there is no device sync per step);
- ``export_actor()`` returns the deterministic actor as a module mapping a dict of raw observation
  tensors to task-unit actions, with normalisation, squashing and scaling inside (the ONNX graph);
- ``state_dict()`` covers networks and normaliser buffers (the nn.Module default); ``training_state()``
  adds optimiser states and counters for exact resume.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from robot_learning.config import ConfigError, build
from robot_learning.nn.precision import check_precision, full_precision, mixed_precision, warn_if_slow
from robot_learning.spec import TaskSpec

if TYPE_CHECKING:
    from robot_learning.data.tensors import Batch, TransitionData


@dataclass
class AlgoConfig:
    """Fields every algorithm config has (each algorithm's config subclasses this with sourced defaults)."""

    # Registry name of the algorithm (set by each subclass; selects the class in make_algorithm).
    name: str = ""
    # Observation keys the networks read; None = every low-dimensional key of the task.
    obs_keys: list[str] | None = None
    # Discount factor gamma (0.99 in every paper this stack implements).
    gamma: float = 0.99
    # Minibatch size of one gradient step (256 in IQL/CQL/AWAC/TD3+BC/SAC-N official code).
    batch_size: int = 256
    # Arithmetic of the update: fp32, or bf16 mixed precision (hidden layers' matrix products in bfloat16;
    # parameters, Adam, output layers, losses in float32; robot_learning.nn.precision). Not in any official code:
    # fp32 is the papers' setting; bf16 measured 1.4-2.7x the updates/s on an AVX512-BF16 CPU, with scores within
    # seed noise (benchmarks/train_speed.py; benchmarks/scores.py --precision bf16). Acting and evaluation: fp32.
    precision: str = "fp32"

    def __post_init__(self) -> None:
        check_precision(self.precision)


ALGORITHMS: dict[str, type[Algorithm]] = {}


def register(cls: type[Algorithm]) -> type[Algorithm]:
    """Class decorator: make ``cls`` buildable by ``make_algorithm(cls.name, ...)``."""
    if cls.name in ALGORITHMS and ALGORITHMS[cls.name] is not cls:
        raise RuntimeError(f"algorithm name '{cls.name}' registered twice")
    ALGORITHMS[cls.name] = cls
    return cls


class Algorithm(nn.Module, ABC):
    """Base class of every learner (see the module docstring for the contract)."""

    #: Registry name, e.g. "iql".
    name: ClassVar[str]
    #: The config dataclass of this algorithm.
    Config: ClassVar[type[AlgoConfig]]
    #: True for learners whose online phase collects on-policy rollouts (PPO, Uni-O4).
    on_policy: ClassVar[bool] = False
    #: What ``update`` consumes offline: "transition" (data.tensors.Batch) or "rollout" (on-policy rollout
    #: batches only: no offline phase, PPO). An on-policy learner with "transition" (Uni-O4) takes transitions
    #: offline and rollouts online.
    batch_kind: ClassVar[str] = "transition"
    #: True when the learner can take camera observations (an image encoder in its networks).
    supports_images: ClassVar[bool] = True

    def __init__(self, config: AlgoConfig, spec: TaskSpec, device: torch.device | str = "cpu"):
        super().__init__()
        self.config = config
        self.spec = spec
        self.obs_keys = list(config.obs_keys) if config.obs_keys is not None else list(spec.low_dim_keys)
        unknown = [k for k in self.obs_keys if k not in spec.obs]
        if unknown:
            raise ConfigError(f"algo.obs_keys: expected keys of task '{spec.name}' {list(spec.obs_keys)}, found '{unknown[0]}'")
        if not self.supports_images and any(spec.obs[k].is_image for k in self.obs_keys):
            raise ConfigError(f"algo.obs_keys: {self.name} takes low-dimensional observations only, found image keys "
                              f"{[k for k in self.obs_keys if spec.obs[k].is_image]}")
        self.device = torch.device(device)
        warn_if_slow(self.device, config.precision)
        self.num_updates = 0

    def mixed_precision(self) -> AbstractContextManager:
        """The context of a forward pass and its losses under ``config.precision`` (robot_learning.nn.precision)."""
        return mixed_precision(self.device, self.config.precision)

    def full_precision(self) -> AbstractContextManager:
        """The context of a backward pass and optimiser step: autocast off (full_precision says why)."""
        return full_precision(self.device)

    # ------------------------------------------------------------------------------ contract
    def prepare(self, data: TransitionData) -> TransitionData:
        """Fit data-dependent parts (normaliser, reward transform, MC returns); return the data to sample."""
        return data

    def transform_reward(self, reward: torch.Tensor) -> torch.Tensor:
        """The algorithm's reward transform, applied identically to offline and online rewards."""
        return reward

    def compute_mc_returns(self, data: TransitionData) -> torch.Tensor:
        """Discounted return-to-go of every row of ``data`` (rewards already transformed), for learners
        that bound values with Monte-Carlo returns (Cal-QL); the runtime also calls it on finished online
        episodes when the offline data carries MC returns."""
        return data.compute_mc_returns(self.config.gamma)

    def check_finite(self) -> None:
        """Raise if a loss or gradient went non-finite; the runtime calls it whenever it reads metrics."""

    def begin_phase(self, phase: str) -> None:
        """Called by the runtime when its ``offline`` or ``online`` phase starts (or resumes); no-op by default."""

    def offline_length(self) -> int | None:
        """Offline updates of the learner's own schedule (Uni-O4's stages), or None: ``train.offline_steps`` decides.

        When set, a run's ``train.offline_steps`` must be 0 or exactly this number (checked before any work).
        """
        return None

    def online_candidates(self) -> list[nn.Module]:
        """Deterministic policies (raw obs dict -> task-unit actions) the runtime scores in the environment right
        before the online phase starts, for a learner whose hand-off picks one by online return (Uni-O4's
        official hand-off); empty (the default): nothing to score."""
        return []

    def choose_online_candidate(self, returns: Sequence[float]) -> None:
        """Receives the mean evaluation return of each policy of :meth:`online_candidates`, in order."""
        raise NotImplementedError(f"{self.name} offers no online candidates")

    @abstractmethod
    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        """One gradient step on ``batch``; metrics as 0-d tensors."""

    @abstractmethod
    def act(self, obs: Mapping[str, torch.Tensor], deterministic: bool = True) -> torch.Tensor:
        """Actions in task units for a batch of raw observations (no gradient)."""

    @abstractmethod
    def export_actor(self) -> nn.Module:
        """The deterministic actor as a module: dict of raw obs tensors -> task-unit actions."""

    def training_state(self) -> dict[str, Any]:
        """Optimiser states and counters, for exact resume (networks are in state_dict())."""
        return {"num_updates": self.num_updates}

    def load_training_state(self, state: Mapping[str, Any]) -> None:
        self.num_updates = int(state["num_updates"])


def make_algorithm(name: str, config: Any, spec: TaskSpec, device: torch.device | str = "cpu") -> Algorithm:
    """Build the registered algorithm ``name`` from a config node (validated against its dataclass)."""
    import robot_learning.algos  # noqa: F401  (registers the algorithms)

    if name not in ALGORITHMS:
        raise ConfigError(f"algo: expected one of {sorted(ALGORITHMS)}, found '{name}'")
    cls = ALGORITHMS[name]
    cfg = config if isinstance(config, cls.Config) else build(cls.Config, config, where=f"algo ({name})")
    return cls(cfg, spec, device).to(device)

