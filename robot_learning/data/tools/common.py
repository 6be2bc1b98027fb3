"""Plumbing shared by the dataset verbs: typed configs, required keys, rich output, sizes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, TypeVar

from rich.console import Console

from robot_learning.config import ConfigError, build

T = TypeVar("T")


def load_config(cls: type[T], cfg: Any, config_name: str) -> T:
    """Build the verb's config dataclass from its composed Hydra config (errors name the YAML and key)."""
    return build(cls, cfg, where=f"configs/{config_name}.yaml")


def require(value: Any, key: str, config_name: str, expected: str) -> Any:
    """``value`` unless it is empty, else a ConfigError naming the key and what it should hold."""
    if value is None or value == "" or value == []:
        raise ConfigError(f"configs/{config_name}.yaml: key '{key}': expected {expected}, found nothing "
                          f"(pass {key}=...)")
    return value


def console() -> Console:
    """The console user-facing output goes to (stdout; rich decides on colour)."""
    return Console(soft_wrap=True)


def disk_usage(path: Path) -> int:
    """Bytes used by the files under ``path``."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_size
            except FileNotFoundError:
                continue
    return total


def human_bytes(n: float) -> str:
    """1234567 -> '1.2 MB' (decimal units)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"
