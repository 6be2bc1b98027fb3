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
from robot_learning.nn.precision import full_precision


def ensemble_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, output: bool = False) -> torch.Tensor:
    """x (E, N, in) or shared (N, in), weight (E, in, out), bias (E, 1, out) -> (E, N, out): one batched matmul.

    An ``output`` layer is computed in float32 even under mixed precision (robot_learning.nn.precision).
    """
    if output and torch.is_autocast_enabled(x.device.type):
        with full_precision(x.device):
            return ensemble_linear(x.float(), weight, bias)
    if x.dim() == 2:
        x = x.unsqueeze(0).expand(weight.shape[0], -1, -1)
    if weight.shape[-1] == 1:
        # a value head: a multiply-reduce beats the skinny batched matmul (and its backward) on the CPU
        return (x * weight.transpose(1, 2)).sum(-1, keepdim=True) + bias
    return torch.baddbmm(bias, x, weight)


def frozen_ensemble_forward(net: nn.Sequential, x: torch.Tensor, members: slice | None = None) -> torch.Tensor:
    """``net(x)`` for an :func:`ensemble_mlp` with its parameters detached (gradients reach ``x`` only), optionally
    for a slice of its members: the cheap equivalent of ``torch.func.functional_call`` with detached parameters."""
    pick = (lambda p: p.detach()) if members is None else (lambda p: p.detach()[members])
    for layer in net:
        if isinstance(layer, EnsembleLinear):
            x = ensemble_linear(x, pick(layer.weight), pick(layer.bias), layer.output)
        elif isinstance(layer, EnsembleLayerNorm):
            x = torch.addcmul(pick(layer.bias), F.layer_norm(x, x.shape[-1:], eps=layer.eps), pick(layer.weight))
        elif next(layer.parameters(recurse=True), None) is None:
            x = layer(x)
        else:
            raise TypeError(f"frozen ensemble forward: unexpected layer with parameters {type(layer).__name__}")
    return x


class EnsembleLinear(nn.Module):
    """E independent linear layers: (E, N, in) -> (E, N, out); a shared (N, in) input is broadcast.

    ``output=True`` marks a network's last layer, computed in float32 under mixed precision.
    """

    def __init__(self, ensemble_size: int, in_features: int, out_features: int, output: bool = False):
        super().__init__()
        self.ensemble_size = ensemble_size
        self.in_features = in_features
        self.out_features = out_features
        self.output = output
        self.weight = nn.Parameter(torch.empty(ensemble_size, in_features, out_features))
        self.bias = nn.Parameter(torch.empty(ensemble_size, 1, out_features))
        self.reset_parameters()

    def reset_parameters(self, scheme: str = "torch", output: bool | None = None) -> None:
        """Initialise every member like an nn.Linear of the same shape under ``scheme``, with its output-layer rule
        when ``output`` (default: whether this is an output layer)."""
        output = self.output if output is None else output
        rule = get_scheme(scheme)
        for e in range(self.ensemble_size):
            weight = torch.empty(self.out_features, self.in_features)
            bias = torch.empty(self.out_features)
            init_layer_(weight, bias, rule, output=output)
            with torch.no_grad():
                self.weight[e].copy_(weight.T)
                self.bias[e, 0].copy_(bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ensemble_linear(x, self.weight, self.bias, self.output)

    def extra_repr(self) -> str:
        return (f"ensemble_size={self.ensemble_size}, in_features={self.in_features}, out_features={self.out_features}"
                f"{', output=True' if self.output else ''}")


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
    """The ensemble counterpart of :func:`robot_learning.nn.mlp.mlp` (same layer order, init schemes and float32
    output layer)."""
    layers: list[nn.Module] = []
    width = in_dim
    for h in hidden:
        linear = EnsembleLinear(ensemble_size, width, h)
        linear.reset_parameters(init)
        layers.append(linear)
        if layer_norm:
            layers.append(EnsembleLayerNorm(ensemble_size, h))
        layers.append(activation(act))
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = h
    linear = EnsembleLinear(ensemble_size, width, out_dim, output=True)
    linear.reset_parameters(init)
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

    @staticmethod
    def inputs(features: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """[s, a]: (N, F + A) shared by all members, or (E, N, F + A) when either side is per member."""
        if features.dim() == 2 and action.dim() == 3:
            features = features.expand(action.shape[0], *features.shape)
        elif features.dim() == 3 and action.dim() == 2:
            action = action.expand(features.shape[0], *action.shape)
        return torch.cat([features, action], dim=-1)

    def forward(self, features: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.net(self.inputs(features, action)).squeeze(-1)

    def frozen_forward(self, features: torch.Tensor, action: torch.Tensor, members: slice | None = None) -> torch.Tensor:
        """``self(features, action)`` with detached parameters (optionally ``members`` only): gradients reach the
        inputs, never the critic (the actor's loss); see :func:`robot_learning.algos.common.frozen`."""
        return frozen_ensemble_forward(self.net, self.inputs(features, action), members).squeeze(-1)

    def multi(self, features: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Q_e(s_b, a_bm) for M actions per state: features (B, F), actions (B, M, A) -> (E, B, M).

        The same values as ``self(features.repeat_interleave(M, 0), actions.reshape(B * M, A))``, but the first
        layer's state part ``s W_s + b`` is computed once per state and broadcast over the M actions
        (``[s, a] W = s W_s + a W_a``): the repeated (B M, F + A) input and its matmul are never built.
        """
        b, m, a = actions.shape
        first = self.net[0]
        f = features.shape[-1]
        e = first.weight.shape[0]
        state = torch.baddbmm(first.bias, features.unsqueeze(0).expand(e, -1, -1), first.weight[:, :f])
        # (a fresh tensor, not a view, so that the in-place activation after it needs no CopySlices)
        h = torch.baddbmm(state.unsqueeze(2).expand(-1, -1, m, -1).reshape(e, b * m, -1),
                          actions.reshape(1, b * m, a).expand(e, -1, -1), first.weight[:, f:])
        for layer in list(self.net)[1:]:
            h = layer(h)
        return h.view(e, b, m)


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

    def frozen_forward(self, features: torch.Tensor, members: slice | None = None) -> torch.Tensor:
        """``self(features)`` with detached parameters (optionally ``members`` only)."""
        return frozen_ensemble_forward(self.net, features, members).squeeze(-1)
