"""Learner scores: the offline score and the score after a fixed online budget, per algorithm x task x seed.

    python benchmarks/scores.py --quick      # minutes on a 2-core CPU: arm_reach, small networks, one seed
    python benchmarks/scores.py              # full profile for a workstation: paper-sized networks, 3 seeds
    python benchmarks/scores.py --quick --algos iql,calql --seeds 0,1
    python benchmarks/scores.py --profile suite --threads 1   # the issue-4 suite: ~50 min of one CPU core
    python benchmarks/scores.py --profile long --threads 1    # its failures at 4x the budget, official widths
    python benchmarks/scores.py --profile maze --threads 1    # the maze tiers at a budget where they are learnt
    python benchmarks/scores.py --profile gap --threads 1     # H2O on an arm dynamics-gap pair
    python benchmarks/scores.py --profile weighting --precision bf16   # trajectory-weighted sampling, mixed data
    python benchmarks/scores.py --profile long --precision bf16 --algos iql,famo2o,riql   # bf16 mixed precision

Each task's dataset is generated once (``sim.generate_dataset`` at the profile's tier) and cached under
results/tmp/scores/data; each (algorithm, task, seed) is one run of the training runtime (offline phase on
the dataset, then the online phase in simulation; on-policy learners only have the online phase) in
results/tmp/scores/runs/<profile>/. A finished run is reused and an interrupted one resumed, so a long full
profile can be stopped and restarted. Scores are normalised (``TaskSpec.normalized_score``: 100 = the
task's expert reference), the deterministic policy's last evaluation of each phase ("last", not "best":
CORL reports both and warns they differ).

Results: results/scores.json and results/scores.md (mean +- std over seeds) and results/curves/<task>.png
(learning curves: mean over seeds, offline then online, one line per algorithm) for the suite; other profiles
write results/scores_<profile>.{json,md} and results/curves/<profile>/<task>.png; ``--precision bf16`` (the
learners' mixed-precision option) appends ``_bf16`` to both names.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from common import RESULTS_DIR, markdown_table, write_results  # benchmarks/common.py

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WORK_DIR = RESULTS_DIR / "tmp" / "scores"


@dataclass(frozen=True)
class Dataset:
    """A benchmark entry: the generated dataset of a task (quality tier, number of episodes) and how it is used.

    The profile's key is the entry's label; ``task`` names the simulated task when the label is a variant
    (a dynamics-gap pair, a corrupted copy). ``corrupt`` = (kind, rate, scale) makes a corrupted copy of the
    generated store (``robot-learning dataset corrupt``, mode random, seed 0); ``overrides`` apply to every run
    of the entry (e.g. ``online.dynamics=heavy``), ``algo_overrides`` per algorithm; ``algos`` restricts the
    algorithms run on it (None: the profile's); ``online`` False runs the offline phase only.
    """

    tier: str
    episodes: int
    task: str | None = None
    corrupt: tuple[str, float, float] | None = None
    overrides: tuple[str, ...] = ()
    algo_overrides: tuple[tuple[str, tuple[str, ...]], ...] = ()
    algos: tuple[str, ...] | None = None
    online: bool = True


@dataclass(frozen=True)
class Profile:
    """What a benchmark run covers and how long each phase lasts."""

    tasks: dict[str, Dataset]
    algos: tuple[str, ...]
    seeds: tuple[int, ...]
    offline_steps: int
    online_steps: int
    eval_every: int
    eval_episodes: int
    # Per algorithm, overrides applied on top of the family's (e.g. smaller networks for the quick profile).
    algo_overrides: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # Scale the official online protocol's step counts (RO2O's 2.5k warm-up of 250k) to this profile's budget.
    scale_protocol: bool = False


#: Per (algorithm, task family): the reward transform and hyper-parameters of the official sparse-goal
#: (AntMaze) or locomotion settings (algorithms.md sections 1.2, 2.2, 13); arm observations (positions of a
#: few centimetres matter) are normalised with the dataset statistics (CORL's state normalisation).
ARM = ("algo.normalize_obs=true",)
#: Uni-O4's AntMaze settings (configs/algo/unio4_sparse.yaml) for the sparse-reward families.
UNIO4_SPARSE = ("algo.expectile=0.9", "algo.q_hidden=[256,256,256]", "algo.value_hidden=[256,256,256]",
                "algo.reward_scale=10.0", "algo.reward_bias=-5.0", "algo.bppo_lr=3e-5", "algo.ope_rollout_steps=200")
FAMILY_OVERRIDES: dict[tuple[str, str], tuple[str, ...]] = {
    ("iql", "maze"): ("algo.expectile=0.9", "algo.temperature=10.0", "algo.reward_bias=-1.0"),
    ("iql", "arm"): (*ARM, "algo.reward_bias=-1.0"),
    ("iql", "locomotion"): ("algo.reward_normalize_returns_to=1000.0",),
    ("calql", "maze"): ("algo.reward_scale=10.0", "algo.reward_bias=-5.0", "algo.sparse_failure_reward=0.0",
                        "algo.lagrange=true", "algo.target_action_gap=0.8"),
    ("calql", "arm"): (*ARM, "algo.reward_scale=10.0", "algo.reward_bias=-5.0", "algo.sparse_failure_reward=0.0"),
    # Learners without a sparse-goal recipe train on the dense arm reward (scaled so centimetre-sized
    # rewards register against AWAC's lambda and SAC's entropy bonus); every run is scored on success.
    ("td3_bc", "arm"): ("dataset.reward=dense",),
    ("awac", "arm"): ("dataset.reward=dense", "algo.reward_scale=10.0"),
    ("sac_n", "arm"): (*ARM, "dataset.reward=dense", "algo.reward_scale=100.0"),
    ("ppo", "arm"): ("dataset.reward=dense",),
    # The maze also takes the AntMaze scripts' BC filter (is_filter_bc): the noisy data's episodes mostly wander.
    ("unio4", "maze"): (*UNIO4_SPARSE, "algo.bc_filter_positive_return=true"),
    ("unio4", "arm"): UNIO4_SPARSE,
    # FamO2O: configs/algo/famo2o_sparse.yaml (AntMaze) and famo2o_locomotion.yaml (LeapLabTHU/FamO2O).
    ("famo2o", "maze"): ("algo.reward_bias=-1.0",),
    ("famo2o", "arm"): (*ARM, "algo.reward_bias=-1.0"),
    ("famo2o", "locomotion"): ("algo.expectile=0.7", "algo.beta_low=1.0", "algo.beta_high=5.0",
                               "algo.reward_normalize_returns_to=1000.0"),
    # RO2O is SAC-N with regularisers: SAC-N's dense arm recipe (its own obs normalisation is on by default).
    ("ro2o", "arm"): ("dataset.reward=dense", "algo.reward_scale=100.0"),
    # H2O is SAC with gap terms: SAC-N's dense arm recipe (t6-thu/H2O trains on the environment's dense reward).
    ("h2o", "arm"): (*ARM, "dataset.reward=dense", "algo.reward_scale=100.0"),
    # RoboFuME: Cal-QL's sparse transform is its default; the arm recipe normalises observations (as Cal-QL's).
    ("robofume", "arm"): ARM,
    # RIQL: YangRui2015/RIQL has no reward transform; its per-corruption settings come with the entry.
}

#: Per algorithm, run-level settings of its official online protocol (algorithms.md section 11).
PROTOCOL_OVERRIDES: dict[str, tuple[str, ...]] = {
    # BattleWen/RO2O ro2o_ft_mujoco.py: a new 250k FIFO (online.buffer auto -> fresh), training after 2.5k steps.
    "ro2o": ("online.capacity=250000", "online.warmup_steps=2500"),
}

#: Uni-O4's offline phase is its schedule of stages (train.offline_steps must equal their sum). A profile's
#: offline budget is split in the official order with these shares (officially ~76/8/15/0.4 %: BPPO gets 5 %
#: here so that a shortened run still passes the OPE gate ten times, every bppo_steps / 10 updates).
UNIO4_SHARES = {"critic_steps": 0.6, "dynamics_steps": 0.15, "bc_steps": 0.2, "bppo_steps": 0.05}

SMALL = {
    "iql": ("algo.hidden=[64,64]",),
    "awac": ("algo.hidden=[64,64]",),
    "td3_bc": ("algo.hidden=[64,64]",),
    "sac_n": ("algo.hidden=[64,64]", "algo.num_critics=5"),
    "calql": ("algo.policy_hidden=[64,64]", "algo.qf_hidden=[64,64]"),
    "cql": ("algo.policy_hidden=[64,64]", "algo.qf_hidden=[64,64]"),
    "ppo": ("algo.num_minibatches=8", "online.rollout_steps=512", "online.num_envs=2"),
    "unio4": ("algo.q_hidden=[64,64]", "algo.value_hidden=[64,64]", "algo.hidden=[64,64]",
              "algo.dynamics_hidden=[64,64]", "algo.dynamics_weight_decay=[2.5e-5,5e-5,1e-4]",
              "algo.ope_rollout_steps=50",
              "algo.num_minibatches=8", "online.rollout_steps=512", "online.num_envs=2"),
    "ro2o": ("algo.hidden=[64,64]", "algo.num_critics=5", "algo.num_perturbations=10"),
}

PROFILES = {
    "quick": Profile(
        tasks={"arm_reach": Dataset("mixed", 100)},
        algos=("iql", "calql", "td3_bc", "awac", "sac_n", "ppo", "unio4", "ro2o"), seeds=(0,),
        offline_steps=3000, online_steps=3000, eval_every=1000, eval_episodes=20, algo_overrides=SMALL),
    "full": Profile(
        tasks={"point_maze_umaze": Dataset("noisy", 1000), "point_maze_medium": Dataset("noisy", 1000),
               "point_maze_large": Dataset("noisy", 1000), "arm_reach": Dataset("medium", 1000),
               "hopper": Dataset("medium", 1000), "halfcheetah": Dataset("medium", 1000),
               "walker2d": Dataset("medium", 1000)},
        algos=("iql", "calql", "td3_bc", "awac", "sac_n", "ppo", "unio4", "ro2o"), seeds=(0, 1, 2),
        offline_steps=1_000_000, online_steps=250_000, eval_every=10_000, eval_episodes=10),
}


def sim_task(label: str, ds: Dataset) -> str:
    return ds.task or label


def task_family(task: str) -> str:
    from sim.registry import load_spec, task_kind

    return task_kind(load_spec(task)).family


def generated_path(label: str, ds: Dataset) -> Path:
    """Where entry ``label``'s generated (uncorrupted) dataset is cached."""
    return WORK_DIR / "data" / f"{sim_task(label, ds)}_{ds.tier}_{ds.episodes}.zarr"


def behaviour_score(label: str, ds: Dataset) -> float | None:
    """The data's own score: mean normalised return of the generated episodes (None without reference returns).

    Read from the uncorrupted store with the task's default reward, so a corrupted entry shows its clean source.
    """
    from robot_learning.data.store import EpisodeStore

    with EpisodeStore.open(dataset_path(label, dataclasses.replace(ds, corrupt=None))) as store:
        returns = np.add.reduceat(store.reward(), store.episode_starts)
        scores = store.spec.normalized_score(returns)
    return None if scores is None else float(np.mean(scores))


def dataset_path(label: str, ds: Dataset) -> Path:
    """The cached dataset of entry ``label`` (generated on first use, seed 0; corrupted copies from it).

    Generated by the CLI in a subprocess: camera images need a GL context, and importing torch's compiler
    stack (triton, on the first Adam) in a process that has rendered crashes it (LLVM clash with Mesa).
    """
    task = sim_task(label, ds)
    path = generated_path(label, ds)
    if not (path / "zarr.json").exists():
        subprocess.run([sys.executable, "-m", "robot_learning.cli", "dataset", "generate", f"task={task}",
                        f"tier={ds.tier}", f"episodes={ds.episodes}", "seed=0", f"out={path}", "overwrite=true"],
                       check=True)
    if ds.corrupt is None:
        return path
    kind, rate, scale = ds.corrupt
    out = path.with_name(f"{path.stem}_{kind}_r{rate}_s{scale}.zarr")
    if not (out / "zarr.json").exists():
        subprocess.run([sys.executable, "-m", "robot_learning.cli", "dataset", "corrupt", str(path), f"out={out}",
                        f"kind={kind}", "mode=random", f"rate={rate}", f"scale={scale}", "seed=0", "overwrite=true"],
                       check=True)
    return out


#: The suite's small networks: SMALL plus the O2O methods' networks at the same width.
SUITE_SMALL = {
    **SMALL,
    "famo2o": ("algo.hidden=[64,64]",),
    "riql": ("algo.hidden=[64,64]",),
    "h2o": ("algo.policy_hidden=[64,64]", "algo.qf_hidden=[64,64]", "algo.discriminator_hidden=[64,64]"),
    "robofume": ("algo.policy_hidden=[64,64]", "algo.qf_hidden=[64,64]"),
    # Rollouts of 256 steps x 2 envs: a few PPO updates fit in the suite's online budget.
    "unio4": (*SMALL["unio4"][:-2], "online.rollout_steps=256", "online.num_envs=2"),
}

#: RIQL on hopper with randomly corrupted stored observations. A store keeps each observation once, so this
#: corrupts s of the picked transitions and s' of their predecessors (robot_learning/data/corrupt.py): the TD
#: targets are hit as in RIQL's dynamics corruption, which RIQL_config.py answers for hopper with sigma 1.0,
#: quantile 0.5 and 5 critics (its obs-only setting, sigma 0.1 / quantile 0.25 / 3 critics, is MSE-like for
#: hopper's TD errors: benchmarks/results/scores_NOTE.md has both).
RIQL_STORE_OBS_HOPPER = (("riql", ("algo.huber_sigma=1.0", "algo.quantile=0.5", "algo.num_critics=5")),)

#: Benchmark labels that run a registered algorithm with another protocol: (algorithm, offline phase?, overrides).
#: ``h2o_hybrid`` is H2O's own protocol (t6-thu/H2O sim2real_sac_main.py): no offline pre-training, real data and
#: simulator rollouts mixed from the first update; plain ``h2o`` pre-trains on the real data first (the runtime's
#: offline phase: SAC on real rows only, the gap terms need sim rows) and then runs the same hybrid phase.
#: ``iql_rw`` / ``iql_aw`` are IQL with the trajectory-weighting sampler (return- / advantage-weighted; Hong et al.
#: 2023, docs/algorithms/trajectory_weighting.md) at its default temperature.
ALGO_VARIANTS: dict[str, tuple[str, bool, tuple[str, ...]]] = {
    "h2o_hybrid": ("h2o", False, ()),
    "iql_rw": ("iql", True, ("dataset.sampler=rw",)),
    "iql_aw": ("iql", True, ("dataset.sampler=aw",)),
}


#: The O2O methods of issue 4 next to IQL fine-tuning (the baseline) on each suite task.
O2O = ("iql", "unio4", "famo2o", "ro2o")

PROFILES["suite"] = Profile(
    tasks={"point_maze_umaze": Dataset("noisy", 200), "arm_reach": Dataset("mixed", 100, algos=(*O2O, "robofume")),
           "hopper": Dataset("medium", 50), "halfcheetah": Dataset("medium", 30),
           # H2O's dynamics-gap pair: real (offline) data from nominal hopper, online sim with twice the mass,
           # evaluation in nominal dynamics (the eval env ignores online.dynamics).
           "hopper_gap_heavy": Dataset("medium", 50, task="hopper", overrides=("online.dynamics=heavy",),
                                       algos=("iql", "h2o", "h2o_hybrid")),
           # RIQL vs IQL on hopper medium with 30 % of the observations randomly corrupted (scale 1.0), offline.
           "hopper_obs_corrupt": Dataset("medium", 50, task="hopper", corrupt=("obs", 0.3, 1.0),
                                         algo_overrides=RIQL_STORE_OBS_HOPPER, algos=("iql", "riql"), online=False)},
    algos=O2O, seeds=(0, 1, 2), offline_steps=2500, online_steps=2500, eval_every=250, eval_episodes=5,
    algo_overrides=SUITE_SMALL, scale_protocol=True)


#: The long profile's networks: the official widths (256-256) for IQL, FamO2O and RIQL; Uni-O4 with 256-256 critics
#: instead of its 1024-1024 Q and 512x3 V, 200-step OPE rollouts (its sparse-task setting) and 512 x 2 rollouts;
#: RO2O keeps the suite's 64-64 x 5 critics (at its official 256x3 x 10 critics one run would take hours here).
LONG_NETS = {
    "unio4": ("algo.q_hidden=[256,256]", "algo.value_hidden=[256,256]", "algo.ope_rollout_steps=200",
              "algo.num_minibatches=8", "online.rollout_steps=512", "online.num_envs=2"),
    "ro2o": SMALL["ro2o"],
}

#: The suite's failures at 4x its budget with the official network widths: hopper (the collapse after the switch
#: of IQL and FamO2O at 64-64), RIQL vs IQL on the corrupted hopper data, Uni-O4 on arm_reach (no success in the
#: suite). ~1 h on two cores (two processes with --seeds / --tasks subsets).
PROFILES["long"] = Profile(
    tasks={"hopper": PROFILES["suite"].tasks["hopper"],
           "hopper_obs_corrupt": PROFILES["suite"].tasks["hopper_obs_corrupt"],
           "arm_reach": Dataset("mixed", 100, algos=("iql", "unio4"))},
    algos=O2O, seeds=(0, 1, 2), offline_steps=10_000, online_steps=10_000, eval_every=1000, eval_episodes=10,
    algo_overrides=LONG_NETS, scale_protocol=True)

#: The maze tiers at a budget where the stitching is learnt. With the suite's 2.5k updates every method stays at 0;
#: IQL (64-64) on the noisy data first reaches the goal after 14k (umaze) and 25k (medium) offline updates
#: (results/scores_NOTE.md). The suite's networks and protocol scaling; ~1.5 h on two cores, two thirds of it RO2O's.
PROFILES["maze"] = Profile(
    tasks={"point_maze_umaze": Dataset("noisy", 200), "point_maze_medium": Dataset("noisy", 400)},
    algos=O2O, seeds=(0, 1, 2), offline_steps=30_000, online_steps=15_000, eval_every=1500, eval_episodes=10,
    algo_overrides=SUITE_SMALL, scale_protocol=True)

#: H2O on a second dynamics-gap pair, where SAC-based learners learn within a CPU budget (on hopper nothing hops in
#: the suite's 2.5k steps): real data from the nominal arm, online simulator with half-strength actuators,
#: evaluation in nominal dynamics; next to IQL fine-tuned in the same simulator. ~10 min of one core.
PROFILES["gap"] = Profile(
    tasks={"arm_reach_gap_weak": Dataset("mixed", 100, task="arm_reach", overrides=("online.dynamics=weak_motors",))},
    algos=("iql", "h2o", "h2o_hybrid"), seeds=(0, 1, 2), offline_steps=2500, online_steps=5000, eval_every=500,
    eval_episodes=10, algo_overrides=SUITE_SMALL, scale_protocol=True)

#: The trajectory-weighting sampler where the paper says it matters: hopper data of mostly random episodes with a
#: few expert ones (its "random-expert" mixtures), IQL offline with uniform, return- and advantage-weighted
#: sampling; the long profile's official widths and budget. ~15 min of one core in bf16.
PROFILES["weighting"] = Profile(
    tasks={"hopper_random_expert": Dataset("random_expert", 2000, task="hopper", online=False)},
    algos=("iql", "iql_rw", "iql_aw"), seeds=(0, 1, 2), offline_steps=10_000, online_steps=0, eval_every=1000,
    eval_episodes=10)


def result_name(profile: str, precision: str = "fp32") -> str:
    """Result files of a profile: the issue's suite in fp32 writes scores.{json,md} and curves/, others
    scores_<profile>[_<precision>] and curves/<profile>[_<precision>]/."""
    suffix = "" if precision == "fp32" else f"_{precision}"
    return "scores" if profile == "suite" and not suffix else f"scores_{profile}{suffix}"


def schedule_overrides(algo: str, offline_steps: int) -> tuple[str, ...]:
    """Stage lengths that make a multi-stage learner's offline schedule ``offline_steps`` long (Uni-O4)."""
    if algo != "unio4" or offline_steps == 0:
        return ()
    steps = {k: int(offline_steps * share) for k, share in UNIO4_SHARES.items()}
    steps["critic_steps"] += offline_steps - sum(steps.values())
    return (*(f"algo.{k}={v}" for k, v in steps.items()), f"algo.eval_step={max(1, steps['bppo_steps'] // 10)}")


def protocol_overrides(profile: Profile, algo: str) -> tuple[str, ...]:
    """The official online protocol's settings; with ``scale_protocol`` RO2O's warm-up (2.5k of 250k env steps,
    1 %) is scaled to the profile's online budget, at least one batch (256) so the first update has a batch."""
    if not profile.scale_protocol or algo != "ro2o":
        return PROTOCOL_OVERRIDES.get(algo, ())
    return ("online.capacity=250000", f"online.warmup_steps={max(256, profile.online_steps // 100)}")


def run_overrides(profile: Profile, algo: str, label: str, seed: int, data: Path, precision: str = "fp32") -> list[str]:
    from robot_learning.algos.base import ALGORITHMS

    ds = profile.tasks[label]
    task = sim_task(label, ds)
    algo, offline, variant = ALGO_VARIANTS.get(algo, (algo, True, ()))
    offline_steps = 0 if ALGORITHMS[algo].batch_kind == "rollout" or not offline else profile.offline_steps
    online_steps = profile.online_steps if ds.online else 0
    return [f"algo={algo}", f"task={task}", f"dataset={data}", f"seed={seed}",
            f"train.offline_steps={offline_steps}", *schedule_overrides(algo, offline_steps),
            *(protocol_overrides(profile, algo) if online_steps else ()),
            f"train.online_steps={online_steps}", f"train.eval_every={profile.eval_every}",
            f"train.checkpoint_every={max(profile.offline_steps, profile.online_steps)}",
            f"eval.episodes={profile.eval_episodes}", "eval.frames=0", "train.progress=false",
            *FAMILY_OVERRIDES.get((algo, task_family(task)), ()), *profile.algo_overrides.get(algo, ()),
            *ds.overrides, *dict(ds.algo_overrides).get(algo, ()), *variant,
            *((f"algo.precision={precision}",) if precision != "fp32" else ())]


def run_one(profile: Profile, algo: str, task: str, seed: int, data: Path, profile_name: str,
            precision: str = "fp32") -> dict[str, Any]:
    """The summary of one run: reused when finished, resumed when interrupted, else started.

    The run directory is named after a hash of the run's overrides, so changed settings never reuse old runs.
    """
    from robot_learning.train.run import Run

    overrides = run_overrides(profile, algo, task, seed, data, precision)
    tag = hashlib.sha1(" ".join(overrides).encode()).hexdigest()[:8]
    run_dir = WORK_DIR / "runs" / profile_name / f"{algo}_{task}_s{seed}_{tag}"
    summary_file = run_dir / "summary.json"
    if summary_file.is_file() and json.loads(summary_file.read_text())["status"] == "done":
        return json.loads(summary_file.read_text())
    if (run_dir / "checkpoints").is_dir():
        return Run.from_command_line("train", [f"run_dir={run_dir}", "resume=true"]).execute()
    return Run.from_command_line("train", [*overrides, f"run_dir={run_dir}"]).execute()


def score(evaluation: dict[str, Any] | None) -> float | None:
    """Normalised score of an evaluation (its mean return when the task has no reference returns)."""
    if evaluation is None:
        return None
    return evaluation.get("normalized_score", evaluation["return_mean"])


def early_drop(summary: dict[str, Any], fraction: float = 0.1) -> float | None:
    """Offline score minus the worst online evaluation in the first ``fraction`` of the online budget (> 0: a dip).

    An on-policy learner evaluates only after whole rollouts (Uni-O4: every rollout_steps x num_envs env steps),
    which may all lie beyond that window: its first online evaluation stands in then.
    """
    offline = summary["phases"].get("offline", {}).get("final_eval")
    horizon = fraction * summary["planned"]["online_steps"]
    online = [e for e in summary["evals"] if e["phase"] == "online"]
    early = [score(e) for e in online if e["step"] <= horizon] or [score(e) for e in online[:1]]
    if offline is None or not early:
        return None
    return score(offline) - min(early)


def row_of(algo: str, task: str, seed: int, summary: dict[str, Any]) -> dict[str, Any]:
    phases = summary["phases"]
    offline = phases.get("offline", {}).get("final_eval")
    online = phases.get("online", {}).get("final_eval")
    return {"algo": algo, "task": task, "seed": seed, "offline_score": score(offline), "online_score": score(online),
            "early_drop": early_drop(summary),
            "offline_success": None if offline is None else offline["success_rate"],
            "online_success": None if online is None else online["success_rate"],
            "wall_time_s": summary["wall_time_s"], "evals": summary["evals"]}


def mean_std(values: Sequence[float | None]) -> str:
    vals = [v for v in values if v is not None]
    if not vals:
        return "-"
    return f"{np.mean(vals):.1f} ± {np.std(vals):.1f}" if len(vals) > 1 else f"{vals[0]:.1f}"


def aggregate(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One line per (algorithm, task): offline and online score, mean +- std over seeds."""
    out = []
    for algo, task in dict.fromkeys((r["algo"], r["task"]) for r in rows):
        mine = [r for r in rows if r["algo"] == algo and r["task"] == task]
        out.append({"algo": algo, "task": task, "seeds": len(mine),
                    "offline": mean_std([r["offline_score"] for r in mine]),
                    "online": mean_std([r["online_score"] for r in mine]),
                    "drop (first 10%)": mean_std([r["early_drop"] for r in mine]),
                    "wall time (s)": float(np.mean([r["wall_time_s"] for r in mine]))})
    return out


def plot_curves(rows: Sequence[dict[str, Any]], offline_steps: int, out_dir: Path) -> list[Path]:
    """One PNG per task: normalised score against training steps (offline updates, then online env steps)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for task in dict.fromkeys(r["task"] for r in rows):
        fig, ax = plt.subplots(figsize=(7, 4))
        for algo in dict.fromkeys(r["algo"] for r in rows if r["task"] == task):
            curves: dict[int, list[float]] = {}
            for r in (r for r in rows if r["task"] == task and r["algo"] == algo):
                for e in r["evals"]:
                    x = e["step"] + (offline_steps if e["phase"] == "online" else 0)
                    curves.setdefault(x, []).append(score(e))
            xs = sorted(curves)
            mean = np.array([np.mean(curves[x]) for x in xs])
            std = np.array([np.std(curves[x]) for x in xs])
            ax.plot(xs, mean, marker="o", markersize=3, label=algo)
            ax.fill_between(xs, mean - std, mean + std, alpha=0.2)
        online = any(e["phase"] == "online" for r in rows if r["task"] == task for e in r["evals"])
        if online:
            ax.axvline(offline_steps, color="gray", linestyle="--", linewidth=1)
        ax.set(title=f"{task}: offline updates" + (" | online env steps" if online else ""), xlabel="step",
               ylabel="normalised score")
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = out_dir / f"{task}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


def offline_only_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The runs of offline-only entries (an offline score and no online phase)."""
    return [r for r in rows if r["online_score"] is None and r["offline_score"] is not None]


def claims(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The issue's claims per (algorithm, entry): online above offline on average, the worst early drop, and
    every other learner against IQL on each offline-only entry (RIQL on corrupted data, the weighted samplers)."""
    out: dict[str, Any] = {"o2o": [], "offline_vs_iql": []}
    for algo, task in dict.fromkeys((r["algo"], r["task"]) for r in rows):
        mine = [r for r in rows if r["algo"] == algo and r["task"] == task]
        off = [r["offline_score"] for r in mine if r["offline_score"] is not None]
        on = [r["online_score"] for r in mine if r["online_score"] is not None]
        if not on:
            continue
        drops = [r["early_drop"] for r in mine if r["early_drop"] is not None]
        out["o2o"].append({"algo": algo, "task": task,
                           "offline_mean": float(np.mean(off)) if off else None, "online_mean": float(np.mean(on)),
                           "delta": float(np.mean(on) - np.mean(off)) if off else None,
                           "online_above_offline": bool(np.mean(on) > np.mean(off)) if off else None,
                           "worst_early_drop": float(max(drops)) if drops else None})
    offline_only = offline_only_rows(rows)
    for task in dict.fromkeys(r["task"] for r in offline_only):
        means = {a: float(np.mean([r["offline_score"] for r in offline_only if r["task"] == task and r["algo"] == a]))
                 for a in dict.fromkeys(r["algo"] for r in offline_only if r["task"] == task)}
        if "iql" not in means:
            continue
        out["offline_vs_iql"] += [{"task": task, "algo": a, "score": m, "iql": means["iql"], "higher": m > means["iql"]}
                                  for a, m in means.items() if a != "iql"]
    return out


def main(argv: Sequence[str] | None = None) -> int:
    from robot_learning.nn.precision import PRECISIONS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the minutes-on-a-CPU profile (= --profile quick)")
    parser.add_argument("--profile", choices=sorted(PROFILES), help="the profile to run (default: full)")
    parser.add_argument("--algos", help="comma-separated subset of the profile's algorithms")
    parser.add_argument("--tasks", help="comma-separated subset of the profile's tasks")
    parser.add_argument("--seeds", help="comma-separated seeds (default: the profile's)")
    parser.add_argument("--threads", type=int, help="cap torch's CPU threads (also RL_THREADS for subprocesses)")
    parser.add_argument("--no-report", action="store_true", help="run only; do not rewrite the result files")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32",
                        help="the learners' arithmetic (algo.precision); default fp32")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.threads:
        import os

        import torch

        os.environ["RL_THREADS"] = os.environ["OMP_NUM_THREADS"] = str(args.threads)
        torch.set_num_threads(args.threads)
    name = args.profile or ("quick" if args.quick else "full")
    profile = PROFILES[name]
    algos = args.algos.split(",") if args.algos else None
    tasks = args.tasks.split(",") if args.tasks else list(profile.tasks)
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else list(profile.seeds)
    unknown = [t for t in tasks if t not in profile.tasks]
    if unknown:
        parser.error(f"--tasks: expected some of {list(profile.tasks)}, found {unknown}")
    rows = []
    for task in tasks:
        ds = profile.tasks[task]
        data = dataset_path(task, ds)
        for algo in (a for a in (ds.algos or profile.algos) if algos is None or a in algos):
            for seed in seeds:
                summary = run_one(profile, algo, task, seed, data, name, args.precision)
                rows.append(row_of(algo, task, seed, summary))
                print(f"{algo} {task} seed {seed}: offline {rows[-1]['offline_score']}, "
                      f"online {rows[-1]['online_score']} ({summary['wall_time_s']:.0f} s)", flush=True)
    if args.no_report:
        return 0
    offline_rows = offline_only_rows(rows)
    stem = result_name(name, args.precision)
    curves = plot_curves(rows, profile.offline_steps,
                         RESULTS_DIR / "curves" / ("" if stem == "scores" else stem.removeprefix("scores_")))
    agg = aggregate(rows)
    verdicts = claims(rows)
    verdict_of = {(c["algo"], c["task"]): c for c in verdicts["o2o"]}

    def fmt(value: float | None, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    o2o_table = [{**a, "delta": fmt(v["delta"], "+.1f"), "worst drop": fmt(v["worst_early_drop"], ".1f")}
                 for a in agg if (v := verdict_of.get((a["algo"], a["task"]))) is not None]
    setup = setup_text(name, profile, tasks, args.precision)
    sections = [("Setup", setup)]
    if o2o_table:
        sections.append(("Normalised score (last evaluation), offline -> after the online budget",
                         "drop (first 10%) = offline score minus the worst online evaluation in the first 10 % of the "
                         "online budget (Uni-O4, which evaluates after whole rollouts: its first online evaluation); "
                         "mean ± std over seeds; worst drop = the largest over seeds; > 0 is a dip, < 0 a gain.\n\n"
                         + markdown_table(o2o_table, ["algo", "task", "seeds", "offline", "online", "delta",
                                                      "drop (first 10%)", "worst drop", "wall time (s)"])))
    if offline_rows:
        off_table = [{"algo": a["algo"], "dataset": a["task"], "seeds": a["seeds"], "offline score": a["offline"],
                      "wall time (s)": a["wall time (s)"]}
                     for a in aggregate(offline_rows)]
        sections.append(("Offline-only entries (last evaluation)",
                         markdown_table(off_table, ["algo", "dataset", "seeds", "offline score", "wall time (s)"])))
    sections.append(("Claims", claims_text(verdicts)))
    sections.append(("Learning curves", "\n".join(f"![{p.stem}]({p.relative_to(RESULTS_DIR)})" for p in curves)))
    write_results(stem, {"profile": name, "setup": setup, "runs": rows,
                         "aggregate": agg, "claims": verdicts}, sections)
    return 0


def setup_text(name: str, profile: Profile, tasks: Sequence[str], precision: str = "fp32") -> str:
    def entry(t: str) -> str:
        ds = profile.tasks[t]
        extra = [f"from {ds.task}"] if ds.task else []
        if ds.corrupt:
            extra.append(f"{ds.corrupt[0]} corruption, random, rate {ds.corrupt[1]}, scale {ds.corrupt[2]}")
        extra += list(ds.overrides)
        if not ds.online:
            extra.append("offline only")
        data = behaviour_score(t, ds)
        if data is not None:
            extra.append(f"data score {data:.1f}")
        return f"{t} {ds.tier} x{ds.episodes}" + (f" ({'; '.join(extra)})" if extra else "")

    return (f"profile `{name}`, precision {precision}: "
            f"{profile.offline_steps} offline updates, then {profile.online_steps} online env "
            f"steps; {profile.eval_episodes} evaluation episodes every {profile.eval_every} steps; datasets "
            + ", ".join(entry(t) for t in tasks))


def claims_text(verdicts: dict[str, Any]) -> str:
    lines = []
    o2o = [c for c in verdicts["o2o"] if c["online_above_offline"] is not None]  # pairs with an offline score
    above = [c for c in o2o if c["online_above_offline"]]
    if o2o:
        lines.append(f"- Online above offline (mean over seeds): {len(above)} of {len(o2o)} (algo, task) pairs; not: "
                     + (", ".join(f"{c['algo']}/{c['task']} ({c['delta']:+.1f})" for c in o2o
                                  if c["online_above_offline"] is False) or "none"))
    drops = [c for c in o2o if c["worst_early_drop"] is not None]
    if drops:
        w = max(drops, key=lambda c: c["worst_early_drop"])
        lines.append(f"- Worst early drop over all runs: {w['worst_early_drop']:.1f} ({w['algo']}/{w['task']}); "
                     "per pair in the table above")
    for c in verdicts["offline_vs_iql"]:
        lines.append(f"- {c['algo']} vs iql on {c['task']}: {c['score']:.1f} vs {c['iql']:.1f} "
                     f"({c['algo']} {'higher' if c['higher'] else 'not higher'})")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
