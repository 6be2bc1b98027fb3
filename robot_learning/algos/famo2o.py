"""FamO2O on IQL (Wang et al., "Train Once, Get a Family: State-Adaptive Balances for Offline-to-Online RL",
NeurIPS 2023).

References: LeapLabTHU/FamO2O jax_iql/family_learner.py, family_actor.py, family_temperature.py,
family_utils.py, policy.py, family_train_finetune.py, configs/family_antmaze_finetune_config.py, and
shared/reference/algorithms.md section 4. IQL's AWR inverse temperature beta sets the balance between
policy improvement (large beta) and staying close to the data (small beta). FamO2O trains a *family* of
policies, one per beta, and a balance model that picks beta per state:

    universal actor   pi_u(a | s, enc(beta)),  enc = interleaved sin/cos of beta / n^(2i/d), i < d/2
    balance policy    pi_b(beta | s): x = tanh(u), u ~ N(mu(s), sigma), beta = lo + (x + 1)/2 (hi - lo)

One update, in the official order V -> pi_b -> alpha_b -> pi_u -> Q -> target:

    V:      L_V   = E[ L2^tau( min_i Qbar_i(s, a) - V(s) ) ]                                     (IQL)
    pi_b:   L_b   = E_s[ alpha_b log pi_b(x|s) - min_i Qbar_i(s, a~) ],  a~ ~ pi_u(.|s, enc(beta)),
                    beta ~ pi_b(s) reparameterised, pi_u frozen (SAC-style)
    alpha:  L_a   = alpha_b (H(pi_b) - H_target),  H = -E[log pi_b]          (family_temperature.py, as coded)
    pi_u:   L_u   = -E[ min(exp(beta (min_i Qbar_i(s, a) - V(s))), 100) log pi_u(a | s, enc(beta)) ]
                    beta ~ U[lo, hi] per sample offline; beta ~ pi_b(s), stop-gradient, online
    Q:      L_Q   = sum_i E[ (r + gamma (1 - d) V(s') - Q_i(s, a))^2 ]                           (IQL)

pi_b and alpha_b train offline too; the losses are used unchanged offline and online, only the source of
beta in L_u changes (the runtime announces the phase through :meth:`begin_phase`). V is stepped first;
the other four losses read V after its step and the other networks before theirs (pi_u's beta comes
from the pre-update pi_b, pi_b's actions from the pre-update pi_u, as in family_learner.py), so they
share one backward pass. Acting: beta = the balance policy's deterministic mean, then pi_u's mean
(evaluation, export) or a sample (exploration): the exported actor is obs -> beta(s) -> pi_u mean.
``IQLConfig.temperature`` is not used: the sampled beta replaces it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from robot_learning.algos.base import register
from robot_learning.algos.common import ensemble_td_loss, frozen, polyak_update_, td_target
from robot_learning.algos.iql import IQL, IQLConfig, awr_weights, weighted_bc_loss
from robot_learning.data.tensors import Batch
from robot_learning.nn import GaussianActor, mlp
from robot_learning.nn.actors import gaussian_log_prob, tanh_log_det_jacobian
from robot_learning.spec import TaskSpec


@dataclass
class FamO2OConfig(IQLConfig):
    """FamO2O-IQL defaults: LeapLabTHU/FamO2O jax_iql/configs/family_antmaze_finetune_config.py (the official
    IQL config; AntMaze) and the FamilyLearner signature in family_learner.py. Fields not listed keep IQL's
    sourced defaults (lr 3e-4 everywhere, 256-256, gamma 0.99, tau 0.005, batch 256, IQL Gaussian actor)."""

    name: str = "famo2o"
    # Expectile tau of the V loss (family_antmaze_finetune_config: 0.9; the FamilyLearner default is 0.8).
    expectile: float = 0.9
    # No actor learning-rate decay (family_antmaze_finetune_config: opt_decay_schedule=None).
    actor_lr_cosine_steps: int | None = None
    # Range of the balance coefficient beta (family_coefficient_range (8.0, 14.0); FamilyLearner default (1.0, 5.0)).
    beta_low: float = 8.0
    beta_high: float = 14.0
    # Sin/cos encoding of beta: dimension d and base n (family_sin_cos_d 6, family_sin_cos_n 10000.0).
    beta_encoding_dim: int = 6
    beta_encoding_base: float = 10000.0
    # Learning rate of the balance policy (family_learner.py: hierarchical_optimiser = optax.adam(actor_lr)).
    balance_lr: float = 3e-4
    # Balance policy log-std clip (policy.py: log_std_min None -> LOG_STD_MIN -10.0; LOG_STD_MAX 2.0).
    balance_log_std_min: float = -10.0
    balance_log_std_max: float = 2.0
    # Balance entropy temperature alpha_b: initial value and learning rate (hierarchical_init_temperature 1.0,
    # hierarchical_temp_lr 3e-4).
    balance_alpha_init: float = 1.0
    balance_alpha_lr: float = 3e-4
    # Target entropy of the balance policy (family_learner.py: target_entropy None -> -1/2).
    balance_target_entropy: float = -0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.deterministic_actor:
            raise ValueError("deterministic_actor: expected false (FamO2O's universal actor is IQL's Gaussian, "
                             "its AWR loss needs log pi), found true")
        if not self.beta_low < self.beta_high:
            raise ValueError(f"beta_low/beta_high: expected low < high, found {self.beta_low}/{self.beta_high}")
        if self.beta_encoding_dim < 2 or self.beta_encoding_dim % 2:
            raise ValueError(f"beta_encoding_dim: expected an even number >= 2 (sin/cos pairs), found "
                             f"{self.beta_encoding_dim}")
        if self.balance_alpha_init <= 0:
            raise ValueError(f"balance_alpha_init: expected a positive temperature, found {self.balance_alpha_init}")


# ------------------------------------------------------------------------------------------------ networks
class BetaEncoding(nn.Module):
    """enc(beta) = [sin(beta / n^(0/d)), cos(beta / n^(0/d)), sin(beta / n^(2/d)), cos(...), ...], (N, d).

    family_utils.py sin_cos_skill_func: k = beta, i = 0 .. d/2 - 1, inner = k / n^(2i/d), sines at even and
    cosines at odd positions.
    """

    def __init__(self, dim: int, base: float):
        super().__init__()
        i = torch.arange(dim // 2, dtype=torch.float64)
        self.register_buffer("inv_freq", (base ** (-2.0 * i / dim)).float())
        self.dim = dim

    def forward(self, beta: torch.Tensor) -> torch.Tensor:
        angle = beta.unsqueeze(-1) * self.inv_freq
        return torch.stack([torch.sin(angle), torch.cos(angle)], dim=-1).flatten(-2)


class BalancePolicy(nn.Module):
    """pi_b(beta | s): a 1-D tanh-squashed Gaussian with a state-independent log-std, mapped onto [low, high].

    policy.py NormalTanhPolicy(action_dim=1, state_dependent_std=False, tanh_squash_distribution=True);
    family_actor.py maps the squashed sample x in (-1, 1) to beta = low + (x + 1) / 2 (high - low).
    ``log_prob`` is the density of x (the affine map's constant Jacobian is left out, as in the code).
    """

    def __init__(self, feature_dim: int, hidden: Sequence[int], low: float, high: float, *, log_std_min: float,
                 log_std_max: float, init: str):
        super().__init__()
        self.net = mlp(feature_dim, hidden, 1, init=init)
        self.log_std = nn.Parameter(torch.zeros(1))
        self.low, self.high = low, high
        self.log_std_min, self.log_std_max = log_std_min, log_std_max

    def to_beta(self, x: torch.Tensor) -> torch.Tensor:
        """beta = low + (x + 1) / 2 (high - low) for x in [-1, 1]."""
        return self.low + (x + 1.0) * 0.5 * (self.high - self.low)

    def sample(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A reparameterised beta (N,) and log pi_b(x|s) (N,) of its squashed value x."""
        mean = self.net(features)
        log_std = self.log_std.clamp(self.log_std_min, self.log_std_max).expand_as(mean)
        eps = torch.randn_like(mean)
        u = mean + log_std.exp() * eps
        log_prob = gaussian_log_prob(eps, log_std) - tanh_log_det_jacobian(u)
        return self.to_beta(torch.tanh(u)).squeeze(-1), log_prob

    def mode(self, features: torch.Tensor) -> torch.Tensor:
        """The deterministic beta: the squashed mean, mapped (policy.py sample_actions, deterministic=True)."""
        return self.to_beta(torch.tanh(self.net(features))).squeeze(-1)


class FamilyPolicy(nn.Module):
    """The acting policy: beta(s) from the balance policy's mean, then the universal actor given enc(beta).

    ``mode``/``sample`` take the actor features like every actor, so ``act``, exploration and the exported
    (ONNX) actor go through the balance model: one graph obs -> beta(s) -> pi_u.
    """

    def __init__(self, universal: GaussianActor, balance: BalancePolicy, encoding: BetaEncoding):
        super().__init__()
        self.universal = universal
        self.balance = balance
        self.encoding = encoding

    def condition(self, features: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
        """The universal actor's input [features, enc(beta)]."""
        return torch.cat([features, self.encoding(beta)], dim=-1)

    def mode(self, features: torch.Tensor) -> torch.Tensor:
        return self.universal.mode(self.condition(features, self.balance.mode(features)))

    def sample(self, features: torch.Tensor) -> torch.Tensor:
        return self.universal.sample(self.condition(features, self.balance.mode(features)))


# ------------------------------------------------------------------------------------------------ losses
def balance_loss(alpha: torch.Tensor, log_pi_b: torch.Tensor, q_pi: torch.Tensor) -> torch.Tensor:
    """L_b = E_s[alpha_b log pi_b(beta|s) - min_i Qbar_i(s, a~)], a~ ~ pi_u(.|s, enc(beta)); alpha detached."""
    return (alpha.detach() * log_pi_b - q_pi).mean()


def balance_temperature_loss(log_alpha: torch.Tensor, log_pi_b: torch.Tensor, target_entropy: float) -> torch.Tensor:
    """L(alpha_b) = alpha_b (H - H_target) with H = -E[log pi_b] (family_temperature.py: temperature * (entropy -
    target_entropy)). The gradient in log alpha_b is alpha_b (H - H_target), not the (H - H_target) of SAC's
    log-alpha loss in algos.common."""
    entropy = -log_pi_b.detach().mean()
    return log_alpha.exp() * (entropy - target_entropy)


# ------------------------------------------------------------------------------------------------ learner
@register
class FamO2O(IQL):
    """FamO2O on IQL (see the module docstring)."""

    name = "famo2o"
    Config = FamO2OConfig
    config: FamO2OConfig

    def __init__(self, config: FamO2OConfig, spec: TaskSpec, device: torch.device | str = "cpu"):
        super().__init__(config, spec, device)
        c = config
        feat = self.encoder.output_dim
        encoding = BetaEncoding(c.beta_encoding_dim, c.beta_encoding_base)
        universal = GaussianActor(feat + c.beta_encoding_dim, spec.action_dim, c.hidden, tanh_mean=True,
                                  log_std_min=c.log_std_min, log_std_max=c.log_std_max, dropout=c.actor_dropout,
                                  init=c.init)
        balance = BalancePolicy(feat, c.hidden, c.beta_low, c.beta_high, log_std_min=c.balance_log_std_min,
                                log_std_max=c.balance_log_std_max, init=c.init)
        self.actor = FamilyPolicy(universal, balance, encoding)
        self.balance_log_alpha = nn.Parameter(torch.tensor(math.log(c.balance_alpha_init)))
        self.to(self.device)
        self.add_optimizer("actor", [*universal.parameters(), *self.actor_encoder_params()], c.actor_lr)
        self.add_optimizer("balance", balance.parameters(), c.balance_lr)
        self.add_optimizer("balance_alpha", [self.balance_log_alpha], c.balance_alpha_lr)
        #: Where the universal actor's beta comes from: U[lo, hi] offline, the balance policy online.
        self.beta_from_balance = False
        self._family_losses = self.maybe_compile(self.family_losses)

    def begin_phase(self, phase: str) -> None:
        """Offline: beta ~ U[lo, hi] in L_u; online: beta ~ pi_b (family_train_finetune.py: i < 1 is offline)."""
        self.beta_from_balance = phase == "online"

    # ------------------------------------------------------------------------------ losses
    def family_losses(self, batch: Batch, action: torch.Tensor, q_target: torch.Tensor) -> dict[str, torch.Tensor]:
        """Balance, temperature, universal-actor and critic losses (after the V step), plus metrics."""
        c, policy = self.config, self.actor
        features = self.actor_encoder(batch.obs)
        balance_features = features.detach()
        # pi_b: beta reparameterised, actions from the frozen pi_u, scored by the target critic.
        beta_b, log_pi_b = policy.balance.sample(balance_features)
        mean, log_std = frozen(policy.universal, policy.condition(balance_features, beta_b))
        action_pi = mean + log_std.exp() * torch.randn_like(mean)
        q_pi = self.target_critic(self.target_encoder(batch.obs), action_pi).min(dim=0).values
        alpha = self.balance_log_alpha.exp()
        # pi_u: AWR with a per-sample inverse temperature beta.
        with torch.no_grad():
            if self.beta_from_balance:
                beta = policy.balance.sample(balance_features)[0]
            else:
                beta = torch.empty_like(q_target).uniform_(c.beta_low, c.beta_high)
            v_obs = self.value(self.value_encoder(batch.obs))[0]
            v_next = self.value(self.value_encoder(batch.next_obs))[0]
            target = td_target(batch.reward, batch.done, c.gamma, v_next)
        weights = awr_weights(q_target - v_obs, beta, c.max_weight)
        log_pi_u = policy.universal.log_prob(policy.condition(features, beta), action)
        q = self.critic(self.encoder(batch.obs), action)
        return {"balance_loss": balance_loss(alpha, log_pi_b, q_pi),
                "balance_alpha_loss": balance_temperature_loss(self.balance_log_alpha, log_pi_b,
                                                               c.balance_target_entropy),
                "actor_loss": weighted_bc_loss(weights, log_pi_u),
                "critic_loss": ensemble_td_loss(q, target),
                "balance_alpha": alpha.detach(), "balance_entropy": -log_pi_b.detach().mean(),
                "balance_beta_mean": beta_b.detach().mean(), "beta_mean": beta.mean(), "q_mean": q.mean(),
                "v_mean": v_obs.mean(), "advantage_mean": (q_target - v_obs).mean(), "weight_mean": weights.mean()}

    # ------------------------------------------------------------------------------ update
    def _update(self, batch: Batch) -> dict[str, torch.Tensor]:
        c = self.config
        action = self.unit_action(batch)
        value_loss, q_target = self._value_losses(batch, action)
        norms = self.backward_step(value_loss, "value")
        self.schedule_actor_lr()
        out = self._family_losses(batch, action, q_target)
        losses = {"value_loss": value_loss,
                  **{k: out.pop(k) for k in ("balance_loss", "balance_alpha_loss", "actor_loss", "critic_loss")}}
        norms |= self.backward_step(sum(v for k, v in losses.items() if k != "value_loss"),
                                    "balance", "balance_alpha", "actor", "critic")
        polyak_update_(self._target, self._online, c.tau)
        return self.finish_update(losses, norms, out)
