"""Plumbing shared by the reward verbs: typed configs, required keys, model presets, printing results."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import OmegaConf

from robot_learning.config import CONFIG_DIR, ConfigError, build, to_plain

T = TypeVar("T")


def load(cls: type[T], cfg: Any, config_name: str) -> T:
    """The verb's config dataclass from its composed config (errors name the YAML and key)."""
    return build(cls, cfg, where=f"configs/{config_name}.yaml")


def require(value: Any, key: str, config_name: str, expected: str) -> Any:
    """``value`` unless empty, else a ConfigError naming the key and what it should hold."""
    if value is None or value == "":
        raise ConfigError(f"configs/{config_name}.yaml: key '{key}': expected {expected}, found nothing (pass {key}=...)")
    return value


def model_preset(node: Any) -> dict[str, Any]:
    """A reward model config: the composed mapping, or a preset name from ``configs/reward_model/``."""
    if isinstance(node, str):
        path = CONFIG_DIR / "reward_model" / f"{node}.yaml"
        if not path.is_file():
            presets = sorted(p.stem for p in path.parent.glob("*.yaml"))
            raise ConfigError(f"configs/reward_train.yaml: key 'model': expected one of the presets {presets}, found '{node}'")
        return to_plain(OmegaConf.load(path))
    return dict(to_plain(node))


def show(result: Any) -> None:
    """Print a verb's result as indented JSON (the last thing a verb prints, easy to parse)."""
    print(json.dumps(result, indent=1, default=str))


def default_out(kind: str, name: str) -> Path:
    """``runs/<date>/reward_<kind>_<name>``: the stack's run-directory convention."""
    import time

    return Path("runs") / time.strftime("%Y-%m-%d") / f"reward_{kind}_{name}"
