"""The on-policy loop: collect rollouts of ``online.rollout_steps`` steps per sub-environment, then train.

Learners with ``on_policy = True`` implement :class:`~robot_learning.data.rollout.RolloutPolicy`. The
collector stores what the learner sampled (action, log-prob, value), the transformed reward, the true
terminal and the time-limit truncation of every step, and the value of the true next observation
(the final observation of an episode that was truncated; the next step's value otherwise; the last
observation's value at the end). ``algo.update(rollout)`` then runs the learner's epochs and
minibatches (PPO computes GAE on the device first).

As in the off-policy loop, checkpoints fall between rollouts and restart the episodes with a seed
derived from the step counter, so a resumed run continues exactly.
"""

from __future__ import annotations

import torch

from robot_learning.data.rollout import RolloutBatch, RolloutPolicy
from robot_learning.spec import TaskSpec
from robot_learning.train.envs import EnvRunner, EpisodeTracker
from robot_learning.train.logger import MetricMeter
from robot_learning.train.run import Run


@torch.no_grad()
def collect_rollout(algo: RolloutPolicy, runner: EnvRunner, steps: int, spec: TaskSpec,
                    tracker: EpisodeTracker) -> tuple[RolloutBatch, list]:
    """``steps`` vector steps with ``algo``'s sampled actions; returns the rollout and the finished episodes."""
    n, device = runner.num_envs, runner.device
    low = torch.as_tensor(spec.action.low_array, device=device)
    high = torch.as_tensor(spec.action.high_array, device=device)
    obs = {k: torch.empty((steps, *v.shape), dtype=v.dtype, device=device) for k, v in runner.obs.items()}
    action = torch.empty(steps, n, spec.action_dim, device=device)
    log_prob, value, reward, next_value = (torch.empty(steps, n, device=device) for _ in range(4))
    terminal, truncated = (torch.empty(steps, n, dtype=torch.bool, device=device) for _ in range(2))
    finished = []
    for t in range(steps):
        for k, v in runner.obs.items():
            obs[k][t] = v
        a, lp, v = algo.rollout_action(runner.obs)
        action[t], log_prob[t], value[t] = a, lp, v
        step = runner.step(torch.minimum(torch.maximum(a, low), high).cpu().numpy())
        reward[t] = algo.transform_reward(torch.from_numpy(step.reward).to(device))
        terminal[t] = torch.from_numpy(step.terminated).to(device)
        truncated[t] = torch.from_numpy(step.truncated).to(device)
        if step.truncated.any():
            rows = torch.from_numpy(step.truncated.nonzero()[0]).to(device)
            next_value[t, rows] = algo.predict_value({k: x[rows] for k, x in step.next_obs.items()})
        finished.append(tracker.update(step))
    following = torch.cat([value[1:], algo.predict_value(runner.obs)[None]])
    next_value = torch.where(truncated, next_value, following)
    return RolloutBatch(obs, action, log_prob, value, reward, terminal, truncated, next_value), finished


def run_onpolicy(run: Run) -> None:
    """``train.online_steps`` environment steps of on-policy training (continuing from the run's counter)."""
    algo, state = run.algo, run.state
    runner = run.train_env()
    tracker = EpisodeTracker(runner.num_envs)
    meter = MetricMeter()

    def restart_episodes() -> None:
        runner.reset(run.env_seed())
        tracker.reset()

    run.start_phase("online", "step")
    restart_episodes()
    algo.train()
    try:
        while state.online_step < run.cfg.train.online_steps:
            rollout, finished = collect_rollout(algo, runner, run.cfg.online.rollout_steps, run.spec, tracker)
            for episodes in finished:
                run.record_episodes(episodes)
            meter.add(algo.update(rollout))
            state.online_updates += 1
            before = state.online_step
            state.online_step += rollout.num_steps * rollout.num_envs
            run.after_step("online", before, meter, before_checkpoint=restart_episodes)
    finally:
        runner.close()
