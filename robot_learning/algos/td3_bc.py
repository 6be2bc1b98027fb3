"""TD3+BC (Fujimoto & Gu, NeurIPS 2021): TD3 with a behaviour-cloning term and normalised Q in the actor loss.

Reference: sfujim/TD3_BC (TD3_BC.py, main.py). One update:

    critic: L_Q = sum_i E[(r + gamma (1 - d) min_i Qbar_i(s', a') - Q_i(s, a))^2],
            a' = clip(pibar(s') + clip(N(0, sigma^2), -c, c), -1, 1)             (target policy smoothing)
    every d-th update:
    actor:  L_pi = -lambda E[Q_1(s, pi(s))] + E[(pi(s) - a)^2],  lambda = alpha / E|Q_1(s, pi(s))| (no gradient)
    target: Qbar <- (1 - tau) Qbar + tau Q,  pibar <- (1 - tau) pibar + tau pi
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch.nn import functional as F

from robot_learning.algos.base import register
from robot_learning.algos.common import (OffPolicyAlgorithm, OffPolicyConfig, ensemble_td_loss, frozen, make_target,
                                         polyak_update_, td_target)
from robot_learning.data.tensors import Batch
from robot_learning.nn import DeterministicActor, QEnsemble
from robot_learning.spec import TaskSpec


@dataclass
class TD3BCConfig(OffPolicyConfig):
    """TD3+BC defaults: sfujim/TD3_BC main.py and TD3_BC.py."""

    name: str = "td3_bc"
    # States normalised with the dataset mean/std (main.py normalize=True, eps 1e-3).
    normalize_obs: bool = True
    # Adam learning rates of actor and critic (TD3_BC.py: 3e-4).
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    # Hidden sizes of actor and critics (TD3_BC.py: 256, 256).
    hidden: list[int] = field(default_factory=lambda: [256, 256])
    # BC trade-off alpha in lambda = alpha / E|Q| (main.py alpha 2.5).
    alpha: float = 2.5
    # Target policy smoothing noise std and clip, in [-1, 1] action units (policy_noise 0.2, noise_clip 0.5).
    policy_noise: float = 0.2
    noise_clip: float = 0.5
    # Actor and target updates every policy_freq critic updates (policy_freq 2).
    policy_freq: int = 2
    # Gaussian exploration noise std for online data collection (TD3 main.py expl_noise 0.1).
    exploration_noise: float = 0.1
    # PyTorch default init (TD3_BC.py does not re-initialise).
    init: str = "torch"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.policy_freq < 1:
            raise ValueError(f"policy_freq: expected >= 1, found {self.policy_freq}")


def td3_bc_actor_loss(q_pi: torch.Tensor, pi_action: torch.Tensor, action: torch.Tensor,
                      alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """L = -lambda E[Q_1(s, pi(s))] + E[(pi(s) - a)^2], lambda = alpha / E|Q_1(s, pi(s))| (no gradient).

    Returns (loss, lambda).
    """
    lmbda = alpha / q_pi.abs().mean().detach()
    return -lmbda * q_pi.mean() + F.mse_loss(pi_action, action), lmbda


@register
class TD3BC(OffPolicyAlgorithm):
    """TD3+BC (see the module docstring)."""

    name = "td3_bc"
    Config = TD3BCConfig
    config: TD3BCConfig

    def __init__(self, config: TD3BCConfig, spec: TaskSpec, device: torch.device | str = "cpu"):
        super().__init__(config, spec, device)
        c = config
        feat, act_dim = self.encoder.output_dim, spec.action_dim
        self.critic = QEnsemble(feat, act_dim, c.hidden, 2, init=c.init)
        self.actor_encoder = self.sibling_encoder()
        self.actor = DeterministicActor(feat, act_dim, c.hidden, init=c.init)
        self.target_encoder = make_target(self.encoder, self.encoder.normalizer)
        self.target_critic = make_target(self.critic)
        # The target policy reads the online actor encoder: a parameter-free normaliser for low-dim observations.
        self.target_actor = make_target(self.actor)
        self.to(self.device)
        actor_params = [*self.actor.parameters(), *self.encoder_head_parameters(self.actor_encoder)]
        self.add_optimizer("actor", actor_params, c.actor_lr)
        self.add_optimizer("critic", [*self.critic.parameters(), *self.encoder.parameters()], c.critic_lr)
        self._online = [*self.critic.parameters(), *self.encoder.parameters(), *self.actor.parameters()]
        self._target = [*self.target_critic.parameters(), *self.target_encoder.parameters(),
                        *self.target_actor.parameters()]
        self._critic_loss = self.maybe_compile(self.critic_loss)
        # Eager even with compile=True: the compiled actor loss (actor -> frozen Q_1 -> backward to the actions) ran
        # ~10% slower per update on the development CPU (benchmarks/train_speed.py, torch 2.14, 1 thread).
        self._actor_loss = self.actor_loss

    def critic_loss(self, batch: Batch, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """TD loss with target policy smoothing; returns (loss, mean Q)."""
        c = self.config
        with torch.no_grad():
            next_pi = self.target_actor(self.actor_encoder(batch.next_obs))
            noise = (torch.randn_like(next_pi) * c.policy_noise).clamp(-c.noise_clip, c.noise_clip)
            q_next = self.target_critic(self.target_encoder(batch.next_obs), (next_pi + noise).clamp(-1.0, 1.0))
            target = td_target(batch.reward, batch.done, c.gamma, q_next.min(dim=0).values)
        q = self.critic(self.encoder(batch.obs), action)
        return ensemble_td_loss(q, target), q.mean()

    def actor_loss(self, batch: Batch, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pi_action = self.actor(self.actor_encoder(batch.obs))
        q_pi = frozen(self.critic, self.encoder(batch.obs).detach(), pi_action, members=slice(0, 1))[0]
        return td3_bc_actor_loss(q_pi, pi_action, action, self.config.alpha)

    def _update(self, batch: Batch) -> dict[str, torch.Tensor]:
        action = self.unit_action(batch)
        critic_loss, q_mean = self._critic_loss(batch, action)
        norms = self.backward_step(critic_loss, "critic")
        losses, extra = {"critic_loss": critic_loss}, {"q_mean": q_mean}
        if self.num_updates % self.config.policy_freq == 0:
            losses["actor_loss"], extra["lambda"] = self._actor_loss(batch, action)
            norms |= self.backward_step(losses["actor_loss"], "actor")
            polyak_update_(self._target, self._online, self.config.tau)
        return self.finish_update(losses, norms, extra)

    def explore(self, features: torch.Tensor) -> torch.Tensor:
        action = self.actor(features)
        return (action + torch.randn_like(action) * self.config.exploration_noise).clamp(-1.0, 1.0)
