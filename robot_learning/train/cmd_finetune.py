"""Online training in simulation, usually from an offline checkpoint (init=); on-policy learners from scratch.

Examples:
    robot-learning finetune init=runs/iql_maze train.online_steps=100000
    robot-learning finetune algo=iql task=point_maze_umaze init=runs/iql_maze train.online_steps=100000 \\
        algo.actor_lr_cosine_steps=null
    robot-learning finetune init=runs/calql_maze online.buffer=mixed online.online_ratio=0.5 online.utd=1
    robot-learning finetune algo=ppo task=hopper train.online_steps=1000000 online.num_envs=4

With init=, the learner, its config (algo.<field>=<value> overrides win), the task and the dataset
come from the checkpoint. online.buffer picks how online data meets offline data: mixed (separate
buffers and online.online_ratio), shared (uniform over both), fresh (online only) or auto (the
algorithm's official protocol). Time-limit truncations are never terminals.
"""

from __future__ import annotations

from collections.abc import Sequence

from robot_learning.train.cmd_train import report
from robot_learning.train.run import Run


def run(args: Sequence[str]) -> int:
    """The ``robot-learning finetune`` verb (configs/finetune.yaml)."""
    print(report(Run.from_command_line("finetune", args).execute()))
    return 0
