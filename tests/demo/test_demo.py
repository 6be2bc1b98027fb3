"""The demo end to end at scale=tiny (every stage for real), its report, Ctrl-C and its configuration errors."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from robot_learning.config import ConfigError, compose
from robot_learning.data.store import EpisodeStore, StoreError
from robot_learning.data.tools.verify import verify
from robot_learning.demo import report
from robot_learning.demo.runner import run

STAGES = ["collect", "label", "reward", "offline", "online", "export", "deploy"]
TINY_EPISODES, TINY_DEPLOY = 12, 3


@pytest.fixture
def demo(tmp_path):
    """Start ``robot-learning demo scale=tiny`` processes; any still running at teardown is stopped cleanly."""
    started: list[subprocess.Popen] = []

    def start(out: Path, *overrides: str) -> subprocess.Popen:
        env = {**os.environ, "RL_THREADS": "1"}
        started.append(subprocess.Popen([sys.executable, "-m", "robot_learning.cli", "demo", "scale=tiny", f"out={out}",
                                         *overrides], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        text=True))
        return started[-1]

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.terminate()                                 # the demo stops its running command, then exits
            try:
                proc.communicate(timeout=90)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()


@pytest.mark.slow
@pytest.mark.ros
def test_tiny_demo_runs_every_stage_and_reports(tmp_path, demo):
    out = tmp_path / "demo"
    proc = demo(out)
    log, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, log[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "done"
    assert [s["name"] for s in summary["stages"]] == STAGES and all(s["status"] == "done" for s in summary["stages"])
    commands = [c for s in summary["stages"] for c in s["commands"]]
    for verb in ("collect", "label", "reward train", "reward relabel", "reward eval", "train", "finetune", "export",
                 "deploy"):
        assert any(c.startswith(f"robot-learning {verb} ") for c in commands), verb
        assert f"$ robot-learning {verb} " in log                          # printed as it runs
    m = summary["metrics"]
    assert m["dataset"]["episodes"] == TINY_EPISODES and 0.0 <= m["dataset"]["success_rate"] <= 1.0
    assert any(s.startswith("vlm_pref_") for s in m["dataset"]["reward_sources"])   # relabelled in the store
    assert 0.0 <= m["reward_model"]["heldout_accuracy"] <= 1.0
    assert m["reward_model"]["spearman_return"]["sim_progress"] is not None     # scored against the simulator
    for phase in ("offline", "online"):
        assert m["training"][phase]["status"] == "done" and m["training"][phase]["evals"]
        deployed = m["deployed"][phase]
        assert deployed["episodes"] == TINY_DEPLOY and 0.0 <= deployed["success_rate"] <= 1.0
        assert (out / "policies" / f"{phase}.onnx").stat().st_size > 0
    rates = summary["claims"]["success_rates"]
    assert rates == {"teleop_data": m["dataset"]["success_rate"], "offline_deployed": m["deployed"]["offline"]["success_rate"],
                     "online_deployed": m["deployed"]["online"]["success_rate"]}
    text = (out / "report.md").read_text()
    for png in ("success_by_stage.png", "learning_curve.png", "reward_model/eval/reward_eval.png",
                "deploy/online_frames.png", "dataset/frames_front.png"):
        assert (out / png).stat().st_size > 0 and f"]({png})" in text, png
    assert "Status: **done**" in text and "robot-learning deploy policy=" in text
    assert verify(out / "data" / "demo.zarr").ok


@pytest.mark.ros
def test_ctrl_c_during_collection_leaves_committed_episodes_and_a_partial_report(tmp_path, demo):
    out = tmp_path / "demo"
    proc = demo(out, "scales.tiny.episodes=400")
    store = out / "data" / "demo.zarr"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with EpisodeStore.open(store) as s:
                if s.n_episodes >= 2:
                    break
        except StoreError:                                   # not created yet, or being created
            pass
        time.sleep(0.5)
    assert proc.poll() is None, proc.communicate()[0][-3000:]
    proc.send_signal(signal.SIGINT)
    log, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, log[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "interrupted during collect"
    assert [s["status"] for s in summary["stages"]] == ["interrupted"] + ["pending"] * 6
    assert "Status: **interrupted during collect**" in (out / "report.md").read_text()
    result = verify(store)                                   # nothing half-written; committed episodes intact
    assert result.ok
    with EpisodeStore.open(store) as s:
        assert 2 <= s.n_episodes < 400 and summary["metrics"]["dataset"]["episodes"] == s.n_episodes


@pytest.mark.parametrize("overrides, message", [
    (["scale=huge"], "key 'scale': expected one of ['default', 'full', 'tiny'], found 'huge'"),
    (["task=hopper"], "expected a task with a camera"),
    (["scales.tiny.episodes=0", "scale=tiny"], "scales.tiny: episodes: expected a positive integer, found 0"),
])
def test_bad_configuration_is_one_clear_error(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        run(compose("demo", [*overrides, f"out={tmp_path / 'x'}"]))
    assert not (tmp_path / "x").exists()                     # refused before anything is written


def test_an_existing_report_is_not_overwritten(tmp_path):
    (tmp_path / "old.txt").write_text("keep")
    with pytest.raises(ConfigError, match="expected a new or empty directory"):
        run(compose("demo", [f"out={tmp_path}"]))
    assert (tmp_path / "old.txt").read_text() == "keep"


@pytest.mark.parametrize("data, offline, online, expected", [
    (0.5, 0.6, 0.8, (True, True)),
    (0.5, 0.6, 0.6, (False, True)),       # equal is not higher
    (0.7, 0.6, 0.9, (True, False)),
    (0.5, None, None, (None, None)),     # not measured (interrupted before deployment)
])
def test_claims_compare_the_measured_success_rates(data, offline, online, expected):
    metrics = {"dataset": {"success_rate": data},
               "deployed": {"offline": None if offline is None else {"success_rate": offline},
                            "online": None if online is None else {"success_rate": online}}}
    c = report.claims(metrics)
    assert (c["online_beats_offline"], c["offline_beats_teleop_data"]) == expected
