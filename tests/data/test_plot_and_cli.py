"""`dataset plot`, and every dataset verb once through the real CLI entry point (including --help)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from robot_learning.cli import main
from robot_learning.data.store import EpisodeStore
from robot_learning.data.tools.plot import plot_store
from tests.data.builders import task, write_d4rl, write_store
from tests.data.test_convert import d4rl_arrays

PNG = b"\x89PNG\r\n\x1a\n"
VERBS = ("info", "verify", "plot", "convert", "merge", "drop-episodes")


@pytest.fixture
def maze(tmp_path):
    """Three episodes of a maze-like task with a 'position' key and a camera."""
    spec = task({"position": 2, "front": {"shape": [8, 8, 3], "kind": "rgb"}},
                reference_returns={"random": 0.0, "expert": 5.0})
    rng = np.random.default_rng(0)
    episodes = []
    for e in range(3):
        n = 4 + e
        episodes.append({"obs": {"position": np.cumsum(rng.normal(size=(n, 2)), 0).astype(np.float32),
                                 "front": rng.integers(0, 255, (n, 8, 8, 3), dtype=np.uint8)},
                         "action": rng.uniform(-1, 1, (n, 2)), "reward": np.ones(n), "success": e != 1})
    write_store(tmp_path / "maze.zarr", spec, episodes).close()
    return tmp_path / "maze.zarr"


def test_plot_writes_every_figure(maze, tmp_path):
    files = plot_store(EpisodeStore.open(maze), tmp_path / "plots", frame_episodes=2, frames_per_episode=3)
    assert [f.name for f in files] == ["returns.png", "lengths.png", "trajectories.png", "frames_front.png"]
    assert all(f.read_bytes()[:8] == PNG for f in files)
    no_position = plot_store(EpisodeStore.open(maze), tmp_path / "p2", position_key="velocity")
    assert "trajectories.png" not in [f.name for f in no_position]


@pytest.mark.parametrize("verb", VERBS)
def test_help(verb, capsys):
    assert main(["dataset", verb, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: robot-learning dataset {verb}") and "default config" in out


def test_cli_verbs(maze, tmp_path, capsys):
    assert main(["dataset", "info", str(maze), "json=true"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["episodes"] == 3 and info["success_rate"] == pytest.approx(2 / 3)
    assert info["quality"]["tq"] == pytest.approx(np.mean([4, 5, 6]) / 5)
    assert main(["dataset", "info", str(maze)]) == 0
    assert "dataset quality" in capsys.readouterr().out

    assert main(["dataset", "verify", str(maze)]) == 0
    assert "no problems" in capsys.readouterr().out

    assert main(["dataset", "plot", str(maze), f"out={tmp_path / 'plots'}"]) == 0
    assert "trajectories.png" in capsys.readouterr().out

    assert main(["dataset", "drop-episodes", str(maze), "episodes=[1]", f"out={tmp_path / 'd.zarr'}"]) == 0
    assert main(["dataset", "merge", f"inputs=[{maze},{tmp_path / 'd.zarr'}]", f"out={tmp_path / 'm.zarr'}"]) == 0
    assert EpisodeStore.open(tmp_path / "m.zarr").episode_lengths.tolist() == [4, 5, 6, 4, 6]

    spec_file = tmp_path / "dot.yaml"
    spec_file.write_text(yaml.safe_dump(task({"position": 2, "velocity": 2}).to_dict()))
    src = write_d4rl(tmp_path / "d.hdf5", **d4rl_arrays())
    assert main(["dataset", "convert", str(src), f"task_file={spec_file}", f"out={tmp_path / 'c.zarr'}",
                 'obs_map={position:"[0:2]",velocity:"[2:4]"}']) == 0
    assert EpisodeStore.open(tmp_path / "c.zarr").n_episodes == 4


def test_cli_errors_are_one_line(maze, tmp_path, capsys):
    assert main(["dataset", "verify", str(tmp_path)]) == 1
    assert "FAILED" in capsys.readouterr().out
    assert main(["dataset", "info", str(tmp_path / "missing.zarr")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "missing.zarr: expected an episode store" in err and err.count("\n") == 1
    assert main(["dataset", "convert", str(maze), "task=no_such_task", f"out={tmp_path / 'x.zarr'}"]) == 1
    assert "Could not find 'task/no_such_task'" in capsys.readouterr().err
    assert main(["dataset", "merge", f"inputs=[{maze}]", f"out={tmp_path / 'x.zarr'}"]) == 1
    assert "expected at least two stores, found 1" in capsys.readouterr().err
    assert main(["dataset", "drop-episodes", str(maze), f"out={tmp_path / 'x.zarr'}"]) == 1
    assert "key 'episodes': expected a list of episode indices" in capsys.readouterr().err
