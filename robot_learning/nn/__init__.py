"""Shared network building blocks: MLPs, batched ensembles, actors, encoders, normalisers."""

from robot_learning.nn.actors import DeterministicActor, GaussianActor, TanhGaussianActor
from robot_learning.nn.encoders import ConvTrunk, ImageHead, ObservationEncoder
from robot_learning.nn.ensemble import EnsembleLayerNorm, EnsembleLinear, QEnsemble, VEnsemble, ensemble_mlp
from robot_learning.nn.init import INIT_SCHEMES, InitScheme
from robot_learning.nn.mlp import mlp
from robot_learning.nn.normalize import ActionScaler, Normalizer
from robot_learning.nn.policy import DeterministicPolicy

__all__ = [
    "ActionScaler", "ConvTrunk", "DeterministicActor", "DeterministicPolicy", "EnsembleLayerNorm", "EnsembleLinear",
    "GaussianActor", "INIT_SCHEMES", "ImageHead", "InitScheme", "Normalizer", "ObservationEncoder", "QEnsemble",
    "TanhGaussianActor", "VEnsemble", "ensemble_mlp", "mlp",
]
