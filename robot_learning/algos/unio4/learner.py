"""Uni-O4: Unifying Online and Offline Deep RL with Multi-Step On-Policy Optimization (Lei et al., ICLR 2024).

References: Lei-Kun/Uni-O4 main.py, critic.py (IQL_Q_V), BC_ensemble.py, abppo.py, ppo.py, dynamics_eval.py,
ppo_finetune/{main,ppo,net}.py, and shared/reference/algorithms.md section 3. One on-policy objective in
both phases. The offline phase is a schedule of stages on the dataset, one gradient step per runtime update
(``offline_length()`` is their sum):

    1. critic    (critic_steps)   IQL-style, on the data:
                 L_V = E[ L2^omega( min_i Qbar_i(s, a) - V(s) ) ]
                 L_Q = sum_i E[(r + gamma (1 - d) V(s') - Q_i(s, a))^2]
                 Qbar <- (1 - tau) Qbar + tau Q every ``target_update_every`` updates
    2. dynamics  (dynamics_steps) the OPE model ensemble (dynamics.py): Gaussian NLL on a bootstrap of the
                 training split; every epoch each member keeps its best holdout weights; elites at the end
    3. BC        (bc_steps)       K policies jointly (with bc_filter_positive_return: on the rows with G_t > 0),
                 L = sum_i E[-log pi_i(a|s) - alpha (log pi_i(a|s) - max_{j!=i} log pi_j(a|s))]
    4. BPPO      (bppo_steps)     pi_k^old <- pi_k <- BC_k; per update a_k ~ pi_k^old(s), s ~ D,
                 A_k = normalise_k(min_i Q_i(s, a_k) - V(s)),  L = sum_k -E[min(rho_k A_k, clip(rho_k) A_k)];
                 every ``eval_step`` updates OPE_k = mean Q over model rollouts of pi_k, and the gate
                 accepts (pi_k^old <- pi_k, best_k <- OPE_k) iff OPE_k > best_k

Hand-off (``begin_phase("online")``): the online PPO actor starts as one member pi_k (its last parameters, as
the official ``last/pi_k.pt``), chosen by the last OPE score (``handoff="ope"``, purely offline, the default)
or, as the official code does, by the online return of the top-3 OPE members (``handoff="online_top3"``:
the runtime scores ``online_candidates()`` in the environment first; algorithms.md 3.1.5). The online critic
*is* the offline V (the same network), and the observation normaliser fitted on the dataset stays frozen.
Online: :class:`~robot_learning.algos.ppo.PPO` unchanged, with Uni-O4's settings (clip 0.05 for ratio and
value, lr 2e-5 / 2e-4, 30 epochs of 128-sample minibatches, entropy 0.01, no reward scaling) and no
conservatism: the offline data is not used online.

Deviations from the official code (docs/algorithms/unio4.md lists them with reasons): the K members are
trained as one batched network (one Adam over the ensemble is K Adams, the BC "others" term uses the
others' pre-update log-likelihoods instead of the sequential, shuffled order); the dynamics stage has a
fixed number of steps instead of stopping after 5 epochs without improvement (the kept weights are the best
holdout weights either way); termination is learned, not hand-written; advantages are normalised per PPO
minibatch online.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from robot_learning.algos.base import register
from robot_learning.algos.common import (
    backward_step,
    check_choice,
    ensemble_td_loss,
    make_adam,
    make_target,
    polyak_update_,
    td_target,
)
from robot_learning.algos.iql import expectile_loss
from robot_learning.algos.ppo import PPO, PPOConfig
from robot_learning.algos.unio4.dynamics import (
    DynamicsEnsemble,
    gaussian_nll,
    holdout_mse,
    rollout_q_scores,
    termination_loss,
)
from robot_learning.algos.unio4.policies import (
    EnsembleMeanActor,
    GaussianPolicy,
    GaussianPolicyEnsemble,
    bppo_loss,
    clip_grad_norm_per_member_,
    ensemble_bc_loss,
    normalized_advantage,
    ope_gate,
    replace_members_,
)
from robot_learning.config import ConfigError
from robot_learning.data.rollout import RolloutBatch
from robot_learning.data.tensors import Batch, TransitionData
from robot_learning.nn import DeterministicPolicy, QEnsemble, mlp
from robot_learning.nn.actors import gaussian_log_prob
from robot_learning.spec import TaskSpec

#: How the online actor is chosen among the K offline policies (see the module docstring).
HANDOFFS = ("ope", "online_top3")
#: The offline stages, in order.
STAGES = ("critic", "dynamics", "bc", "bppo")


@dataclass
class UniO4Config(PPOConfig):
    """Uni-O4 defaults: Lei-Kun/Uni-O4 main.py argparse and scripts/mujoco_loco/*.sh (offline; the MuJoCo
    scripts pass --is_state_norm True --is_iql True), configs/gym/default.py (dynamics model), and
    ppo_finetune/main.py (online). The PPO fields keep their meaning online; actor_out_gain, critic_out_gain
    and log_std_init do not apply (the online networks are the offline ones)."""

    name: str = "unio4"
    # Batch of the critic, BC and BPPO updates (q_batch_size, v_batch_size, bc_batch_size, bppo_batch_size 512).
    batch_size: int = 512
    # Reward transform r * reward_scale + reward_bias, offline and online (none on MuJoCo; AntMaze 10 r - 5 in
    # buffer.py load_dataset).
    reward_scale: float = 1.0
    reward_bias: float = 0.0
    # Dataset state normalisation, frozen online (is_state_norm True; ppo_finetune Normalization(update=False)).
    obs_norm: str = "dataset"
    # Added to the std when fitting the normaliser (CORL compute_mean_std eps; the Uni-O4 buffer's is unverified).
    obs_norm_eps: float = 1e-3

    # ---- 1. critic (critic.py IQL_Q_V)
    # Updates of the IQL critic (v_steps 2e6; Q and V are updated together).
    critic_steps: int = 2_000_000
    # Expectile omega of the V loss (omega 0.7; AntMaze scripts 0.9).
    expectile: float = 0.7
    # Double-Q hidden sizes (q_hidden_dim 1024, q_depth 2; AntMaze 256 x 3) and V hidden sizes (v_hidden_dim 512,
    # v_depth 3; AntMaze 256 x 3): ReLU MLPs with PyTorch's default init (net.py MLP). V is also the online critic.
    q_hidden: list[int] = field(default_factory=lambda: [1024, 1024])
    value_hidden: list[int] = field(default_factory=lambda: [512, 512, 512])
    # Learning rates of Q and V (q_lr 1e-4, v_lr 1e-4).
    q_lr: float = 1e-4
    value_lr: float = 1e-4
    # Polyak rate of the target Q and its period in updates (tau 0.005, target_update_freq 2).
    tau: float = 0.005
    target_update_every: int = 2

    # ---- 2. dynamics model for OPE (configs/gym/default.py, dynamics/ensemble_dynamics.py train())
    # Gradient steps of the model (the official trains until 5 epochs pass without a 1% holdout improvement,
    # no step cap: ~50 epochs of a 1M-transition dataset at batch 256 is 200k steps).
    dynamics_steps: int = 200_000
    # Members, elites, hidden sizes, learning rate, per-layer weight decay (n_ensemble 7, n_elites 5,
    # dynamics_hidden_dims 4 x 200, dynamics_lr 1e-3, dynamics_weight_decay).
    dynamics_ensemble: int = 7
    dynamics_elites: int = 5
    dynamics_hidden: list[int] = field(default_factory=lambda: [200, 200, 200, 200])
    dynamics_lr: float = 1e-3
    dynamics_weight_decay: list[float] = field(default_factory=lambda: [2.5e-5, 5e-5, 7.5e-5, 7.5e-5, 1e-4])
    # Batch size, held-out fraction and its cap, log-variance bound coefficient, relative improvement that
    # counts (train(): batch_size 256, holdout_ratio 0.2, min(., 1000), logvar_loss_coef 0.01, 0.01).
    dynamics_batch_size: int = 256
    dynamics_holdout_ratio: float = 0.2
    dynamics_max_holdout: int = 1000
    dynamics_logvar_coef: float = 0.01
    dynamics_improvement: float = 0.01
    # Seed of the train/holdout split (the official draws it from the global generator).
    dynamics_split_seed: int = 0

    # ---- 3. ensemble BC (BC_ensemble.py)
    # Number of policies K (num_policies 4) and BC updates (bc_steps 4e5).
    num_policies: int = 4
    bc_steps: int = 400_000
    # Policy hidden sizes and activation, shared by BC, BPPO and online PPO (bc_hidden_dim 256 or 512 in the
    # scripts, bc_depth 3; pi_activation_f relu, tanh for halfcheetah-medium).
    hidden: list[int] = field(default_factory=lambda: [256, 256, 256])
    activation: str = "relu"
    # log sigma range of the policies: -5 + 2.5 (tanh + 1) (GaussPolicyMLP soft_clamp bounds (-5, 0)).
    log_std_min: float = -5.0
    log_std_max: float = 0.0
    # Weight init of the policies (orthogonal_initWeights: gain 1).
    policy_init: str = "orthogonal_unit"
    # BC learning rate (bc_lr 1e-4) and diversity weight alpha_bc (0.1; AntMaze scripts sweep {0, 0.1}).
    bc_lr: float = 1e-4
    alpha_bc: float = 0.1
    # Clone only the transitions with a positive discounted return-to-go of the raw reward, i.e. those on the
    # way to a success (is_filter_bc, buffer.py load_filter_dataset; off by default, set by the AntMaze scripts).
    bc_filter_positive_return: bool = False

    # ---- 4. multi-step BPPO with the OPE gate (abppo.py, main.py)
    # BPPO updates (bppo_steps 1e4) and learning rate, decayed linearly to 0 over them (bppo_lr 1e-4,
    # is_linear_decay True; AntMaze 1e-5..5e-5).
    bppo_steps: int = 10_000
    bppo_lr: float = 1e-4
    # Clip ratio eps, decayed linearly over bppo_steps but only for the first clip_decay_steps updates
    # (clip_ratio 0.25; is_clip_decay switched off after step 200: eps stays ~0.245).
    clip_ratio: float = 0.25
    clip_decay_steps: int = 200
    # Per-policy gradient-norm clip (clip_grad_norm_(policy, 0.5)).
    bppo_grad_clip: float = 0.5
    # OPE every eval_step BPPO updates (eval_step 100), from ope_batch_size dataset states per policy
    # (rollout_batch_size 512), rollout_steps long (rollout_step 1000; AntMaze 50-200; README: shorten it
    # if the OPE q mean explodes).
    eval_step: int = 100
    ope_batch_size: int = 512
    ope_rollout_steps: int = 1000

    # ---- hand-off
    # "ope": the member with the best last OPE score (purely offline); "online_top3": the best online return
    # among the top_k OPE members (ppo_finetune/ppo.py load_pi_value, evaluate_budget 3).
    handoff: str = "ope"
    handoff_top_k: int = 3

    # ---- 5. online PPO (ppo_finetune/main.py)
    # Learning rates of actor and critic (lr_a 2e-5; lr_c 2e-4), decayed linearly over max_train_steps (1e6).
    actor_lr: float = 2e-5
    critic_lr: float = 2e-4
    lr_decay_steps: int | None = 1_000_000
    # K_epochs 30 over batch_size 2048 in minibatches of 128 (16 per epoch with online.rollout_steps=2048).
    update_epochs: int = 30
    num_minibatches: int = 16
    # Clip epsilon of ratio and value (epsilon 0.05, is_clip_value True); entropy_coef 0.01.
    clip_coef: float = 0.05
    ent_coef: float = 0.01
    # The critic loss is mean(max(...)) with its own optimiser: 2 x PPO's 0.5 factor.
    vf_coef: float = 2.0
    # Actor and critic have separate optimisers, each gradient clipped to 0.5 (use_grad_clip).
    clip_grad_per_network: bool = True
    # No reward scaling (scale_strategy None: the offline V is loaded as is).
    normalize_rewards: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("handoff", self.handoff, HANDOFFS)
        if self.obs_norm != "dataset":
            raise ValueError(f"obs_norm: Uni-O4 freezes the dataset normalisation online, expected 'dataset', "
                             f"found '{self.obs_norm}'")
        if self.num_policies < 1 or (self.alpha_bc > 0 and self.num_policies < 2):
            raise ValueError(f"num_policies: expected >= 2 with alpha_bc > 0 (>= 1 otherwise), found "
                             f"{self.num_policies}")
        if not 1 <= self.dynamics_elites <= self.dynamics_ensemble:
            raise ValueError(f"dynamics_elites: expected 1..dynamics_ensemble ({self.dynamics_ensemble}), found "
                             f"{self.dynamics_elites}")
        if len(self.dynamics_weight_decay) != len(self.dynamics_hidden) + 1:
            raise ValueError(f"dynamics_weight_decay: expected one value per layer "
                             f"({len(self.dynamics_hidden) + 1}), found {len(self.dynamics_weight_decay)}")
        for name in ("critic_steps", "dynamics_steps", "bc_steps", "bppo_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: expected a non-negative number of updates, found {getattr(self, name)}")
        for name in ("eval_step", "target_update_every", "handoff_top_k", "ope_rollout_steps", "ope_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected >= 1, found {getattr(self, name)}")
        if not 0.0 < self.dynamics_holdout_ratio < 1.0:
            raise ValueError(f"dynamics_holdout_ratio: expected a fraction in (0, 1), found "
                             f"{self.dynamics_holdout_ratio}")


def positive_return_rows(data: TransitionData, gamma: float) -> torch.Tensor:
    """Transition rows whose discounted return-to-go G_t = sum_k gamma^k r_{t+k} (raw reward, within the episode)
    is positive: on sparse goal data, the steps of episodes that reach the goal, up to the success (is_filter_bc)."""
    rows = data.valid[data.discounted_returns(gamma)[data.valid] > 0]
    if len(rows) == 0:
        raise ConfigError(f"algo.bc_filter_positive_return: expected transitions with a positive return-to-go in "
                          f"{data.source}, found none (no reward > 0); the BC stage would have no data")
    return rows


@register
class UniO4(PPO):
    """Uni-O4 (see the module docstring): offline stages on transitions, then PPO on rollouts."""

    name = "unio4"
    Config = UniO4Config
    config: UniO4Config
    on_policy = True
    batch_kind = "transition"
    #: The OPE dynamics model predicts the next low-dimensional observation; there is no image model.
    supports_images = False

    def __init__(self, config: UniO4Config, spec: TaskSpec, device: torch.device | str = "cpu"):
        super().__init__(config, spec, device)
        c = config
        feat, act_dim = self.encoder.output_dim, spec.action_dim
        self.q = QEnsemble(feat, act_dim, c.q_hidden, 2)
        self.target_q = make_target(self.q)
        self.policies = GaussianPolicyEnsemble(feat, act_dim, c.hidden, c.num_policies, act=c.activation,
                                               log_std_min=c.log_std_min, log_std_max=c.log_std_max,
                                               init=c.policy_init)
        self.old_policies = make_target(self.policies)
        self.dynamics = DynamicsEnsemble(feat, act_dim, c.dynamics_hidden, c.dynamics_ensemble, c.dynamics_elites,
                                         c.dynamics_weight_decay)
        self.register_buffer("ope_best", torch.full((c.num_policies,), -math.inf))
        self.register_buffer("ope_last", torch.full((c.num_policies,), -math.inf))
        self.register_buffer("ope_accepted", torch.zeros(c.num_policies, dtype=torch.long))
        self.register_buffer("selected", torch.zeros((), dtype=torch.long))
        self.register_buffer("handed_off", torch.zeros((), dtype=torch.bool))
        self.to(self.device)
        dynamics_params = [*self.dynamics.layers.parameters(), self.dynamics.max_logvar, self.dynamics.min_logvar]
        self.offline_params: dict[str, list[nn.Parameter]] = {
            "value": list(self.critic.parameters()), "q": list(self.q.parameters()),
            "bc": list(self.policies.parameters()), "bppo": list(self.policies.parameters()),
            "dynamics": dynamics_params}
        lrs = {"value": c.value_lr, "q": c.q_lr, "bc": c.bc_lr, "bppo": c.bppo_lr, "dynamics": c.dynamics_lr}
        self.offline_optimizers = {name: make_adam(params, lrs[name]) for name, params in self.offline_params.items()}
        self.offline_updates = 0
        self._data: TransitionData | None = None
        self._bc_rows: torch.Tensor | None = None
        self._candidates: list[int] = []

    # ------------------------------------------------------------------------------ networks (PPO hooks)
    def build_actor(self, feature_dim: int, action_dim: int) -> nn.Module:
        """The online actor: one member of the policy ensemble."""
        c = self.config
        return GaussianPolicy(feature_dim, action_dim, c.hidden, act=c.activation, log_std_min=c.log_std_min,
                              log_std_max=c.log_std_max, init=c.policy_init)

    def build_critic(self, feature_dim: int) -> nn.Module:
        """The offline IQL V, which is also the online critic (net.py ValueMLP: ReLU, PyTorch default init)."""
        return mlp(feature_dim, self.config.value_hidden, 1, act="relu")

    # ------------------------------------------------------------------------------ schedule
    def stage_lengths(self) -> dict[str, int]:
        """Updates of each offline stage, in order."""
        return {stage: getattr(self.config, f"{stage}_steps") for stage in STAGES}

    def offline_length(self) -> int:
        return sum(self.stage_lengths().values())

    def stage_of(self, update: int) -> tuple[str, int]:
        """(stage, index within the stage) of the 0-based offline update ``update``."""
        start = 0
        for stage, length in self.stage_lengths().items():
            if update < start + length:
                return stage, update - start
            start += length
        raise ConfigError(f"{self.name}: offline update {update + 1} is past the schedule of {self.offline_length()} "
                          "updates (critic_steps + dynamics_steps + bc_steps + bppo_steps)")

    # ------------------------------------------------------------------------------ data
    def prepare(self, data: TransitionData) -> TransitionData:
        """Fit the normaliser and the dynamics split and scaler (fresh learners only: frozen once trained); pick the
        BC stage's rows when it clones successes only."""
        c = self.config
        if c.bc_filter_positive_return:
            self._bc_rows = positive_return_rows(data, c.gamma)
        data = data.with_reward(self.transform_reward(data.reward))
        if self.offline_updates == 0 and not bool(self.handed_off):
            self.encoder.normalizer.fit(self.encoder.low_dim(data.obs), c.obs_norm_eps)
        gen = torch.Generator().manual_seed(c.dynamics_split_seed)
        rows = data.valid[torch.randperm(data.n_transitions, generator=gen).to(data.device)]
        holdout = min(int(len(rows) * c.dynamics_holdout_ratio), c.dynamics_max_holdout)
        self._holdout_rows, self._train_rows = rows[:holdout], rows[holdout:]
        self._epoch_steps = math.ceil(len(self._train_rows) / c.dynamics_batch_size)
        if self.offline_updates == 0:
            train = data.transitions(self._train_rows)
            self.dynamics.fit_scaler(self.encoder(train.obs), self.scaler.to_unit(train.action))
        self._data = data
        return data

    def transform_reward(self, reward: torch.Tensor) -> torch.Tensor:
        return reward * self.config.reward_scale + self.config.reward_bias

    def dataset(self) -> TransitionData:
        if self._data is None:
            raise ConfigError(f"{self.name}: the dynamics and OPE stages read the dataset; call prepare(data) first")
        return self._data

    def dynamics_targets(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Model inputs (features, unit action) -> target (s' - s, r), and the terminal flag."""
        obs, next_obs = self.encoder(batch.obs), self.encoder(batch.next_obs)
        target = torch.cat([next_obs - obs, batch.reward.unsqueeze(-1)], dim=-1)
        return obs, self.scaler.to_unit(batch.action), target

    # ------------------------------------------------------------------------------ offline stages
    def critic_update(self, batch: Batch, step: int) -> dict[str, torch.Tensor]:
        """IQL: V by expectile regression on min target Q, then Q by TD on the new V (critic.py IQL_Q_V.update)."""
        c = self.config
        obs, action = self.encoder(batch.obs), self.scaler.to_unit(batch.action)
        with torch.no_grad():
            q_target = self.target_q(obs, action).min(dim=0).values
        v = self.critic(obs).squeeze(-1)
        value_loss = expectile_loss(q_target - v, c.expectile)
        norms = self.offline_step(value_loss, "value")
        with torch.no_grad():
            v_next = self.critic(self.encoder(batch.next_obs)).squeeze(-1)
            target = td_target(batch.reward, batch.done, c.gamma, v_next)
        q = self.q(obs, action)
        q_loss = ensemble_td_loss(q, target)
        norms |= self.offline_step(q_loss, "q")
        if (step + 1) % c.target_update_every == 0:
            polyak_update_(list(self.target_q.parameters()), list(self.q.parameters()), c.tau)
        return {"value_loss": value_loss, "q_loss": q_loss, **norms, "q_mean": q.mean(), "v_mean": v.mean()}

    def dynamics_update(self, step: int) -> dict[str, torch.Tensor]:
        """One step of every member on its own bootstrap batch of the training split (not the runtime's batch:
        the held-out rows must stay unseen); holdout check at each epoch's end."""
        c, data = self.config, self.dataset()
        rows = self._train_rows[torch.randint(len(self._train_rows), (c.dynamics_ensemble, c.dynamics_batch_size),
                                              device=data.device)]
        obs, action, target = self.dynamics_targets(data.transitions(rows.flatten()))
        terminal = data.terminal[rows].float()
        shape = (c.dynamics_ensemble, c.dynamics_batch_size, -1)
        mean, logvar, logit = self.dynamics(obs.view(shape), action.view(shape))
        nll = gaussian_nll(mean, logvar, target.view(shape))
        loss = nll.sum() + termination_loss(logit, terminal).sum() + self.dynamics.regularizer(c.dynamics_logvar_coef)
        norms = self.offline_step(loss, "dynamics")
        if (step + 1) % self._epoch_steps == 0 or step + 1 == c.dynamics_steps:
            with torch.no_grad():
                obs, action, target = self.dynamics_targets(data.transitions(self._holdout_rows))
                self.dynamics.keep_improved_(holdout_mse(self.dynamics(obs, action)[0], target),
                                             c.dynamics_improvement)
        if step + 1 == c.dynamics_steps:
            self.dynamics.finish_training_()
        return {"dynamics_loss": loss, **norms, "dynamics_nll": nll.mean(),
                "dynamics_best_holdout": self.dynamics.best_holdout.min()}

    def bc_batch(self, batch: Batch) -> Batch:
        """The BC stage's batch: the runtime's, or with ``bc_filter_positive_return`` one of the same size drawn
        from the transitions on the way to a success."""
        if self._bc_rows is None:
            return batch
        pick = torch.randint(len(self._bc_rows), (len(batch),), device=self._bc_rows.device)
        return self.dataset().transitions(self._bc_rows[pick])

    def bc_update(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Joint ensemble behaviour cloning with the diversity term."""
        batch = self.bc_batch(batch)
        log_prob = self.policies.log_prob(self.encoder(batch.obs), self.scaler.to_unit(batch.action))
        loss = ensemble_bc_loss(log_prob, self.config.alpha_bc)
        return {"bc_loss": loss, **self.offline_step(loss, "bc"), "bc_log_prob": log_prob.mean()}

    def bppo_update(self, batch: Batch, step: int) -> dict[str, torch.Tensor]:
        """One multi-step BPPO update of all K policies, then (every eval_step updates) the OPE gate."""
        c = self.config
        if step == 0:
            self.start_bppo()
        frac = max(step - 1, 0) / c.bppo_steps
        for group in self.offline_optimizers["bppo"].param_groups:
            group["lr"] = c.bppo_lr * (1.0 - frac)
        clip = c.clip_ratio * (1.0 - min(step, c.clip_decay_steps) / c.bppo_steps)
        obs = self.encoder(batch.obs)
        with torch.no_grad():
            mean, log_std = self.old_policies(obs)
            noise = torch.randn_like(mean)
            action = mean + log_std.exp() * noise
            old_log_prob = gaussian_log_prob(noise, log_std)
            advantage = normalized_advantage(self.min_q(obs.repeat(c.num_policies, 1), action.flatten(0, 1))
                                             .view(c.num_policies, -1), self.critic(obs).squeeze(-1))
        loss = bppo_loss(self.policies.log_prob(obs, action), old_log_prob, advantage, clip)
        optimizer = self.offline_optimizers["bppo"]
        with self.full_precision():
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            norms = clip_grad_norm_per_member_(self.offline_params["bppo"], c.bppo_grad_clip)
            optimizer.step()
        if (step + 1) % c.eval_step == 0 or step + 1 == c.bppo_steps:
            self.gate()
        return {"bppo_loss": loss, "bppo_grad_norm": norms.norm(), "bppo_clip": torch.tensor(clip, device=self.device),
                "ope_last": self.ope_last.mean(), "ope_best": self.ope_best.mean(),
                "ope_accepted": self.ope_accepted.sum().float()}

    def start_bppo(self) -> None:
        """pi_k^old <- pi_k (= BC_k) and the best OPE score <- OPE(BC_k) (main.py before the BPPO loop)."""
        with torch.no_grad():
            for old, new in zip(self.old_policies.parameters(), self.policies.parameters()):
                old.copy_(new)
        score = self.ope()
        self.ope_best.copy_(score)
        self.ope_last.copy_(score)
        self.selected.copy_(score.argmax())

    def gate(self) -> None:
        """Evaluate every policy offline; accepted improvements become the new old policies."""
        score = self.ope()
        accept = ope_gate(score, self.ope_best)
        replace_members_(list(self.old_policies.parameters()), list(self.policies.parameters()), accept)
        self.ope_best.copy_(torch.where(accept, score, self.ope_best))
        self.ope_last.copy_(score)
        self.ope_accepted.add_(accept.long())
        self.selected.copy_(score.argmax())

    def min_q(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """min(Q1, Q2)(s, a) of the trained (not target) critic (IQL_Q_V.minQ)."""
        return self.q(obs, action).min(dim=0).values

    @torch.no_grad()
    def ope(self) -> torch.Tensor:
        """OPE score of each current policy: mean Q over model rollouts from its own dataset start states, (K,)."""
        c, data = self.config, self.dataset()
        rows = torch.randint(data.n_steps, (c.num_policies * c.ope_batch_size,), device=data.device)
        start = self.encoder({k: v[rows] for k, v in data.obs.items()}).view(c.num_policies, c.ope_batch_size, -1)
        return rollout_q_scores(self.policies.mode, self.min_q, self.dynamics, start, c.ope_rollout_steps)

    def offline_step(self, loss: torch.Tensor, name: str) -> dict[str, torch.Tensor]:
        with self.full_precision():
            return backward_step(loss, {name: (self.offline_optimizers[name], self.offline_params[name])})

    # ------------------------------------------------------------------------------ contract
    def update(self, batch: Batch | RolloutBatch) -> dict[str, torch.Tensor]:
        """Offline: one update of the current stage on a transition batch. Online: one PPO iteration on a rollout."""
        if isinstance(batch, RolloutBatch):
            if not bool(self.handed_off):
                raise ConfigError(f"{self.name}: an online update before the hand-off; the runtime calls "
                                  "begin_phase('online') first")
            return super().update(batch)
        stage, step = self.stage_of(self.offline_updates)
        self.offline_updates += 1
        self.num_updates += 1
        with self.mixed_precision():
            if stage == "critic":
                metrics = self.critic_update(batch, step)
            elif stage == "dynamics":
                metrics = self.dynamics_update(step)
            elif stage == "bc":
                metrics = self.bc_update(batch)
            else:
                metrics = self.bppo_update(batch, step)
        metrics = {k: v.detach() for k, v in metrics.items()}
        self.guard.watch(self.num_updates, {k: v for k, v in metrics.items() if k.endswith(("_loss", "_grad_norm"))})
        return {**metrics, "stage": torch.tensor(float(STAGES.index(stage)), device=self.device)}

    def begin_phase(self, phase: str) -> None:
        """Online: the hand-off, once (the online actor <- the selected member; V and the normaliser are shared)."""
        if phase != "online" or bool(self.handed_off):
            return
        if self.config.handoff == "online_top3" and self._candidates:
            raise ConfigError(f"{self.name}: handoff=online_top3 scores its candidates before the online phase; "
                              "choose_online_candidate() was not called")
        self.actor.load_state_dict(self.policies.member_state(int(self.selected)))
        self.handed_off.fill_(True)

    def online_candidates(self) -> list[nn.Module]:
        """handoff=online_top3: the top-k members by last OPE score, as deterministic policies to score online."""
        if self.config.handoff != "online_top3" or bool(self.handed_off):
            return []
        k = min(self.config.handoff_top_k, self.config.num_policies)
        self._candidates = torch.argsort(self.ope_last, descending=True)[:k].tolist()
        return [self.export_actor(f"member={i}") for i in self._candidates]

    def choose_online_candidate(self, returns: Sequence[float]) -> None:
        best = max(range(len(returns)), key=lambda i: returns[i])
        self.selected.fill_(self._candidates[best])
        self._candidates = []

    @torch.no_grad()
    def act(self, obs: Mapping[str, torch.Tensor], deterministic: bool = True) -> torch.Tensor:
        """Online (after the hand-off): the PPO actor. Offline: the selected member of the ensemble."""
        if bool(self.handed_off):
            return super().act(obs, deterministic)
        obs = {k: torch.as_tensor(obs[k], device=self.device) for k in self.obs_keys}
        mean, log_std = self.policies(self.encoder(obs))
        k = int(self.selected)
        unit = mean[k] if deterministic else mean[k] + log_std[k].exp() * torch.randn_like(mean[k])
        return self.scaler.from_unit(unit.clamp(-1.0, 1.0))

    def export_variants(self) -> list[str]:
        """The ``variant`` values :meth:`export_actor` accepts."""
        return ["", "mean", *(f"member={k}" for k in range(self.config.num_policies))]

    def export_actor(self, variant: str = "") -> nn.Module:
        """The deterministic actor. ``""``: what ``act`` runs (the fine-tuned actor after the hand-off, else the
        selected member); ``"member=<k>"``: offline policy k; ``"mean"``: the ensemble-mean action."""
        if variant not in self.export_variants():
            raise ConfigError(f"{self.name}: export variant: expected one of {self.export_variants()}, "
                              f"found '{variant}'")
        if variant == "" and bool(self.handed_off):
            return super().export_actor()
        if variant == "mean":
            actor: nn.Module = EnsembleMeanActor(copy.deepcopy(self.policies))
        else:
            member = int(self.selected) if variant == "" else int(variant.split("=")[1])
            actor = self.build_actor(self.encoder.output_dim, self.spec.action_dim).to(self.device)
            actor.load_state_dict(self.policies.member_state(member))
        policy = DeterministicPolicy(copy.deepcopy(self.encoder), actor, copy.deepcopy(self.scaler))
        policy.eval()
        policy.requires_grad_(False)
        return policy

    # ------------------------------------------------------------------------------ resume
    def training_state(self) -> dict[str, Any]:
        return {**super().training_state(), "offline_updates": self.offline_updates,
                "offline_optimizers": {k: opt.state_dict() for k, opt in self.offline_optimizers.items()}}

    def load_training_state(self, state: Mapping[str, Any]) -> None:
        super().load_training_state(state)
        self.offline_updates = int(state["offline_updates"])
        for name, opt in self.offline_optimizers.items():
            opt.load_state_dict(state["offline_optimizers"][name])
