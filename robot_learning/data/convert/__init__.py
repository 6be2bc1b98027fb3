"""Convert other dataset formats into an episode store, choosing the converter from the input.

    .hdf5 / .h5 file                           -> robot_learning.data.convert.d4rl    (D4RL-style flat HDF5)
    directory with data/main_data.hdf5         -> robot_learning.data.convert.minari  (Minari dataset)
    .mcap file, or a rosbag2 directory of them -> robot_learning.data.convert.mcap    (rosbag2 MCAP)

Every format module exposes ``convert(input: Path, spec: TaskSpec, out: Path, options: ConvertOptions) -> Path``
and is imported only when its format is used.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from robot_learning.data.convert.episodes import ConvertOptions
from robot_learning.data.store import StoreError
from robot_learning.data.tools.building import check_output
from robot_learning.spec import TaskSpec

__all__ = ["ConvertOptions", "convert", "detect_format"]

#: Format name -> module holding its ``convert``.
FORMATS = {
    "d4rl": "robot_learning.data.convert.d4rl",
    "minari": "robot_learning.data.convert.minari",
    "mcap": "robot_learning.data.convert.mcap",
}

EXPECTED = "a D4RL .hdf5/.h5 file, a Minari dataset directory (with data/main_data.hdf5) or a rosbag2 .mcap"


def detect_format(path: str | os.PathLike) -> str:
    """The format name of ``path`` (a key of :data:`FORMATS`)."""
    p = Path(path)
    if not p.exists():
        raise StoreError(f"{p}: input: expected {EXPECTED}, found no such path")
    if p.is_file() and p.suffix.lower() in (".hdf5", ".h5"):
        return "d4rl"
    if p.is_file() and p.suffix.lower() == ".mcap":
        return "mcap"
    if p.is_dir() and (p / "data" / "main_data.hdf5").is_file():
        return "minari"
    if p.is_dir() and (p / "metadata.yaml").is_file() and any(p.glob("*.mcap")):
        return "mcap"
    found = "a directory without data/main_data.hdf5" if p.is_dir() else f"a file with suffix '{p.suffix}'"
    raise StoreError(f"{p}: input: expected {EXPECTED}, found {found}")


def convert(input: str | os.PathLike, task: TaskSpec | str | os.PathLike, out: str | os.PathLike,
            options: ConvertOptions | None = None) -> Path:
    """Convert ``input`` into a new store at ``out`` for ``task`` (a TaskSpec, task name or YAML path)."""
    spec = task if isinstance(task, TaskSpec) else TaskSpec.load(task)
    fmt = detect_format(input)
    check_output(out, [input], (options or ConvertOptions()).overwrite)
    try:
        module = importlib.import_module(FORMATS[fmt])
    except ModuleNotFoundError as e:
        if e.name != FORMATS[fmt]:
            raise
        raise StoreError(f"{input}: {fmt} conversion: expected the module {FORMATS[fmt]}, "
                         "found it not installed") from None
    return module.convert(Path(input), spec, Path(out), options or ConvertOptions())
