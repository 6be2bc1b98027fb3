"""RIQL: Robust IQL (Yang, Zhong, Xu, Zhang, Zhang, Han, Zhang; "Towards Robust Offline Reinforcement
Learning under Diverse Data Corruption", ICLR 2024).

Reference: YangRui2015/RIQL RIQL.py, RIQL_config.py (built on CORL's IQL) and shared/reference/
algorithms.md section 9. IQL plus three changes against corrupted data (observations, actions, rewards,
dynamics): observations normalised with the dataset's mean/std, a Q-ensemble whose alpha-quantile is the
value target (a pessimistic, outlier-robust estimate), and a Huber loss for Q (bounded gradients on
corrupted targets):

    V:      L_V  = E[ L2^tau( q_alpha(s, a) - V(s) ) ],  q_alpha = Quantile_alpha{ Qbar_k(s, a) }_{k=1..K}
    Q:      L_Q  = mean_k E[ Huber_sigma( clip(r + gamma (1 - d) V(s'), -100, 1000) - Q_k(s, a) ) ]
    actor:  L_pi = E[ w ||pi(s) - a||^2 ]  (deterministic, default)  or  -E[ w log pi(a|s) ],
            w = min(exp(beta (q_alpha(s, a) - V(s))), 100)

The quantile is torch.quantile over the ensemble axis (linear interpolation, as coded). Huber *as coded*
(RIQL.py huber_loss): with delta = 1 / sigma^2, loss = 0.5 x^2 / delta if |x| < delta else |x| - 0.5 delta,
so a LARGER sigma gives a SMALLER quadratic zone, the inverse of the usual delta parameterisation. As in
RIQL.py (CORL's update), every loss reads the networks before this step's updates: V(s') for the TD target
and V(s) for the advantage come from the V being trained, so the three losses share one backward pass.
The actor learning rate follows a cosine schedule over the run (CosineAnnealingLR over max_timesteps).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from robot_learning.algos.base import register
from robot_learning.algos.common import make_target, polyak_update_, td_target
from robot_learning.algos.iql import (IQL, IQLConfig, awr_weights, expectile_loss)
from robot_learning.data.tensors import Batch
from robot_learning.nn import QEnsemble
from robot_learning.spec import TaskSpec


@dataclass
class RIQLConfig(IQLConfig):
    """RIQL defaults: YangRui2015/RIQL RIQL.py TrainConfig and train(); per-task values in RIQL_config.py.

    Fields not listed keep IQL's values, which RIQL shares: expectile 0.7 (iql_tau), beta 3.0, weight clip 100,
    lr 3e-4 for all networks, 256-256, gamma 0.99, tau 0.005, batch 256; no reward transform (train() does
    not call modify_reward).
    """

    name: str = "riql"
    # Observation normalisation with the dataset's mean/std + 1e-3 (TrainConfig.normalize=True, compute_mean_std
    # over observations and next observations: here over every stored step, which holds both).
    normalize_obs: bool = True
    # Ensemble size K (TrainConfig.num_critics 5; RIQL_config.py uses 3 for some task/corruption pairs).
    num_critics: int = 5
    # alpha of the quantile over the ensemble that is the V target (TrainConfig.quantile 0.25; RIQL_config.py
    # 0.1-0.5 per task and corruption).
    quantile: float = 0.25
    # sigma of the Huber loss, delta = 1 / sigma^2 as coded (TrainConfig.sigma 1.0; RIQL_config.py 0.1-3.0).
    huber_sigma: float = 1.0
    # Clip of the TD target (RIQL.py _update_q: torch.clamp(targets, -100, 1000)).
    td_target_min: float = -100.0
    td_target_max: float = 1000.0
    # Deterministic actor a = tanh(f(s)) (train() builds DeterministicPolicy; the README calls
    # iql_deterministic=True the intended default).
    deterministic_actor: bool = True
    # Cosine decay of the actor lr over the run (CosineAnnealingLR(actor_optimizer, max_timesteps=3e6)).
    actor_lr_cosine_steps: int | None = 3_000_000
    # Actor and V initialisation: PyTorch's nn.Linear default (CORL MLP).
    init: str = "torch"
    # Critic initialisation: EDAC's (VectorizedQ: hidden bias 0.1, output layer U(+-3e-3)).
    critic_init: str = "edac_critic"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_critics < 1:
            raise ValueError(f"num_critics: expected at least 1, found {self.num_critics}")
        if not 0.0 <= self.quantile <= 1.0:
            raise ValueError(f"quantile: expected a value in [0, 1], found {self.quantile}")
        if self.huber_sigma <= 0:
            raise ValueError(f"huber_sigma: expected a positive number, found {self.huber_sigma}")
        if not self.td_target_min < self.td_target_max:
            raise ValueError(f"td_target_min/td_target_max: expected min < max, found "
                             f"{self.td_target_min}/{self.td_target_max}")


def quantile_target(q: torch.Tensor, alpha: float) -> torch.Tensor:
    """q_alpha(s, a) = Quantile_alpha over the ensemble axis of q (K, N) -> (N,), linear interpolation."""
    return torch.quantile(q, alpha, dim=0)


def huber_as_coded(diff: torch.Tensor, sigma: float) -> torch.Tensor:
    """RIQL.py huber_loss: delta = 1/sigma^2; 0.5 x^2 / delta if |x| < delta else |x| - 0.5 delta (elementwise)."""
    return F.smooth_l1_loss(diff, torch.zeros_like(diff), reduction="none", beta=1.0 / sigma ** 2)


def clipped_td_target(reward: torch.Tensor, done: torch.Tensor, gamma: float, next_value: torch.Tensor,
                      low: float, high: float) -> torch.Tensor:
    """y = clip(r + gamma (1 - d) V(s'), low, high)."""
    return td_target(reward, done, gamma, next_value).clamp(low, high)


def huber_td_loss(q: torch.Tensor, target: torch.Tensor, sigma: float) -> torch.Tensor:
    """L_Q = mean over members k and samples of Huber_sigma(y - Q_k(s, a)), q (K, N), y (N,)."""
    return huber_as_coded(target.detach() - q, sigma).mean()


@register
class RIQL(IQL):
    """Robust IQL (see the module docstring)."""

    name = "riql"
    Config = RIQLConfig
    config: RIQLConfig

    def __init__(self, config: RIQLConfig, spec: TaskSpec, device: torch.device | str = "cpu"):
        super().__init__(config, spec, device)
        c = config
        self.critic = QEnsemble(self.encoder.output_dim, spec.action_dim, c.hidden, c.num_critics,
                                init=c.critic_init).to(self.device)
        self.target_critic = make_target(self.critic)
        self.add_optimizer("critic", [*self.critic.parameters(), *self.encoder.parameters()], c.critic_lr)
        self._online = [*self.critic.parameters(), *self.encoder.parameters()]
        self._target = [*self.target_critic.parameters(), *self.target_encoder.parameters()]
        self._riql_losses = self.maybe_compile(self.riql_losses)

    def riql_losses(self, batch: Batch, action: torch.Tensor) -> dict[str, torch.Tensor]:
        """V, actor and Q losses from the current networks, plus metrics."""
        c = self.config
        with torch.no_grad():
            q_all = self.target_critic(self.target_encoder(batch.obs), action)
            q_target = quantile_target(q_all, c.quantile)
            v_next = self.value(self.value_encoder(batch.next_obs))[0]
            target = clipped_td_target(batch.reward, batch.done, c.gamma, v_next, c.td_target_min, c.td_target_max)
        v = self.value(self.value_encoder(batch.obs))[0]
        advantage = q_target - v
        weights = awr_weights(advantage, c.temperature, c.max_weight)
        actor_loss = self.awr_actor_loss(weights, batch.obs, action)
        q = self.critic(self.encoder(batch.obs), action)
        return {"value_loss": expectile_loss(advantage, c.expectile), "actor_loss": actor_loss,
                "critic_loss": huber_td_loss(q, target, c.huber_sigma),
                "q_mean": q.mean(), "q_target_std": q_all.std(dim=0, correction=0).mean(), "v_mean": v.detach().mean(),
                "advantage_mean": advantage.detach().mean(), "weight_mean": weights.mean(),
                "td_target_clipped": ((target <= c.td_target_min) | (target >= c.td_target_max)).float().mean()}

    def _update(self, batch: Batch) -> dict[str, torch.Tensor]:
        c = self.config
        self.schedule_actor_lr()
        out = self._riql_losses(batch, self.unit_action(batch))
        losses = {k: out.pop(k) for k in ("value_loss", "actor_loss", "critic_loss")}
        norms = self.backward_step(sum(losses.values()), "value", "actor", "critic")
        polyak_update_(self._target, self._online, c.tau)
        return self.finish_update(losses, norms, out)
