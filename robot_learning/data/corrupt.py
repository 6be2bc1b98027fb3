"""Data corruption for robustness experiments: the protocol of RIQL's attack.py (YangRui2015/RIQL).

A ``rate`` fraction of the transitions is picked (each independently, attack.py ``sample_indexs``) and one
kind of their data is changed, with ``scale`` the corruption range:

==========  ===========================================  ===============================================
kind        random                                       adversarial
==========  ===========================================  ===============================================
obs         s  <- s  + U(-scale, scale) * std(s)         s  + delta * std(s), delta in [-scale, scale]^D
                                                         minimising Q(s + delta std, a)
action      a  <- a  + U(-scale, scale) * std(a)         minimising Q(s, a + delta std)
reward      r  <- U(-scale, scale) * 30                  r <- -scale * r
dynamics    s' <- s' + U(-scale, scale) * std(s')        minimising Q(s' + delta std, pi(s' + delta std))
==========  ===========================================  ===============================================

std is the per-dimension standard deviation over the whole dataset. The adversarial perturbation is
attack.py's projected attack: ``steps`` (100) iterations of a fresh Adam step of learning rate
``step_size * scale`` (0.01 scale) on mean Q, each followed by a clip to [-scale, scale]. A fresh
Adam's first step moves every coordinate by lr * g / (|g| + eps), i.e. lr * sign(g), so this is
projected signed-gradient descent, written as such here. The Q-function is any learner's critic (the
paper used pretrained EDAC critics); Q and the policy see raw observations and task-unit actions.

The layout matters for obs and dynamics: a store keeps each observation once, so s' of transition t is
s of transition t + 1. This module works on those rows as they are stored: corrupting the observation of
transition t also changes the next observation of transition t - 1, and corrupting the next observation
of transition t (``dynamics``, the row t + 1) also changes the state of transition t + 1. D4RL keeps
separate observation and next-observation copies, so there the same rate corrupts only one side of each
picked transition; here both sides of a transition are corrupted about twice as often (about
1 - (1 - rate)^2 of the transitions see a corrupted s or s'). ``dynamics`` therefore picks among
transitions that have a stored next observation (not terminal ones, whose s' is never read).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from numpy.random import Generator

#: The corruption kinds and modes.
KINDS = ("obs", "action", "reward", "dynamics")
MODES = ("random", "adversarial")
#: Random rewards are U(-scale, scale) * 30 (attack.py corrupt_rew: sample_data(shape) * 30).
RANDOM_REWARD_RANGE = 30.0

#: Raw observations (dict of (N, d) tensors) and task-unit actions (N, A) -> Q (N,) (ensemble mean).
QFunction = Callable[[Mapping[str, torch.Tensor], torch.Tensor], torch.Tensor]
#: Raw observations -> task-unit actions (a learner's deterministic actor).
PolicyFunction = Callable[[Mapping[str, torch.Tensor]], torch.Tensor]


def select_transitions(candidates: np.ndarray, rate: float, rng: Generator) -> np.ndarray:
    """Each row of ``candidates`` independently with probability ``rate`` (attack.py sample_indexs)."""
    if not 0.0 < rate <= 1.0:
        raise ValueError(f"rate: expected a fraction in (0, 1], found {rate}")
    return candidates[rng.random(len(candidates)) < rate]


def random_offsets(shape: tuple[int, ...], scale: float, std: np.ndarray, rng: Generator) -> np.ndarray:
    """U(-scale, scale) * std per element: the random obs/action/next-obs corruption (attack.py sample_data)."""
    return (rng.uniform(-scale, scale, size=shape) * std).astype(np.float32)


def random_rewards(n: int, scale: float, rng: Generator) -> np.ndarray:
    """r <- U(-scale, scale) * 30 for ``n`` rewards."""
    return (rng.uniform(-scale, scale, size=n) * RANDOM_REWARD_RANGE).astype(np.float32)


def adversarial_rewards(reward: np.ndarray, scale: float) -> np.ndarray:
    """r <- -scale * r."""
    return (-scale * reward).astype(np.float32)


def signed_gradient_attack(loss: Callable[[torch.Tensor], torch.Tensor], init: torch.Tensor, scale: float,
                           steps: int, step_size: float) -> torch.Tensor:
    """delta <- clip(delta - step_size * scale * sign(grad loss(delta)), -scale, scale), ``steps`` times.

    ``loss(delta)`` must be a sum or mean of per-row terms (rows are attacked independently).
    """
    delta = init.clamp(-scale, scale)
    for _ in range(steps):
        delta = delta.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(loss(delta), delta)
        delta = (delta - step_size * scale * grad.sign()).clamp(-scale, scale)
    return delta.detach()


def attack_observations(obs: Mapping[str, torch.Tensor], action: torch.Tensor, keys: list[str],
                        std: Mapping[str, torch.Tensor], q_fn: QFunction, policy: PolicyFunction | None, *,
                        scale: float, steps: int, step_size: float, generator: torch.Generator
                        ) -> dict[str, torch.Tensor]:
    """Adversarial offsets (in observation units) of ``keys`` for rows of ``obs``, minimising mean Q.

    With ``policy`` the action is re-chosen on the perturbed observation (next-observation attack, attack.py
    loss_Q_for_next_obs); without it the stored ``action`` is scored (loss_Q_for_obs).
    """
    dims = [obs[k].shape[1] for k in keys]
    scale_row = torch.cat([std[k] for k in keys])
    init = (torch.rand(action.shape[0], sum(dims), generator=generator, device=action.device) * 2 - 1) * scale

    def perturbed(delta: torch.Tensor) -> dict[str, torch.Tensor]:
        offsets = dict(zip(keys, (delta * scale_row).split(dims, dim=1)))
        return {k: v + offsets[k] if k in offsets else v for k, v in obs.items()}

    def loss(delta: torch.Tensor) -> torch.Tensor:
        noised = perturbed(delta)
        return q_fn(noised, policy(noised) if policy is not None else action).mean()

    delta = signed_gradient_attack(loss, init, scale, steps, step_size)
    return dict(zip(keys, (delta * scale_row).split(dims, dim=1)))


def attack_actions(obs: Mapping[str, torch.Tensor], action: torch.Tensor, std: torch.Tensor, q_fn: QFunction, *,
                   scale: float, steps: int, step_size: float, generator: torch.Generator) -> torch.Tensor:
    """Adversarial action offsets (task units) minimising mean Q(s, a + delta std) (attack.py loss_Q_for_act)."""
    init = (torch.rand(action.shape, generator=generator, device=action.device) * 2 - 1) * scale
    delta = signed_gradient_attack(lambda d: q_fn(obs, action + d * std).mean(), init, scale, steps, step_size)
    return delta * std
