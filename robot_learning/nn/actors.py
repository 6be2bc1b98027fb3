"""Policy heads: tanh-Gaussian (SAC family), IQL/AWAC Gaussian, deterministic (TD3+BC).

Every actor maps features to actions in [-1, 1] (the task's limits are applied by ActionScaler outside)
and has ``mode(features)``: the deterministic action used for evaluation and export.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from robot_learning.nn.mlp import mlp

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_LOG_2 = math.log(2.0)


def gaussian_log_prob(eps: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """log N(mean + std*eps; mean, std) summed over the action axis, from the standard-normal noise ``eps``."""
    return (-0.5 * eps.square() - log_std - _HALF_LOG_2PI).sum(-1)


def tanh_log_det_jacobian(u: torch.Tensor) -> torch.Tensor:
    """sum_i log(1 - tanh(u_i)^2) = sum_i 2 (log 2 - u_i - softplus(-2 u_i)), stable for large |u|."""
    return (2.0 * (_LOG_2 - u - F.softplus(-2.0 * u))).sum(-1)


class TanhGaussianActor(nn.Module):
    """a = tanh(u), u ~ N(mu(s), sigma(s)); log sigma = clip(raw + offset, min, max).

    Used by SAC-N/EDAC (offset 0, clip [-5, 2]; CORL sac_n.py) and CQL/Cal-QL (offset -1, clip [-20, 2];
    JaxCQL TanhGaussianPolicy). The mean and log-std come from one linear head of width 2A.
    """

    def __init__(self, feature_dim: int, action_dim: int, hidden: Sequence[int], *, log_std_min: float = -5.0,
                 log_std_max: float = 2.0, log_std_offset: float = 0.0, act: str = "relu", layer_norm: bool = False,
                 init: str = "torch"):
        super().__init__()
        self.action_dim = action_dim
        self.log_std_min = log_std_min
        self.log_std_max = log_std_max
        self.log_std_offset = log_std_offset
        self.net = mlp(feature_dim, hidden, 2 * action_dim, act=act, layer_norm=layer_norm, init=init)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, log_std) of the pre-tanh Gaussian."""
        mean, raw = self.net(features).chunk(2, dim=-1)
        return mean, (raw + self.log_std_offset).clamp(self.log_std_min, self.log_std_max)

    def sample(self, features: torch.Tensor, num_samples: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterised actions and their log-probabilities.

        Shapes: (N, A) and (N,), or with ``num_samples=K`` (N, K, A) and (N, K); the network runs once per
        state, the K samples share its output.
        """
        mean, log_std = self(features)
        if num_samples is not None:
            mean, log_std = mean.unsqueeze(1), log_std.unsqueeze(1)
            eps = torch.randn(mean.shape[0], num_samples, self.action_dim, device=mean.device, dtype=mean.dtype)
        else:
            eps = torch.randn_like(mean)
        u = mean + log_std.exp() * eps
        return torch.tanh(u), gaussian_log_prob(eps, log_std) - tanh_log_det_jacobian(u)

    def mode(self, features: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self(features)[0])


class GaussianActor(nn.Module):
    """a ~ N(mu(s), exp(log_std)) with a state-independent, clipped log-std; the distribution is not squashed.

    IQL (ikostrikov/implicit_q_learning policy.py, tanh_squash_distribution=False): tanh on the mean, log-std
    initialised at 0 and clipped to [-5, 2], sampled actions clipped to [-1, 1]. AWAC (CORL awac.py): no tanh,
    log-std clipped to [-20, 2].
    """

    def __init__(self, feature_dim: int, action_dim: int, hidden: Sequence[int], *, tanh_mean: bool = True,
                 log_std_min: float = -5.0, log_std_max: float = 2.0, act: str = "relu", layer_norm: bool = False,
                 dropout: float = 0.0, init: str = "torch"):
        super().__init__()
        self.tanh_mean = tanh_mean
        self.log_std_min = log_std_min
        self.log_std_max = log_std_max
        self.net = mlp(feature_dim, hidden, action_dim, act=act, layer_norm=layer_norm, dropout=dropout, init=init)
        self.log_std = nn.Parameter(torch.zeros(action_dim))

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, log_std)."""
        mean = self.net(features)
        if self.tanh_mean:
            mean = torch.tanh(mean)
        return mean, self.log_std.clamp(self.log_std_min, self.log_std_max)

    def log_prob(self, features: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """log pi(a|s) summed over action dimensions, (N,)."""
        mean, log_std = self(features)
        return gaussian_log_prob((action - mean) * torch.exp(-log_std), log_std)

    def sample(self, features: torch.Tensor) -> torch.Tensor:
        """An action sample clipped to [-1, 1] (no gradient path is needed by IQL or AWAC)."""
        mean, log_std = self(features)
        return (mean + log_std.exp() * torch.randn_like(mean)).clamp(-1.0, 1.0)

    def mode(self, features: torch.Tensor) -> torch.Tensor:
        return self(features)[0].clamp(-1.0, 1.0)


class DeterministicActor(nn.Module):
    """a = tanh(f(s)) (TD3+BC, sfujim/TD3_BC; IQL's deterministic option used by RIQL)."""

    def __init__(self, feature_dim: int, action_dim: int, hidden: Sequence[int], *, act: str = "relu",
                 layer_norm: bool = False, dropout: float = 0.0, init: str = "torch"):
        super().__init__()
        self.net = mlp(feature_dim, hidden, action_dim, act=act, layer_norm=layer_norm, dropout=dropout, init=init)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(features))

    def mode(self, features: torch.Tensor) -> torch.Tensor:
        return self(features)
