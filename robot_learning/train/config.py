"""The typed configuration of a training run.

The values (with a comment on every key) live in ``configs/train.yaml`` and ``configs/finetune.yaml``;
these dataclasses are their schema: :func:`robot_learning.config.build` checks names and types and
turns a malformed key into one :class:`~robot_learning.config.ConfigError` naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class DatasetConfig:
    """``dataset``: the episode store a run learns from."""

    # Path of the episode store (<name>.zarr); null = none (pure online runs) or, with init=, the init run's.
    path: str | None
    # Reward source data/reward/<source>; null = the task's default reward (or the init run's choice).
    reward: str | None
    # Offline sampling: uniform | rw | aw | topk (trajectory weighting, robot_learning.data.weighting).
    sampler: str
    # Softmax temperature of rw/aw; null = the learner's reference value (0.2 CQL family, else 0.1).
    sampler_temperature: float | None
    # Fraction of the best trajectories topk samples from (harness Top-10%).
    sampler_top_fraction: float
    # More stores of the same task, loaded after the main one with the same reward source (RoboFuME: prior data
    # plus target-task demos); [] = the main store only.
    extra: list[str] = field(default_factory=list)


@dataclass
class LoopConfig:
    """``train``: how long each phase runs and how often it logs, evaluates and checkpoints."""

    # Offline gradient steps on the dataset.
    offline_steps: int
    # Online environment steps (transitions, summed over the vector env's sub-environments).
    online_steps: int
    # Evaluate every this many offline updates / online env steps (0 = only at the end of each phase).
    eval_every: int
    # Write metrics every this many offline updates / online env steps.
    log_every: int
    # Checkpoint every this many offline updates / online env steps (and at the end of each phase).
    checkpoint_every: int
    # Checkpoints kept in <run_dir>/checkpoints (older ones are deleted; the newest is never deleted).
    keep_checkpoints: int
    # Show tqdm progress bars with live metrics.
    progress: bool


@dataclass
class OnlineConfig:
    """``online``: the environment interaction of the online phase."""

    # Sub-environments of the training vector env.
    num_envs: int
    # Step the sub-environments in worker processes (worth it with camera rendering).
    asynchronous: bool
    # Offline/online data protocol: mixed | shared | fresh | auto (= buffer_by_algo[algo], else mixed).
    buffer: str
    # The official protocol of each algorithm (algorithms.md section 11), used by buffer=auto.
    buffer_by_algo: dict[str, str]
    # mixed: fraction of online rows in each batch (Cal-QL mixing_ratio 0.5).
    online_ratio: float
    # mixed: anneal the online fraction linearly to this value (null = no annealing).
    final_online_ratio: float | None
    # mixed: online env steps over which the fraction is annealed.
    anneal_steps: int
    # Capacity of the online FIFO (transitions).
    capacity: int
    # Gradient updates per environment step (update-to-data ratio; 1 in IQL, Cal-QL, RO2O).
    utd: float
    # Environment steps collected before the first online update (RO2O: 2500).
    warmup_steps: int
    # Environment steps with uniformly random actions at the start (training from scratch).
    random_steps: int
    # Extra Gaussian exploration noise, std as a fraction of the action half-range (0 = the learner's own).
    exploration_noise: float
    # Clip of that noise, as a fraction of the half-range.
    noise_clip: float
    # On-policy learners: environment steps per sub-environment in each rollout (PPO num_steps 2048).
    rollout_steps: int
    # Dynamics-gap preset of the training env (configs/sim/dynamics; null = nominal).
    dynamics: str | None
    # Extra keyword arguments of sim.make_vector_env for the training env.
    env_kwargs: dict[str, Any]
    # Online FIFO capacity as a multiple of the offline transitions, replacing capacity (H2O replaybuffer_ratio
    # 10); null = capacity.
    capacity_ratio: float | None = None
    # Directory of the reward model that rewards online transitions (train/rewards.py); null = the model named
    # by a learned reward source's provenance, or the simulator's reward.
    reward_model: str | None = None


@dataclass
class EvalConfig:
    """``eval``: deterministic-policy evaluation in simulation."""

    # Episodes per evaluation (0 = no evaluation).
    episodes: int
    # Sub-environments of the evaluation vector env (at most ``episodes``).
    num_envs: int
    # Evaluation envs are reset with seed + seed_offset every time, so evaluations are comparable.
    seed_offset: int
    # Write an mp4 of one episode with the final evaluation (needs imageio's ffmpeg plugin).
    video: bool
    # Frames in the PNG strip of camera images from one episode, written with the final evaluation (0 = none).
    frames: int


@dataclass
class RunConfig:
    """A training run (``robot-learning train`` / ``finetune``)."""

    # Seed of torch, numpy, python and the environments.
    seed: int
    # Training device: auto (cuda when present) | cpu | cuda | cuda:N.
    device: str
    # Where logs, checkpoints and summary.json go; null = runs/<date>/<name>.
    run_dir: str | None
    # Run name; null = <algo>_<task>_s<seed>.
    name: str | None
    # Continue the latest checkpoint of run_dir exactly.
    resume: bool
    # Checkpoint file or run directory to start from (fine-tuning; continuing on new data).
    init: str | None
    dataset: DatasetConfig
    train: LoopConfig
    online: OnlineConfig
    eval: EvalConfig
    # The task (configs/task/<name>.yaml); absent = the dataset's or the init checkpoint's task.
    task: dict[str, Any] | None = None
    # The algorithm config node (algo=<name>); absent = the init checkpoint's algorithm.
    algo: dict[str, Any] | None = None
