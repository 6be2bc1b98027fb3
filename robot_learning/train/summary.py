"""A run's state and its summary: counters, evaluations, wall time, and what summary.json reports.

summary.json holds the final and the best evaluation (CORL reports both: they differ), per phase the
steps, updates, wall time, rates and that phase's final evaluation (the benchmark's "offline score"
and "online score"), and every evaluation for learning curves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from robot_learning.train.config import LoopConfig

PHASES = ("offline", "online")


@dataclass
class RunState:
    """Counters and results of a run; saved in every checkpoint and summarised in summary.json."""

    phase: str = "offline"
    offline_step: int = 0
    online_step: int = 0
    online_updates: int = 0
    online_episodes: int = 0
    utd_credit: float = 0.0
    wall_time: dict[str, float] = field(default_factory=lambda: {p: 0.0 for p in PHASES})
    evals: list[dict[str, Any]] = field(default_factory=list)

    def step_of(self, phase: str) -> int:
        """The phase's step counter: gradient updates offline, environment steps online."""
        return self.offline_step if phase == "offline" else self.online_step

    def updates_of(self, phase: str) -> int:
        return self.offline_step if phase == "offline" else self.online_updates


def rate(count: float, seconds: float) -> float | None:
    return count / seconds if seconds > 0 else None


def summarize(state: RunState, loop: LoopConfig, **meta: Any) -> dict[str, Any]:
    """The summary.json document of a run in ``state`` (``meta``: algo, task, seed, run_dir, ...)."""
    evals = state.evals
    phases: dict[str, Any] = {}
    for phase in PHASES:
        steps, wall = state.step_of(phase), state.wall_time[phase]
        if not steps:
            continue
        mine = [e for e in evals if e["phase"] == phase]
        updates = state.updates_of(phase)
        phases[phase] = {"steps": steps, "updates": updates, "wall_time_s": wall, "updates_per_s": rate(updates, wall),
                         "final_eval": mine[-1] if mine else None}
        if phase == "online":
            phases[phase].update(episodes=state.online_episodes, env_steps_per_s=rate(steps, wall))
    return {
        **meta, "status": state.phase,
        "planned": {"offline_steps": loop.offline_steps, "online_steps": loop.online_steps},
        "final_eval": evals[-1] if evals else None,
        "best_eval": max(evals, key=lambda e: e["return_mean"]) if evals else None,
        "phases": phases, "wall_time_s": sum(state.wall_time.values()), "evals": evals,
    }
