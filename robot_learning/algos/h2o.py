"""H2O (Niu et al., NeurIPS 2022, "When to Trust Your Simulator"): SAC on real data and a dynamics-gap simulator.

References: t6-thu/H2O SimpleSAC/sim2real_sac.py (losses and defaults), sim2real_sac_main.py (protocol),
Network/Weight_net.py (discriminators), mixed_replay_buffer.py (data); shared/reference/algorithms.md section 6.

H2O learns from a fixed offline store of real transitions and, at the same time, from rollouts in a
simulator whose dynamics differ. In this stack the offline rows of a batch are the real ones and the online
rows (the training env, built with ``online.dynamics=<gap preset>``) the simulated ones; ``Batch.online``
tells them apart. Two discriminators estimate the dynamics ratio, which re-weights the simulated TD errors
and sets how strongly each simulated sample is pushed down:

    discriminators: D_sa(s, a), D_sas(s, a, s') -> 2 logits each (2 tanh(.)), class 0 = real, class 1 = sim;
                    P_sa = softmax(D_sa), P_sas = softmax(D_sas + D_sa); cross-entropy on noisy inputs
    log ratio:      log p_real(s'|s,a) / p_sim(s'|s,a) = log P_sas(real)/P_sas(sim) - log P_sa(real)/P_sa(sim)
    TD weight:      w(s, a, s') = clip(p_real / p_sim, 1e-5, 1)                                (sim rows)
    critic:         L_Q = sum_i E_real[(Q_i - y)^2] + E_sim[(sqrt(w) Q_i - sqrt(w) y)^2] + beta C_i
                    y = r + gamma (1 - d) min_i Qbar_i(s', a'),  a' ~ pi(s')
    gap coeff.:     u(s, a) = clip(mean_k log p_sim/p_real (s, a, s'_k), 1e-45, 10),  s'_k = s' + N(0, sigma_s^2)
                    omega(s, a) = u / sum_{sim batch} u
    conservative:   C_i = clip(T logsumexp_sim((Q_i(s, a) + log omega)/T) - E_real Q_i(s, a), -1000, 1000)
    actor, alpha:   SAC losses over real and sim states (no entropy backup, target entropy -|A|)

All losses come from the same parameters and each trains only its own network, so one backward pass
serves them all (the official code steps the discriminators first; see docs/algorithms/h2o.md). Masks
instead of index splits keep the update free of host syncs: the per-row quantities are computed for every
row of the batch and the real/sim masks select them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from robot_learning.algos.base import register
from robot_learning.algos.common import (OffPolicyAlgorithm, OffPolicyConfig, frozen, make_target, polyak_update_,
                                         sac_actor_loss, td_target, temperature_loss)
from robot_learning.data.tensors import Batch
from robot_learning.nn import QEnsemble, TanhGaussianActor, mlp
from robot_learning.spec import TaskSpec

#: Stand-in for log 0 on rows that must not enter a logsumexp (finite, so gradients stay finite).
_MASKED = -1e30


@dataclass
class H2OConfig(OffPolicyConfig):
    """H2O defaults: t6-thu/H2O Sim2realSAC.get_default_config and sim2real_sac_main.py FLAGS."""

    name: str = "h2o"
    # Learning rates of policy (also of log alpha), critics and both discriminators (policy_lr, qf_lr,
    # d_sa_lr, d_sas_lr: 3e-4).
    policy_lr: float = 3e-4
    qf_lr: float = 3e-4
    discriminator_lr: float = 3e-4
    # Hidden sizes (policy_arch '256-256', qf_arch '256-256'; ConcatDiscriminator(.., 256, 2): two hidden 256).
    policy_hidden: list[int] = field(default_factory=lambda: [256, 256])
    qf_hidden: list[int] = field(default_factory=lambda: [256, 256])
    discriminator_hidden: list[int] = field(default_factory=lambda: [256, 256])
    # Policy/critic init: orthogonal_init False = default hidden layers, output xavier-uniform gain 1e-2
    # (SimpleSAC model.py FullyConnectedNetwork); robot_learning.nn.init 'cql'.
    init: str = "cql"
    # Policy log-std = raw + offset (policy_log_std_offset -1), clipped to [-20, 2] (ReparameterizedTanhGaussian).
    log_std_offset: float = -1.0
    log_std_min: float = -20.0
    log_std_max: float = 2.0
    # Automatic entropy tuning with alpha = alpha_multiplier exp(log alpha) (use_automatic_entropy_tuning True).
    alpha_multiplier: float = 1.0
    # Target entropy; None = -|A| (sim2real_sac_main.py: target_entropy >= 0 -> -prod(action shape)).
    target_entropy: float | None = None
    # Subtract alpha log pi(a'|s') in the target (backup_entropy False).
    backup_entropy: bool = False
    # Std of the Gaussian noise on discriminator inputs during training (noise_std_discriminator 0.1).
    discriminator_noise_std: float = 0.1
    # Weight the sim TD errors by the dynamics ratio (use_td_target_ratio True), clipped to
    # [clip_dynamics_ratio_min 1e-5, clip_dynamics_ratio_max 1].
    td_ratio_weighting: bool = True
    dynamics_ratio_min: float = 1e-5
    dynamics_ratio_max: float = 1.0
    # Gap coefficient u(s, a) in the conservative term (use_sim_q_coeff True; False: u = 1), clipped to
    # [sim_q_coeff_min 1e-45, sim_q_coeff_max 10].
    gap_weighting: bool = True
    gap_coeff_min: float = 1e-45
    gap_coeff_max: float = 10.0
    # Noisy next states per sample for u (sampling_n_next_states 10), noise std = this x the state std
    # (s_prime_std_ratio 1.0).
    next_state_samples: int = 10
    next_state_std_ratio: float = 1.0
    # Conservative term: weight beta (cql_min_q_weight 0.01; 0 = off), temperature (cql_temp 1.0) and clip of the
    # difference (cql_clip_diff_min/max -1000/1000).
    min_q_weight: float = 0.01
    cql_temp: float = 1.0
    clip_diff_min: float = -1000.0
    clip_diff_max: float = 1000.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.next_state_samples < 1:
            raise ValueError(f"next_state_samples: expected >= 1, found {self.next_state_samples}")
        if not 0.0 < self.dynamics_ratio_min <= self.dynamics_ratio_max:
            raise ValueError(f"dynamics_ratio_min/max: expected 0 < min <= max, found {self.dynamics_ratio_min}/"
                             f"{self.dynamics_ratio_max}")
        if not 0.0 < self.gap_coeff_min <= self.gap_coeff_max:
            raise ValueError(f"gap_coeff_min/max: expected 0 < min <= max, found {self.gap_coeff_min}/"
                             f"{self.gap_coeff_max}")
        if self.cql_temp <= 0:
            raise ValueError(f"cql_temp: expected > 0, found {self.cql_temp}")


# ------------------------------------------------------------------------------------------------ losses
def log_dynamics_ratio(sa_logits: torch.Tensor, sas_logits: torch.Tensor) -> torch.Tensor:
    """log p_real(s'|s,a)/p_sim(s'|s,a) = log P_sas(real)/P_sas(sim) - log P_sa(real)/P_sa(sim), (...,).

    ``sa_logits`` = D_sa(s, a) and ``sas_logits`` = D_sas(s, a, s') + D_sa(s, a), each (..., 2); class 0 is real.
    """
    log_sa, log_sas = F.log_softmax(sa_logits, dim=-1), F.log_softmax(sas_logits, dim=-1)
    return (log_sas[..., 0] - log_sas[..., 1]) - (log_sa[..., 0] - log_sa[..., 1])


def discriminator_loss(sa_logits: torch.Tensor, sas_logits: torch.Tensor, real: torch.Tensor,
                       sim: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(L_sa, L_sas) = E_real[-log P(real)] + E_sim[-log P(sim)] for P_sa = softmax(D_sa), P_sas = softmax(D_sas + D_sa).

    ``real``/``sim`` are 0/1 row masks; each expectation is a mean over its own rows (class-balanced, as the
    official code's separate real and sim batches), an absent class contributes 0.
    """
    n_real, n_sim = real.sum().clamp_min(1.0), sim.sum().clamp_min(1.0)

    def cross_entropy(logits: torch.Tensor) -> torch.Tensor:
        log_p = F.log_softmax(logits, dim=-1)
        return -(log_p[:, 0] * real).sum() / n_real - (log_p[:, 1] * sim).sum() / n_sim

    return cross_entropy(sa_logits), cross_entropy(sas_logits)


def dynamics_weight(log_ratio: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """w = clip(p_real/p_sim, low, high): the importance weight of a sim transition's TD error."""
    return log_ratio.exp().clamp(low, high)


def weighted_td_loss(q: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, real: torch.Tensor,
                     sim: torch.Tensor) -> torch.Tensor:
    """sum_i E_real[(Q_i - y)^2] + E_sim[(sqrt(w) Q_i - sqrt(w) y)^2] for q (E, N), y, w, masks (N,).

    sqrt(w) multiplies prediction and target inside the squared error, as the official code writes it.
    """
    sqrt_w = torch.where(sim > 0, weight.sqrt(), torch.ones_like(weight))
    err = (sqrt_w * q - sqrt_w * target.detach()).square()
    rows = real / real.sum().clamp_min(1.0) + sim / sim.sum().clamp_min(1.0)
    return (err * rows).sum()


def gap_coefficient(log_ratio_samples: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """u(s, a) = clip(mean_k log p_sim/p_real (s, a, s'_k), low, high) from log p_real/p_sim samples (N, K).

    A Monte-Carlo estimate of KL(P_sim(.|s,a) || P_real(.|s,a)); computed in float64 so the 1e-45 floor is a
    normal number (its log, -103.6, stays finite).
    """
    return (-log_ratio_samples.double()).mean(dim=-1).clamp(low, high)


def log_gap_weights(u: torch.Tensor, sim: torch.Tensor) -> torch.Tensor:
    """log omega(s, a) = log u(s, a) - log sum_{sim rows} u: the sim batch's normalised gap weights, (N,)."""
    total = (u * sim.double()).sum().clamp_min(torch.finfo(torch.float64).tiny)
    return (u.log() - total.log()).float()


def conservative_gap(q: torch.Tensor, log_omega: torch.Tensor, real: torch.Tensor, sim: torch.Tensor, temp: float,
                     clip_min: float, clip_max: float) -> torch.Tensor:
    """C_i = clip(T logsumexp_sim((Q_i(s, a) + log omega)/T) - E_real Q_i(s, a), min, max) per critic, (E,).

    Pushes Q down on sim samples, the more the larger their dynamics gap, and up on real data. 0 for a batch
    without sim rows.
    """
    scores = torch.where(sim > 0, (q + log_omega) / temp, torch.full_like(q, _MASKED))
    pushed_down = temp * torch.logsumexp(scores, dim=-1)
    pulled_up = (q * real).sum(-1) / real.sum().clamp_min(1.0)
    return (pushed_down - pulled_up).clamp(clip_min, clip_max) * (sim.sum() > 0)


# ------------------------------------------------------------------------------------------------ networks
class Discriminator(nn.Module):
    """Concatenated inputs -> MLP (ReLU) -> 2 logits squashed to 2 tanh(.) (H2O Network/Weight_net.py)."""

    def __init__(self, in_dim: int, hidden: list[int]):
        super().__init__()
        self.net = mlp(in_dim, hidden, 2)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return 2.0 * torch.tanh(self.net(torch.cat(inputs, dim=-1)))


# ------------------------------------------------------------------------------------------------ learner
@register
class H2O(OffPolicyAlgorithm):
    """Dynamics-aware hybrid offline-and-online SAC (see the module docstring)."""

    name = "h2o"
    Config = H2OConfig
    config: H2OConfig

    def __init__(self, config: H2OConfig, spec: TaskSpec, device: torch.device | str = "cpu"):
        super().__init__(config, spec, device)
        c = config
        feat, act_dim = self.encoder.output_dim, spec.action_dim
        self.critic = QEnsemble(feat, act_dim, c.qf_hidden, 2, init=c.init)
        self.actor_encoder = self.sibling_encoder()
        self.actor = TanhGaussianActor(feat, act_dim, c.policy_hidden, log_std_min=c.log_std_min,
                                       log_std_max=c.log_std_max, log_std_offset=c.log_std_offset, init=c.init)
        self.d_sa = Discriminator(feat + act_dim, c.discriminator_hidden)
        self.d_sas = Discriminator(2 * feat + act_dim, c.discriminator_hidden)
        self.target_encoder = make_target(self.encoder, self.encoder.normalizer)
        self.target_critic = make_target(self.critic)
        self.log_alpha = nn.Parameter(torch.zeros(()))
        self.target_entropy = float(-act_dim if c.target_entropy is None else c.target_entropy)
        self.to(self.device)
        actor_params = [*self.actor.parameters(), *self.encoder_head_parameters(self.actor_encoder)]
        self.add_optimizer("actor", actor_params, c.policy_lr)
        self.add_optimizer("critic", [*self.critic.parameters(), *self.encoder.parameters()], c.qf_lr)
        self.add_optimizer("alpha", [self.log_alpha], c.policy_lr)
        self.add_optimizer("discriminator", [*self.d_sa.parameters(), *self.d_sas.parameters()], c.discriminator_lr)
        self._online = [*self.critic.parameters(), *self.encoder.parameters()]
        self._target = [*self.target_critic.parameters(), *self.target_encoder.parameters()]
        self._losses = self.maybe_compile(self.losses)

    def alpha(self) -> torch.Tensor:
        return self.config.alpha_multiplier * self.log_alpha.exp().detach()

    def discriminate(self, s: torch.Tensor, a: torch.Tensor, s_next: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(D_sa(s, a), D_sas(s, a, s') + D_sa(s, a)): the logits of P_sa and P_sas."""
        sa = self.d_sa(s, a)
        return sa, self.d_sas(s, a, s_next) + sa

    @torch.no_grad()
    def dynamics_terms(self, s: torch.Tensor, a: torch.Tensor, s_next: torch.Tensor, real: torch.Tensor,
                       sim: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(TD weight w, gap coefficient u, log omega) of every row, from the current discriminators."""
        c = self.config
        n, k = s.shape[0], c.next_state_samples
        sa = self.d_sa(s, a)
        log_ratio = log_dynamics_ratio(sa, self.d_sas(s, a, s_next) + sa)
        weight = dynamics_weight(log_ratio, c.dynamics_ratio_min, c.dynamics_ratio_max) if c.td_ratio_weighting \
            else torch.ones_like(log_ratio)
        if c.gap_weighting:
            # sigma_s: per-dimension std of the real states in the batch (the official code: of the dataset)
            mean = (s * real[:, None]).sum(0) / real.sum().clamp_min(1.0)
            std = (((s - mean).square() * real[:, None]).sum(0) / (real.sum() - 1.0).clamp_min(1.0)).sqrt()
            noisy = s_next.unsqueeze(1) + torch.randn(n, k, s_next.shape[-1], device=s.device) * std \
                * c.next_state_std_ratio
            adv = self.d_sas(s.unsqueeze(1).expand(n, k, -1), a.unsqueeze(1).expand(n, k, -1), noisy)
            samples = log_dynamics_ratio(sa.unsqueeze(1), adv + sa.unsqueeze(1))
            u = gap_coefficient(samples, c.gap_coeff_min, c.gap_coeff_max)
        else:
            u = torch.ones(n, dtype=torch.float64, device=s.device)
        return weight, u, log_gap_weights(u, sim)

    def losses(self, batch: Batch, action: torch.Tensor) -> dict[str, torch.Tensor]:
        """Critic, actor, temperature and discriminator losses from the same parameters, plus metrics."""
        c = self.config
        sim = batch.online.float() if batch.online is not None else torch.zeros_like(batch.reward)
        real = 1.0 - sim
        features = self.encoder(batch.obs)
        with torch.no_grad():
            next_features = self.encoder(batch.next_obs)
            next_action, next_log_pi = self.actor.sample(self.actor_encoder(batch.next_obs))
            q_next = self.target_critic(self.target_encoder(batch.next_obs), next_action).min(dim=0).values
            if c.backup_entropy:
                q_next = q_next - self.alpha() * next_log_pi
            target = td_target(batch.reward, batch.done, c.gamma, q_next)
        s, s_next = features.detach(), next_features
        weight, u, log_omega = self.dynamics_terms(s, action, s_next, real, sim)

        # discriminators on noisy inputs (real = class 0, sim = class 1)
        noise = c.discriminator_noise_std
        noisy = [x + noise * torch.randn_like(x) for x in (s, action, s_next)]
        d_sa_loss, d_sas_loss = discriminator_loss(*self.discriminate(*noisy), real, sim)

        q = self.critic(features, action)
        critic_loss = weighted_td_loss(q, target, weight, real, sim)
        gap = conservative_gap(q, log_omega, real, sim, c.cql_temp, c.clip_diff_min, c.clip_diff_max)
        if c.min_q_weight > 0:
            critic_loss = critic_loss + c.min_q_weight * gap.sum()

        new_action, log_pi = self.actor.sample(self.actor_encoder(batch.obs))
        q_pi = frozen(self.critic, s, new_action).min(dim=0).values
        n_real, n_sim = real.sum().clamp_min(1.0), sim.sum().clamp_min(1.0)
        return {
            "critic_loss": critic_loss,
            "actor_loss": sac_actor_loss(self.alpha(), log_pi, q_pi),
            "alpha_loss": temperature_loss(self.log_alpha, log_pi, self.target_entropy),
            "discriminator_loss": d_sa_loss + d_sas_loss,
            "d_sa_loss": d_sa_loss.detach(), "d_sas_loss": d_sas_loss.detach(),
            "sqrt_is_ratio": (weight.sqrt() * sim).sum() / n_sim, "u_sa": (u.float() * sim).sum() / n_sim,
            "omega_std": torch.where(sim > 0, log_omega.exp() - 1.0 / n_sim, 0.0).square().sum()
            .div((n_sim - 1.0).clamp_min(1.0)).sqrt(),
            "cql_diff": gap.mean().detach(),
            "q_real": (q.detach() * real).sum(-1).mean() / n_real, "q_sim": (q.detach() * sim).sum(-1).mean() / n_sim,
            "target": target.mean(), "alpha": self.alpha(), "entropy": -log_pi.detach().mean(),
            "sim_fraction": sim.mean(),
        }

    def _update(self, batch: Batch) -> dict[str, torch.Tensor]:
        out = self._losses(batch, self.unit_action(batch))
        losses = {k: out.pop(k) for k in ("critic_loss", "actor_loss", "alpha_loss", "discriminator_loss")}
        norms = self.backward_step(sum(losses.values()), *self.optimizers)
        polyak_update_(self._target, self._online, self.config.tau)
        return self.finish_update(losses, norms, out)
