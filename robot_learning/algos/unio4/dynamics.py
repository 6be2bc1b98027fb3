"""The learned dynamics model of Uni-O4's offline policy evaluation (OPE, "AM-Q"), and the evaluation itself.

Uni-O4 takes its model from MOBILE (Lei-Kun/Uni-O4 models/dynamics_model.py, dynamics/ensemble_dynamics.py,
models/nets.py, dynamics_eval.py): an ensemble of E probabilistic MLPs with Swish activations predicting
the Gaussian of (s' - s, r) from the standardised (s, a), trained on a bootstrap of the data, each member
keeping its best weights on a held-out split, the ``num_elites`` best members used for rollouts. Here the
ensemble is one batched network and ``s`` is the learner's normalised feature vector. The official code
ends rollouts with hand-written termination functions per D4RL environment; a task in this stack has none,
so the model also predicts a termination logit (trained with cross-entropy on the dataset's terminals).
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from robot_learning.nn import EnsembleLinear

#: MOBILE StandardScaler: input dimensions with a smaller std are scaled by 1.
_MIN_STD = 1e-12


def soft_clamp(x: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """Differentiable clamp into (low, high): x <- high - softplus(high - x), then low + softplus(x - low)."""
    x = high - F.softplus(high - x)
    return low + F.softplus(x - low)


class DynamicsEnsemble(nn.Module):
    """E models p_e(s' - s, r | s, a) = N(mu_e, exp(logvar_e)) and a termination logit, batched over members.

    ``forward(obs (N, D) or (E, N, D), action)`` returns (mean (E, N, D + 1), logvar (E, N, D + 1),
    terminal logit (E, N)). ``best_layers`` hold each member's weights at its best holdout loss.
    """

    def __init__(self, obs_dim: int, action_dim: int, hidden: Sequence[int], ensemble_size: int, num_elites: int,
                 weight_decays: Sequence[float]):
        super().__init__()
        self.obs_dim = obs_dim
        widths = [obs_dim + action_dim, *hidden, 2 * (obs_dim + 1) + 1]
        shapes = list(itertools.pairwise(widths))
        self.layers = nn.ModuleList(EnsembleLinear(ensemble_size, i, o, output=k == len(shapes) - 1)
                                    for k, (i, o) in enumerate(shapes))
        with torch.no_grad():
            for layer in self.layers:  # models/nets.py: truncated normal, std 1 / (2 sqrt(in)), zero bias
                nn.init.trunc_normal_(layer.weight, std=1.0 / (2.0 * math.sqrt(layer.in_features)))
                layer.bias.zero_()
        self.weight_decays = list(weight_decays)
        self.max_logvar = nn.Parameter(torch.full((obs_dim + 1,), 0.5))
        self.min_logvar = nn.Parameter(torch.full((obs_dim + 1,), -10.0))
        self.register_buffer("input_mean", torch.zeros(obs_dim + action_dim))
        self.register_buffer("input_std", torch.ones(obs_dim + action_dim))
        self.register_buffer("best_holdout", torch.full((ensemble_size,), 1e10))
        self.register_buffer("elites", torch.arange(num_elites))
        self.best_layers = copy.deepcopy(self.layers).requires_grad_(False)

    @torch.no_grad()
    def fit_scaler(self, obs: torch.Tensor, action: torch.Tensor) -> None:
        """Standardise the model's inputs with the training split's statistics (MOBILE StandardScaler)."""
        x = torch.cat([obs, action], dim=-1)
        std = x.std(dim=0, unbiased=False)
        self.input_mean.copy_(x.mean(dim=0))
        self.input_std.copy_(torch.where(std < _MIN_STD, torch.ones_like(std), std))

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = (torch.cat([obs, action], dim=-1) - self.input_mean) / self.input_std
        for layer in self.layers[:-1]:
            x = F.silu(layer(x))
        mean, logvar, terminal = self.layers[-1](x).split([self.obs_dim + 1, self.obs_dim + 1, 1], dim=-1)
        return mean, soft_clamp(logvar, self.min_logvar, self.max_logvar), terminal.squeeze(-1)

    def regularizer(self, logvar_coef: float) -> torch.Tensor:
        """sum_l wd_l ||W_l||^2 / 2 + c (sum max_logvar - sum min_logvar) (MOBILE decay loss and logvar bounds)."""
        decay = sum(wd * 0.5 * layer.weight.square().sum() for wd, layer in zip(self.weight_decays, self.layers))
        return decay + logvar_coef * (self.max_logvar.sum() - self.min_logvar.sum())

    @torch.no_grad()
    def keep_improved_(self, holdout: torch.Tensor, threshold: float) -> torch.Tensor:
        """Members whose holdout loss improved by more than ``threshold`` (relative) keep their weights (mask)."""
        improved = (self.best_holdout - holdout) / self.best_holdout > threshold
        self.best_holdout.copy_(torch.where(improved, holdout, self.best_holdout))
        for best, now in zip(self.best_layers.parameters(), self.layers.parameters()):
            best.copy_(torch.where(improved.view(-1, 1, 1), now, best))
        return improved

    @torch.no_grad()
    def finish_training_(self) -> None:
        """Every member returns to its best holdout weights; the elites are the members with the lowest loss."""
        for best, now in zip(self.best_layers.parameters(), self.layers.parameters()):
            now.copy_(best)
        self.elites.copy_(torch.argsort(self.best_holdout)[:len(self.elites)])

    @torch.no_grad()
    def step(self, obs: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One imagined step per row: a random elite's Gaussian sample of s' (EnsembleDynamics.step), terminal."""
        mean, logvar, terminal = self(obs, action)
        rows = torch.arange(obs.shape[0], device=obs.device)
        member = self.elites[torch.randint(len(self.elites), (obs.shape[0],), device=obs.device)]
        mean, std = mean[member, rows], torch.exp(0.5 * logvar[member, rows])
        sample = mean + std * torch.randn_like(std)
        return obs + sample[:, :self.obs_dim], terminal[member, rows] > 0


# ------------------------------------------------------------------------------------------------ losses
def gaussian_nll(mean: torch.Tensor, logvar: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per member: E_{N,D}[(mu - y)^2 exp(-logvar) + logvar] (MOBILE learn(): mse_loss_inv + var_loss), shape (E,)."""
    return ((mean - target).square() * torch.exp(-logvar) + logvar).mean(dim=(1, 2))


def termination_loss(logit: torch.Tensor, terminal: torch.Tensor) -> torch.Tensor:
    """Per member: E_N[BCE(sigmoid(logit), d)], shape (E,) (this stack's stand-in for termination functions)."""
    target = terminal.expand_as(logit)
    return F.binary_cross_entropy_with_logits(logit, target, reduction="none").mean(dim=1)


def holdout_mse(mean: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per member: E_{N,D}[(mu - y)^2] on the held-out split (MOBILE validate()), shape (E,)."""
    return (mean - target).square().mean(dim=(1, 2))


@torch.no_grad()
def rollout_q_scores(policy: Callable[[torch.Tensor], torch.Tensor],
                     q_value: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                     model: DynamicsEnsemble, start: torch.Tensor, horizon: int) -> torch.Tensor:
    """AM-Q: OPE(pi_k) = mean of Q(s_t, mu_k(s_t)) over the model rollouts of each policy's deterministic action.

    ``start`` (K, N, D): each policy's dataset start states; ``policy`` maps (K, N, D) to actions (K, N, A);
    ``q_value`` maps (M, D), (M, A) to (M,). A rollout stops counting once the model predicts termination
    (dynamics_eval.py rollout(): terminated states are dropped). No host sync: returns (K,) on the device.
    """
    k, n, d = start.shape
    obs, alive = start, torch.ones(k, n, device=start.device)
    total, count = torch.zeros(k, device=start.device), torch.zeros(k, device=start.device)
    for _ in range(horizon):
        action = policy(obs)
        q = q_value(obs.reshape(k * n, d), action.reshape(k * n, -1)).view(k, n)
        total += (q * alive).sum(dim=1)
        count += alive.sum(dim=1)
        next_obs, terminal = model.step(obs.reshape(k * n, d), action.reshape(k * n, -1))
        alive = alive * (~terminal).view(k, n).float()
        obs = next_obs.view(k, n, d)
    return total / count
