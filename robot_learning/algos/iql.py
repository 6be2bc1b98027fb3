"""IQL: Implicit Q-Learning (Kostrikov, Nair, Levine, ICLR 2022).

Reference: ikostrikov/implicit_q_learning (learner.py, critic.py, actor.py, policy.py, configs/*.py) and
shared/reference/algorithms.md section 1. One update, in the official order:

    V:     L_V = E[ L2^tau( min_i Qbar_i(s, a) - V(s) ) ]                      (target critic)
    actor: L_pi = -E[ min(exp(beta (min_i Qbar_i(s, a) - V(s))), 100) log pi(a|s) ]   (the new V)
    Q:     L_Q = sum_i E[ (r + gamma (1 - d) V(s') - Q_i(s, a))^2 ]              (the new V)
    target: Qbar <- (1 - tau) Qbar + tau Q
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from robot_learning.algos.base import register
from robot_learning.algos.common import (OffPolicyAlgorithm, OffPolicyConfig, ensemble_td_loss, make_target,
                                         polyak_update_, td_target)
from robot_learning.data.tensors import Batch
from robot_learning.nn import DeterministicActor, GaussianActor, QEnsemble, VEnsemble
from robot_learning.spec import TaskSpec


@dataclass
class IQLConfig(OffPolicyConfig):
    """IQL defaults: ikostrikov/implicit_q_learning configs/mujoco_config.py and learner.py (locomotion)."""

    name: str = "iql"
    # Expectile tau of the V loss (mujoco_config 0.7; AntMaze 0.9).
    expectile: float = 0.7
    # Inverse temperature beta of the advantage weights (mujoco_config 3.0; AntMaze 10.0; kitchen/adroit 0.5).
    temperature: float = 3.0
    # Clip of the advantage weights exp(beta A) (actor.py: jnp.minimum(exp_a, 100.0)).
    max_weight: float = 100.0
    # Learning rates of actor, critic and value (configs: 3e-4 each).
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    value_lr: float = 3e-4
    # Cosine decay of the actor learning rate to 0 over this many updates (learner.py: cosine over 1e6
    # steps, opt_decay_schedule="cosine" offline); None = constant (train_finetune.py: opt_decay_schedule=None).
    actor_lr_cosine_steps: int | None = 1_000_000
    # Hidden sizes of actor, critics and value (configs: (256, 256)).
    hidden: list[int] = field(default_factory=lambda: [256, 256])
    # Actor dropout (configs: none for locomotion/AntMaze, 0.1 for kitchen/adroit).
    actor_dropout: float = 0.0
    # Actor log-std clip (learner.py: log_std_min=-5.0; policy.py LOG_STD_MAX=2.0).
    log_std_min: float = -5.0
    log_std_max: float = 2.0
    # Deterministic actor a = tanh(f(s)) with loss E[w ||pi(s) - a||^2] (CORL iql.py; RIQL's default).
    deterministic_actor: bool = False
    # Exploration noise of the deterministic actor online: std and clip (CORL finetune/iql.py 0.03, 0.5).
    exploration_noise: float = 0.03
    exploration_noise_clip: float = 0.5
    # Weight init scheme (jaxrl default_init: orthogonal(sqrt 2), common.py).
    init: str = "orthogonal"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 < self.expectile < 1.0:
            raise ValueError(f"expectile: expected a value in (0, 1), found {self.expectile}")
        if self.actor_lr_cosine_steps is not None and self.actor_lr_cosine_steps < 1:
            raise ValueError(f"actor_lr_cosine_steps: expected a positive step count or null, found "
                             f"{self.actor_lr_cosine_steps}")


def expectile_loss(diff: torch.Tensor, expectile: float) -> torch.Tensor:
    """E[L2^tau(u)] with L2^tau(u) = |tau - 1(u < 0)| u^2 and u = Qbar(s, a) - V(s)."""
    weight = torch.where(diff < 0, 1.0 - expectile, expectile)
    return (weight * diff.square()).mean()


def awr_weights(advantage: torch.Tensor, temperature: float, max_weight: float) -> torch.Tensor:
    """w = min(exp(beta A), max_weight): advantage-weighted regression weights, no gradient."""
    return torch.exp(temperature * advantage.detach()).clamp(max=max_weight)


def weighted_bc_loss(weights: torch.Tensor, log_prob: torch.Tensor) -> torch.Tensor:
    """L_pi = -E[w log pi(a|s)]."""
    return -(weights * log_prob).mean()


def weighted_regression_loss(weights: torch.Tensor, pred: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    """L_pi = E[w ||pi(s) - a||^2] for a deterministic actor."""
    return (weights * (pred - action).square().sum(-1)).mean()


def cosine_lr(base_lr: float, step: int, total: int) -> float:
    """optax.cosine_decay_schedule(base_lr, total) at ``step`` (0-based): base_lr (1 + cos(pi min(step,T)/T)) / 2."""
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))


@register
class IQL(OffPolicyAlgorithm):
    """Implicit Q-Learning (see the module docstring)."""

    name = "iql"
    Config = IQLConfig
    config: IQLConfig

    def __init__(self, config: IQLConfig, spec: TaskSpec, device: torch.device | str = "cpu"):
        super().__init__(config, spec, device)
        c = config
        feat, act_dim = self.encoder.output_dim, spec.action_dim
        self.critic = QEnsemble(feat, act_dim, c.hidden, 2, init=c.init)
        self.value_encoder = self.sibling_encoder()
        self.value = VEnsemble(feat, c.hidden, 1, init=c.init)
        self.actor_encoder = self.sibling_encoder()
        if c.deterministic_actor:
            self.actor = DeterministicActor(feat, act_dim, c.hidden, dropout=c.actor_dropout, init=c.init)
        else:
            self.actor = GaussianActor(feat, act_dim, c.hidden, tanh_mean=True, log_std_min=c.log_std_min,
                                       log_std_max=c.log_std_max, dropout=c.actor_dropout, init=c.init)
        self.target_encoder = make_target(self.encoder, self.encoder.normalizer)
        self.target_critic = make_target(self.critic)
        self.to(self.device)
        self.add_optimizer("value", [*self.value.parameters(), *self.value_encoder_params()], c.value_lr)
        self.add_optimizer("actor", [*self.actor.parameters(), *self.actor_encoder_params()], c.actor_lr)
        self.add_optimizer("critic", [*self.critic.parameters(), *self.encoder.parameters()], c.critic_lr)
        self._online = [*self.critic.parameters(), *self.encoder.parameters()]
        self._target = [*self.target_critic.parameters(), *self.target_encoder.parameters()]
        self._value_losses = self.maybe_compile(self.value_losses)
        self._actor_critic_losses = self.maybe_compile(self.actor_critic_losses)

    def value_encoder_params(self) -> list[torch.nn.Parameter]:
        return self.encoder_head_parameters(self.value_encoder)

    def actor_encoder_params(self) -> list[torch.nn.Parameter]:
        return self.encoder_head_parameters(self.actor_encoder)

    # ------------------------------------------------------------------------------ losses
    def value_losses(self, batch: Batch, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The V loss on min target Q; returns (loss, min target Q)."""
        with torch.no_grad():
            q_target = self.target_critic(self.target_encoder(batch.obs), action).min(dim=0).values
        v = self.value(self.value_encoder(batch.obs))[0]
        return expectile_loss(q_target - v, self.config.expectile), q_target

    def actor_critic_losses(self, batch: Batch, action: torch.Tensor,
                            q_target: torch.Tensor) -> dict[str, torch.Tensor]:
        """Actor (AWR) and critic (TD on the new V) losses, plus metrics."""
        c = self.config
        with torch.no_grad():
            # the new V at s and s' in one pass
            both = {k: torch.cat([batch.obs[k], batch.next_obs[k]]) for k in self.obs_keys}
            v_obs, v_next = self.value(self.value_encoder(both))[0].chunk(2)
            target = td_target(batch.reward, batch.done, c.gamma, v_next)
        advantage = q_target - v_obs
        weights = awr_weights(advantage, c.temperature, c.max_weight)
        actor_loss = self.awr_actor_loss(weights, batch.obs, action)
        q = self.critic(self.encoder(batch.obs), action)
        return {"actor_loss": actor_loss, "critic_loss": ensemble_td_loss(q, target),
                "q_mean": q.mean(), "v_mean": v_obs.mean(), "advantage_mean": advantage.mean(),
                "weight_mean": weights.mean()}

    def awr_actor_loss(self, weights: torch.Tensor, obs: dict[str, torch.Tensor],
                       action: torch.Tensor) -> torch.Tensor:
        """Advantage-weighted regression: -E[w log pi(a|s)], or E[w ||mu(s) - a||^2] for a deterministic actor."""
        features = self.actor_encoder(obs)
        if self.config.deterministic_actor:
            return weighted_regression_loss(weights, self.actor(features), action)
        return weighted_bc_loss(weights, self.actor.log_prob(features, action))

    def schedule_actor_lr(self) -> None:
        """The official cosine decay of the actor's learning rate, when ``actor_lr_cosine_steps`` is set."""
        c = self.config
        if c.actor_lr_cosine_steps is not None:
            lr = cosine_lr(c.actor_lr, self.num_updates - 1, c.actor_lr_cosine_steps)
            for group in self.optimizers["actor"].param_groups:
                group["lr"] = lr

    # ------------------------------------------------------------------------------ update
    def _update(self, batch: Batch) -> dict[str, torch.Tensor]:
        c = self.config
        action = self.unit_action(batch)
        value_loss, q_target = self._value_losses(batch, action)
        norms = self.backward_step(value_loss, "value")
        self.schedule_actor_lr()
        out = self._actor_critic_losses(batch, action, q_target)
        norms |= self.backward_step(out["actor_loss"] + out["critic_loss"], "actor", "critic")
        polyak_update_(self._target, self._online, c.tau)
        losses = {"value_loss": value_loss, "actor_loss": out.pop("actor_loss"), "critic_loss": out.pop("critic_loss")}
        return self.finish_update(losses, norms, out)

    def explore(self, features: torch.Tensor) -> torch.Tensor:
        if not self.config.deterministic_actor:
            return self.actor.sample(features)
        c = self.config
        action = self.actor(features)
        clip = c.exploration_noise_clip
        noise = (torch.randn_like(action) * c.exploration_noise).clamp(-clip, clip)
        return (action + noise).clamp(-1.0, 1.0)
