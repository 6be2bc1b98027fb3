"""Offline RL on an episode store; an online phase in simulation follows when train.online_steps > 0.

Examples:
    robot-learning train algo=iql task=point_maze_umaze dataset=data/maze.zarr train.offline_steps=100000 \\
        eval.episodes=10 seed=0 device=auto run_dir=runs/iql_maze
    robot-learning train algo=calql dataset=data/maze.zarr dataset.reward=sparse algo.min_q_weight=5.0
    robot-learning train init=runs/iql_maze dataset=data/new_robot_data.zarr train.offline_steps=20000
        (offline fine-tuning of a trained policy on newly logged data, no environment needed)
    robot-learning train run_dir=runs/iql_maze --resume
        (continue a killed run exactly where its last checkpoint left off)

algo=<name> selects a registered learner (its config dataclass holds the sourced defaults;
algo.<field>=<value> overrides one); dataset=<path> is shorthand for dataset.path=<path>.
Outputs in run_dir: config.yaml, checkpoints/, tb/ (TensorBoard), summary.json, media/.
"""

from __future__ import annotations

from collections.abc import Sequence

from robot_learning.train.run import Run


def report(summary: dict) -> str:
    """One line for the terminal: where the run is and how it ended."""
    final = summary.get("final_eval")
    score = "" if not final else (f", final return {final['return_mean']:.3f}, success {final['success_rate']:.2f}"
                                  + (f", score {final['normalized_score']:.1f}" if "normalized_score" in final else ""))
    return f"{summary['algo']} on {summary['task']}: {summary['status']}{score}; run_dir {summary['run_dir']}"


def run(args: Sequence[str]) -> int:
    """The ``robot-learning train`` verb (configs/train.yaml)."""
    print(report(Run.from_command_line("train", args).execute()))
    return 0
