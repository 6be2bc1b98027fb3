"""The MLP builder every network in the stack uses."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from robot_learning.nn.init import get_scheme, init_layer_
from robot_learning.nn.precision import OutputLinear

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
}


def activation(name: str) -> nn.Module:
    """The activation module ``name``; ReLU works in place (it always follows a Linear or LayerNorm, whose
    backward does not read their output, and it saves an allocation of the activation-sized tensor per layer)."""
    if name not in ACTIVATIONS:
        raise ValueError(f"activation: expected one of {sorted(ACTIVATIONS)}, found '{name}'")
    return nn.ReLU(inplace=True) if name == "relu" else ACTIVATIONS[name]()


def mlp(in_dim: int, hidden: Sequence[int], out_dim: int | None, *, act: str = "relu", layer_norm: bool = False,
        dropout: float = 0.0, init: str = "torch") -> nn.Sequential:
    """Linear -> [LayerNorm] -> activation -> [Dropout] per hidden size, then a Linear to ``out_dim``.

    With ``out_dim=None`` the network ends after the last hidden block (a trunk for separate heads; its
    layers are initialised as hidden layers). The last Linear is an :class:`OutputLinear` (float32 under mixed
    precision). ``init`` names a scheme of :mod:`robot_learning.nn.init`.
    """
    scheme = get_scheme(init)
    layers: list[nn.Module] = []
    width = in_dim
    for h in hidden:
        linear = nn.Linear(width, h)
        init_layer_(linear.weight, linear.bias, scheme, output=False)
        layers.append(linear)
        if layer_norm:
            layers.append(nn.LayerNorm(h))
        layers.append(activation(act))
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = h
    if out_dim is not None:
        linear = OutputLinear(width, out_dim)
        init_layer_(linear.weight, linear.bias, scheme, output=True)
        layers.append(linear)
    return nn.Sequential(*layers)
