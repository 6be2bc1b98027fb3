"""Uni-O4 (Lei et al., ICLR 2024): ensemble BC, IQL critic, OPE-gated multi-step BPPO offline, PPO online.

learner.py holds the algorithm (registered as ``unio4``), policies.py the policy ensemble with the BC and
BPPO losses and the OPE gate, dynamics.py the model ensemble and the rollout evaluation (AM-Q).
"""

from robot_learning.algos.unio4.learner import UniO4, UniO4Config

__all__ = ["UniO4", "UniO4Config"]
