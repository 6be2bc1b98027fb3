"""AWAC: Advantage-Weighted Actor-Critic (Nair, Gupta, Dalal, Levine, 2020).

Reference: corl-team/CORL algorithms/offline/awac.py (the CORL offline-to-online AWAC of algorithms.md
section 12). One update, in CORL's order:

    critic: L_Q = sum_i E[(r + gamma (1 - d) min_i Qbar_i(s', a') - Q_i(s, a))^2],  a' ~ pi(s')
    actor:  L_pi = -E[min(exp((min_i Q_i(s, a) - min_i Q_i(s, a~)) / lambda), 100) log pi(a|s)],  a~ ~ pi(s)
            (the updated critics; V(s) is estimated by one policy sample)
    target: Qbar <- (1 - tau) Qbar + tau Q
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from robot_learning.algos.base import register
from robot_learning.algos.common import (OffPolicyAlgorithm, OffPolicyConfig, ensemble_td_loss, make_target,
                                         polyak_update_, td_target)
from robot_learning.algos.iql import awr_weights, weighted_bc_loss
from robot_learning.data.tensors import Batch
from robot_learning.nn import GaussianActor, QEnsemble
from robot_learning.spec import TaskSpec


@dataclass
class AWACConfig(OffPolicyConfig):
    """AWAC defaults: CORL algorithms/offline/awac.py TrainConfig and networks."""

    name: str = "awac"
    # CORL normalises states with the dataset mean/std (compute_mean_std, eps 1e-3).
    normalize_obs: bool = True
    # One learning rate for actor and critics (learning_rate 3e-4).
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    # Temperature lambda of the advantage weights exp(A / lambda) (awac_lambda 1.0) and their clip (exp_adv_max 100).
    awac_lambda: float = 1.0
    max_weight: float = 100.0
    # Hidden sizes: three layers of hidden_dim 256 for actor and critics.
    hidden: list[int] = field(default_factory=lambda: [256, 256, 256])
    # Actor log-std clip (Actor min_log_std -20, max_log_std 2); the mean is not squashed.
    log_std_min: float = -20.0
    log_std_max: float = 2.0
    # PyTorch default init (CORL does not re-initialise).
    init: str = "torch"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.awac_lambda <= 0:
            raise ValueError(f"awac_lambda: expected > 0, found {self.awac_lambda}")


@register
class AWAC(OffPolicyAlgorithm):
    """Advantage-Weighted Actor-Critic (see the module docstring)."""

    name = "awac"
    Config = AWACConfig
    config: AWACConfig

    def __init__(self, config: AWACConfig, spec: TaskSpec, device: torch.device | str = "cpu"):
        super().__init__(config, spec, device)
        c = config
        feat, act_dim = self.encoder.output_dim, spec.action_dim
        self.critic = QEnsemble(feat, act_dim, c.hidden, 2, init=c.init)
        self.actor_encoder = self.sibling_encoder()
        self.actor = GaussianActor(feat, act_dim, c.hidden, tanh_mean=False, log_std_min=c.log_std_min,
                                   log_std_max=c.log_std_max, init=c.init)
        self.target_encoder = make_target(self.encoder, self.encoder.normalizer)
        self.target_critic = make_target(self.critic)
        self.to(self.device)
        actor_params = [*self.actor.parameters(), *self.encoder_head_parameters(self.actor_encoder)]
        self.add_optimizer("actor", actor_params, c.actor_lr)
        self.add_optimizer("critic", [*self.critic.parameters(), *self.encoder.parameters()], c.critic_lr)
        self._online = [*self.critic.parameters(), *self.encoder.parameters()]
        self._target = [*self.target_critic.parameters(), *self.target_encoder.parameters()]
        self._critic_loss = self.maybe_compile(self.critic_loss)
        self._actor_loss = self.maybe_compile(self.actor_loss)

    def critic_loss(self, batch: Batch, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """TD loss of both critics on the min target Q at a policy sample; returns (loss, mean Q)."""
        with torch.no_grad():
            next_action = self.actor.sample(self.actor_encoder(batch.next_obs))
            q_next = self.target_critic(self.target_encoder(batch.next_obs), next_action).min(dim=0).values
            target = td_target(batch.reward, batch.done, self.config.gamma, q_next)
        q = self.critic(self.encoder(batch.obs), action)
        return ensemble_td_loss(q, target), q.mean()

    def actor_loss(self, batch: Batch, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Advantage-weighted log-likelihood of the data actions; returns (loss, mean weight)."""
        c = self.config
        features = self.actor_encoder(batch.obs)
        with torch.no_grad():
            critic_features = self.encoder(batch.obs)
            pi_action = self.actor.sample(features)
            q = self.critic(critic_features.repeat(2, 1), torch.cat([action, pi_action])).min(dim=0).values
            q_data, v = q.chunk(2)
            weights = awr_weights(q_data - v, 1.0 / c.awac_lambda, c.max_weight)
        return weighted_bc_loss(weights, self.actor.log_prob(features, action)), weights.mean()

    def _update(self, batch: Batch) -> dict[str, torch.Tensor]:
        action = self.unit_action(batch)
        critic_loss, q_mean = self._critic_loss(batch, action)
        norms = self.backward_step(critic_loss, "critic")
        actor_loss, weight_mean = self._actor_loss(batch, action)
        norms |= self.backward_step(actor_loss, "actor")
        polyak_update_(self._target, self._online, self.config.tau)
        return self.finish_update({"critic_loss": critic_loss, "actor_loss": actor_loss}, norms,
                                  {"q_mean": q_mean, "weight_mean": weight_mean})
