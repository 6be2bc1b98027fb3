"""``robot-learning deploy``: run an exported ONNX policy for N episodes; report success, return and timings.

    robot-learning deploy policy=policy.onnx task=arm_reach robot=sim episodes=20 frames=reach.png
    robot-learning deploy policy=policy.onnx robot=ros episodes=10 summary=deploy.json
    robot-learning deploy policy=policy.onnx robot=ros realtime=true safety.max_obs_age_s=0.1

``robot=sim`` runs the policy in the task's gymnasium env in this process (no ROS); ``robot=ros`` runs
``launch/deploy.launch.yaml`` through the launcher (sim_robot, the policy node, the episode driver). Both
pass every command through the same safety layer (``safety.*``), start from the same states for a seed
(the env is seeded and reset as sim_robot does), end an episode at its first success or after the task's
``max_episode_steps``, and report in one format (``robot_learning/deploy/report.py``): success rate, mean
return (robot=sim only: the ROS robot interface carries no reward), inference latency p50/p99 and, when
paced (``realtime=true``), the loop's period jitter p50/p99. A policy made for another task is refused.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robot_learning.config import ConfigError, build, task_from_config
from robot_learning.deploy.controller import SafePolicy, safety_config
from robot_learning.deploy.report import EpisodeOutcome, describe, summarize, write_summary
from robot_learning.deploy.safety import SafetyConfig
from robot_learning.deploy.timing import LoopStats, Pacer
from robot_learning.export.runtime import OnnxPolicy
from robot_learning.spec import TaskSpec

CONFIG = "deploy"
ROBOTS = ("sim", "ros")


@dataclass
class DeployConfig:
    """configs/deploy.yaml (each key is documented there)."""

    task: dict[str, Any] | None = None
    policy: str | None = None
    robot: str = "sim"
    episodes: int = 10
    seed: int = 0
    realtime: bool = False
    device: str = "auto"
    frames: str | None = None
    frame_count: int = 8
    summary: str | None = None
    launch_file: str = "deploy.launch.yaml"
    safety: dict[str, Any] = field(default_factory=dict)


def run_sim(policy: OnnxPolicy, spec: TaskSpec, safety: SafetyConfig, c: DeployConfig) -> dict[str, Any]:
    """Episodes of ``policy`` in the task's gymnasium env, every action through the safety layer."""
    import sim

    safe = SafePolicy(policy, spec, safety)
    cameras = list(spec.image_keys) if c.frames else []
    keys = list(dict.fromkeys([*policy.obs_keys, *cameras]))
    viewer = bool(c.frames) and not cameras
    env = sim.make_env(spec, obs_keys=keys, seed=c.seed, terminate_on_success=False,
                       render_mode="rgb_array" if viewer else None)
    env.reset(seed=c.seed)                  # as sim_robot starts; every episode then begins with a plain reset
    loop = LoopStats(spec.dt)
    pacer = Pacer(spec.dt) if c.realtime else None
    outcomes, strip = [], None
    try:
        for episode in range(c.episodes):
            obs, _ = env.reset()
            record = episode == 0 and bool(c.frames)
            frames = {k: [obs[k]] for k in cameras} if not viewer else {"view": [env.render()]}
            steps, total, success, done = 0, 0.0, False, False
            while not (success or done):
                start = pacer.wait() if pacer else time.perf_counter()
                if pacer:
                    loop.tick(start)
                decision = safe.step(obs, obs_age_s=0.0)
                obs, reward, terminated, truncated, info = env.step(decision.action)
                loop.done(start, time.perf_counter())
                steps, total = steps + 1, total + float(reward)
                success, done = bool(info.get("success", False)), terminated or truncated
                if record:
                    for k, seq in frames.items():
                        seq.append(env.render() if viewer else obs[k])
            outcomes.append(EpisodeOutcome(success, steps, total))
            if record:
                from robot_learning.train.media import write_strip  # local: only needed for frames

                strip = str(write_strip(frames, Path(c.frames), c.frame_count))
            if pacer:
                pacer.restart()
                loop.restart()
    finally:
        env.close()
    return summarize(outcomes, robot="sim", task=spec.name, policy=str(policy.path), algorithm=policy.algorithm,
                     mode="real-time" if c.realtime else "lock-step", decisions=safe.stats(), loop=loop.summary(),
                     frames=strip)


def launch_arguments(policy: OnnxPolicy, spec: TaskSpec, safety: SafetyConfig, c: DeployConfig,
                     summary: Path) -> dict[str, str]:
    """The deploy launch file's arguments for this run (strings, as launch arguments are)."""
    return {"task": spec.name, "policy": str(Path(policy.path).resolve()), "episodes": str(c.episodes),
            "realtime": str(c.realtime).lower(), "seed": str(c.seed), "summary": str(summary),
            "frames": str(Path(c.frames).resolve()) if c.frames else '""', "frame_count": str(c.frame_count),
            "clip_to_limits": str(safety.clip_to_limits).lower(),
            "max_delta": json.dumps([0.0] if safety.max_delta is None else [float(v) for v in safety.max_delta]),
            "max_obs_age_s": str(safety.max_obs_age_s), "stop_action": safety.stop_action,
            "deadman": str(safety.deadman).lower(), "teleop_timeout_s": str(safety.teleop_timeout_s)}


def run_ros(policy: OnnxPolicy, spec: TaskSpec, safety: SafetyConfig, c: DeployConfig
            ) -> tuple[int, dict[str, Any] | None]:
    """The deploy launch (sim_robot + policy node + episode driver); (exit code, the driver's summary)."""
    from robot_learning.launcher import launch

    policy.check_task(spec)   # refuse here already, before any process starts
    with tempfile.TemporaryDirectory(prefix="deploy_") as tmp:
        path = Path(tmp) / "summary.json"
        code = launch(c.launch_file, launch_arguments(policy, spec, safety, c, path))
        return code, json.loads(path.read_text()) if path.is_file() else None


def run(cfg: Any) -> int:
    """The ``robot-learning deploy`` verb (configs/deploy.yaml)."""
    c = build(DeployConfig, cfg, where=f"configs/{CONFIG}.yaml")
    if not c.policy:
        raise ConfigError(f"configs/{CONFIG}.yaml: key 'policy': expected an ONNX policy file, found nothing "
                          "(pass policy=...)")
    if c.robot not in ROBOTS:
        raise ConfigError(f"configs/{CONFIG}.yaml: key 'robot': expected one of {list(ROBOTS)}, found {c.robot!r}")
    if c.episodes < 1:
        raise ConfigError(f"configs/{CONFIG}.yaml: key 'episodes': expected at least 1, found {c.episodes}")
    policy = OnnxPolicy(c.policy, device=c.device)
    spec = task_from_config(c.task) if c.task else TaskSpec.load(policy.spec.name)
    safety = safety_config(c.safety, spec, where=f"configs/{CONFIG}.yaml: safety")
    code = 0
    if c.robot == "sim":
        summary = run_sim(policy, spec, safety, c)
    else:
        code, summary = run_ros(policy, spec, safety, c)
        if summary is None:
            print(f"error: robot=ros: the deploy launch exited with code {code} before the episode driver wrote its "
                  "summary (see the node output above)", file=sys.stderr)
            return code or 1
    print(describe(summary))
    if c.summary:
        print(f"summary: {write_summary(summary, c.summary)}")
    return code

