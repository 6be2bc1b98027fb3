"""SAC-N and EDAC (An, Moon, Kim, Song, NeurIPS 2021): SAC with an N-member Q-ensemble (and gradient diversity).

References: corl-team/CORL algorithms/offline/sac_n.py and edac.py (ports of snu-mllab/EDAC). SAC-N with
N=2 is SAC with twin critics, and this same code is what the speed benchmark times as "SAC". One update,
in EDAC's order (alpha, then actor, then critic):

    alpha:  L = -E[log alpha (log pi(a~|s) + H_target)]                      H_target = -|A|
    actor:  L_pi = E[alpha log pi(a~|s) - min_i Q_i(s, a~)]
    critic: L_Q = sum_i E[(Q_i(s, a) - y)^2] + eta ES,
            y = r + gamma (1 - d)(min_i Qbar_i(s', a') - alpha log pi(a'|s')),  a' ~ pi(s')
            ES = 1/(N-1) E_s[ sum_{i != j} <g_i, g_j> ],  g_i = grad_a Q_i(s, a) / ||grad_a Q_i(s, a)||
            (EDAC's gradient diversity, only when eta > 0)
    target: Qbar <- (1 - tau) Qbar + tau Q
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from robot_learning.algos.base import register
from robot_learning.algos.common import (OffPolicyAlgorithm, OffPolicyConfig, ensemble_td_loss, frozen, make_target,
                                         polyak_update_, sac_actor_loss, td_target, temperature_loss)
from robot_learning.data.tensors import Batch
from robot_learning.nn import QEnsemble, TanhGaussianActor
from robot_learning.spec import TaskSpec

#: Added to gradient norms before normalising them (EDAC _critic_diversity_loss).
_GRAD_NORM_EPS = 1e-10


@dataclass
class SACNConfig(OffPolicyConfig):
    """SAC-N/EDAC defaults: CORL algorithms/offline/sac_n.py and edac.py TrainConfig and networks."""

    name: str = "sac_n"
    # Ensemble size N (num_critics 10; the SAC-N paper uses up to 500 per task, EDAC 10-50).
    num_critics: int = 10
    # EDAC gradient-diversity weight eta; 0 = SAC-N (edac.py eta 1.0 when enabled).
    eta: float = 0.0
    # Learning rates (actor_learning_rate, critic_learning_rate, alpha_learning_rate: 3e-4).
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    alpha_lr: float = 3e-4
    # Hidden sizes: three layers of hidden_dim 256 for actor and critics.
    hidden: list[int] = field(default_factory=lambda: [256, 256, 256])
    # Actor log-std clip [-5, 2] ("clipping params from EDAC paper").
    log_std_min: float = -5.0
    log_std_max: float = 2.0
    # Inits of the EDAC paper: hidden bias 0.1, critic output U(+-3e-3), actor heads U(+-1e-3).
    critic_init: str = "edac_critic"
    actor_init: str = "edac_actor"
    # Target entropy; None = -|A|.
    target_entropy: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_critics < 1:
            raise ValueError(f"num_critics: expected >= 1, found {self.num_critics}")
        if self.eta > 0 and self.num_critics < 2:
            raise ValueError(f"eta: the EDAC diversity term needs num_critics >= 2, found {self.num_critics}")


def gradient_diversity_loss(action_grads: torch.Tensor) -> torch.Tensor:
    """ES = E_s[ sum_{i != j} <g_i, g_j> ] / (N - 1) with g_i the normalised grad_a Q_i, action_grads (N, B, A)."""
    n = action_grads.shape[0]
    g = action_grads / (action_grads.norm(dim=-1, keepdim=True) + _GRAD_NORM_EPS)
    total = g.sum(dim=0).square().sum(-1)          # ||sum_i g_i||^2 = sum_{i,j} <g_i, g_j>
    self_terms = g.square().sum(dim=(0, 2))        # sum_i ||g_i||^2
    return (total - self_terms).mean() / (n - 1)


@register
class SACN(OffPolicyAlgorithm):
    """SAC-N / EDAC (see the module docstring)."""

    name = "sac_n"
    Config = SACNConfig
    config: SACNConfig

    def __init__(self, config: SACNConfig, spec: TaskSpec, device: torch.device | str = "cpu"):
        super().__init__(config, spec, device)
        c = config
        feat, act_dim = self.encoder.output_dim, spec.action_dim
        self.critic = QEnsemble(feat, act_dim, c.hidden, c.num_critics, init=c.critic_init)
        self.actor_encoder = self.sibling_encoder()
        self.actor = TanhGaussianActor(feat, act_dim, c.hidden, log_std_min=c.log_std_min, log_std_max=c.log_std_max,
                                       init=c.actor_init)
        self.target_encoder = make_target(self.encoder, self.encoder.normalizer)
        self.target_critic = make_target(self.critic)
        self.log_alpha = nn.Parameter(torch.zeros(()))
        self.target_entropy = float(-act_dim if c.target_entropy is None else c.target_entropy)
        self.to(self.device)
        self.add_optimizer("alpha", [self.log_alpha], c.alpha_lr)
        actor_params = [*self.actor.parameters(), *self.encoder_head_parameters(self.actor_encoder)]
        self.add_optimizer("actor", actor_params, c.actor_lr)
        self.add_optimizer("critic", [*self.critic.parameters(), *self.encoder.parameters()], c.critic_lr)
        self._online = [*self.critic.parameters(), *self.encoder.parameters()]
        self._target = [*self.target_critic.parameters(), *self.target_encoder.parameters()]
        # Eager even with compile=True: the compiled policy/frozen-critic pass made the whole update ~25% slower on the
        # development CPU (benchmarks/train_speed.py, torch 2.14, 1 thread); the critic losses compile neutrally.
        self._policy_values = self.policy_values
        # EDAC's diversity term differentiates through a gradient: torch.compile has no double backward.
        self._critic_losses = self.critic_losses if c.eta > 0 else self.maybe_compile(self.critic_losses)

    def policy_values(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """log pi(a~|s) and Q_i(s, a~) (critic frozen) for one policy sample a~ ~ pi(s)."""
        action, log_pi = self.actor.sample(self.actor_encoder(batch.obs))
        return log_pi, frozen(self.critic, self.encoder(batch.obs).detach(), action)

    def critic_losses(self, batch: Batch, action: torch.Tensor) -> dict[str, torch.Tensor]:
        """TD loss of every member on the entropy-regularised min-over-ensemble target (+ eta ES for EDAC)."""
        c = self.config
        alpha = self.log_alpha.exp().detach()
        with torch.no_grad():
            next_action, next_log_pi = self.actor.sample(self.actor_encoder(batch.next_obs))
            q_next = self.target_critic(self.target_encoder(batch.next_obs), next_action).min(dim=0).values
            target = td_target(batch.reward, batch.done, c.gamma, q_next - alpha * next_log_pi)
        features = self.encoder(batch.obs)
        out: dict[str, torch.Tensor] = {}
        if c.eta > 0:
            member_action = action.expand(c.num_critics, *action.shape).clone().requires_grad_(True)
            q = self.critic(features, member_action)
            grads = torch.autograd.grad(q.sum(), member_action, create_graph=True)[0]
            out["diversity_loss"] = gradient_diversity_loss(grads)
            out["critic_loss"] = ensemble_td_loss(q, target) + c.eta * out["diversity_loss"]
        else:
            q = self.critic(features, action)
            out["critic_loss"] = ensemble_td_loss(q, target)
        out["q_mean"] = q.mean()
        if c.num_critics > 1:
            out["q_std"] = q.std(dim=0).mean()
        return out

    def _update(self, batch: Batch) -> dict[str, torch.Tensor]:
        log_pi, q_pi = self._policy_values(batch)
        alpha_loss = temperature_loss(self.log_alpha, log_pi, self.target_entropy)
        norms = self.backward_step(alpha_loss, "alpha")
        alpha = self.log_alpha.exp().detach()
        actor_loss = sac_actor_loss(alpha, log_pi, q_pi.min(dim=0).values)
        norms |= self.backward_step(actor_loss, "actor")
        critic = self._critic_losses(batch, self.unit_action(batch))
        critic_loss = critic.pop("critic_loss")
        norms |= self.backward_step(critic_loss, "critic")
        polyak_update_(self._target, self._online, self.config.tau)
        losses = {"alpha_loss": alpha_loss, "actor_loss": actor_loss, "critic_loss": critic_loss}
        return self.finish_update(losses, norms, critic | {"alpha": alpha, "entropy": -log_pi.detach().mean()})
