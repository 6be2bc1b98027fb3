"""The training runtime end to end at tiny scale: CLI round trip, exact resume after a kill, bad input."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from robot_learning.cli import main
from robot_learning.config import compose
from robot_learning.train import checkpoint as ckpt
from robot_learning.train.run import Run
from tests.train.conftest import TINY_IQL

QUICK = ["eval.episodes=2", "eval.num_envs=2", "eval.frames=0", "train.progress=false", "train.log_every=10"]


def cli(*args: str) -> int:
    return main([str(a) for a in args])


def load_final(run_dir: Path) -> dict:
    return ckpt.load(run_dir, map_location="cpu")


def assert_same_state(a: dict, b: dict) -> None:
    """Two checkpoints hold identical learners, optimisers, counters, random streams and online buffers."""
    for key, value in a["algo"]["state_dict"].items():
        assert torch.equal(value, b["algo"]["state_dict"][key]), key
    opt_a, opt_b = a["algo"]["training_state"]["optimizers"], b["algo"]["training_state"]["optimizers"]
    for name in opt_a:
        for pid, st in opt_a[name]["state"].items():
            for k, v in st.items():
                assert torch.equal(torch.as_tensor(v), torch.as_tensor(opt_b[name]["state"][pid][k])), (name, k)
    sa, sb = dict(a["state"]), dict(b["state"])
    for s in (sa, sb):
        s.pop("wall_time")
    assert sa == sb
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"]) and a["rng"]["numpy"] == b["rng"]["numpy"]
    assert torch.equal(a["rng"]["device"], b["rng"]["device"])
    for name, col in a["buffer"]["fifo"].items():
        assert torch.equal(col, b["buffer"]["fifo"][name]), name


def test_train_finetune_eval_round_trip(tmp_path, maze_store, maze_store_2, capsys):
    offline = tmp_path / "offline"
    assert cli("train", *TINY_IQL, "task=point_maze_umaze", f"dataset={maze_store}", "train.offline_steps=30",
               "train.eval_every=15", f"run_dir={offline}", *QUICK, "eval.frames=4") == 0
    summary = json.loads((offline / "summary.json").read_text())
    assert summary["status"] == "done" and summary["phases"]["offline"]["steps"] == 30
    assert [e["step"] for e in summary["evals"]] == [15, 30] and summary["final_eval"]["step"] == 30
    assert (offline / "config.yaml").is_file() and (offline / "media" / "frames.png").is_file()
    assert list((offline / "tb").glob("events.out.tfevents.*"))

    # offline fine-tuning on newly logged data, no environment needed (eval off)
    newer = tmp_path / "newer"
    assert cli("train", f"init={offline}", f"dataset={maze_store_2}", "train.offline_steps=10", "eval.episodes=0",
               f"run_dir={newer}", "train.progress=false") == 0
    first, second = load_final(offline), load_final(newer)
    assert second["algo"]["name"] == "iql" and second["algo"]["config"]["hidden"] == [16, 16]
    assert second["algo"]["training_state"]["num_updates"] == 40  # continued the optimiser and counters

    online = tmp_path / "online"
    assert cli("finetune", f"init={offline}", "algo.batch_size=16", "train.online_steps=40", "train.eval_every=20",
               "online.num_envs=2", f"run_dir={online}", *QUICK) == 0
    tuned = load_final(online)
    assert tuned["algo"]["config"]["batch_size"] == 16 and tuned["config"]["dataset"]["path"] == str(maze_store)
    assert tuned["state"]["online_step"] == 40 and tuned["state"]["online_updates"] == 40
    assert tuned["buffer"]["size"] == 40
    assert not torch.equal(first["algo"]["state_dict"]["actor.log_std"], tuned["algo"]["state_dict"]["actor.log_std"])

    capsys.readouterr()
    assert cli("eval", f"ckpt={online}", "episodes=3", "num_envs=3", "frames=3", f"out={tmp_path / 'ev'}") == 0
    report = json.loads((tmp_path / "ev" / "eval.json").read_text())
    assert report["episodes"] == 3 and report["task"] == "point_maze_umaze" and 0.0 <= report["success_rate"] <= 1.0
    assert (tmp_path / "ev" / "frames.png").is_file()
    assert "success" in capsys.readouterr().out


def test_time_limit_truncations_are_not_terminals(tmp_path, maze_store):
    node = compose("train", [*TINY_IQL, "task=point_maze_umaze", f"dataset.path={maze_store}",
                             "train.offline_steps=0", "train.online_steps=30", "online.num_envs=3", "eval.episodes=0",
                             "train.progress=false", f"run_dir={tmp_path / 'run'}"])
    node.task.max_episode_steps = 4
    Run.create(node).execute()
    fifo = load_final(tmp_path / "run")["buffer"]["fifo"]
    lengths = torch.unique(fifo["episode"], return_counts=True)[1]
    assert len(lengths) >= 6 and lengths.max() == 4  # the time limit ended every env's episode after 4 steps
    assert not fifo["terminal"].any()  # and none of those ends is a terminal
    # each truncated step keeps its true final observation, not the next episode's first
    last = fifo["episode"][:-3] != fifo["episode"][3:]
    assert not torch.allclose(fifo["next_obs/position"][:-3][last], fifo["obs/position"][3:][last])


def run_cli_process(args, env, run_dir):
    return subprocess.Popen([sys.executable, "-m", "robot_learning.cli", *args, f"run_dir={run_dir}"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def test_kill_then_resume_continues_exactly(tmp_path, maze_store, subprocess_env):
    args = ["train", *TINY_IQL, f"dataset={maze_store}", "train.offline_steps=20", "train.online_steps=80",
            "online.num_envs=2", "train.checkpoint_every=20", "train.keep_checkpoints=20", "eval.episodes=0",
            "train.progress=false"]
    straight = run_cli_process(args, subprocess_env, tmp_path / "straight")
    killed_dir = tmp_path / "killed"
    victim = run_cli_process(args, subprocess_env, killed_dir)
    deadline = time.time() + 300
    while time.time() < deadline and victim.poll() is None:
        latest = ckpt.latest_in(killed_dir / "checkpoints") if (killed_dir / "checkpoints").is_dir() else None
        if latest is not None and latest.name.startswith("online"):
            victim.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    victim.wait()
    assert straight.wait(timeout=300) == 0, straight.stderr.read()
    stopped_at = ckpt.latest_in(killed_dir / "checkpoints").name
    resumed = subprocess.run([sys.executable, "-m", "robot_learning.cli", "train", f"run_dir={killed_dir}", "--resume"],
                             env=subprocess_env, capture_output=True, text=True, timeout=300, check=False)
    assert resumed.returncode == 0, resumed.stderr
    assert_same_state(load_final(tmp_path / "straight"), load_final(killed_dir))
    assert stopped_at != "online_000000080.pt" or victim.returncode == 0


@pytest.mark.parametrize("verb, args, phase", [
    ("train", [*TINY_IQL, "DATASET", "train.offline_steps=30"], "offline"),
    ("finetune", ["algo=ppo", "task=point_maze_umaze", "algo.hidden=[8,8]", "algo.num_minibatches=2",
                  "algo.update_epochs=2", "online.rollout_steps=5", "online.num_envs=2", "train.online_steps=30"],
     "online"),
])
def test_resume_from_an_intermediate_checkpoint_gives_the_same_next_updates(verb, args, phase, tmp_path, maze_store):
    args = [f"dataset={maze_store}" if a == "DATASET" else a for a in args]
    common = ["train.checkpoint_every=10", "train.keep_checkpoints=10", "eval.episodes=0", "train.progress=false"]
    assert cli(verb, *args, *common, f"run_dir={tmp_path / 'a'}") == 0
    copy = tmp_path / "b"
    (copy / "checkpoints").mkdir(parents=True)
    src = tmp_path / "a" / "checkpoints" / f"{phase}_000000010.pt"
    (copy / "checkpoints" / src.name).write_bytes(src.read_bytes())
    (copy / "overrides.yaml").write_text((tmp_path / "a" / "overrides.yaml").read_text())
    assert cli(verb, f"run_dir={copy}", "resume=true") == 0
    for step in (20, 30):
        a = ckpt.load(tmp_path / "a" / "checkpoints" / f"{phase}_{step:09d}.pt")
        b = ckpt.load(copy / "checkpoints" / f"{phase}_{step:09d}.pt")
        for key, value in a["algo"]["state_dict"].items():
            assert torch.equal(value, b["algo"]["state_dict"][key]), (step, key)
    assert not list((copy / "checkpoints").glob(".*tmp*"))  # atomic writes leave no temporary files


@pytest.mark.parametrize("args, message", [
    (["train", "algo=iql", "dataset=/nonexistent/data.zarr", "train.offline_steps=5"], "found no such path"),
    (["train", "algo=iql", "DATASET", "dataset.reward=vlm_pref_x", "train.offline_steps=5"],
     "reward source 'vlm_pref_x': expected one of"),
    (["train", "algo=iql", "DATASET", "train.offline_steps=many"], "train.offline_steps"),
    (["train", "algo=iql", "DATASET", "train.unknown_key=1"], "train.unknown_key"),
    (["train", "algo=iql", "DATASET", "online.buffer=bogus", "train.offline_steps=0", "train.online_steps=5"],
     "online.buffer: expected auto or one of"),
    (["train", "DATASET", "train.offline_steps=5"], "algo: expected algo=<name>"),
    (["train", "algo=iql", "train.offline_steps=5", "task=point_maze_umaze"], "dataset: expected dataset="),
    (["train", "algo=ppo", "DATASET", "train.offline_steps=5"], "learns from on-policy rollouts only"),
    (["eval", "ckpt=/nonexistent/run"], "found no such path"),
])
def test_bad_input_is_one_clear_line(args, message, maze_store, tmp_path, capsys):
    args = [f"dataset={maze_store}" if a == "DATASET" else a for a in args]
    code = cli(*args, *([f"run_dir={tmp_path / 'r'}"] if args[0] == "train" else []))
    err = capsys.readouterr().err.strip()
    assert code == 1 and err.startswith("error:") and message in err and "\n" not in err, err


def test_checkpoints_of_another_task_or_algorithm_are_refused(tmp_path, maze_store, capsys):
    run_dir = tmp_path / "iql"
    assert cli("train", *TINY_IQL, f"dataset={maze_store}", "train.offline_steps=2", "eval.episodes=0",
               "train.progress=false", f"run_dir={run_dir}") == 0
    capsys.readouterr()
    assert cli("finetune", f"init={run_dir}", "algo=td3_bc", f"run_dir={tmp_path / 'x'}") == 1
    assert "checkpoint of algorithm 'iql', expected algo=td3_bc" in capsys.readouterr().err
    assert cli("finetune", f"init={run_dir}", "task=point_maze_medium", f"run_dir={tmp_path / 'y'}") == 1
    assert "checkpoint of task 'point_maze_umaze', expected task 'point_maze_medium'" in capsys.readouterr().err
    assert cli("train", *TINY_IQL, f"dataset={maze_store}", "train.offline_steps=2", f"run_dir={run_dir}") == 1
    assert "pass resume=true" in capsys.readouterr().err
    assert cli("train", f"run_dir={tmp_path / 'empty'}", "--resume") == 1
    assert "resume=true: expected a checkpoint" in capsys.readouterr().err
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(np.arange(10).tobytes())
    assert cli("eval", f"ckpt={garbage}") == 1
    assert "expected a robot-learning checkpoint" in capsys.readouterr().err


def test_online_training_refuses_a_reward_nothing_computes(tmp_path, maze_store, capsys):
    from robot_learning.data.store import EpisodeStore

    store_copy = tmp_path / "relabelled.zarr"
    shutil.copytree(maze_store, store_copy)
    with EpisodeStore.open(store_copy, mode="a") as store:
        store.add_reward("vlm_pref_test", store.reward("sparse") * 0.5, {"labeler": "test"})
    assert cli("train", *TINY_IQL, f"dataset={store_copy}", "dataset.reward=vlm_pref_test", "train.offline_steps=2",
               "train.online_steps=4", f"run_dir={tmp_path / 'r'}") == 1
    assert "online training needs the environment or a reward model to compute the same reward" in \
        capsys.readouterr().err
    assert not (tmp_path / "r" / "checkpoints").exists()  # refused before any training


def test_help_lists_examples(capsys):
    for verb in ("train", "finetune", "eval"):
        assert cli(verb, "--help") == 0
        out = capsys.readouterr().out
        assert "Examples:" in out and f"robot-learning {verb}" in out
