r"""Convert a D4RL HDF5 file, a Minari dataset or a rosbag2 MCAP recording into an episode store.

    robot-learning dataset convert hopper-medium-v2.hdf5 task=hopper out=data/hopper_medium.zarr
    robot-learning dataset convert pointmaze-medium-v2 task_file=my_maze.yaml out=maze.zarr \
        obs_map='{position:"observation[0:2]",velocity:"observation[2:4]"}'

The format follows from the input (robot_learning.data.convert). Rewards go to the ``env`` source;
each episode records ``source`` and ``source_episode`` (its id in the input).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from robot_learning.config import ConfigError
from robot_learning.data.convert import ConvertOptions, convert, detect_format
from robot_learning.data.store import EpisodeStore
from robot_learning.data.tools.common import console, load_config, require
from robot_learning.spec import TaskSpec

CONFIG = "dataset_convert"


@dataclass
class ConvertConfig(ConvertOptions):
    """configs/dataset_convert.yaml: the converter options plus input, task and output."""

    input: str | None = None
    task: dict[str, Any] | None = None
    task_file: str | None = None
    out: str | None = None


def task_spec(c: ConvertConfig) -> TaskSpec:
    """The TaskSpec chosen by ``task=<name>`` (the config group) or ``task_file=<yaml>``."""
    if c.task is not None and c.task_file is not None:
        raise ConfigError(f"configs/{CONFIG}.yaml: keys 'task'/'task_file': expected one of them, found both "
                          f"(task={c.task.get('name')!r}, task_file={c.task_file!r})")
    if c.task is not None:
        return TaskSpec.from_dict(c.task, source=f"configs/task ({c.task.get('name', '?')})")
    require(c.task_file, "task", CONFIG, "a task: task=<name> (configs/task/<name>.yaml) or task_file=<path.yaml>")
    return TaskSpec.load(c.task_file)


def run(cfg: Any) -> int:
    """CLI entry: convert ``input`` for the task into ``out``."""
    c = load_config(ConvertConfig, cfg, CONFIG)
    require(c.input, "input", CONFIG, "the dataset to convert (a .hdf5/.h5 file, a Minari directory or a .mcap)")
    require(c.out, "out", CONFIG, "the path of the store to create")
    spec = task_spec(c)
    options = ConvertOptions(**{f.name: getattr(c, f.name) for f in fields(ConvertOptions)})
    path = convert(c.input, spec, c.out, options)
    with EpisodeStore.open(path) as store:
        console().print(f"[green]converted[/green] {c.input} ({detect_format(c.input)}) into {path}: "
                        f"{store.n_episodes} episodes, {store.n_steps} steps, task '{spec.name}'")
    return 0
