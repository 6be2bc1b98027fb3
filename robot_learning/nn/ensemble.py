"""Batched ensembles: E networks evaluated by one batched matmul per layer.

A twin critic is an ensemble of 2, SAC-N's critic an ensemble of N, IQL's value function an ensemble of
1: the same module, and the cost of one forward pass does not grow with the number of Python calls.
Weights are stored as (E, in, out) so a layer is ``torch.baddbmm(bias, x, weight)`` with x (E, N, in).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from robot_learning.nn.init import get_scheme, init_layer_
from robot_learning.nn.mlp import activation


class EnsembleLinear(nn.Module):
    """E independent linear layers: (E, N, in) -> (E, N, out); a shared (N, in) input is broadcast."""

    def __init__(self, ensemble_size: int, in_features: int, out_features: int):
        super().__init__()
        self.ensemble_size = ensemble_size
        self.in_features = in_features
        self.out_features = out_features
        self.weight = nn.Parameter(torch.empty(ensemble_size, in_features, out_features))
        self.bias = nn.Parameter(torch.empty(ensemble_size, 1, out_features))
        self.reset_parameters()

    def reset_parameters(self, scheme: str = "torch", output: bool = False) -> None:
        """Initialise every member like an nn.Linear of the same shape under ``scheme``."""
        rule = get_scheme(scheme)
        for e in range(self.ensemble_size):
            weight = torch.empty(self.out_features, self.in_features)
            bias = torch.empty(self.out_features)
            init_layer_(weight, bias, rule, output=output)
            with torch.no_grad():
                self.weight[e].copy_(weight.T)
                self.bias[e, 0].copy_(bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            x = x.unsqueeze(0).expand(self.weight.shape[0], -1, -1)
        return torch.baddbmm(self.bias, x, self.weight)

    def extra_repr(self) -> str:
        return f"ensemble_size={self.ensemble_size}, in_features={self.in_features}, out_features={self.out_features}"


class EnsembleLayerNorm(nn.Module):
    """LayerNorm over the feature axis with a separate affine transform per member."""

    def __init__(self, ensemble_size: int, features: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(ensemble_size, 1, features))
        self.bias = nn.Parameter(torch.zeros(ensemble_size, 1, features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.bias, F.layer_norm(x, x.shape[-1:], eps=self.eps), self.weight)


def ensemble_mlp(ensemble_size: int, in_dim: int, hidden: Sequence[int], out_dim: int, *, act: str = "relu",
                 layer_norm: bool = False, dropout: float = 0.0, init: str = "torch") -> nn.Sequential:
    """The ensemble counterpart of :func:`robot_learning.nn.mlp.mlp` (same layer order and init schemes)."""
    layers: list[nn.Module] = []
    width = in_dim
    for h in hidden:
        linear = EnsembleLinear(ensemble_size, width, h)
        linear.reset_parameters(init, output=False)
        layers.append(linear)
        if layer_norm:
            layers.append(EnsembleLayerNorm(ensemble_size, h))
        layers.append(activation(act))
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = h
    linear = EnsembleLinear(ensemble_size, width, out_dim)
    linear.reset_parameters(init, output=True)
    layers.append(linear)
    return nn.Sequential(*layers)


class QEnsemble(nn.Module):
    """E state-action value functions Q_e(s, a) -> (E, N).

    ``features`` is (N, F) (shared by all members) or (E, N, F); ``action`` is (N, A) or (E, N, A). Every
    parameter has the member axis first, so slicing all parameters along it (``torch.func.functional_call``)
    evaluates a subset of members.
    """

    def __init__(self, feature_dim: int, action_dim: int, hidden: Sequence[int], ensemble_size: int = 2, *,
                 act: str = "relu", layer_norm: bool = False, dropout: float = 0.0, init: str = "torch"):
        super().__init__()
        self.ensemble_size = ensemble_size
        self.net = ensemble_mlp(ensemble_size, feature_dim + action_dim, hidden, 1, act=act, layer_norm=layer_norm,
                                dropout=dropout, init=init)

    def forward(self, features: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        if features.dim() == 2 and action.dim() == 3:
            features = features.expand(action.shape[0], *features.shape)
        elif features.dim() == 3 and action.dim() == 2:
            action = action.expand(features.shape[0], *action.shape)
        return self.net(torch.cat([features, action], dim=-1)).squeeze(-1)


class VEnsemble(nn.Module):
    """E state value functions V_e(s) -> (E, N); IQL's V is an ensemble of one."""

    def __init__(self, feature_dim: int, hidden: Sequence[int], ensemble_size: int = 1, *, act: str = "relu",
                 layer_norm: bool = False, dropout: float = 0.0, init: str = "torch"):
        super().__init__()
        self.ensemble_size = ensemble_size
        self.net = ensemble_mlp(ensemble_size, feature_dim, hidden, 1, act=act, layer_norm=layer_norm,
                                dropout=dropout, init=init)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features).squeeze(-1)
