"""Weight initialisation schemes, named after the code they reproduce.

Each scheme says how hidden layers and the output layer of an MLP are initialised. Initialisation is part
of an algorithm's recipe (EDAC's 0.1 hidden biases and tiny output layer, JaxCQL's orthogonal init), so
configs select a scheme by name and cite where it comes from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class InitScheme:
    """How to initialise a (out, in) weight and its bias, for hidden and for output layers.

    ``hidden``/``output``: ``torch`` (nn.Linear's default: kaiming-uniform(a=sqrt 5), bias U(+-1/sqrt(in))),
    ``orthogonal`` (gain), ``xavier_uniform`` (gain) or ``uniform`` (weight and bias U(+-gain)).
    ``*_bias``: a constant for the bias, or None to keep what the weight rule gives.
    """

    hidden: str
    hidden_gain: float
    hidden_bias: float | None
    output: str
    output_gain: float
    output_bias: float | None


INIT_SCHEMES: dict[str, InitScheme] = {
    # PyTorch nn.Linear default (TD3+BC sfujim/TD3_BC, AWAC corl-team/CORL awac.py).
    "torch": InitScheme("torch", 1.0, None, "torch", 1.0, None),
    # jaxrl default_init: orthogonal(sqrt 2) everywhere, zero bias (ikostrikov/implicit_q_learning common.py).
    "orthogonal": InitScheme("orthogonal", math.sqrt(2.0), 0.0, "orthogonal", math.sqrt(2.0), 0.0),
    # JaxCQL orthogonal_init=False: default hidden, output xavier-uniform gain 1e-2 (young-geng/CQL, CORL cql.py).
    "cql": InitScheme("torch", 1.0, None, "xavier_uniform", 1e-2, 0.0),
    # JaxCQL orthogonal_init=True: orthogonal(sqrt 2) hidden, orthogonal(1e-2) output (nakamotoo/Cal-QL model.py).
    "cql_orthogonal": InitScheme("orthogonal", math.sqrt(2.0), 0.0, "orthogonal", 1e-2, 0.0),
    # Uni-O4 BC policies: orthogonal_initWeights = nn.init.orthogonal_ (gain 1) on every weight (Lei-Kun/Uni-O4
    # util.py); the code keeps PyTorch's default biases, zero here.
    "orthogonal_unit": InitScheme("orthogonal", 1.0, 0.0, "orthogonal", 1.0, 0.0),
    # EDAC critics: hidden bias 0.1, output U(+-3e-3) (snu-mllab/EDAC, CORL sac_n.py/edac.py VectorizedCritic).
    "edac_critic": InitScheme("torch", 1.0, 0.1, "uniform", 3e-3, None),
    # EDAC actor: hidden bias 0.1, mean/log-std heads U(+-1e-3) (CORL sac_n.py/edac.py Actor).
    "edac_actor": InitScheme("torch", 1.0, 0.1, "uniform", 1e-3, None),
}


def get_scheme(name: str) -> InitScheme:
    if name not in INIT_SCHEMES:
        raise ValueError(f"init scheme: expected one of {sorted(INIT_SCHEMES)}, found '{name}'")
    return INIT_SCHEMES[name]


def init_weight_(weight: torch.Tensor, bias: torch.Tensor | None, rule: str, gain: float,
                 bias_value: float | None) -> None:
    """Initialise one layer in place; ``weight`` has the (out, in) layout of nn.Linear."""
    fan_in = weight.shape[1]
    with torch.no_grad():
        if rule == "torch":
            nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
            if bias is not None:
                bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
                nn.init.uniform_(bias, -bound, bound)
        elif rule == "orthogonal":
            nn.init.orthogonal_(weight, gain=gain)
        elif rule == "xavier_uniform":
            nn.init.xavier_uniform_(weight, gain=gain)
        elif rule == "uniform":
            nn.init.uniform_(weight, -gain, gain)
            if bias is not None:
                nn.init.uniform_(bias, -gain, gain)
        else:
            raise ValueError(f"init rule: expected torch/orthogonal/xavier_uniform/uniform, found '{rule}'")
        if bias is not None and bias_value is not None:
            bias.fill_(bias_value)


def init_layer_(weight: torch.Tensor, bias: torch.Tensor | None, scheme: InitScheme, output: bool) -> None:
    """Initialise a hidden or output layer with ``scheme``."""
    if output:
        init_weight_(weight, bias, scheme.output, scheme.output_gain, scheme.output_bias)
    else:
        init_weight_(weight, bias, scheme.hidden, scheme.hidden_gain, scheme.hidden_bias)
