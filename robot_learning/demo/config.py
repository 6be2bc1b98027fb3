"""The demo's configuration: configs/demo.yaml, whose ``scales`` mapping holds the scale presets (each key
documented there)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from robot_learning.config import ConfigError, build

#: Stages whose commands take extra overrides from ``args.<stage>``.
ARG_STAGES = ("collect", "label", "reward_train", "train", "finetune", "export", "deploy")


@dataclass
class ScaleConfig:
    """How much each stage does (configs/demo.yaml ``scales.<name>``)."""

    episodes: int = 150
    queries: int = 2000
    reward_epochs: int = 100
    offline_steps: int = 10_000
    online_steps: int = 10_000
    eval_every: int = 2000
    eval_episodes: int = 20
    deploy_episodes: int = 20
    train_args: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for name in ("episodes", "queries", "reward_epochs", "offline_steps", "online_steps", "eval_every",
                     "eval_episodes", "deploy_episodes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected a positive integer, found {getattr(self, name)}")


@dataclass
class StageArgs:
    """Extra ``key=value`` overrides per stage, appended after the demo's own."""

    collect: list[str] = field(default_factory=list)
    label: list[str] = field(default_factory=list)
    reward_train: list[str] = field(default_factory=list)
    train: list[str] = field(default_factory=list)
    finetune: list[str] = field(default_factory=list)
    export: list[str] = field(default_factory=list)
    deploy: list[str] = field(default_factory=list)


@dataclass
class DemoConfig:
    """configs/demo.yaml."""

    task: dict[str, Any] | None = None
    scale: str = "default"
    scales: dict[str, Any] = field(default_factory=dict)
    out: str | None = None
    tier: str = "mixed"
    label_with: str = "oracle"
    learner: str = "iql"
    reward_kind: str = "bt_cnn"
    seed: int = 0
    device: str = "auto"
    threads: int = 1
    args: StageArgs = field(default_factory=StageArgs)

    def budget(self) -> ScaleConfig:
        """The chosen scale's numbers; an unknown scale is an error listing the known ones."""
        if self.scale not in self.scales:
            raise ConfigError(f"configs/demo.yaml: key 'scale': expected one of {sorted(self.scales)}, "
                              f"found {self.scale!r}")
        return build(ScaleConfig, self.scales[self.scale], where=f"configs/demo.yaml: scales.{self.scale}")
