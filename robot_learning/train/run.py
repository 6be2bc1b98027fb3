"""A training run: everything the offline, online and on-policy loops share.

:class:`Run` resolves the task, the learner and the data from the config (and from an ``init``
checkpoint or, with ``resume``, the run's own latest checkpoint), owns the run directory, the random
streams, the logger, evaluation and checkpoints, and executes the phases in order: offline gradient
steps on the store, then online interaction (off-policy replay or on-policy rollouts). The loops call
:meth:`Run.after_step` after every unit of work; it logs, evaluates and checkpoints on schedule.

Run directory::

    <run_dir>/config.yaml        the resolved config (algo node = the learner's full config)
    <run_dir>/overrides.yaml     the command-line overrides (a resumed run replays them)
    <run_dir>/checkpoints/       <phase>_<step>.pt and the 'latest' pointer
    <run_dir>/tb/                TensorBoard scalars
    <run_dir>/media/             final-evaluation video and frame strip
    <run_dir>/summary.json       final and best evaluation, per-phase numbers, wall time, rates
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from robot_learning.algos.base import Algorithm
from robot_learning.config import ConfigError, save_resolved
from robot_learning.config import asdict as config_asdict
from robot_learning.data.replay import BUFFER_MODES, MixedSampler, ReplayBuffer
from robot_learning.data.weighting import make_offline_sampler
from robot_learning.train import checkpoint as ckpt
from robot_learning.train import rng
from robot_learning.train.cpu_alloc import tune_cpu_allocator
from robot_learning.train.envs import (
    EnvRunner,
    EpisodeStats,
    eval_reward_kwargs,
    make_vector_env,
)
from robot_learning.train.evaluate import EvalResult, deterministic_policy, evaluate
from robot_learning.train.logger import MetricMeter, RunLogger
from robot_learning.train.media import write_media
from robot_learning.train.resolve import OVERRIDES_FILE, RunInputs, compose_command_line, resolve_inputs
from robot_learning.train.summary import PHASES, RunState, summarize

log = logging.getLogger(__name__)


def crossed(before: int, after: int, every: int) -> bool:
    """True when a multiple of ``every`` lies in (before, after]."""
    return every > 0 and after // every > before // every


class Run:
    """One training run (see the module docstring): :meth:`Run.from_command_line` or :meth:`Run.create` build it."""

    def __init__(self, inputs: RunInputs):
        cfg, run_dir, data, algo, resume_from = inputs.cfg, inputs.run_dir, inputs.data, inputs.algo, inputs.resume_from
        self.cfg = cfg
        self.resolved = inputs.resolved
        self.overrides = inputs.overrides
        self.run_dir = run_dir
        self.spec = inputs.spec
        self.algo = algo
        self.data = data
        self.offline_sampler = None if data is None else make_offline_sampler(
            data, cfg.dataset.sampler, cfg.dataset.sampler_temperature, cfg.dataset.sampler_top_fraction, algo.name)
        self.reward_source = inputs.reward_source
        self.online_reward = inputs.online_reward
        self.device = inputs.device
        if self.device.type == "cpu":
            tune_cpu_allocator()
        self.state = RunState()
        self.streams = rng.RunStreams.create(cfg.seed, self.device)
        self.checkpoints = ckpt.CheckpointManager(run_dir, cfg.train.keep_checkpoints)
        self.buffer: ReplayBuffer | None = None
        #: Further online buffers by name (the backward policy's of reset-free training), saved with the main one.
        self.side_buffers: dict[str, ReplayBuffer] = {}
        self._buffer_state = None
        self._side_buffer_states: dict[str, Any] = {}
        self._eval_runner: EnvRunner | None = None
        self._episodes: list[EpisodeStats] = []
        self.resumed = resume_from is not None
        if resume_from is not None:
            self.state = RunState(**resume_from["state"])
            rng.restore(resume_from["rng"], self.streams)
            self._buffer_state = resume_from.get("buffer")
            self._side_buffer_states = dict(resume_from.get("side_buffers") or {})
            log.info("resuming %s from %s (phase %s, offline step %d, online step %d)", run_dir, resume_from["path"],
                     self.state.phase, self.state.offline_step, self.state.online_step)
        purge = self.state.offline_step + self.state.online_step if resume_from is not None else None
        self.logger = RunLogger(run_dir, cfg.train.progress, purge_step=purge)
        self._clock = time.perf_counter()
        self._rate_mark = (self._clock, 0)

    # ================================================================================ construction
    @classmethod
    def from_command_line(cls, config_name: str, args: Sequence[str]) -> Run:
        """Compose ``configs/<config_name>.yaml`` with a verb's command line and build the run."""
        node, overrides = compose_command_line(config_name, args)
        return cls.create(node, overrides, config_name)

    @classmethod
    def create(cls, node: Any, overrides: Sequence[str] = (), verb: str = "train") -> Run:
        """Build a run from a composed config node (``overrides``: the command line, for init/resume merging)."""
        run = cls(resolve_inputs(node, overrides, verb))
        run.run_dir.mkdir(parents=True, exist_ok=True)
        save_resolved(run.resolved, run.run_dir / "config.yaml")
        if not run.resumed:
            (run.run_dir / OVERRIDES_FILE).write_text(yaml.safe_dump(list(overrides)))
        return run

    # ================================================================================ phases
    def execute(self) -> dict[str, Any]:
        """Run the remaining phases; returns the summary (also written to summary.json)."""
        from robot_learning.train.offline import run_offline
        from robot_learning.train.online import run_online
        from robot_learning.train.onpolicy import run_onpolicy
        from robot_learning.train.reset_free import ResetFreeLearner, run_reset_free

        log.info("run %s: %s on %s, device %s", self.run_dir, self.algo.name, self.spec.name, self.device)
        try:
            if self.state.phase == "offline":
                if self.cfg.train.offline_steps > 0:
                    run_offline(self)
                self.state.phase = "online"
            if self.state.phase == "online":
                if self.cfg.train.online_steps > 0:
                    loop = run_onpolicy if self.algo.on_policy else run_online
                    if isinstance(self.algo, ResetFreeLearner) and self.algo.reset_free_enabled:
                        loop = run_reset_free
                    loop(self)
                self.state.phase = "done"
            self._tick()
            if self.state.evals and (self.cfg.eval.video or self.cfg.eval.frames > 0):
                self.write_final_media()
            return self.write_summary()
        finally:
            self.close()

    def close(self) -> None:
        self.logger.close()
        if self._eval_runner is not None:
            self._eval_runner.close()
            self._eval_runner = None

    # ================================================================================ shared by the loops
    def start_phase(self, phase: str, unit: str) -> None:
        """Open the phase's progress bar and start its clocks (setup time is not training time)."""
        total = self.cfg.train.offline_steps if phase == "offline" else self.cfg.train.online_steps
        if phase == "online":
            self.score_online_candidates()
        self.algo.begin_phase(phase)
        self.logger.start_phase(phase, total, self.state.step_of(phase), unit)
        self._clock = time.perf_counter()
        self._rate_mark = (self._clock, self.state.updates_of(phase))

    def after_step(self, phase: str, before: int, meter: MetricMeter,
                   before_checkpoint: Callable[[], None] | None = None) -> None:
        """Log, evaluate and checkpoint if the step counter of ``phase`` crossed their schedule since ``before``."""
        c = self.cfg.train
        now = self.state.step_of(phase)
        total = c.offline_steps if phase == "offline" else c.online_steps
        self.logger.advance(now - before)
        end = now >= total
        if crossed(before, now, c.log_every) or end:
            self.log_metrics(phase, now, meter)
        if crossed(before, now, c.eval_every) or end:
            self.evaluate(phase)
        if crossed(before, now, c.checkpoint_every) or end:
            if before_checkpoint is not None:
                before_checkpoint()
            self.save_checkpoint(phase)

    def record_episodes(self, finished: EpisodeStats) -> None:
        """Training episodes that just ended (logged as online/episode_* at the next log point)."""
        if len(finished):
            self._episodes.append(finished)
            self.state.online_episodes += len(finished)

    def log_metrics(self, phase: str, step: int, meter: MetricMeter) -> None:
        self.algo.check_finite()
        values = meter.read()
        now, (mark, mark_updates) = time.perf_counter(), self._rate_mark
        updates = self.state.updates_of(phase)
        if now > mark:
            values["updates_per_s"] = (updates - mark_updates) / (now - mark)
        if phase == "online" and self._episodes:
            done = EpisodeStats(*(np.concatenate([getattr(e, f) for e in self._episodes])
                                  for f in ("returns", "lengths", "success")))
            values.update(episode_return=float(done.returns.mean()), episode_length=float(done.lengths.mean()),
                          episode_success=float(done.success.mean()))
            self._episodes.clear()
        self._rate_mark = (now, updates)
        self.logger.scalars(phase, values, step)

    def env_seed(self) -> int:
        """Seed of the training envs' reset at the current online step (same in a resumed run)."""
        return rng.derived_seed(self.cfg.seed, 7, self.state.online_step)

    def train_env(self, env_kwargs: Mapping[str, Any] | None = None, max_episode_steps: int | None = None,
                  obs_keys: Sequence[str] = ()) -> EnvRunner:
        """The online phase's vector env, rewarded like the dataset (:mod:`robot_learning.train.rewards`).

        It observes the learner's keys plus those a reward model reads (a camera the policy may not use);
        ``env_kwargs``, ``max_episode_steps`` and more ``obs_keys`` are a loop's own needs (reset-free training).
        """
        c, reward = self.cfg.online, self.online_reward
        keys = list(dict.fromkeys([*self.algo.obs_keys, *reward.obs_keys, *obs_keys]))
        envs = make_vector_env(self.spec, c.num_envs, keys, rng.derived_seed(self.cfg.seed, 5),
                               asynchronous=c.asynchronous, dynamics=c.dynamics, max_episode_steps=max_episode_steps,
                               env_kwargs={**reward.env_kwargs, **c.env_kwargs, **dict(env_kwargs or {})})
        log.info("online rewards: %s", reward.describe())
        return EnvRunner(envs, keys, self.device, self.spec, reward=reward if reward.model is not None else None)

    def replay_buffer(self, learner: Algorithm | None = None, name: str | None = None) -> ReplayBuffer:
        """The online FIFO of ``learner`` (default: the run's; a ``name``d side buffer for another one), restored
        from the checkpoint when resuming; MC returns iff the run's data has them; ``online.capacity``, or
        ``online.capacity_ratio`` x the offline transitions."""
        c, learner = self.cfg.online, learner or self.algo
        mc_returns = None
        if self.data is not None and self.data.mc_return is not None:
            mc_returns = learner.compute_mc_returns
        capacity = c.capacity
        if c.capacity_ratio is not None:
            if self.data is None:
                raise ConfigError(f"online.capacity_ratio={c.capacity_ratio}: expected offline data to size the online "
                                  "buffer by, found none; use online.capacity")
            capacity = max(1, round(c.capacity_ratio * self.data.n_transitions))
        buffer = ReplayBuffer(self.spec, learner.obs_keys, capacity, c.num_envs, self.device,
                              mc_returns=mc_returns, reward_transform=learner.transform_reward)
        state = self._buffer_state if name is None else self._side_buffer_states.pop(name, None)
        if state is not None:
            buffer.load_state_dict(state)
        if name is None:
            self._buffer_state = None
            self.buffer = buffer
        else:
            self.side_buffers[name] = buffer
        return buffer

    def sampler(self, buffer: ReplayBuffer) -> MixedSampler:
        c = self.cfg.online
        mode = c.buffer_by_algo.get(self.algo.name, "mixed") if c.buffer == "auto" else c.buffer
        if mode not in BUFFER_MODES:
            raise ConfigError(f"online.buffer: expected auto or one of {list(BUFFER_MODES)}, found '{mode}'")
        if mode != "fresh" and self.data is None:
            raise ConfigError(f"online.buffer={mode}: expected offline data to mix with (dataset=<store>), found none; "
                              "use online.buffer=fresh for online-only training")
        log.info("online data: %s buffer (online ratio %s)", mode, c.online_ratio if mode == "mixed" else "-")
        return MixedSampler(self.data, buffer, mode, c.online_ratio, c.final_online_ratio, c.anneal_steps,
                            offline_weights=None if self.offline_sampler is None else self.offline_sampler.weights)

    # ================================================================================ evaluation
    def eval_runner(self) -> EnvRunner:
        """The evaluation vector env (created on first use)."""
        e = self.cfg.eval
        if self._eval_runner is None:
            envs = make_vector_env(self.spec, min(e.num_envs, e.episodes), self.algo.obs_keys, self.cfg.seed,
                                   env_kwargs=eval_reward_kwargs(self.spec))
            self._eval_runner = EnvRunner(envs, self.algo.obs_keys, self.device, self.spec)
        return self._eval_runner

    def evaluate(self, phase: str) -> EvalResult | None:
        """Evaluate the deterministic policy; record it in the state, TensorBoard and the progress bar."""
        e = self.cfg.eval
        if e.episodes <= 0 or self.spec.env is None:
            return None
        result = evaluate(deterministic_policy(self.algo), self.eval_runner(), e.episodes,
                          self.cfg.seed + e.seed_offset, self.spec)
        step = self.state.step_of(phase)
        self.state.evals.append({"phase": phase, "step": step, **result.scalars()})
        self.logger.scalars("eval", result.scalars(), self.state.offline_step + self.state.online_step)
        log.info("eval %s step %d: return %.3f +- %.3f, success %.2f%s", phase, step, result.return_mean,
                 result.return_std, result.success_rate,
                 "" if result.normalized_score is None else f", score {result.normalized_score:.1f}")
        return result

    def score_online_candidates(self) -> None:
        """Evaluate the learner's :meth:`~robot_learning.algos.base.Algorithm.online_candidates` (eval.episodes each)
        and hand it their mean returns (Uni-O4's official hand-off); these episodes are not training steps."""
        candidates = self.algo.online_candidates()
        if not candidates:
            return
        if self.cfg.eval.episodes <= 0 or self.spec.env is None:
            raise ConfigError(f"{self.algo.name}: its hand-off scores {len(candidates)} policies in the environment; "
                              f"expected eval.episodes > 0 and a simulated task, found eval.episodes="
                              f"{self.cfg.eval.episodes}")
        with torch.no_grad():
            returns = [evaluate(candidate, self.eval_runner(), self.cfg.eval.episodes,
                                self.cfg.seed + self.cfg.eval.seed_offset, self.spec).return_mean
                       for candidate in candidates]
        log.info("hand-off: scored %d candidate policies online (%d episodes each): returns %s", len(candidates),
                 self.cfg.eval.episodes, ", ".join(f"{r:.3f}" for r in returns))
        self.algo.choose_online_candidate(returns)

    def write_final_media(self) -> None:
        e = self.cfg.eval
        written = write_media(deterministic_policy(self.algo), self.spec, self.algo.obs_keys, self.device,
                              self.cfg.seed + e.seed_offset, self.run_dir / "media", video=e.video, frames=e.frames,
                              env_kwargs=eval_reward_kwargs(self.spec))
        for kind, path in written.items():
            log.info("%s: %s", kind, path)

    # ================================================================================ checkpoints and summary
    def _tick(self) -> None:
        now = time.perf_counter()
        if self.state.phase in PHASES:
            self.state.wall_time[self.state.phase] += now - self._clock
        self._clock = now

    def save_checkpoint(self, phase: str) -> Path:
        """Write a checkpoint of the whole run at the current step of ``phase`` (atomically)."""
        self._tick()
        buffer = self.buffer
        payload = {
            "algo": {"name": self.algo.name, "config": config_asdict(self.algo.config),
                     "state_dict": self.algo.state_dict(), "training_state": self.algo.training_state()},
            "task_spec": self.spec.to_dict(),
            "config": self.resolved,
            "overrides": self.overrides,
            "state": asdict(self.state),
            "rng": rng.capture(self.streams),
            "buffer": buffer.state_dict() if buffer is not None and phase == "online" else None,
            "side_buffers": {name: b.state_dict() for name, b in self.side_buffers.items()} if phase == "online" else {},
        }
        path = self.checkpoints.save(phase, self.state.step_of(phase), payload)
        self.write_summary()
        return path

    def write_summary(self) -> dict[str, Any]:
        """Write summary.json (final/best evaluation, per-phase numbers, wall time, rates); returns it."""
        summary = summarize(self.state, self.cfg.train, algo=self.algo.name, task=self.spec.name, seed=self.cfg.seed,
                            run_dir=str(self.run_dir), dataset=self.resolved["dataset"], device=str(self.device))
        ckpt.write_text_atomic(self.run_dir / "summary.json", json.dumps(summary, indent=2))
        return summary
