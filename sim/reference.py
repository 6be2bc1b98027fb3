"""Measure a task's reference returns: the random policy's and the scripted expert's mean return.

``reference_returns`` in a task YAML define the normalised score ``100 (R - R_random) / (R_expert -
R_random)``. For the arm and maze tasks they are measured here under the task's default reward
(uniform random actions vs. the noise-free expert, the same episode seeds for both)::

    MUJOCO_GL=egl python -m sim.reference arm_reach --episodes 500 --seed 0
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import numpy as np

from sim.experts import make_expert
from sim.registry import load_spec
from sim.rollout import evaluate


def reference_returns(task: str, episodes: int, seed: int) -> dict[str, float]:
    """``{"random": mean return, "expert": mean return}`` over ``episodes`` seeded episodes each."""
    spec = load_spec(task)
    out = {}
    for name, behaviour in (("random", "random"), ("expert", make_expert(spec, seed=seed))):
        out[name] = float(np.mean([r.ret for r in evaluate(spec, behaviour, episodes, seed)]))
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("task")
    parser.add_argument("--episodes", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    refs = reference_returns(args.task, args.episodes, args.seed)
    print(f"reference_returns: {{random: {refs['random']:.4g}, expert: {refs['expert']:.4g}}}")


if __name__ == "__main__":
    main()
