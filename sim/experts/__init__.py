"""Experts: scripted controllers (arm, maze) and fitted linear policies (locomotion).

``make_expert`` returns the task's expert as a :class:`~sim.tiers.BehaviourPolicy` with ``reset(obs)``
and ``act(obs)``, batched over a leading axis, optionally with Gaussian action noise.
"""

from __future__ import annotations

import numpy as np

from robot_learning.spec import TaskSpec
from sim.registry import load_spec
from sim.tiers import BehaviourPolicy, make_controller


def make_expert(task: str | TaskSpec, *, noise: float = 0.0, seed: int | None = None,
                checkpoint: str = "expert") -> BehaviourPolicy:
    """The expert of ``task`` with Gaussian action noise of std ``noise`` x the action half-range.

    ``checkpoint="medium"`` picks the weaker locomotion policy; ``seed`` seeds the noise.
    """
    spec = load_spec(task)
    return BehaviourPolicy(spec, make_controller(spec, checkpoint), policy=checkpoint, action_noise=noise,
                           rng=np.random.default_rng(seed))
