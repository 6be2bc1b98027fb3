"""RO2O (Wen, Yu, Yang, Bai et al., "Towards Robust Offline-to-Online RL via Uncertainty and Smoothness", JAIR).

References: BattleWen/RO2O algorithms/offline/ro2o_mujoco.py (offline) and algorithms/finetune/ro2o_ft_mujoco.py
(online), built on CORL's SAC-N, and shared/reference/algorithms.md section 5. SAC-N's Q-ensemble (the
uncertainty) plus RORL-style smoothness on perturbed states. Every loss samples its own n perturbations
delta_j ~ U[-eps, eps]^F, shared by the batch, of the normalised state s (the encoder's features; with a
camera, the image features too). One update, in the official order alpha -> actor -> critic -> target:

    alpha:  L = -E[log alpha (log pi(a~|s) + H_target)]                                          (SAC-N)
    actor:  L_pi = E[alpha log pi(a~|s) - min_i Q_i(s, a~)]
                   + beta_P E_s[ max_j KL(pi(s) || pi(s + delta_j)) + KL(pi(s + delta_j) || pi(s)) ]
                   (KL of the pre-tanh Gaussians, summed over action dimensions)
    critic: L_Q = sum_i E[(Q_i(s, a) - y)^2]                                                  (SAC-N TD)
                  + eta E_s[ max_j mean_i (1 - tau) max(D_ij, 0)^2 + tau min(D_ij, 0)^2 ],
                    D_ij = Q_i(s + delta_j, a) - Q_i(s, a), tau = 0.2, eta = 1e-4            (Q smoothing)
                  + beta_ood E_{i, s, j}[(Q_i(s^, a^) - sg(Q_i(s^, a^) - lambda std_k Q_k(s^, a^)))^2],
                    s^ = s + delta_j, a^ ~ pi(s^), lambda: lambda_0 -> lambda_min, - decay per update (OOD)
    target: Qbar <- (1 - tau) Qbar + tau Q

The n perturbations of the whole batch go through the critic ensemble in one pass (N members x B n rows),
the actor's in one pass of B n rows. Online (``begin_phase("online")``) the official fine-tuning script
trains the critic with the TD loss only (``online_critic_regularizers=False``); whether the actor keeps its
smoothing term differs between the stored snapshots of that script (docs/algorithms/ro2o.md):
``online_policy_smoothing=True`` keeps it (shared/reference/algorithms.md 5.3), both flags True is the
paper's "unchanged objective". The online data protocol is the runtime's ``fresh`` buffer (a new FIFO).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from robot_learning.algos.base import register
from robot_learning.algos.common import polyak_update_, sac_actor_loss, temperature_loss
from robot_learning.algos.sac_n import SACN, SACNConfig
from robot_learning.data.tensors import Batch
from robot_learning.spec import TaskSpec


@dataclass
class RO2OConfig(SACNConfig):
    """RO2O defaults: BattleWen/RO2O ro2o_mujoco.py TrainConfig and the RO2O class (MuJoCo); SAC-N's fields keep
    CORL's values, which RO2O's TrainConfig repeats (N = 10, 3 x 256, lr 3e-4, batch 256, tau 5e-3)."""

    name: str = "ro2o"
    # Dataset mean/std state normalisation, frozen online (compute_mean_std(eps=1e-3); wrap_env in fine-tuning).
    normalize_obs: bool = True
    # Perturbations per state (sample_size 20) and their ranges in normalised-state units (q_smooth_eps,
    # policy_smooth_eps, ood_smooth_eps 0.01).
    num_perturbations: int = 20
    q_smooth_eps: float = 0.01
    policy_smooth_eps: float = 0.01
    ood_smooth_eps: float = 0.01
    # Q smoothing: weight eta and asymmetry tau (get_qf_loss: hard-coded 0.0001 and q_smooth_tau 0.2).
    q_smooth_weight: float = 1e-4
    q_smooth_tau: float = 0.2
    # Policy smoothing weight beta_P (beta_policy 1.0) and OOD weight beta_ood (beta_ood 0.1).
    beta_policy: float = 1.0
    beta_ood: float = 0.1
    # OOD uncertainty coefficient lambda: start, floor and per-update decrement (q_ood_uncertainty_reg 1.0,
    # _min 0.1, _decay 5e-7).
    ood_uncertainty: float = 1.0
    ood_uncertainty_min: float = 0.1
    ood_uncertainty_decay: float = 5e-7
    # Online objective (ro2o_ft_mujoco.py): the critic drops Q smoothing and OOD (False); the actor keeps its
    # smoothing term (True, algorithms.md 5.3; one stored snapshot drops it too). True/True: the paper's
    # "unchanged" objective.
    online_critic_regularizers: bool = False
    online_policy_smoothing: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_perturbations < 1:
            raise ValueError(f"num_perturbations: expected >= 1, found {self.num_perturbations}")
        if self.num_critics < 2:
            raise ValueError(f"num_critics: the OOD target needs the ensemble's std, expected >= 2, found "
                             f"{self.num_critics}")
        if not 0.0 <= self.q_smooth_tau <= 1.0:
            raise ValueError(f"q_smooth_tau: expected a weight in [0, 1], found {self.q_smooth_tau}")
        if self.ood_uncertainty_min > self.ood_uncertainty:
            raise ValueError(f"ood_uncertainty_min: expected <= ood_uncertainty ({self.ood_uncertainty}), found "
                             f"{self.ood_uncertainty_min}")


# ------------------------------------------------------------------------------------------------ losses
def perturbed(features: torch.Tensor, num: int, eps: float) -> torch.Tensor:
    """s + delta_j for every state s and j < num, delta_j ~ U[-eps, eps]^F shared by the batch: (B num, F)."""
    delta = eps * (2.0 * torch.rand(num, features.shape[-1], device=features.device) - 1.0)
    return (features.unsqueeze(1) + delta).flatten(0, 1)


def q_smooth_loss(q_perturbed: torch.Tensor, q: torch.Tensor, tau: float, weight: float) -> torch.Tensor:
    """eta E_s[ max_j mean_i (1 - tau) max(D_ij, 0)^2 + tau min(D_ij, 0)^2 ], D_ij = Q_i(s + delta_j, a) - Q_i(s, a).

    ``q_perturbed`` (N, B, n), ``q`` (N, B): a larger value at a nearby state costs more than a smaller one.
    """
    diff = q_perturbed - q.unsqueeze(-1)
    asymmetric = ((1.0 - tau) * diff.clamp(min=0.0).square() + tau * diff.clamp(max=0.0).square()).mean(dim=0)
    return weight * asymmetric.max(dim=1).values.mean()


def ood_target(q: torch.Tensor, uncertainty: float) -> torch.Tensor:
    """y_ood = Q_i(s^, a^) - lambda std_k Q_k(s^, a^), no gradient; q (N, M), std over the ensemble (unbiased)."""
    return (q - uncertainty * q.std(dim=0, keepdim=True)).detach()


def ood_loss(q: torch.Tensor, uncertainty: float, weight: float) -> torch.Tensor:
    """beta_ood E_{i, s^}[(Q_i(s^, a^) - y_ood)^2]: pushes each member down by lambda times the ensemble's std."""
    return weight * (q - ood_target(q, uncertainty)).square().mean()


def symmetric_gaussian_kl(mean_p: torch.Tensor, log_std_p: torch.Tensor, mean_q: torch.Tensor,
                          log_std_q: torch.Tensor) -> torch.Tensor:
    """KL(p || q) + KL(q || p) of diagonal Gaussians summed over the last axis:
    sum (var_p + d^2) / (2 var_q) + (var_q + d^2) / (2 var_p) - 1, d = mean_p - mean_q (the log terms cancel)."""
    var_p, var_q = torch.exp(2.0 * log_std_p), torch.exp(2.0 * log_std_q)
    d2 = (mean_p - mean_q).square()
    return ((var_p + d2) / (2.0 * var_q) + (var_q + d2) / (2.0 * var_p) - 1.0).sum(dim=-1)


def policy_smooth_loss(mean: torch.Tensor, log_std: torch.Tensor, mean_perturbed: torch.Tensor,
                       log_std_perturbed: torch.Tensor, weight: float) -> torch.Tensor:
    """beta_P E_s[ max_j KL(pi(s) || pi(s + delta_j)) + KL(pi(s + delta_j) || pi(s)) ]; (B, A) and (B, n, A)."""
    kl = symmetric_gaussian_kl(mean.unsqueeze(1), log_std.unsqueeze(1), mean_perturbed, log_std_perturbed)
    return weight * kl.max(dim=1).values.mean()


@register
class RO2O(SACN):
    """RO2O: SAC-N with Q/policy smoothing and the OOD penalty on perturbed states (see the module docstring)."""

    name = "ro2o"
    Config = RO2OConfig
    config: RO2OConfig

    def __init__(self, config: RO2OConfig, spec: TaskSpec, device: torch.device | str = "cpu"):
        super().__init__(config, spec, device)
        self.online_phase = False

    def begin_phase(self, phase: str) -> None:
        """The online phase switches to the online objective (the runtime calls this on start and on resume)."""
        self.online_phase = phase == "online"

    def ood_uncertainty(self) -> float:
        """lambda at this update: lambda_0 - decay per earlier update, floored (get_ood_loss)."""
        c = self.config
        return max(c.ood_uncertainty - c.ood_uncertainty_decay * (self.num_updates - 1), c.ood_uncertainty_min)

    def policy_smoothing(self, batch: Batch) -> torch.Tensor:
        """The actor's KL smoothing term on perturbed states (one actor pass over the B n perturbed states)."""
        c = self.config
        features = self.actor_encoder(batch.obs)
        mean, log_std = self.actor(features)
        mean_p, log_std_p = self.actor(perturbed(features, c.num_perturbations, c.policy_smooth_eps))
        shape = (features.shape[0], c.num_perturbations, -1)
        return policy_smooth_loss(mean, log_std, mean_p.view(shape), log_std_p.view(shape), c.beta_policy)

    def critic_regularizers(self, batch: Batch, action: torch.Tensor) -> dict[str, torch.Tensor]:
        """Q smoothing and the OOD penalty: clean, Q-perturbed and OOD-perturbed rows in one ensemble pass."""
        c = self.config
        features, n = self.encoder(batch.obs), c.num_perturbations
        with torch.no_grad():
            actor_features = perturbed(self.actor_encoder(batch.obs), n, c.ood_smooth_eps)
            ood_action = self.actor.sample(actor_features)[0]
        ood_features = perturbed(features, n, c.ood_smooth_eps)
        smooth_features = perturbed(features, n, c.q_smooth_eps)
        q = self.critic(torch.cat([features, smooth_features, ood_features]),
                        torch.cat([action, action.repeat_interleave(n, dim=0), ood_action]))
        b = features.shape[0]
        q_clean, q_smooth, q_ood = q.split([b, b * n, b * n], dim=1)
        return {"q_smooth_loss": q_smooth_loss(q_smooth.view(-1, b, n), q_clean, c.q_smooth_tau, c.q_smooth_weight),
                "ood_loss": ood_loss(q_ood, self.ood_uncertainty(), c.beta_ood)}

    def _update(self, batch: Batch) -> dict[str, torch.Tensor]:
        c = self.config
        smooth_actor = not self.online_phase or c.online_policy_smoothing
        regularize_critic = not self.online_phase or c.online_critic_regularizers
        log_pi, q_pi = self._policy_values(batch)
        alpha_loss = temperature_loss(self.log_alpha, log_pi, self.target_entropy)
        norms = self.backward_step(alpha_loss, "alpha")
        alpha = self.log_alpha.exp().detach()
        losses = {"alpha_loss": alpha_loss, "sac_actor_loss": sac_actor_loss(alpha, log_pi, q_pi.min(dim=0).values)}
        if smooth_actor:
            losses["policy_smooth_loss"] = self.policy_smoothing(batch)
        losses["actor_loss"] = losses["sac_actor_loss"] + losses.get("policy_smooth_loss", 0.0)
        norms |= self.backward_step(losses["actor_loss"], "actor")
        action = self.unit_action(batch)
        critic = self._critic_losses(batch, action)
        losses["td_loss"] = critic.pop("critic_loss")
        if regularize_critic:
            losses |= self.critic_regularizers(batch, action)
        losses["critic_loss"] = losses["td_loss"] + losses.get("q_smooth_loss", 0.0) + losses.get("ood_loss", 0.0)
        norms |= self.backward_step(losses["critic_loss"], "critic")
        polyak_update_(self._target, self._online, c.tau)
        extra = critic | {"alpha": alpha, "entropy": -log_pi.detach().mean(),
                          "ood_uncertainty": torch.tensor(self.ood_uncertainty(), device=self.device)}
        return self.finish_update(losses, norms, extra)
