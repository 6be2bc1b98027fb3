"""PPO: Proximal Policy Optimization with a clipped surrogate (Schulman et al., arXiv 1707.06347).

Defaults follow CleanRL's ``ppo_continuous_action.py`` (vwxyzjn/cleanrl; Huang et al., "The 37
Implementation Details of PPO", ICLR blog track 2022), which follows the paper's MuJoCo settings
(Table 3: lr 3e-4, 2048 steps per rollout, 10 epochs, minibatch 64, gamma 0.99, lambda 0.95, clip 0.2).
One ``update(rollout)`` is one PPO iteration on a rollout collected by the on-policy runner (it counts as
one update in ``num_updates`` and the NaN guard):

    rewards  r_t / std(discounted return) (running estimate; CleanRL's NormalizeReward), clipped to +-10
    GAE      A_t = delta_t + gamma lambda (1 - d_t) A_{t+1} on the device (robot_learning.data.rollout)
    epochs x minibatches, with the advantages normalised per minibatch:
      L_clip = -E[min(rho A, clip(rho, 1 - eps, 1 + eps) A)],  rho = pi(a|s) / pi_old(a|s)
      L_V    = 0.5 E[max((V - R)^2, (V_old + clip(V - V_old, -eps, eps) - R)^2)]  (value clipping)
      L      = L_clip - c_ent H[pi] + c_V L_V;  gradients clipped to a global norm of 0.5
    learning rates decay linearly to 0 over ``lr_decay_steps`` environment steps.

The pieces Uni-O4's online phase needs (Lei et al., ICLR 2024; Lei-Kun/Uni-O4 ppo_finetune/ppo.py) are
knobs: ``clip_coef`` (0.05 there) also clips the value; ``obs_norm="dataset"`` fits the observation
normaliser on the offline data in ``prepare`` and keeps it frozen; separate actor/critic learning rates;
``clip_grad_per_network`` clips actor and critic gradients separately (Uni-O4's two optimisers);
``load_actor``/``load_critic`` start from offline networks; ``build_actor``/``build_critic`` can be
overridden for another parameterisation of the Gaussian (mean, log-std) or another value network.
:func:`clipped_surrogate_loss` is also BPPO's offline objective (robot_learning.algos.unio4).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from robot_learning.algos.base import AlgoConfig, Algorithm, register
from robot_learning.algos.common import FiniteGuard
from robot_learning.config import ConfigError
from robot_learning.data.rollout import RolloutBatch
from robot_learning.data.tensors import TransitionData
from robot_learning.nn import ActionScaler, DeterministicPolicy, GaussianActor, ObservationEncoder, mlp
from robot_learning.nn.actors import gaussian_log_prob
from robot_learning.nn.init import init_weight_
from robot_learning.spec import TaskSpec

OBS_NORM = ("running", "dataset", "none")


@dataclass
class PPOConfig(AlgoConfig):
    """PPO defaults: CleanRL ppo_continuous_action.py Args (the PPO paper's MuJoCo settings)."""

    name: str = "ppo"
    # Adam learning rates of actor and critic (CleanRL learning_rate 3e-4 for both; Uni-O4 2e-5 / 2e-4).
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    # Adam epsilon (CleanRL: eps=1e-5).
    adam_eps: float = 1e-5
    # Linear decay of both learning rates to 0 over this many environment steps (CleanRL anneal_lr over
    # total_timesteps 1e6; Uni-O4 max_train_steps 3e6); None = constant.
    lr_decay_steps: int | None = 1_000_000
    # GAE lambda (gae_lambda 0.95).
    gae_lambda: float = 0.95
    # Epochs over each rollout (update_epochs 10; Uni-O4 K_epochs 5-30) and minibatches per epoch (num_minibatches 32).
    update_epochs: int = 10
    num_minibatches: int = 32
    # Normalise advantages per minibatch (norm_adv True).
    norm_adv: bool = True
    # Surrogate clip epsilon (clip_coef 0.2; Uni-O4 0.05); the value clip uses the same epsilon.
    clip_coef: float = 0.2
    # Clipped value loss (clip_vloss True).
    clip_vloss: bool = True
    # Entropy bonus (ent_coef 0.0; Uni-O4 0.01) and value-loss coefficient (vf_coef 0.5).
    ent_coef: float = 0.0
    vf_coef: float = 0.5
    # Global gradient-norm clip (max_grad_norm 0.5).
    max_grad_norm: float = 0.5
    # Clip actor and critic gradient norms separately, each to max_grad_norm (CleanRL: one global norm;
    # Uni-O4 ppo_finetune/ppo.py: two optimisers, each clipped to 0.5).
    clip_grad_per_network: bool = False
    # Stop an update's epochs once the approximate KL exceeds this (target_kl None; one host sync per epoch if set).
    target_kl: float | None = None
    # Hidden sizes and activation of actor and critic (CleanRL: 64-64 tanh, separate networks).
    hidden: list[int] = field(default_factory=lambda: [64, 64])
    activation: str = "tanh"
    # Orthogonal-init gains of the output layers (CleanRL layer_init: actor std 0.01, critic 1.0; hidden sqrt 2).
    actor_out_gain: float = 0.01
    critic_out_gain: float = 1.0
    # Initial state-independent log-std (actor_logstd zeros) and its clip.
    log_std_init: float = 0.0
    log_std_min: float = -20.0
    log_std_max: float = 2.0
    # Observation normalisation: running (CleanRL NormalizeObservation), dataset (fit in prepare() and
    # frozen: Uni-O4 update=False), none.
    obs_norm: str = "running"
    # Epsilon of the normalisers' variance (gymnasium RunningMeanStd / NormalizeReward: 1e-8).
    norm_eps: float = 1e-8
    # Divide rewards by the running std of the discounted return (CleanRL NormalizeReward) and clip them.
    normalize_rewards: bool = True
    reward_clip: float = 10.0
    # Constant reward scale applied by transform_reward (Uni-O4 scale_strategy 'number': 0.1).
    reward_scale: float = 1.0
    encoder_image_feature_dim: int = 50

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.obs_norm not in OBS_NORM:
            raise ValueError(f"obs_norm: expected one of {list(OBS_NORM)}, found '{self.obs_norm}'")
        if not 0.0 < self.clip_coef < 1.0:
            raise ValueError(f"clip_coef: expected a value in (0, 1), found {self.clip_coef}")
        if self.update_epochs < 1 or self.num_minibatches < 1:
            raise ValueError(f"update_epochs/num_minibatches: expected >= 1, found {self.update_epochs}/"
                             f"{self.num_minibatches}")
        if self.lr_decay_steps is not None and self.lr_decay_steps < 1:
            raise ValueError(f"lr_decay_steps: expected a positive step count or null, found {self.lr_decay_steps}")


def clipped_surrogate_loss(ratio: torch.Tensor, advantage: torch.Tensor, clip: float) -> torch.Tensor:
    """L_clip = -E[min(rho A, clip(rho, 1 - eps, 1 + eps) A)], the mean taken over the last (sample) axis."""
    return -torch.min(ratio * advantage, ratio.clamp(1.0 - clip, 1.0 + clip) * advantage).mean(dim=-1)


class RunningMoments(nn.Module):
    """Mean/variance/count of a stream of batches (parallel-variance merge, as gymnasium's RunningMeanStd)."""

    def __init__(self, shape: tuple[int, ...]):
        super().__init__()
        self.register_buffer("mean", torch.zeros(shape, dtype=torch.float64))
        self.register_buffer("var", torch.ones(shape, dtype=torch.float64))
        self.register_buffer("count", torch.tensor(1e-4, dtype=torch.float64))

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        x = x.reshape(-1, *self.mean.shape).double()
        n = x.shape[0]
        mean, var = x.mean(0), x.var(0, unbiased=False)
        delta = mean - self.mean
        total = self.count + n
        self.mean += delta * n / total
        self.var.copy_((self.var * self.count + var * n + delta.square() * self.count * n / total) / total)
        self.count.copy_(total)


@register
class PPO(Algorithm):
    """Clipped-surrogate PPO with GAE (see the module docstring); an on-policy rollout learner."""

    name = "ppo"
    Config = PPOConfig
    config: PPOConfig
    on_policy = True
    batch_kind = "rollout"

    def __init__(self, config: PPOConfig, spec: TaskSpec, device: torch.device | str = "cpu"):
        super().__init__(config, spec, device)
        c = config
        self.encoder = ObservationEncoder(spec, self.obs_keys, image_feature_dim=c.encoder_image_feature_dim)
        self.scaler = ActionScaler(spec.action.low, spec.action.high)
        feat = self.encoder.output_dim
        self.actor = self.build_actor(feat, spec.action_dim)
        self.critic = self.build_critic(feat)
        self.obs_moments = RunningMoments((self.encoder.norm_dim,))
        self.return_moments = RunningMoments(())
        self.to(self.device)
        self.optimizer = torch.optim.Adam([
            {"params": [*self.actor.parameters(), *self.encoder.parameters()], "lr": c.actor_lr},
            {"params": list(self.critic.parameters()), "lr": c.critic_lr},
        ], eps=c.adam_eps)
        self.base_lrs = [c.actor_lr, c.critic_lr]
        self.guard = FiniteGuard(self.name)
        self.env_steps = 0
        self._return_acc: torch.Tensor | None = None

    def build_actor(self, feature_dim: int, action_dim: int) -> nn.Module:
        """The policy head: features -> (mean, log_std) of a Gaussian over [-1, 1]-scaled actions."""
        c = self.config
        actor = GaussianActor(feature_dim, action_dim, c.hidden, tanh_mean=False, log_std_min=c.log_std_min,
                              log_std_max=c.log_std_max, act=c.activation, init="orthogonal")
        init_weight_(actor.net[-1].weight, actor.net[-1].bias, "orthogonal", c.actor_out_gain, 0.0)
        with torch.no_grad():
            actor.log_std.fill_(c.log_std_init)
        return actor

    def build_critic(self, feature_dim: int) -> nn.Module:
        """The state-value network: features -> (N, 1)."""
        c = self.config
        critic = mlp(feature_dim, c.hidden, 1, act=c.activation, init="orthogonal")
        init_weight_(critic[-1].weight, critic[-1].bias, "orthogonal", c.critic_out_gain, 0.0)
        return critic

    # ------------------------------------------------------------------------------ offline hand-off (Uni-O4)
    def load_actor(self, state: Mapping[str, torch.Tensor]) -> None:
        """Start from an offline policy head (state dict of a module built like :meth:`build_actor`)."""
        self.actor.load_state_dict(state)

    def load_critic(self, state: Mapping[str, torch.Tensor]) -> None:
        """Start from an offline state-value network (state dict of an MLP shaped like ``self.critic``)."""
        self.critic.load_state_dict(state)

    # ------------------------------------------------------------------------------ contract
    def prepare(self, data: TransitionData) -> TransitionData:
        """With ``obs_norm="dataset"``: fit the observation normaliser on the offline data, frozen from then on."""
        if self.config.obs_norm == "dataset" and self.encoder.norm_keys:
            self.encoder.normalizer.fit(self.encoder.low_dim(data.obs), math.sqrt(self.config.norm_eps))
        return data

    def transform_reward(self, reward: torch.Tensor) -> torch.Tensor:
        return reward * self.config.reward_scale

    def distribution(self, obs: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, log_std) of the policy at raw observations (unit action space)."""
        return self.actor(self.encoder(obs))

    def value(self, obs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.critic(self.encoder(obs)).squeeze(-1)

    @torch.no_grad()
    def rollout_action(self, obs: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mean, log_std = self.distribution(obs)
        eps = torch.randn_like(mean)
        unit = mean + log_std.exp() * eps
        return self.scaler.from_unit(unit), gaussian_log_prob(eps, log_std), self.value(obs)

    @torch.no_grad()
    def predict_value(self, obs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.value(obs)

    @torch.no_grad()
    def act(self, obs: Mapping[str, torch.Tensor], deterministic: bool = True) -> torch.Tensor:
        obs = {k: torch.as_tensor(obs[k], device=self.device) for k in self.obs_keys}
        mean, log_std = self.distribution(obs)
        unit = mean if deterministic else mean + log_std.exp() * torch.randn_like(mean)
        return self.scaler.from_unit(unit.clamp(-1.0, 1.0))

    def export_actor(self) -> nn.Module:
        import copy

        policy = DeterministicPolicy(copy.deepcopy(self.encoder), copy.deepcopy(self.actor), copy.deepcopy(self.scaler))
        policy.eval()
        policy.requires_grad_(False)
        return policy

    # ------------------------------------------------------------------------------ update
    def scale_rewards(self, rollout: RolloutBatch) -> torch.Tensor:
        """Rewards divided by the running std of the discounted return (per-env accumulator across rollouts)."""
        c = self.config
        if self._return_acc is None or self._return_acc.shape[0] != rollout.num_envs:
            self._return_acc = torch.zeros(rollout.num_envs, dtype=torch.float64, device=self.device)
        returns = torch.empty_like(rollout.reward, dtype=torch.float64)
        acc = self._return_acc
        for t in range(rollout.num_steps):
            acc = acc * c.gamma * (~rollout.terminal[t]).double() + rollout.reward[t].double()
            returns[t] = acc
            acc = torch.where(rollout.truncated[t], torch.zeros_like(acc), acc)
        self._return_acc = acc
        self.return_moments.update(returns)
        scaled = rollout.reward / torch.sqrt(self.return_moments.var + c.norm_eps).float()
        return scaled.clamp(-c.reward_clip, c.reward_clip)

    def losses(self, mb: RolloutBatch) -> dict[str, torch.Tensor]:
        """Clipped surrogate, clipped value loss and entropy on one minibatch."""
        c = self.config
        mean, log_std = self.distribution(mb.obs)
        unit = self.scaler.to_unit(mb.action)
        new_log_prob = gaussian_log_prob((unit - mean) * torch.exp(-log_std), log_std)
        entropy = (log_std + 0.5 + 0.5 * math.log(2 * math.pi)).sum(-1).mean()
        log_ratio = new_log_prob - mb.log_prob
        ratio = log_ratio.exp()
        adv = mb.advantage
        if c.norm_adv and adv.numel() > 1:
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        pg_loss = clipped_surrogate_loss(ratio, adv, c.clip_coef)
        v = self.value(mb.obs)
        v_loss = (v - mb.returns).square()
        if c.clip_vloss:
            v_clipped = mb.value + (v - mb.value).clamp(-c.clip_coef, c.clip_coef)
            v_loss = torch.max(v_loss, (v_clipped - mb.returns).square())
        v_loss = 0.5 * v_loss.mean()
        with torch.no_grad():
            approx_kl = ((ratio - 1) - log_ratio).mean()
            clipfrac = ((ratio - 1.0).abs() > c.clip_coef).float().mean()
        return {"loss": pg_loss - c.ent_coef * entropy + c.vf_coef * v_loss, "pg_loss": pg_loss, "v_loss": v_loss,
                "entropy": entropy, "approx_kl": approx_kl, "clipfrac": clipfrac}

    def clip_gradients(self) -> torch.Tensor:
        """Clip the gradient norm (globally, or of actor and critic separately); returns the norm before clipping."""
        c = self.config
        actor, critic = (group["params"] for group in self.optimizer.param_groups)
        if not c.clip_grad_per_network:
            return nn.utils.clip_grad_norm_([*actor, *critic], c.max_grad_norm)
        return torch.stack([nn.utils.clip_grad_norm_(actor, c.max_grad_norm),
                            nn.utils.clip_grad_norm_(critic, c.max_grad_norm)]).norm()

    def update(self, batch: RolloutBatch) -> dict[str, torch.Tensor]:
        """One PPO iteration (epochs x minibatches) on a time-major rollout; metrics are means over minibatches."""
        c = self.config
        if not isinstance(batch, RolloutBatch) or batch.reward.dim() != 2:
            raise ConfigError(f"{self.name}: expected a time-major RolloutBatch (robot_learning.data.rollout), "
                              f"found {type(batch).__name__}")
        frac = 1.0 if c.lr_decay_steps is None else max(0.0, 1.0 - self.env_steps / c.lr_decay_steps)
        for group, lr in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = lr * frac
        reward = self.scale_rewards(batch) if c.normalize_rewards else batch.reward
        flat = batch.replace(reward=reward).compute_gae(c.gamma, c.gae_lambda).flatten()
        n = len(flat)
        mb_size = max(1, n // c.num_minibatches)
        sums: dict[str, torch.Tensor] = {}
        count = 0
        for _ in range(c.update_epochs):
            order = torch.randperm(n, device=self.device)
            for start in range(0, n - mb_size + 1, mb_size):
                with self.mixed_precision():
                    out = self.losses(flat.take(order[start:start + mb_size]))
                with self.full_precision():
                    self.optimizer.zero_grad(set_to_none=True)
                    out["loss"].backward()
                    out["grad_norm"] = self.clip_gradients()
                    self.optimizer.step()
                for k, v in out.items():
                    sums[k] = sums[k] + v.detach() if k in sums else v.detach()
                count += 1
            if c.target_kl is not None and float(out["approx_kl"]) > c.target_kl:
                break
        self.env_steps += n
        self.num_updates += 1
        if c.obs_norm == "running" and self.encoder.norm_keys:
            self.obs_moments.update(self.encoder.low_dim(flat.obs))
            self.encoder.normalizer.mean.copy_(self.obs_moments.mean.float())
            self.encoder.normalizer.std.copy_(torch.sqrt(self.obs_moments.var + c.norm_eps).float())
        metrics = {k: v / count for k, v in sums.items()}
        var_y = flat.returns.var()
        metrics["explained_variance"] = 1 - (flat.returns - flat.value).var() / var_y.clamp_min(1e-8)
        metrics["lr_actor"] = torch.tensor(self.optimizer.param_groups[0]["lr"], device=self.device)
        self.guard.watch(self.num_updates, {k: metrics[k] for k in ("pg_loss", "v_loss", "grad_norm")})
        return metrics

    def check_finite(self) -> None:
        """Raise NonFiniteError if a loss or gradient norm of any update so far was NaN/inf (one device sync)."""
        self.guard.check()

    # ------------------------------------------------------------------------------ resume
    def training_state(self) -> dict[str, Any]:
        return {**super().training_state(), "optimizer": self.optimizer.state_dict(), "env_steps": self.env_steps,
                "return_acc": None if self._return_acc is None else self._return_acc.cpu(),
                "finite_guard": self.guard.state_dict()}

    def load_training_state(self, state: Mapping[str, Any]) -> None:
        super().load_training_state(state)
        self.optimizer.load_state_dict(state["optimizer"])
        self.env_steps = int(state["env_steps"])
        acc = state["return_acc"]
        self._return_acc = None if acc is None else acc.to(self.device)
        self.guard.load_state_dict(state["finite_guard"], self.device)
