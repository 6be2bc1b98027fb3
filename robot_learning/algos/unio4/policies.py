"""Uni-O4's policies and the offline losses that train them: ensemble behaviour cloning and multi-step BPPO.

All K policies live in one batched network (:class:`GaussianPolicyEnsemble`, one matmul per layer for every
member); the online PPO actor is one member of the same shape (:class:`GaussianPolicy`), so the hand-off is
a slice of the ensemble's parameters. References: Lei-Kun/Uni-O4 BC_ensemble.py (joint BC loss), abppo.py
and ppo.py (BPPO), ppo_finetune/net.py (GaussPolicyMLP), shared/reference/algorithms.md section 3.1.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from robot_learning.algos.ppo import clipped_surrogate_loss
from robot_learning.nn import ensemble_mlp
from robot_learning.nn.actors import gaussian_log_prob

#: Added to the advantage's standard deviation before normalising (Uni-O4 util.py CONST_EPS).
_ADV_EPS = 1e-10
#: Added to a member's gradient norm before scaling (torch.nn.utils.clip_grad_norm_).
_CLIP_EPS = 1e-6


class GaussianPolicyEnsemble(nn.Module):
    """K Gaussian policies N(mu_k(s), sigma_k(s)) over [-1, 1]-scaled actions, unsquashed, in one batched network.

    Uni-O4's GaussPolicyMLP: an MLP whose 2A outputs all pass a tanh, mu = tanh(h_mu) in (-1, 1) and
    log sigma = lo + (hi - lo)(tanh(h_sigma) + 1) / 2 in (lo, hi) = (-5, 0). ``forward`` maps features (N, F)
    (shared by all members) or (K, N, F) to (mean, log_std), each (K, N, A).
    """

    def __init__(self, feature_dim: int, action_dim: int, hidden: Sequence[int], ensemble_size: int, *,
                 act: str, log_std_min: float, log_std_max: float, init: str):
        super().__init__()
        self.ensemble_size = ensemble_size
        self.log_std_min = log_std_min
        self.log_std_max = log_std_max
        self.net = ensemble_mlp(ensemble_size, feature_dim, hidden, 2 * action_dim, act=act, init=init)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, raw = torch.tanh(self.net(features)).chunk(2, dim=-1)
        return mean, self.log_std_min + (self.log_std_max - self.log_std_min) * (raw + 1.0) / 2.0

    def log_prob(self, features: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """log pi_k(a|s) summed over action dimensions: (K, N) for the ensemble (a: (N, A) or (K, N, A))."""
        mean, log_std = self(features)
        return gaussian_log_prob((action - mean) * torch.exp(-log_std), log_std)

    def mode(self, features: torch.Tensor) -> torch.Tensor:
        """The deterministic action: the mean (already inside (-1, 1))."""
        return self(features)[0]

    def member_state(self, index: int) -> dict[str, torch.Tensor]:
        """Member ``index``'s parameters as the state dict of a :class:`GaussianPolicy` of the same shape."""
        return {name: value[index:index + 1].detach().clone() for name, value in self.state_dict().items()}


class GaussianPolicy(GaussianPolicyEnsemble):
    """One Uni-O4 policy (an ensemble of one, member axis dropped): (mean, log_std) of shape (N, A).

    The online PPO actor; it loads :meth:`GaussianPolicyEnsemble.member_state` unchanged.
    """

    def __init__(self, feature_dim: int, action_dim: int, hidden: Sequence[int], *, act: str, log_std_min: float,
                 log_std_max: float, init: str):
        super().__init__(feature_dim, action_dim, hidden, 1, act=act, log_std_min=log_std_min,
                         log_std_max=log_std_max, init=init)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = super().forward(features)
        return mean[0], log_std[0]


class EnsembleMeanActor(nn.Module):
    """The ensemble's average deterministic action, mode(s) = (1/K) sum_k mu_k(s) (the export variant "mean")."""

    def __init__(self, ensemble: GaussianPolicyEnsemble):
        super().__init__()
        self.ensemble = ensemble

    def mode(self, features: torch.Tensor) -> torch.Tensor:
        return self.ensemble.mode(features).mean(dim=0)


# ------------------------------------------------------------------------------------------------ losses
def ensemble_bc_loss(log_prob: torch.Tensor, alpha: float) -> torch.Tensor:
    """L = sum_i E_D[ -log pi_i(a|s) - alpha (log pi_i(a|s) - max_{j != i} sg(log pi_j(a|s))) ], log_prob (K, N).

    BC_ensemble.py joint_loss (kl_bc="data", kl_type="heuristic"): each member is rewarded for out-predicting
    the best other member on the dataset action; the others' log-likelihoods carry no gradient.
    """
    k = log_prob.shape[0]
    others = log_prob.detach().unsqueeze(0).expand(k, k, -1)
    self_mask = torch.eye(k, dtype=torch.bool, device=log_prob.device).unsqueeze(-1)
    best_other = others.masked_fill(self_mask, float("-inf")).max(dim=1).values
    return (-log_prob - alpha * (log_prob - best_other)).mean(dim=1).sum()


def normalized_advantage(q: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """A_k = (Q(s, a_k) - V(s) - mean_k) / (std_k + 1e-10), normalised per policy over the batch; q (K, N), v (N,)."""
    advantage = q - v
    return (advantage - advantage.mean(dim=1, keepdim=True)) / (advantage.std(dim=1, keepdim=True) + _ADV_EPS)


def bppo_loss(log_prob: torch.Tensor, old_log_prob: torch.Tensor, advantage: torch.Tensor,
              clip: float) -> torch.Tensor:
    """L = sum_k -E_s[min(rho_k A_k, clip(rho_k, 1 - eps, 1 + eps) A_k)], rho_k = pi_k(a_k|s) / pi_k^old(a_k|s).

    a_k ~ pi_k^old(s) on dataset states (abppo.py); all arguments (K, N). PPO's clipped surrogate per member.
    """
    return clipped_surrogate_loss(torch.exp(log_prob - old_log_prob), advantage, clip).sum()


def ope_gate(score: torch.Tensor, best: torch.Tensor) -> torch.Tensor:
    """accept_k = OPE(pi_k) > best_k: pi_k^old <- pi_k only for improvements the offline evaluation confirms."""
    return score > best


@torch.no_grad()
def replace_members_(target: Sequence[torch.Tensor], source: Sequence[torch.Tensor], accept: torch.Tensor) -> None:
    """Copy the accepted members (member axis first in every tensor) from ``source`` into ``target`` on the device."""
    for t, s in zip(target, source):
        t.copy_(torch.where(accept.view(-1, *([1] * (t.dim() - 1))), s, t))


@torch.no_grad()
def clip_grad_norm_per_member_(params: Sequence[nn.Parameter], max_norm: float) -> torch.Tensor:
    """Scale each member's gradient to a norm <= ``max_norm`` (BPPO clips each policy to 0.5); returns (K,) norms."""
    grads = [p.grad for p in params if p.grad is not None]
    norms = torch.stack([g.flatten(1).square().sum(dim=1) for g in grads]).sum(dim=0).sqrt()
    scale = (max_norm / (norms + _CLIP_EPS)).clamp(max=1.0)
    for g in grads:
        g.mul_(scale.view(-1, *([1] * (g.dim() - 1))))
    return norms
