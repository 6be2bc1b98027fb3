"""Reset-free online training (MEDAL, Sharma et al. 2022; RoboFuME): forward and backward attempts, few resets.

Each sub-environment alternates a forward attempt (the task, the learner's policy) and a backward attempt
(return to the initial-state distribution, the learner's backward policy). An attempt ends on success or
after ``reset_free.attempt_steps`` steps. The env is reset - a "hard reset", an intervention on a real
robot - only after ``reset_free.attempts_per_reset`` forward/backward pairs, after a backward attempt that
did not return (``reset_free.reset_on_failure``), and at checkpoints (episode boundaries, as in the
episodic loop, so a resumed run continues exactly). The env never ends an episode itself: it is built with
``terminate_on_success=False`` (an arm or maze task) and a time limit longer than any attempt schedule.

Forward transitions carry the online reward of the run (the success classifier or the simulator's reward,
train/rewards.py) and go to the forward learner's buffer, mixed with the offline data as in the episodic
loop; an attempt is a success when the classifier says so (the simulator's ``success`` without a
classifier) and its last transition is then terminal, as in the offline store. Backward transitions carry
the learner's return reward (:meth:`ResetFreeLearner.backward_reward` against the observation after the last
hard reset) and go to the backward learner's own buffer (``fresh``: it has no offline data). Each learner
takes ``online.utd`` updates per environment step once ``online.warmup_steps`` have passed and the backward
buffer holds a finished attempt. Forward attempts are logged as the run's online episodes (their
``success`` is the simulator's); the backward return rate and the hard resets are logged as metrics.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from robot_learning.algos.base import Algorithm
from robot_learning.config import ConfigError
from robot_learning.data.replay import MixedSampler, ReplayBuffer
from robot_learning.data.tensors import Batch
from robot_learning.train.envs import EpisodeStats, Step
from robot_learning.train.logger import MetricMeter
from robot_learning.train.online import behaviour_action
from robot_learning.train.run import Run

log = logging.getLogger(__name__)


@runtime_checkable
class ResetFreeLearner(Protocol):
    """What a learner offers the reset-free loop besides the Algorithm contract (RoboFuME)."""

    #: The backward learner (its obs keys, reward transform and MC returns size its buffer).
    backward: Algorithm | None

    @property
    def reset_free_enabled(self) -> bool:
        """True when the online phase should run reset-free."""

    def act_backward(self, obs: Mapping[str, torch.Tensor], deterministic: bool = False) -> torch.Tensor:
        """Task-unit actions of the backward policy."""

    def update_backward(self, batch: Batch) -> dict[str, torch.Tensor]:
        """One update of the backward learner; metrics as 0-d tensors."""

    def backward_reward(self, next_obs: Mapping[str, torch.Tensor], start_obs: Mapping[str, torch.Tensor]
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        """(raw backward reward, returned) of each row given the observation after the last hard reset."""


def _rows(x: Mapping[str, torch.Tensor], index: torch.Tensor) -> dict[str, torch.Tensor]:
    return {k: v[index] for k, v in x.items()}


def _add(buffer: ReplayBuffer, envs: np.ndarray, obs: Mapping[str, torch.Tensor], action: torch.Tensor,
         reward: np.ndarray, step: Step, terminal: np.ndarray, end: np.ndarray) -> None:
    """Add the transitions of sub-environments ``envs`` to ``buffer``."""
    if len(envs) == 0:
        return
    rows = torch.from_numpy(envs).to(action.device)
    buffer.add(_rows(obs, rows), action[rows], reward[envs], _rows(step.next_obs, rows), terminal[envs], end[envs],
               env_index=envs)


class AttemptSchedule:
    """Per sub-environment: current direction, attempt length, attempts since the last hard reset, forward stats."""

    def __init__(self, num_envs: int):
        self.backward = np.zeros(num_envs, dtype=bool)
        self.length = np.zeros(num_envs, dtype=np.int64)
        self.pairs = np.zeros(num_envs, dtype=np.int64)
        self.forward_return = np.zeros(num_envs)
        self.forward_success = np.zeros(num_envs, dtype=bool)
        self.returned = 0
        self.backward_attempts = 0
        self.hard_resets = 0

    def hard_reset(self, mask: np.ndarray) -> None:
        """Sub-environments ``mask`` were reset: a forward attempt starts from the initial-state distribution."""
        for field in (self.backward, self.length, self.pairs, self.forward_return, self.forward_success):
            field[mask] = 0
        self.hard_resets += int(mask.sum())

    def metrics(self, device: torch.device) -> dict[str, torch.Tensor]:
        rate = self.returned / max(self.backward_attempts, 1)
        return {"backward_return_rate": torch.tensor(rate, device=device),
                "hard_resets": torch.tensor(float(self.hard_resets), device=device)}


def run_reset_free(run: Run) -> None:
    """``train.online_steps`` environment steps of reset-free forward/backward training (see the module docstring)."""
    c, algo, state, spec, device = run.cfg.online, run.algo, run.state, run.spec, run.device
    rf = algo.config.reset_free
    horizon = rf.attempt_steps or spec.max_episode_steps
    if horizon > spec.max_episode_steps:
        raise ConfigError(f"algo.reset_free.attempt_steps={horizon}: expected at most the task's max_episode_steps "
                          f"({spec.max_episode_steps}), the longest episode the replay buffers stage")
    runner = run.train_env(env_kwargs={"terminate_on_success": False}, obs_keys=rf.return_keys,
                           max_episode_steps=2 * rf.attempts_per_reset * horizon + 1)
    forward_buffer = run.replay_buffer()
    backward_buffer = run.replay_buffer(algo.backward, name="backward")
    forward_sampler = run.sampler(forward_buffer)
    backward_sampler = MixedSampler(None, backward_buffer, "fresh")
    classifier = run.online_reward.is_success_classifier
    batch_size, n = algo.config.batch_size, runner.num_envs
    schedule = AttemptSchedule(n)
    meter = MetricMeter()
    start: dict[str, torch.Tensor] = {}

    def remember_start(mask: np.ndarray) -> None:
        rows = torch.from_numpy(np.flatnonzero(mask)).to(device)
        for k in rf.return_keys:
            if k not in start:
                start[k] = runner.obs[k].clone()
            start[k][rows] = runner.obs[k][rows]

    def restart_episodes() -> None:
        forward_buffer.end_episodes()
        backward_buffer.end_episodes()
        runner.reset(run.env_seed())
        everyone = np.ones(n, dtype=bool)
        schedule.hard_reset(everyone)
        remember_start(everyone)

    run.start_phase("online", "step")
    restart_episodes()
    algo.train()
    try:
        while state.online_step < run.cfg.train.online_steps:
            obs = runner.obs
            backward_rows = torch.from_numpy(schedule.backward).to(device)[:, None]
            action = behaviour_action(run, lambda o: torch.where(backward_rows, algo.act_backward(o, False),
                                                                 algo.act(o, False)), obs)
            step = runner.step(action.cpu().numpy())
            back_reward, returned = (t.cpu().numpy() for t in algo.backward_reward(step.next_obs, start))
            forward_success = step.reward > 0.5 if classifier else step.success
            schedule.length += 1
            timeout = schedule.length >= horizon
            fwd, bwd = ~schedule.backward, schedule.backward
            fwd_end, bwd_end = fwd & (forward_success | timeout), bwd & (returned | timeout)
            _add(forward_buffer, np.flatnonzero(fwd), obs, action, step.reward, step, forward_success, fwd_end)
            _add(backward_buffer, np.flatnonzero(bwd), obs, action, back_reward.astype(np.float32), step, returned,
                 bwd_end)

            schedule.forward_return[fwd] += step.reward[fwd]
            schedule.forward_success |= fwd & step.success
            if fwd_end.any():
                run.record_episodes(EpisodeStats(schedule.forward_return[fwd_end].copy(),
                                                 schedule.length[fwd_end].copy(),
                                                 schedule.forward_success[fwd_end].copy()))
                schedule.forward_return[fwd_end], schedule.forward_success[fwd_end] = 0.0, False
            schedule.returned += int((bwd_end & returned).sum())
            schedule.backward_attempts += int(bwd_end.sum())
            schedule.length[fwd_end | bwd_end] = 0
            schedule.backward[fwd_end], schedule.backward[bwd_end] = True, False
            schedule.pairs[bwd_end] += 1
            hard = bwd_end & ((rf.reset_on_failure & ~returned) | (schedule.pairs >= rf.attempts_per_reset))
            if hard.any():
                runner.restart(hard)
            if step.done.any():  # the env's own time limit (longer than any schedule): also a hard reset
                forward_buffer.end_episodes(np.flatnonzero(step.done))
                backward_buffer.end_episodes(np.flatnonzero(step.done))
            hard |= step.done
            if hard.any():
                schedule.hard_reset(hard)
                remember_start(hard)

            before = state.online_step
            state.online_step += n
            if state.online_step > c.warmup_steps and backward_buffer.size > 0:
                state.utd_credit += n * c.utd
                while state.utd_credit >= 1.0:
                    metrics = algo.update(forward_sampler.sample(batch_size, state.online_step, run.streams.device,
                                                                 run.streams.host))
                    metrics |= algo.update_backward(backward_sampler.sample(batch_size, state.online_step,
                                                                            run.streams.device, run.streams.host))
                    meter.add(metrics | schedule.metrics(device))
                    state.online_updates += 1
                    state.utd_credit -= 1.0
            run.after_step("online", before, meter, before_checkpoint=restart_episodes)
    finally:
        runner.close()
    log.info("reset-free: %d backward attempts, %d returned (%.0f%%), %d hard resets", schedule.backward_attempts,
             schedule.returned, 100 * schedule.returned / max(schedule.backward_attempts, 1), schedule.hard_resets)

