"""The off-policy online loop: act in a vector env, store transitions, update at a configured UTD ratio.

Per vector step: the learner's stochastic action (uniformly random during ``online.random_steps``, plus
optional Gaussian noise), clipped to the task's limits; the transitions go to the online FIFO with the
raw reward and the true terminal flag (a time-limit truncation only ends the episode, it is not a
terminal); after ``online.warmup_steps`` the learner takes ``online.utd`` updates per environment step
on batches from the run's :class:`~robot_learning.data.replay.MixedSampler` (rewards through the
learner's ``transform_reward``).

Every checkpoint is an episode boundary: the episodes in progress end there (as truncations) and the
envs restart with a seed derived from the run seed and the step counter, which a resumed run repeats, so
it continues exactly as the uninterrupted run would.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch

from robot_learning.train.envs import EpisodeTracker
from robot_learning.train.logger import MetricMeter
from robot_learning.train.run import Run


def behaviour_action(run: Run, policy: Callable[[Mapping[str, torch.Tensor]], torch.Tensor],
                     obs: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """The action an online loop takes: uniform during ``online.random_steps``, else ``policy(obs)`` (stochastic)
    plus the optional Gaussian ``online.exploration_noise``; clipped to the task's limits."""
    c, spec, device, n = run.cfg.online, run.spec, run.device, len(next(iter(obs.values())))
    low = torch.as_tensor(spec.action.low_array, device=device)
    high = torch.as_tensor(spec.action.high_array, device=device)
    if run.state.online_step < c.random_steps:
        action = torch.from_numpy(run.streams.numpy.uniform(spec.action.low_array, spec.action.high_array,
                                                            (n, spec.action_dim)).astype("float32")).to(device)
    else:
        action = policy(obs)
        if c.exploration_noise > 0:
            noise = torch.randn(action.shape, device=device, generator=run.streams.device) * c.exploration_noise
            action = action + noise.clamp(-c.noise_clip, c.noise_clip) * (high - low) / 2
    return torch.minimum(torch.maximum(action, low), high)


def run_online(run: Run) -> None:
    """``train.online_steps`` environment steps of off-policy fine-tuning (continuing from the run's counter)."""
    c, algo, state = run.cfg.online, run.algo, run.state
    runner = run.train_env()
    buffer = run.replay_buffer()
    sampler = run.sampler(buffer)
    tracker = EpisodeTracker(runner.num_envs)
    batch_size, n = algo.config.batch_size, runner.num_envs
    meter = MetricMeter()

    def restart_episodes() -> None:
        buffer.end_episodes()
        runner.reset(run.env_seed())
        tracker.reset()

    run.start_phase("online", "step")
    restart_episodes()
    algo.train()
    try:
        while state.online_step < run.cfg.train.online_steps:
            obs = runner.obs
            action = behaviour_action(run, lambda o: algo.act(o, deterministic=False), obs)
            step = runner.step(action.cpu().numpy())
            buffer.add(obs, action, step.reward, step.next_obs, step.terminated, step.done)
            run.record_episodes(tracker.update(step))
            before = state.online_step
            state.online_step += n
            if state.online_step > c.warmup_steps:
                state.utd_credit += n * c.utd
                while state.utd_credit >= 1.0:
                    batch = sampler.sample(batch_size, state.online_step, run.streams.device, run.streams.host)
                    meter.add(algo.update(batch))
                    state.online_updates += 1
                    state.utd_credit -= 1.0
            run.after_step("online", before, meter, before_checkpoint=restart_episodes)
    finally:
        runner.close()
