"""What every off-policy learner shares: config fields, the NaN guard, optimisers, target networks, SAC losses.

The learners (IQL, CQL/Cal-QL, AWAC, SAC-N/EDAC, TD3+BC) subclass :class:`OffPolicyAlgorithm`, which owns the
observation encoder (normaliser, CNN), the action scaler and the reward transform, and implements ``act``,
``export_actor``, ``prepare`` and ``training_state`` once. A learner builds its networks, registers its
optimisers with :meth:`OffPolicyAlgorithm.add_optimizer` and writes ``_update(batch)``: losses as short
functions, then :meth:`OffPolicyAlgorithm.backward_step`.

NaN guard
---------
A non-finite loss or gradient must stop training with one clear error, but checking a tensor's value on the
host costs a device sync, which a GPU training loop cannot pay every step. So each update folds its losses
and gradient norms into :class:`FiniteGuard` with three device ops (stack, isfinite, where) that record the
first update at which each value went non-finite; nothing is read back. :meth:`OffPolicyAlgorithm.check_finite`
reads the record (one sync) and raises :class:`NonFiniteError` naming the algorithm, the loss (or the
network whose gradient) and the update number. The runtime calls ``check_finite()`` whenever it reads
metrics (logging, checkpointing, end of training); the algorithm also calls it itself every
``finite_check_interval`` updates, so a runtime that never logs still stops.
"""

from __future__ import annotations

import copy
import logging
from abc import abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from robot_learning.algos.base import AlgoConfig, Algorithm
from robot_learning.config import ConfigError
from robot_learning.nn import ActionScaler, DeterministicPolicy, ObservationEncoder

if TYPE_CHECKING:
    from robot_learning.data.tensors import Batch, TransitionData
    from robot_learning.spec import TaskSpec

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------------ configs
@dataclass
class EncoderConfig:
    """How observations become features (see robot_learning.nn.encoders)."""

    # Low-dim keys passed through without normalisation: precomputed frozen features such as CLIP embeddings.
    feature_keys: list[str] = field(default_factory=list)
    # Conv stack per camera: DrQ encoder, 4 layers of 32 3x3 filters, first stride 2 (denisyarats/drq drq.py).
    conv_channels: list[int] = field(default_factory=lambda: [32, 32, 32, 32])
    conv_kernels: list[int] = field(default_factory=lambda: [3, 3, 3, 3])
    conv_strides: list[int] = field(default_factory=lambda: [2, 1, 1, 1])
    # Width of each camera's Linear -> LayerNorm -> tanh feature head (DrQ/SAC-AE feature_dim 50).
    image_feature_dim: int = 50


@dataclass
class OffPolicyConfig(AlgoConfig):
    """Fields shared by the off-policy learners; each learner's config overrides defaults with its sources."""

    # Observation features: CNN for cameras, pass-through feature keys.
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    # Normalise low-dim observations with the dataset mean/std, frozen online (CORL; off in official IQL/Cal-QL).
    normalize_obs: bool = False
    # Added to the std when fitting the normaliser (CORL compute_mean_std eps=1e-3).
    obs_norm_eps: float = 1e-3
    # Reward transform r <- r * reward_scale + reward_bias, applied to offline and online rewards alike.
    reward_scale: float = 1.0
    reward_bias: float = 0.0
    # If set, rewards are first multiplied by this / (max - min episode return) of the dataset, computed in
    # prepare() (IQL locomotion: 1000, ikostrikov/implicit_q_learning train_offline.py).
    reward_normalize_returns_to: float | None = None
    # Polyak rate of target networks (5e-3 in IQL, CQL, Cal-QL, AWAC, SAC-N, TD3+BC official code).
    tau: float = 0.005
    # torch.compile the loss computations (each learner compiles only those that measured faster or neutral in
    # benchmarks/train_speed.py): a few seconds up front; on the development CPU it helps IQL (5-8%), not the rest.
    compile: bool = False
    # Host-side NaN check (one device sync) every this many updates, besides the runtime's check_finite().
    finite_check_interval: int = 1000

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.finite_check_interval < 1:
            raise ValueError(f"finite_check_interval: expected >= 1, found {self.finite_check_interval}")
        if not 0.0 < self.tau <= 1.0:
            raise ValueError(f"tau: expected a Polyak rate in (0, 1], found {self.tau}")
        if self.reward_normalize_returns_to is not None and self.reward_normalize_returns_to <= 0:
            raise ValueError(f"reward_normalize_returns_to: expected a positive span, found "
                             f"{self.reward_normalize_returns_to}")


def check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    """Config validation helper for string options (OmegaConf has no Literal)."""
    if value not in choices:
        raise ValueError(f"{name}: expected one of {list(choices)}, found '{value}'")


# ------------------------------------------------------------------------------------------------ NaN guard
class NonFiniteError(RuntimeError):
    """A loss or gradient went NaN/inf: names the algorithm, the value and the update number."""


class FiniteGuard:
    """Records on the device the first update at which each watched value was non-finite (see module docstring)."""

    def __init__(self, algo: str):
        self.algo = algo
        self._first_bad: dict[tuple[str, ...], torch.Tensor] = {}

    def watch(self, update: int, values: Mapping[str, torch.Tensor]) -> None:
        """Fold 0-d ``values`` of update number ``update`` into the record; no host sync."""
        names = tuple(values)
        stacked = torch.stack([v.detach().reshape(()).float() for v in values.values()])
        first = self._first_bad.get(names)
        if first is None:
            first = torch.full((len(names),), -1, dtype=torch.long, device=stacked.device)
        self._first_bad[names] = torch.where(~torch.isfinite(stacked) & (first < 0), update, first)

    def check(self) -> None:
        """Raise NonFiniteError for the earliest non-finite value recorded so far (one host sync)."""
        found: list[tuple[int, int, str]] = []
        order = 0
        for names, first in self._first_bad.items():
            for name, step in zip(names, first.tolist()):
                if step >= 0:
                    found.append((step, order, name))
                order += 1
        if found:
            step, _, name = min(found)
            raise NonFiniteError(f"{self.algo}: {name} became non-finite (NaN or inf) at update {step}; training "
                                 "stopped. Check the batch (rewards, observations, actions) and the learning rates.")

    def state_dict(self) -> dict[str, Any]:
        return {"|".join(k): v.cpu() for k, v in self._first_bad.items()}

    def load_state_dict(self, state: Mapping[str, torch.Tensor], device: torch.device) -> None:
        self._first_bad = {tuple(k.split("|")): v.to(device) for k, v in state.items()}


# ------------------------------------------------------------------------------------------------ helpers
def make_adam(params: Iterable[nn.Parameter], lr: float) -> torch.optim.Adam:
    """Adam with the fused kernel (one kernel per step on CPU and CUDA), falling back to foreach."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, ValueError):
        return torch.optim.Adam(params, lr=lr, foreach=True)


def grad_norm(params: Sequence[nn.Parameter]) -> torch.Tensor:
    """L2 norm of all gradients of ``params`` (0-d tensor; non-finite if any gradient is)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros((), device=params[0].device)
    return nn.utils.get_total_norm(grads, foreach=True)


def make_target(module: nn.Module, *shared: nn.Module) -> nn.Module:
    """A frozen copy of ``module`` for Polyak averaging; ``shared`` submodules (e.g. the normaliser) are not copied."""
    target = copy.deepcopy(module, memo={id(m): m for m in shared})
    for p in target.parameters():
        p.requires_grad_(False)
    return target


def backward_step(loss: torch.Tensor, steps: Mapping[str, tuple[torch.optim.Optimizer, Sequence[nn.Parameter]]]
                  ) -> dict[str, torch.Tensor]:
    """Zero the grads of the named optimisers, backpropagate ``loss``, step them; returns ``<name>_grad_norm`` of each."""
    for optimizer, _ in steps.values():
        optimizer.zero_grad(set_to_none=True)
    loss.backward()
    norms = {f"{name}_grad_norm": grad_norm(params) for name, (_, params) in steps.items()}
    for optimizer, _ in steps.values():
        optimizer.step()
    return norms


@torch.no_grad()
def polyak_update_(target: Sequence[torch.Tensor], online: Sequence[torch.Tensor], tau: float) -> None:
    """theta_target <- (1 - tau) theta_target + tau theta (one fused foreach op)."""
    torch._foreach_lerp_(list(target), list(online), tau)


def frozen(module: nn.Module, *args: torch.Tensor, members: slice | None = None) -> torch.Tensor:
    """``module(*args)`` with its parameters detached: gradients reach the inputs, never the module.

    The actor's loss evaluates the critic this way, so one backward pass over the sum of all losses trains
    each network only on its own loss (the semantics of JAX's per-loss ``grad`` in the official code).
    ``members`` evaluates only those members of an ensemble (every parameter sliced along its first axis).
    """
    fast = getattr(module, "frozen_forward", None)  # QEnsemble / VEnsemble: detached weights, no functional_call
    if fast is not None:
        return fast(*args, members=members)
    params = {name: p.detach() if members is None else p.detach()[members] for name, p in module.named_parameters()}
    return torch.func.functional_call(module, params, args)


@contextmanager
def eval_mode(*modules: nn.Module):
    """Temporarily put ``modules`` in eval mode (dropout off) and restore their previous modes."""
    modes = [m.training for m in modules]
    for m in modules:
        m.eval()
    try:
        yield
    finally:
        for m, mode in zip(modules, modes):
            m.train(mode)


# ------------------------------------------------------------------------------------------------ shared losses
def td_target(reward: torch.Tensor, done: torch.Tensor, gamma: float, next_value: torch.Tensor) -> torch.Tensor:
    """y = r + gamma (1 - d) V(s')."""
    return reward + gamma * (1.0 - done) * next_value


def ensemble_td_loss(q: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """sum_i E[(Q_i(s, a) - y)^2] for q (E, N) and y (N,): every member regresses on the same target."""
    return (q - target.detach()).square().mean(dim=1).sum()


def sac_actor_loss(alpha: torch.Tensor, log_pi: torch.Tensor, q_pi: torch.Tensor) -> torch.Tensor:
    """L(pi) = E_s[alpha log pi(a~|s) - min_i Q_i(s, a~)], a~ ~ pi(.|s); q_pi is the ensemble min, (N,)."""
    return (alpha * log_pi - q_pi).mean()


def temperature_loss(log_alpha: torch.Tensor, log_pi: torch.Tensor, target_entropy: float) -> torch.Tensor:
    """L(log alpha) = -E[log alpha (log pi(a~|s) + H_target)] with log pi detached (SAC; JaxCQL, CORL sac_n.py)."""
    return -(log_alpha * (log_pi.detach() + target_entropy)).mean()


# ------------------------------------------------------------------------------------------------ base class
class OffPolicyAlgorithm(Algorithm):
    """The shared part of the off-policy learners (see the module docstring).

    Subclasses set ``self.actor`` (an actor of robot_learning.nn.actors) and ``self.actor_encoder``, register
    their optimisers with :meth:`add_optimizer` after moving to the device, and implement ``_update``.
    """

    config: OffPolicyConfig

    def __init__(self, config: OffPolicyConfig, spec: TaskSpec, device: torch.device | str = "cpu"):
        super().__init__(config, spec, device)
        enc = config.encoder
        #: The critic's encoder: it trains the conv stacks; actor/value encoders are its siblings.
        self.encoder = ObservationEncoder(spec, self.obs_keys, feature_keys=enc.feature_keys,
                                          conv_channels=enc.conv_channels, conv_kernels=enc.conv_kernels,
                                          conv_strides=enc.conv_strides, image_feature_dim=enc.image_feature_dim)
        self.scaler = ActionScaler(spec.action.low, spec.action.high)
        self.register_buffer("reward_gain", torch.ones(()))
        self.guard = FiniteGuard(self.name)
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self._opt_params: dict[str, list[nn.Parameter]] = {}

    # ------------------------------------------------------------------------------ building blocks
    def sibling_encoder(self) -> ObservationEncoder:
        """An encoder for the actor (or V): shares the normaliser and convs, reads detached conv features."""
        return self.encoder.sibling() if self.encoder.has_images else self.encoder

    def encoder_head_parameters(self, encoder: ObservationEncoder) -> list[nn.Parameter]:
        """What a sibling encoder adds to its owner's optimiser: its own heads (nothing if it is the critic's)."""
        return [] if encoder is self.encoder else encoder.trainable_parameters()

    def add_optimizer(self, name: str, params: Iterable[nn.Parameter], lr: float) -> None:
        """Create (fused) Adam ``name`` over ``params``; it is saved by training_state()."""
        params = list(params)
        self._opt_params[name] = params
        self.optimizers[name] = make_adam(params, lr)

    def backward_step(self, loss: torch.Tensor, *names: str) -> dict[str, torch.Tensor]:
        """Zero the grads of optimisers ``names``, backpropagate ``loss``, step them; returns their gradient norms.

        Runs outside mixed-precision autocast (robot_learning.nn.precision.full_precision says why)."""
        with self.full_precision():
            return backward_step(loss, {name: (self.optimizers[name], self._opt_params[name]) for name in names})

    def maybe_compile(self, fn: Callable) -> Callable:
        """``torch.compile(fn)`` when ``config.compile`` is set (used on the loss functions)."""
        return torch.compile(fn) if self.config.compile else fn

    def unit_action(self, batch: Batch) -> torch.Tensor:
        """The batch's actions mapped from task units to [-1, 1]."""
        return self.scaler.to_unit(batch.action)

    def finish_update(self, losses: Mapping[str, torch.Tensor], norms: Mapping[str, torch.Tensor],
                      extra: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Record losses and gradient norms in the NaN guard; return all metrics detached."""
        self.guard.watch(self.num_updates, {**losses, **norms})
        return {k: v.detach() for k, v in {**losses, **norms, **extra}.items()}

    # ------------------------------------------------------------------------------ contract
    def prepare(self, data: TransitionData) -> TransitionData:
        """Fit the observation normaliser and the return-span reward gain; return reward-transformed data."""
        cfg = self.config
        if cfg.normalize_obs and self.encoder.norm_keys:
            self.encoder.normalizer.fit(self.encoder.low_dim(data.obs), cfg.obs_norm_eps)
        if cfg.reward_normalize_returns_to is not None:
            returns = data.episode_returns()
            span = float(returns.max() - returns.min())
            if not span > 0:
                raise ConfigError(f"algo.reward_normalize_returns_to: expected episodes with different returns in "
                                  f"{data.source}, found a return span of {span}")
            self.reward_gain.fill_(cfg.reward_normalize_returns_to / span)
            log.info("%s: rewards scaled by %.4g (return span %.4g)", self.name, float(self.reward_gain), span)
        return data.with_reward(self.transform_reward(data.reward))

    def transform_reward(self, reward: torch.Tensor) -> torch.Tensor:
        """r -> r * gain * reward_scale + reward_bias (gain from reward_normalize_returns_to, else 1)."""
        return reward * (self.reward_gain * self.config.reward_scale) + self.config.reward_bias

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        self.num_updates += 1
        with self.mixed_precision():
            metrics = self._update(batch)
        if self.num_updates % self.config.finite_check_interval == 0:
            self.check_finite()
        return metrics

    @abstractmethod
    def _update(self, batch: Batch) -> dict[str, torch.Tensor]:
        """One gradient step (the algorithm's losses); metrics as 0-d tensors."""

    def check_finite(self) -> None:
        """Raise NonFiniteError if any loss or gradient so far was NaN/inf (one device sync; call when logging)."""
        self.guard.check()

    def explore(self, features: torch.Tensor) -> torch.Tensor:
        """A stochastic action in [-1, 1] for data collection (the actor's own distribution by default)."""
        out = self.actor.sample(features)
        return out[0] if isinstance(out, tuple) else out

    @torch.no_grad()
    def act(self, obs: Mapping[str, torch.Tensor], deterministic: bool = True) -> torch.Tensor:
        obs = {k: torch.as_tensor(obs[k], device=self.device) for k in self.obs_keys}
        with eval_mode(self.actor, self.actor_encoder):
            features = self.actor_encoder(obs)
            unit = self.actor.mode(features) if deterministic else self.explore(features)
        return self.scaler.from_unit(unit)

    def export_actor(self) -> nn.Module:
        policy = DeterministicPolicy(copy.deepcopy(self.actor_encoder), copy.deepcopy(self.actor),
                                     copy.deepcopy(self.scaler))
        policy.eval()
        policy.requires_grad_(False)
        return policy

    def training_state(self) -> dict[str, Any]:
        return {**super().training_state(),
                "optimizers": {name: opt.state_dict() for name, opt in self.optimizers.items()},
                "finite_guard": self.guard.state_dict()}

    def load_training_state(self, state: Mapping[str, Any]) -> None:
        super().load_training_state(state)
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
        self.guard.load_state_dict(state["finite_guard"], self.device)
