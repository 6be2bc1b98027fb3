"""CQL(H) (Kumar et al., NeurIPS 2020) and Cal-QL (Nakamoto et al., NeurIPS 2023) on SAC with twin critics.

References: young-geng/CQL SimpleSAC/conservative_sac.py (CQL defaults), nakamotoo/Cal-QL
JaxCQL/conservative_sac.py, conservative_sac_main.py and replay_buffer.py (Cal-QL), shared/reference/
algorithms.md section 2. All losses are computed from the same parameters and each trains only its own
network (JAX's per-loss ``grad`` in the official code), so one backward pass serves them all:

    target:  y = r + gamma (1 - d) min_i Qbar_i(s', a*),  a* = argmax over N samples a' ~ pi(s') (max backup)
    CQL:     C_i = T logsumexp( [Q_i(s, a_unif) - log U(a) ; Q~_i(s, a' ~ pi(s')) - log pi(a'|s') ;
                                  Q~_i(s, a ~ pi(s)) - log pi(a|s)] / T ) - Q_i(s, a_data)
             with Q~ = Q for CQL and Q~ = max(Q, MC(s)) for Cal-QL (policy-sampled terms only)
    critic:  L_Q = sum_i E[(Q_i(s, a) - y)^2] + w C_i               (Lagrange: alpha' w (C_i - gap))
    actor:   L_pi = E[alpha log pi(a~|s) - min_i Q_i(s, a~)];  alpha: L = -E[log alpha (log pi + H_target)]

Every Q evaluation of the CQL term (data, uniform, current-policy and next-policy actions, both critics) is
one ensemble forward pass; the policy network runs once per state and its N samples share the output.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from robot_learning.algos.base import register
from robot_learning.algos.common import (OffPolicyAlgorithm, OffPolicyConfig, ensemble_td_loss, frozen, make_target,
                                         polyak_update_, sac_actor_loss, td_target, temperature_loss)
from robot_learning.data.tensors import Batch, TransitionData
from robot_learning.nn import QEnsemble, TanhGaussianActor
from robot_learning.spec import TaskSpec


@dataclass
class CQLConfig(OffPolicyConfig):
    """CQL defaults: young-geng/CQL SimpleSAC (ConservativeSAC.get_default_config and conservative_sac_main.py)."""

    name: str = "cql"
    # Learning rates of policy (also of log alpha) and critics (policy_lr 3e-4, qf_lr 3e-4).
    policy_lr: float = 3e-4
    qf_lr: float = 3e-4
    # Hidden sizes (policy_arch '256-256', qf_arch '256-256').
    policy_hidden: list[int] = field(default_factory=lambda: [256, 256])
    qf_hidden: list[int] = field(default_factory=lambda: [256, 256])
    # Weight init: 'cql' = orthogonal_init False, 'cql_orthogonal' = orthogonal_init True (robot_learning.nn.init).
    init: str = "cql"
    # Policy log-std = raw + offset, clipped to [min, max] (policy_log_std_offset -1; TanhGaussianPolicy clip).
    log_std_offset: float = -1.0
    log_std_min: float = -20.0
    log_std_max: float = 2.0
    # Automatic entropy tuning, alpha = alpha_multiplier * exp(log alpha), log alpha initialised at 0.
    auto_alpha: bool = True
    alpha_multiplier: float = 1.0
    # Target entropy; None = -|A| (conservative_sac_main.py: target_entropy >= 0 -> -prod(action shape)).
    target_entropy: float | None = None
    # Subtract alpha log pi(a'|s') in the target (backup_entropy False).
    backup_entropy: bool = False
    # Sampled actions per state for the CQL term and the max backup (cql_n_actions 10).
    n_actions: int = 10
    # Importance-sampled logsumexp (cql_importance_sample True) at temperature T (cql_temp 1.0).
    importance_sample: bool = True
    cql_temp: float = 1.0
    # Weight w of the conservative term (cql_min_q_weight 5.0).
    min_q_weight: float = 5.0
    # Target = max over n_actions next-state samples of the min target Q (cql_max_target_backup False).
    max_target_backup: bool = False
    # Clip of the per-sample gap C_i; None = unclipped (cql_clip_diff_min/max = -inf/inf; CORL AntMaze -200).
    clip_diff_min: float | None = None
    clip_diff_max: float | None = None
    # Lagrange dual on the gap (cql_lagrange False, cql_target_action_gap 1.0; log alpha' starts at 1.0).
    lagrange: bool = False
    target_action_gap: float = 1.0
    log_alpha_prime_init: float = 1.0
    # Clip of alpha' = exp(log alpha') (conservative_sac.py: [0, 1e6]).
    alpha_prime_max: float = 1e6

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n_actions < 1:
            raise ValueError(f"n_actions: expected >= 1, found {self.n_actions}")
        if self.cql_temp <= 0:
            raise ValueError(f"cql_temp: expected > 0, found {self.cql_temp}")


@dataclass
class CalQLConfig(CQLConfig):
    """Cal-QL defaults: nakamotoo/Cal-QL conservative_sac.py get_default_config and conservative_sac_main.py."""

    name: str = "calql"
    # policy_lr 1e-4 (ConservativeSAC default in the Cal-QL repo); qf_lr stays 3e-4.
    policy_lr: float = 1e-4
    # orthogonal_init=True (conservative_sac_main.py FLAGS).
    init: str = "cql_orthogonal"
    # cql_max_target_backup True in the Cal-QL repo.
    max_target_backup: bool = True
    # Raw (untransformed) reward of a failed step in a sparse task, or None for dense tasks: an episode whose
    # every reward is this gets MC = r_neg / (1 - gamma) (replay_buffer.calc_return_to_go; AntMaze 0.0,
    # binary Adroit -1.0, ENV_CONFIG).
    sparse_failure_reward: float | None = None


def calibrate(q_pi: torch.Tensor, mc_return: torch.Tensor) -> torch.Tensor:
    """Cal-QL's calibrated value Q~(s, a) = max(Q(s, a), MC(s)) for q_pi (E, B, N) and mc_return (B,)."""
    return torch.maximum(q_pi, mc_return[None, :, None])


def cql_gap(q_data: torch.Tensor, q_rand: torch.Tensor, q_next: torch.Tensor, q_cur: torch.Tensor,
            next_log_pi: torch.Tensor, cur_log_pi: torch.Tensor, action_dim: int, temp: float,
            importance_sample: bool) -> torch.Tensor:
    """Per-sample CQL(H) gap C_i(s) = T logsumexp(cat / T) - Q_i(s, a_data), (E, B).

    With importance sampling ``cat`` = [Q(s, a_unif) - log U ; Q(s, a'~pi(s')) - log pi(a'|s') ;
    Q(s, a~pi(s)) - log pi(a|s)] where U = 0.5^|A| is the uniform density on [-1, 1]^|A|; without it,
    cat = [Q(s, a_unif) ; Q(s, a_data) ; Q(s, a') ; Q(s, a)]. q_* are (E, B, N), log pi (B, N).
    """
    if importance_sample:
        log_uniform = action_dim * math.log(0.5)
        cat = torch.cat([q_rand - log_uniform, q_next - next_log_pi, q_cur - cur_log_pi], dim=-1)
    else:
        cat = torch.cat([q_rand, q_data.unsqueeze(-1), q_next, q_cur], dim=-1)
    return temp * torch.logsumexp(cat / temp, dim=-1) - q_data


def sparse_mc_returns(data: TransitionData, gamma: float, failure_reward: float | None) -> torch.Tensor:
    """Discounted return-to-go of every row of ``data`` (rewards already transformed).

    With ``failure_reward`` (transformed units) an episode whose every reward equals it gets
    r_neg / (1 - gamma) at every step: the value of failing forever, not of failing for the episode's length.
    """
    mc = data.compute_mc_returns(gamma)
    if failure_reward is not None:
        other = torch.zeros(data.n_episodes, device=data.device)
        not_failure = ~torch.isclose(data.reward, torch.full_like(data.reward, failure_reward))
        other.index_add_(0, data.episode_id, not_failure.float())
        mc = torch.where((other == 0)[data.episode_id], torch.full_like(mc, failure_reward / (1.0 - gamma)), mc)
    data.mc_return = mc
    return mc


@register
class CQL(OffPolicyAlgorithm):
    """Conservative Q-Learning, CQL(H) with SAC (see the module docstring)."""

    name = "cql"
    Config = CQLConfig
    config: CQLConfig
    #: Cal-QL's calibration of the policy-sampled terms.
    calibrated = False

    def __init__(self, config: CQLConfig, spec: TaskSpec, device: torch.device | str = "cpu"):
        super().__init__(config, spec, device)
        c = config
        feat, act_dim = self.encoder.output_dim, spec.action_dim
        self.action_dim = act_dim
        self.critic = QEnsemble(feat, act_dim, c.qf_hidden, 2, init=c.init)
        self.actor_encoder = self.sibling_encoder()
        self.actor = TanhGaussianActor(feat, act_dim, c.policy_hidden, log_std_min=c.log_std_min,
                                       log_std_max=c.log_std_max, log_std_offset=c.log_std_offset, init=c.init)
        self.target_encoder = make_target(self.encoder, self.encoder.normalizer)
        self.target_critic = make_target(self.critic)
        self.log_alpha = nn.Parameter(torch.zeros(()), requires_grad=c.auto_alpha)
        self.log_alpha_prime = nn.Parameter(torch.tensor(c.log_alpha_prime_init), requires_grad=c.lagrange)
        self.target_entropy = float(-act_dim if c.target_entropy is None else c.target_entropy)
        self.to(self.device)
        actor_params = [*self.actor.parameters(), *self.encoder_head_parameters(self.actor_encoder)]
        self.add_optimizer("actor", actor_params, c.policy_lr)
        self.add_optimizer("critic", [*self.critic.parameters(), *self.encoder.parameters()], c.qf_lr)
        if c.auto_alpha:
            self.add_optimizer("alpha", [self.log_alpha], c.policy_lr)
        if c.lagrange:
            self.add_optimizer("alpha_prime", [self.log_alpha_prime], c.qf_lr)
        self._online = [*self.critic.parameters(), *self.encoder.parameters()]
        self._target = [*self.target_critic.parameters(), *self.target_encoder.parameters()]
        self._losses = self.maybe_compile(self.losses)

    # ------------------------------------------------------------------------------ losses
    def alpha(self) -> torch.Tensor:
        return self.config.alpha_multiplier * self.log_alpha.exp().detach()

    def target_values(self, batch: Batch, next_actions: torch.Tensor, next_log_pi: torch.Tensor) -> torch.Tensor:
        """y = r + gamma (1 - d) max_j min_i Qbar_i(s', a'_j) over the samples a'_j ~ pi(s') given, (B, M, A)."""
        c = self.config
        q = self.target_critic.multi(self.target_encoder(batch.next_obs), next_actions)
        q_next, best = q.min(dim=0).values.max(dim=1)
        if c.backup_entropy:
            q_next = q_next - self.alpha() * next_log_pi.gather(1, best.unsqueeze(1)).squeeze(1)
        return td_target(batch.reward, batch.done, c.gamma, q_next)

    def losses(self, batch: Batch, action: torch.Tensor) -> dict[str, torch.Tensor]:
        """Critic, actor, temperature (and Lagrange) losses from the same parameters, plus metrics."""
        c = self.config
        n = c.n_actions
        with torch.no_grad():
            # policy at s': n samples for the CQL term, then n (max backup) or 1 for the target
            samples, log_pi_next = self.actor.sample(self.actor_encoder(batch.next_obs),
                                                     num_samples=n + (n if c.max_target_backup else 1))
            next_actions, next_log_pi = samples[:, :n], log_pi_next[:, :n]
            target = self.target_values(batch, samples[:, n:], log_pi_next[:, n:])

        # policy at s: sample 0 for the actor loss (with gradient), samples 1..n for the CQL term (detached)
        pi_actions, pi_log_pi = self.actor.sample(self.actor_encoder(batch.obs), num_samples=n + 1)
        new_action, log_pi = pi_actions[:, 0], pi_log_pi[:, 0]
        cur_actions, cur_log_pi = pi_actions[:, 1:].detach(), pi_log_pi[:, 1:].detach()
        rand_actions = torch.empty_like(cur_actions).uniform_(-1.0, 1.0)

        # one ensemble pass for both critics: [data | uniform | current policy | next policy] actions, all at s
        features = self.encoder(batch.obs)
        all_actions = torch.cat([action.unsqueeze(1), rand_actions, cur_actions, next_actions], dim=1)
        q_all = self.critic.multi(features, all_actions)
        q_data = q_all[..., 0]
        q_rand, q_cur, q_next = q_all[..., 1:1 + n], q_all[..., 1 + n:1 + 2 * n], q_all[..., 1 + 2 * n:]
        metrics: dict[str, torch.Tensor] = {}
        if self.calibrated:
            if batch.mc_return is None:
                raise ValueError(f"{self.name}: expected batch.mc_return (Monte-Carlo returns, computed by prepare() "
                                 "and for online episodes with compute_mc_returns()), found None")
            metrics["bound_rate"] = (q_cur < batch.mc_return[None, :, None]).float().mean()
            q_cur, q_next = calibrate(q_cur, batch.mc_return), calibrate(q_next, batch.mc_return)
        gap = cql_gap(q_data, q_rand, q_next, q_cur, next_log_pi, cur_log_pi, self.action_dim, c.cql_temp,
                      c.importance_sample)
        if c.clip_diff_min is not None or c.clip_diff_max is not None:
            gap = gap.clamp(c.clip_diff_min, c.clip_diff_max)
        gap = gap.mean(dim=1)
        out: dict[str, torch.Tensor] = {"critic_loss": ensemble_td_loss(q_data, target)}
        if c.lagrange:
            alpha_prime = self.log_alpha_prime.exp().clamp(0.0, c.alpha_prime_max)
            out["critic_loss"] = out["critic_loss"] + (alpha_prime.detach() * c.min_q_weight
                                                       * (gap - c.target_action_gap)).sum()
            out["alpha_prime_loss"] = -0.5 * (alpha_prime * c.min_q_weight * (gap.detach() - c.target_action_gap)).sum()
            metrics["alpha_prime"] = alpha_prime
        else:
            out["critic_loss"] = out["critic_loss"] + c.min_q_weight * gap.sum()

        q_pi = frozen(self.critic, features.detach(), new_action).min(dim=0).values
        out["actor_loss"] = sac_actor_loss(self.alpha(), log_pi, q_pi)
        if c.auto_alpha:
            out["alpha_loss"] = temperature_loss(self.log_alpha, log_pi, self.target_entropy)
        metrics |= {"cql_gap": gap.mean(), "q_data": q_data.mean(), "q_rand": q_rand.mean(), "target": target.mean(),
                    "alpha": self.alpha(), "entropy": -log_pi.detach().mean()}
        return out | metrics

    # ------------------------------------------------------------------------------ update
    def _update(self, batch: Batch) -> dict[str, torch.Tensor]:
        out = self._losses(batch, self.unit_action(batch))
        losses = {k: out.pop(k) for k in ("critic_loss", "actor_loss", "alpha_loss", "alpha_prime_loss") if k in out}
        norms = self.backward_step(sum(losses.values()), *self.optimizers)
        polyak_update_(self._target, self._online, self.config.tau)
        return self.finish_update(losses, norms, out)


@register
class CalQL(CQL):
    """Calibrated Q-Learning: CQL whose policy-sampled Q-values are bounded below by MC returns."""

    name = "calql"
    Config = CalQLConfig
    config: CalQLConfig
    calibrated = True

    def prepare(self, data: TransitionData) -> TransitionData:
        """Normaliser and reward transform (base class), then MC returns on the transformed rewards."""
        data = super().prepare(data)
        self.compute_mc_returns(data)
        return data

    def compute_mc_returns(self, data: TransitionData) -> torch.Tensor:
        """MC returns of ``data`` (rewards already transformed), cached as ``data.mc_return``.

        The runtime calls this on online episodes too (the official code computes MC returns for them).
        """
        failure = self.config.sparse_failure_reward
        if failure is not None:
            failure = float(self.transform_reward(torch.tensor(failure, device=self.device)))
        return sparse_mc_returns(data, self.config.gamma, failure)
