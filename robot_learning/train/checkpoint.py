"""Checkpoints: one ``torch.save`` file per save, written atomically, found by run directory or path.

A checkpoint holds everything a run needs to continue exactly or to be evaluated on its own: the
learner (``state_dict`` and ``training_state``: networks, normaliser, optimisers, counters), its name
and config, the TaskSpec, the run's resolved config and command-line overrides, the run state (phase,
step counters, evaluations), every random stream, and the online replay buffer.

Files are ``<run_dir>/checkpoints/<phase>_<step>.pt``; ``checkpoints/latest`` names the newest. Each is
written to a temporary file in the same directory, flushed to disk and renamed over the target, so a
kill leaves either the previous or the new checkpoint, never a partial one. Loading uses
``weights_only=True``: a checkpoint is data, never code.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from robot_learning.config import ConfigError

log = logging.getLogger(__name__)

FORMAT = "robot_learning.checkpoint"
FORMAT_VERSION = 1
CHECKPOINT_DIR = "checkpoints"
LATEST = "latest"
_NAME = re.compile(r"^(offline|online)_(\d+)\.pt$")
#: Checkpoints sort by phase, then step: the last online one is the newest.
_PHASE_ORDER = {"offline": 0, "online": 1}


def write_atomic(path: Path, write) -> None:
    """Call ``write(tmp_path)``, fsync the result and rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str) -> None:
    write_atomic(path, lambda tmp: tmp.write_text(text))


def save(path: Path, payload: Mapping[str, Any]) -> Path:
    """Write ``payload`` (plus the format header) to ``path`` atomically."""
    data = {"format": FORMAT, "format_version": FORMAT_VERSION, **payload}
    write_atomic(path, lambda tmp: torch.save(data, tmp))
    return path


def resolve(path: str | os.PathLike, key: str = "ckpt") -> Path:
    """A checkpoint file from a file path or a run directory (its latest checkpoint)."""
    p = Path(path)
    if p.is_file():
        return p
    if not p.exists():
        raise ConfigError(f"{key}={path}: expected a checkpoint file or a run directory, found no such path")
    ckpt_dir = p / CHECKPOINT_DIR if (p / CHECKPOINT_DIR).is_dir() else p
    latest = latest_in(ckpt_dir)
    if latest is None:
        raise ConfigError(f"{key}={path}: expected a run directory with checkpoints ({CHECKPOINT_DIR}/*.pt), "
                          "found none")
    return latest


def latest_in(ckpt_dir: Path) -> Path | None:
    """The newest checkpoint of a checkpoint directory (``latest`` pointer, else the highest step), or None."""
    pointer = ckpt_dir / LATEST
    if pointer.is_file():
        named = ckpt_dir / pointer.read_text().strip()
        if named.is_file():
            return named
    found = checkpoints_in(ckpt_dir)
    return found[-1] if found else None


def checkpoints_in(ckpt_dir: Path) -> list[Path]:
    """The checkpoint files of a directory, oldest first (by phase, then step)."""
    def order(p: Path) -> tuple[int, int]:
        phase, step = _NAME.match(p.name).groups()
        return _PHASE_ORDER[phase], int(step)

    return sorted((p for p in ckpt_dir.glob("*.pt") if _NAME.match(p.name)), key=order)


def load(path: str | os.PathLike, key: str = "ckpt", map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read and check a checkpoint (file or run directory); errors name the path and what is wrong."""
    file = resolve(path, key)
    try:
        data = torch.load(file, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means the file is not a checkpoint
        raise ConfigError(f"{key}={file}: expected a robot-learning checkpoint, found an unreadable file "
                          f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ConfigError(f"{key}={file}: expected a checkpoint with format '{FORMAT}', "
                          f"found {data.get('format') if isinstance(data, dict) else type(data).__name__!r}")
    if data.get("format_version") != FORMAT_VERSION:
        raise ConfigError(f"{key}={file}: expected checkpoint format version {FORMAT_VERSION}, "
                          f"found {data.get('format_version')!r}")
    data["path"] = str(file)
    return data


def load_algorithm(path: str | os.PathLike, key: str = "ckpt", device: str | torch.device = "cpu"
                   ) -> tuple[Any, dict[str, Any]]:
    """(learner with its saved weights, the checkpoint) of a checkpoint file or run directory: what evaluation
    and export start from (``algo.spec`` is the checkpoint's TaskSpec)."""
    from robot_learning.algos.base import make_algorithm
    from robot_learning.spec import TaskSpec

    data = load(path, key=key, map_location=device)
    spec = TaskSpec.from_dict(data["task_spec"], source=f"{data['path']} (task_spec)")
    algo = make_algorithm(data["algo"]["name"], data["algo"]["config"], spec, device)
    algo.load_state_dict(data["algo"]["state_dict"])
    return algo, data


class CheckpointManager:
    """Writes a run's checkpoints, keeps the newest ``keep`` and maintains the ``latest`` pointer."""

    def __init__(self, run_dir: Path, keep: int):
        if keep < 1:
            raise ConfigError(f"train.keep_checkpoints: expected at least 1, found {keep}")
        self.dir = run_dir / CHECKPOINT_DIR
        self.keep = keep

    def latest(self) -> Path | None:
        return latest_in(self.dir) if self.dir.is_dir() else None

    def save(self, tag: str, step: int, payload: Mapping[str, Any]) -> Path:
        path = save(self.dir / f"{tag}_{step:09d}.pt", payload)
        write_text_atomic(self.dir / LATEST, path.name)
        self._prune(path)
        log.debug("checkpoint %s", path)
        return path

    def _prune(self, newest: Path) -> None:
        found = checkpoints_in(self.dir)
        for old in found[: max(0, len(found) - self.keep)]:
            if old != newest:
                old.unlink(missing_ok=True)
