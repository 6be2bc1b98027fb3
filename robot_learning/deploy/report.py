"""The result of a deployment run: per-episode outcomes, success rate, return, timings, as JSON and as text.

One format for ``robot-learning deploy robot=sim`` (the gymnasium env in-process) and ``robot=ros`` (the
episode driver node behind ROS), so the two are compared field by field. ``timing`` carries the policy
loop's numbers: inference latency (``SafePolicy.stats``) and loop periods/jitter (``LoopStats.summary``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class EpisodeOutcome:
    """One episode: success at any step within the budget, steps taken, return (None: the robot reports none)."""

    success: bool
    steps: int
    episode_return: float | None = None


def summarize(outcomes: Sequence[EpisodeOutcome], *, robot: str, task: str, policy: str, algorithm: str,
              mode: str, decisions: Mapping[str, Any], loop: Mapping[str, Any] | None,
              frames: str | None = None) -> dict[str, Any]:
    """The JSON summary of a run (``decisions``: ``SafePolicy.stats()``; ``loop``: ``LoopStats.summary()``)."""
    n = len(outcomes)
    returns = [o.episode_return for o in outcomes if o.episode_return is not None]
    successes = sum(o.success for o in outcomes)
    return {
        "robot": robot, "task": task, "policy": policy, "algorithm": algorithm, "mode": mode,
        "episodes": n, "successes": successes, "success_rate": successes / n if n else None,
        "return_mean": sum(returns) / len(returns) if returns and len(returns) == n else None,
        "length_mean": sum(o.steps for o in outcomes) / n if n else None,
        "outcomes": [asdict(o) for o in outcomes],
        "timing": {"inference_ms": dict(decisions.get("inference_ms") or {}), "loop": dict(loop or {})},
        "decisions": {k: decisions[k] for k in ("sources", "clipped", "rate_limited") if k in decisions},
        "frames": frames,
    }


def _ms(block: Mapping[str, Any], key: str) -> str:
    value = block.get(key)
    return "n/a" if value is None else f"{value:.3f} ms"


def _number(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def describe(summary: Mapping[str, Any]) -> str:
    """Three lines for the terminal: outcome, timings, safety decisions."""
    lines = [(f"{summary['algorithm']} policy on {summary['task']} (robot={summary['robot']}, {summary['mode']}): "
              f"success {_number(summary.get('success_rate'), '.2f')} ({summary['successes']}/{summary['episodes']}), "
              f"return {_number(summary.get('return_mean'), '.3f')}, "
              f"length {_number(summary.get('length_mean'), '.1f')} steps")]
    inference = summary["timing"]["inference_ms"]
    loop = summary["timing"]["loop"]
    jitter = loop.get("jitter_ms") or {}
    if jitter.get("n"):
        paced = (f"loop jitter p50 {_ms(jitter, 'p50')}, p99 {_ms(jitter, 'p99')} (period "
                 f"{loop.get('nominal_period_ms')} ms, {loop.get('over_budget', 0)} ticks over budget)")
    else:
        paced = "loop not paced (lock-step)"
    lines.append(f"  inference p50 {_ms(inference, 'p50')}, p99 {_ms(inference, 'p99')} over {inference.get('n', 0)} "
                 f"calls; {paced}")
    d = summary.get("decisions") or {}
    sources = ", ".join(f"{k} {v}" for k, v in (d.get("sources") or {}).items())
    lines.append(f"  decisions: {sources}; clipped {d.get('clipped', 0)}, rate-limited {d.get('rate_limited', 0)}"
                 + (f"; frames {summary['frames']}" if summary.get("frames") else ""))
    return "\n".join(lines)


def write_summary(summary: Mapping[str, Any], path: str | Path) -> Path:
    """Write the summary as indented JSON (parent directories created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2))
    return path
