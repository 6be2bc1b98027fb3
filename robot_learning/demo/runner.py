"""``robot-learning demo``: the whole chain in simulation, every stage through the CLI verbs a user would type.

    robot-learning demo                          # under 15 minutes on a 2-core CPU (scale=default)
    robot-learning demo scale=tiny out=/tmp/demo # every stage for real, small numbers (what CI runs)
    robot-learning demo scale=full device=cuda   # a GPU workstation
    robot-learning demo learner=famo2o label_with=clip "args.label=['labeler.clip.pretrained=/m/clip.pt']"

Stages: collect (sim_robot + scripted teleop + recorder over ROS 2, a mixed-quality store with camera
frames) -> label (preference queries; oracle by default) -> reward (Bradley-Terry model, relabel,
evaluate) -> offline (train) -> online (finetune in the simulator with the same reward model) -> export
(ONNX, parity-checked) -> deploy (the ROS 2 policy node drives the simulated robot, both policies).

Each command is printed, then run as its own process (its progress bars show). The report under
``out`` (default runs/demo/<time>/): report.md, PNGs (dataset, reward fit, learning curve, success per
stage, frames of a deployed rollout) and summary.json, rewritten after every stage. Ctrl-C interrupts the
running command the way a user's Ctrl-C would (the recorder discards the open episode; committed data
stays), then writes the partial report; the exit code is 130. A failing command stops the demo (exit 1).
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.markup import escape

from robot_learning.config import ConfigError, build, save_resolved, task_from_config
from robot_learning.data.tools.common import console
from robot_learning.demo import report
from robot_learning.demo.config import DemoConfig
from robot_learning.demo.stages import Layout, plan

log = logging.getLogger(__name__)

CONFIG = "demo"
#: Seconds a command gets to finish after the forwarded Ctrl-C, then after SIGTERM, before the next signal.
GRACE_S = (60.0, 10.0)
#: Exit code of an interrupted demo (128 + SIGINT, like the verbs).
INTERRUPTED = 130


def cli_prefix() -> list[str]:
    """How to start ``robot-learning``: the console script beside this interpreter, else ``python -m``."""
    script = Path(sys.executable).with_name("robot-learning")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "robot_learning.cli"]


def execute(argv: list[str], env: dict[str, str] | None = None) -> int:
    """Run one CLI command in its own session; on Ctrl-C forward one SIGINT, escalate after grace periods.

    Its own session: a terminal's Ctrl-C reaches only the demo, which passes it on exactly once (a second
    SIGINT would make the launcher escalate before the recorder closed the store).
    """
    proc = subprocess.Popen([*cli_prefix(), *argv], start_new_session=True, env=env)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        for sig, grace in zip((signal.SIGINT, signal.SIGTERM), GRACE_S):
            proc.send_signal(sig)
            try:
                proc.wait(timeout=grace)
                break
            except subprocess.TimeoutExpired:
                continue
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        raise


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def run(cfg: Any) -> int:
    """CLI entry (configs/demo.yaml)."""
    c = build(DemoConfig, cfg, where=f"configs/{CONFIG}.yaml")
    budget = c.budget()
    spec = task_from_config(c.task)
    if not spec.image_keys:
        raise ConfigError(f"configs/{CONFIG}.yaml: key 'task': expected a task with a camera (the reward model "
                          f"reads frames), found '{spec.name}' without one")
    root = Path(c.out) if c.out else Path("runs") / "demo" / time.strftime("%Y-%m-%d_%H-%M-%S")
    if root.exists() and any(root.iterdir()):
        raise ConfigError(f"configs/{CONFIG}.yaml: key 'out': expected a new or empty directory, found {root} "
                          "with files in it")
    root.mkdir(parents=True, exist_ok=True)
    save_resolved(cfg, root / "config.yaml")
    layout = Layout(root)
    env = dict(os.environ)
    if c.threads > 0 and "RL_THREADS" not in env:     # an explicit --threads / RL_THREADS wins
        env["RL_THREADS"] = str(c.threads)
    stages = plan(c, spec.name, layout)
    records = [report.StageRecord(s.name, s.title) for s in stages]
    info = {"task": spec.name, "scale_name": c.scale, "algo": c.learner, "labeler": c.label_with, "seed": c.seed,
            "scale": asdict(budget)}
    # Ctrl-C and SIGTERM interrupt the demo even when it was started with them ignored (e.g. in the background).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    con = console()
    con.print(f"[bold]robot-learning demo[/bold]: {len(stages)} stages on {spec.name}, report in {root}")
    start, status, code = time.monotonic(), "done", 0
    for i, (stage, record) in enumerate(zip(stages, records), 1):
        con.rule(f"[bold][{i}/{len(stages)}] {stage.title}")
        record.status, began = "running", time.monotonic()
        try:
            for argv in stage.commands():
                record.commands.append(shlex.join(["robot-learning", *argv]))
                con.print(f"[cyan]$ {escape(record.commands[-1])}[/cyan]")
                record.exit_code = execute(argv, env)
                if record.exit_code != 0:
                    break
        except KeyboardInterrupt:
            record.status, status, code = "interrupted", f"interrupted during {stage.name}", INTERRUPTED
        else:
            failed = record.exit_code not in (0, None)
            record.status = "failed" if failed else "done"
            if failed:
                status, code = f"failed at {stage.name} (exit code {record.exit_code})", 1
        record.seconds = time.monotonic() - began
        if code or i == len(stages):
            break
        report.write(layout, records, "running", info, time.monotonic() - start)
    summary = report.write(layout, records, status, info, time.monotonic() - start)
    _print_outcome(con, summary, root)
    return code


def _print_outcome(con: Any, summary: dict[str, Any], root: Path) -> None:
    rates = summary["claims"]["success_rates"]
    con.rule("[bold]demo " + summary["status"])
    con.print("success rate: " + ", ".join(f"{k.replace('_', ' ')} {report.percent(v)}" for k, v in rates.items()))
    con.print(f"report: {root / 'report.md'} (summary.json, PNGs beside it); {summary['wall_time_s'] / 60:.1f} min")
