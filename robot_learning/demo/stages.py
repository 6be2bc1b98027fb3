"""The demo's stages as the CLI commands a user would type, and where each leaves its artefacts.

Commands of a later stage may depend on an earlier stage's output (the reward source name is the trained
reward model's hash), so a stage builds its commands when it starts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from robot_learning.demo.config import DemoConfig

#: The two policies the demo exports and deploys, in pipeline order.
POLICIES = ("offline", "online")


@dataclass(frozen=True)
class Layout:
    """Where the demo's artefacts live inside its run directory."""

    root: Path

    @property
    def store(self) -> Path:
        return self.root / "data" / "demo.zarr"

    @property
    def dataset_plots(self) -> Path:
        return self.root / "dataset"

    @property
    def reward_model(self) -> Path:
        return self.root / "reward_model"

    @property
    def reward_eval(self) -> Path:
        return self.reward_model / "eval"

    def run(self, phase: str) -> Path:
        """Training run directory of ``phase`` (offline | online)."""
        return self.root / phase

    def policy(self, phase: str) -> Path:
        return self.root / "policies" / f"{phase}.onnx"

    def deploy_summary(self, phase: str) -> Path:
        return self.root / "deploy" / f"{phase}.json"

    def deploy_frames(self, phase: str) -> Path:
        return self.root / "deploy" / f"{phase}_frames.png"

    def reward_source(self) -> str:
        """The reward source the trained reward model wrote into the store (named by the model itself)."""
        from reward_models.model import load_model  # reward_models builds on robot_learning: import when needed

        return load_model(self.reward_model, device="cpu").source_name


@dataclass(frozen=True)
class Stage:
    """One stage: a name, a sentence for the terminal and the report, and its commands (verb + arguments)."""

    name: str
    title: str
    commands: Callable[[], list[list[str]]]


def plan(c: DemoConfig, task: str, layout: Layout) -> list[Stage]:
    """The demo's stages, in order; every command is ``robot-learning <verb> <args>``."""
    s, store, seed = c.budget(), str(layout.store), f"seed={c.seed}"
    device = f"device={c.device}"
    evaluation = [f"train.eval_every={s.eval_every}", f"eval.episodes={s.eval_episodes}"]

    def collect() -> list[list[str]]:
        return [["collect", f"task={task}", "teleop=scripted", f"tier={c.tier}", f"episodes={s.episodes}", seed,
                 f"out={store}", *c.args.collect],
                ["dataset", "plot", store, f"out={layout.dataset_plots}"]]

    def label() -> list[list[str]]:
        return [["label", f"dataset={store}", f"labeler={c.label_with}", f"queries={s.queries}", seed, *c.args.label]]

    def reward() -> list[list[str]]:
        model = str(layout.reward_model)
        return [["reward", "train", f"dataset={store}", f"reward_model@model={c.reward_kind}", f"out={model}",
                 f"model.epochs={s.reward_epochs}", f"model.seed={c.seed}", f"model.device={c.device}",
                 *c.args.reward_train],
                ["reward", "relabel", f"dataset={store}", f"model={model}", device],
                ["reward", "eval", f"dataset={store}", f"model={model}", device, f"out={layout.reward_eval}"]]

    def offline() -> list[list[str]]:
        return [["train", f"algo={c.learner}", f"task={task}", f"dataset={store}",
                 f"dataset.reward={layout.reward_source()}", seed, device, f"train.offline_steps={s.offline_steps}",
                 *evaluation, f"run_dir={layout.run('offline')}", *s.train_args, *c.args.train]]

    def online() -> list[list[str]]:
        return [["finetune", f"init={layout.run('offline')}", seed, device, f"train.online_steps={s.online_steps}",
                 *evaluation, f"run_dir={layout.run('online')}", *c.args.finetune]]

    def export() -> list[list[str]]:
        return [["export", f"ckpt={layout.run(p)}", f"out={layout.policy(p)}", seed, *c.args.export]
                for p in POLICIES]

    def deploy() -> list[list[str]]:
        return [["deploy", f"policy={layout.policy(p)}", "robot=ros", f"episodes={s.deploy_episodes}", seed,
                 f"summary={layout.deploy_summary(p)}", f"frames={layout.deploy_frames(p)}", *c.args.deploy]
                for p in POLICIES]

    return [
        Stage("collect", "collect: the simulated arm, scripted teleop and the recorder over ROS 2 record a "
                         "mixed-quality store with camera frames", collect),
        Stage("label", f"label: the {c.label_with} labeler answers preference queries between camera frames", label),
        Stage("reward", f"reward: a Bradley-Terry reward model ({c.reward_kind}) learns from the preferences and "
                        "relabels every step", reward),
        Stage("offline", f"offline: {c.learner} learns from the relabelled store", offline),
        Stage("online", f"online: {c.learner} fine-tunes in the simulator, rewarded by the same reward model", online),
        Stage("export", "export: both policies to self-describing ONNX files, parity-checked against torch", export),
        Stage("deploy", "deploy: the ROS 2 policy node drives the simulated robot with each policy", deploy),
    ]
