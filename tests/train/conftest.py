"""Shared fixtures of the training tests: small generated datasets (once per session), quiet single-thread torch."""

from __future__ import annotations

import os

import pytest
import torch

#: Tiny learner settings for runtime tests (the defaults are the papers'; tests only need speed).
TINY_IQL = ["algo=iql", "algo.hidden=[16,16]", "algo.batch_size=32"]


@pytest.fixture(autouse=True)
def _one_thread():
    """Small networks run fastest on one intra-op thread (and do not fight other processes for cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def maze_store(tmp_path_factory):
    """A small noisy point_maze_umaze store (sparse and dense rewards)."""
    import sim

    path = tmp_path_factory.mktemp("data") / "maze.zarr"
    sim.generate_dataset("point_maze_umaze", "noisy", 12, 0, path, progress_bar=False)
    return path


@pytest.fixture(scope="session")
def maze_store_2(tmp_path_factory):
    """Newly logged data of the same task (another tier and seed): offline fine-tuning input."""
    import sim

    path = tmp_path_factory.mktemp("data") / "maze_new.zarr"
    sim.generate_dataset("point_maze_umaze", "medium", 6, 1, path, progress_bar=False)
    return path


@pytest.fixture(scope="session")
def subprocess_env():
    """Environment of CLI subprocesses: offscreen GL, one torch thread, no progress bars on a pipe."""
    return {**os.environ, "MUJOCO_GL": "egl", "OMP_NUM_THREADS": "1", "RL_LOG_LEVEL": "WARNING"}
