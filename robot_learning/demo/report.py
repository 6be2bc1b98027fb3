"""The demo's report: report.md, PNGs and summary.json, from whatever the stages have left so far.

Written after every stage, so an interrupted or failed demo still leaves a consistent partial report.
Numbers come from the stages' own artefacts: the store, the reward model's evaluation, the training
runs' summary.json and the deployment summaries.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from robot_learning.data.store import EpisodeStore
from robot_learning.demo.stages import POLICIES, Layout

@dataclass
class StageRecord:
    """What happened in one stage."""

    name: str
    title: str
    status: str = "pending"     # pending | running | done | failed | interrupted
    seconds: float = 0.0
    commands: list[str] = field(default_factory=list)
    exit_code: int | None = None


def _load_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def dataset_metrics(layout: Layout) -> dict[str, Any] | None:
    """Episodes, steps, success rate and lengths of the recorded store (None before it exists)."""
    if not (layout.store / "zarr.json").exists():
        return None
    with EpisodeStore.open(layout.store) as store:
        meta = store.episode_meta()
        success = np.asarray(meta.get("success", []), dtype=bool)
        lengths = store.episode_lengths
        return {"episodes": store.n_episodes, "steps": store.n_steps,
                "success_rate": float(success.mean()) if len(success) else None,
                "length_mean": float(lengths.mean()) if len(lengths) else None,
                "reward_sources": list(store.reward_sources)}


def reward_metrics(layout: Layout) -> dict[str, Any] | None:
    """Held-out preference accuracy and return/step rank correlations of the reward model."""
    ev = _load_json(layout.reward_eval / "reward_eval.json")
    if ev is None:
        return None
    training = ev.get("training_metrics") or {}
    return {"heldout_accuracy": ev.get("heldout_accuracy"), "pairs": training.get("n_pairs"),
            "epochs": training.get("epochs"), "spearman_return": ev.get("spearman_return"),
            "spearman_step": ev.get("spearman_step"), "model_hash": ev.get("model_hash")}


def training_metrics(layout: Layout, phase: str) -> dict[str, Any] | None:
    """A training run's final evaluation (in the simulator), wall time and evaluation history."""
    summary = _load_json(layout.run(phase) / "summary.json")
    if summary is None:
        return None
    final = summary.get("final_eval") or {}
    return {"status": summary.get("status"), "success_rate": final.get("success_rate"),
            "normalized_score": final.get("normalized_score"), "wall_time_s": summary.get("wall_time_s"),
            "evals": summary.get("evals", [])}


def deploy_metrics(layout: Layout, phase: str) -> dict[str, Any] | None:
    """A deployment's success rate over ROS 2, episodes and policy-loop timing."""
    summary = _load_json(layout.deploy_summary(phase))
    if summary is None:
        return None
    return {"success_rate": summary.get("success_rate"), "episodes": summary.get("episodes"),
            "successes": summary.get("successes"), "length_mean": summary.get("length_mean"),
            "inference_ms": summary.get("timing", {}).get("inference_ms"),
            "frames": summary.get("frames")}


def collect_metrics(layout: Layout) -> dict[str, Any]:
    return {"dataset": dataset_metrics(layout), "reward_model": reward_metrics(layout),
            "training": {p: training_metrics(layout, p) for p in POLICIES},
            "deployed": {p: deploy_metrics(layout, p) for p in POLICIES}}


def claims(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The demo's two checks (None until both sides are measured): fine-tuned > offline > teleop data."""
    data = (metrics["dataset"] or {}).get("success_rate")
    offline, online = ((metrics["deployed"][p] or {}).get("success_rate") for p in POLICIES)

    def check(a: float | None, b: float | None) -> bool | None:
        return None if a is None or b is None else a > b

    return {"online_beats_offline": check(online, offline), "offline_beats_teleop_data": check(offline, data),
            "success_rates": {"teleop_data": data, "offline_deployed": offline, "online_deployed": online}}


# ------------------------------------------------------------------------------ plots
def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_learning_curve(metrics: Mapping[str, Any], path: Path) -> Path | None:
    """Success rate of the evaluations across the offline (updates) and online (env steps) phases."""
    runs = [(p, metrics["training"][p]) for p in POLICIES if metrics["training"][p]]
    if not runs:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.2))
    offset = 0
    for phase, run in runs:
        evals = [e for e in run["evals"] if e["phase"] == phase]
        if not evals:
            continue
        x = [offset + e["step"] for e in evals]
        ax.plot(x, [e["success_rate"] for e in evals], marker="o", label=f"{phase} ({'updates' if phase == 'offline' else 'env steps'})")
        offset = x[-1]
        if phase == "offline":
            ax.axvline(offset, color="grey", linestyle=":", linewidth=1)
    data = (metrics["dataset"] or {}).get("success_rate")
    if data is not None:
        ax.axhline(data, color="tab:red", linestyle="--", linewidth=1, label="teleop data")
    ax.set_xlabel("offline updates, then online environment steps")
    ax.set_ylabel("success rate (sim eval)")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_success_by_stage(metrics: Mapping[str, Any], path: Path) -> Path | None:
    """Bars: the teleop data's success rate, then each policy's success deployed over ROS 2."""
    rates = claims(metrics)["success_rates"]
    bars = [(name.replace("_", "\n"), v) for name, v in rates.items() if v is not None]
    if not bars:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.bar([b[0] for b in bars], [b[1] for b in bars], color=["tab:red", "tab:blue", "tab:green"][:len(bars)])
    for i, (_, v) in enumerate(bars):
        ax.text(i, v + 0.02, f"{v:.0%}", ha="center", fontsize=9)
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("success rate")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------ markdown
def percent(v: float | None) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.0%}"


def _num(v: float | None, spec: str = ".2f") -> str:
    return "-" if v is None else format(v, spec)


def _image(root: Path, path: Path | str | None, alt: str) -> list[str]:
    if path is None or not Path(path).is_file():
        return []
    return [f"![{alt}]({Path(path).resolve().relative_to(root.resolve())})", ""]


def markdown(layout: Layout, stages: Sequence[StageRecord], metrics: Mapping[str, Any], status: str,
             config: Mapping[str, Any]) -> str:
    root = layout.root
    c = claims(metrics)
    lines = [f"# robot-learning demo: {config['task']}", "",
             f"Status: **{status}**. Scale `{config['scale_name']}`, learner `{config['algo']}`, labeler "
             f"`{config['labeler']}`, seed {config['seed']}. Every stage below ran the CLI command shown.", "",
             "| stage | status | time (s) |", "|---|---|---|"]
    lines += [f"| {s.name} | {s.status} | {s.seconds:.0f} |" for s in stages]
    lines += ["", "## Success rate per stage", "",
              "| | teleop data | offline policy (deployed) | fine-tuned policy (deployed) |", "|---|---|---|---|",
              "| success rate | " + " | ".join(percent(v) for v in c["success_rates"].values()) + " |", ""]
    verdict = {True: "yes", False: "**no**", None: "not measured"}
    lines += [f"- fine-tuned online > offline: {verdict[c['online_beats_offline']]}",
              f"- offline > the teleop data's own success rate: {verdict[c['offline_beats_teleop_data']]}", ""]
    lines += _image(root, root / "success_by_stage.png", "success rate per stage")
    data = metrics["dataset"]
    if data:
        lines += ["## Dataset (recorded over ROS 2)", "",
                  f"{data['episodes']} episodes, {data['steps']} steps, success rate {percent(data['success_rate'])}, "
                  f"mean length {_num(data['length_mean'], '.1f')} steps.", ""]
        lines += _image(root, layout.dataset_plots / "lengths.png", "episode lengths")
        lines += _image(root, next(iter(sorted(layout.dataset_plots.glob("frames_*.png"))), None), "camera frames")
    rm = metrics["reward_model"]
    if rm:
        rho = ", ".join(f"{k} {_num(v)}" for k, v in (rm["spearman_return"] or {}).items())
        step = ", ".join(f"{k} {_num(v)}" for k, v in (rm["spearman_step"] or {}).items())
        lines += ["## Reward model", "",
                  f"{rm['pairs']} preference pairs, {rm['epochs']} epochs; held-out preference accuracy "
                  f"{_num(rm['heldout_accuracy'])}; Spearman rho of episode returns vs ground truth: {rho or '-'}; "
                  f"per step: {step or '-'}.", ""]
        lines += _image(root, layout.reward_eval / "reward_eval.png", "reward model fit")
    train = [(p, metrics["training"][p]) for p in POLICIES if metrics["training"][p]]
    if train:
        lines += ["## Learning (simulator evaluations)", "", "| phase | success rate | normalised score | wall time (s) |",
                  "|---|---|---|---|"]
        lines += [f"| {p} | {percent(t['success_rate'])} | {_num(t['normalized_score'], '.1f')} | "
                  f"{_num(t['wall_time_s'], '.0f')} |" for p, t in train]
        lines += [""] + _image(root, root / "learning_curve.png", "learning curve")
    deployed = [(p, metrics["deployed"][p]) for p in POLICIES if metrics["deployed"][p]]
    if deployed:
        lines += ["## Deployment over ROS 2 (policy node + simulated robot)", "",
                  "| policy | episodes | success rate | mean length | inference p99 (ms) |", "|---|---|---|---|---|"]
        lines += [f"| {p} | {d['episodes']} | {percent(d['success_rate'])} | {_num(d['length_mean'], '.1f')} | "
                  f"{_num((d['inference_ms'] or {}).get('p99'), '.3f')} |" for p, d in deployed]
        lines += [""] + _image(root, layout.deploy_frames("online"), "camera frames of a deployed rollout")
    lines += ["## Commands", ""]
    for s in stages:
        lines += [f"### {s.name}", "", s.title, "", "```bash", *s.commands, "```", ""] if s.commands else []
    return "\n".join(lines)


def write(layout: Layout, stages: Sequence[StageRecord], status: str, config: Mapping[str, Any],
          wall_time_s: float) -> dict[str, Any]:
    """Write report.md, the PNGs and summary.json under the run directory; returns the summary."""
    metrics = collect_metrics(layout)
    plot_learning_curve(metrics, layout.root / "learning_curve.png")
    plot_success_by_stage(metrics, layout.root / "success_by_stage.png")
    (layout.root / "report.md").write_text(markdown(layout, stages, metrics, status, config))
    summary = {"status": status, "config": dict(config), "wall_time_s": wall_time_s,
               "stages": [asdict(s) for s in stages], "metrics": metrics, "claims": claims(metrics)}
    (layout.root / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    return summary
