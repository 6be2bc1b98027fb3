"""``robot-learning``: one console script, one verb per pipeline stage.

    robot-learning <verb> [sub-verb] [positional ...] [key=value ...] [--flag [value]]

``--threads N`` (or ``RL_THREADS=N``) caps torch's CPU threads for any verb: on a machine shared with
other jobs, oversubscribed OpenMP threads make training several times slower (a 3-member reward CNN step
took 0.27 s on 1 thread but 1.8 s on 2 while other processes ran).

Every verb composes its Hydra config (``configs/<verb>.yaml`` plus groups such as ``task=``, ``algo=``)
with ``key=value`` overrides; ``--name value`` is shorthand for ``name=value`` and a bare ``--flag`` for
``flag=true``. ``robot-learning <verb> --help`` prints the verb's usage, its examples and its composed
default config.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from omegaconf import OmegaConf

from robot_learning.config import CONFIG_DIR, ConfigError, compose


@dataclass(frozen=True)
class Verb:
    """A CLI verb: what it runs (``module:function``), its primary config and positional arguments.

    ``raw`` verbs receive their argument list untouched (``launch`` parses ROS-style ``key:=value``).
    """

    target: str
    summary: str
    config: str | None = None
    positional: tuple[str, ...] = ()
    raw: bool = False
    groups: tuple[str, ...] = field(default_factory=tuple)


#: The verbs, in pipeline order. Sub-verbs are written "dataset info".
VERBS: dict[str, Verb] = {
    "dataset generate": Verb("sim.generate:run", "write a simulated dataset at a quality tier (expert|medium|noisy|mixed)",
                             "dataset_generate", groups=("task",)),
    "dataset info": Verb("robot_learning.data.tools.info:run", "summarise a store: episodes, returns, success, rewards, quality",
                         "dataset_info", positional=("path",)),
    "dataset verify": Verb("robot_learning.data.tools.verify:run", "check a store (NaN/inf, shapes vs spec, ends); exit 1 on failure",
                           "dataset_verify", positional=("path",)),
    "dataset plot": Verb("robot_learning.data.tools.plot:run", "plot a store to PNG: returns, lengths, trajectories, frames",
                         "dataset_plot", positional=("path",)),
    "dataset convert": Verb("robot_learning.data.tools.convert:run", "convert D4RL HDF5, Minari or rosbag2 MCAP into a store",
                            "dataset_convert", positional=("input",)),
    "dataset merge": Verb("robot_learning.data.tools.merge:run", "merge stores of the same task into a new store",
                          "dataset_merge"),
    "dataset drop-episodes": Verb("robot_learning.data.tools.drop:run", "copy a store without the given episodes",
                                  "dataset_drop", positional=("path",)),
    "dataset corrupt": Verb("robot_learning.data.tools.corrupt:run",
                            "copy a store with corrupted obs/actions/rewards/dynamics (RIQL protocol)",
                            "dataset_corrupt", positional=("path",)),
    "collect": Verb("robot_learning.collect:run", "record teleoperated episodes over ROS 2 (sim robot, teleop, recorder)",
                    "collect", groups=("task",)),
    "launch": Verb("robot_learning.launcher:main", "run a ROS 2 YAML launch file as processes (name:=value arguments)",
                   "launch", raw=True),
    "label": Verb("reward_models.verbs.label:run", "ask a labeler (oracle|clip|chat_vlm) for preferences between observations",
                  "label", groups=("labeler",)),
    "reward train": Verb("reward_models.verbs.train:run", "train a reward model (bt_cnn|bt_clip|success_clf) on a store",
                         "reward_train"),
    "reward relabel": Verb("reward_models.verbs.relabel:run", "write a trained reward model's rewards into a store",
                           "reward_relabel"),
    "reward eval": Verb("reward_models.verbs.evaluate:run", "reward model vs true rewards: Spearman rho, accuracy, plot",
                        "reward_eval"),
    "train": Verb("robot_learning.train.cmd_train:run", "offline RL on an episode store (then online, if asked)",
                  "train", raw=True, groups=("task",)),
    "finetune": Verb("robot_learning.train.cmd_finetune:run", "online training in simulation, from a checkpoint or scratch",
                     "finetune", raw=True, groups=("task",)),
    "eval": Verb("robot_learning.train.cmd_eval:run", "evaluate a checkpoint's (or an ONNX file's) policy in simulation",
                 "eval"),
    "export": Verb("robot_learning.export.command:run", "write a checkpoint's policy as one ONNX file (parity-checked)",
                   "export"),
    "deploy": Verb("robot_learning.deploy.runner:run", "run an ONNX policy for N episodes: in the sim env or over ROS 2",
                   "deploy", groups=("task",)),
    "demo": Verb("robot_learning.demo.runner:run", "the whole chain in simulation: collect, label, reward, offline, "
                 "online, export, deploy; report in runs/demo/", "demo", groups=("task",)),
}


def _usage() -> str:
    width = max(len(v) for v in VERBS)
    lines = [__doc__.strip().splitlines()[0], "", "usage: robot-learning [--threads N] <verb> [args] [key=value ...]  (--help on any verb)", ""]
    lines += [f"  {name:<{width}}  {verb.summary}" for name, verb in VERBS.items()]
    return "\n".join(lines)


def _resolve(target: str) -> Callable:
    module, _, func = target.partition(":")
    return getattr(importlib.import_module(module), func)


def _verb_help(name: str, verb: Verb) -> str:
    module = importlib.import_module(verb.target.partition(":")[0])
    pos = " ".join(f"<{p}>" for p in verb.positional)
    lines = [f"usage: robot-learning {name} {pos} [key=value ...]".replace("  ", " "), "", verb.summary, ""]
    if module.__doc__:
        lines += [module.__doc__.strip(), ""]
    for group in verb.groups:
        options = sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))
        lines.append(f"{group}= one of: {', '.join(options)}")
    if verb.config:
        try:
            cfg = compose(verb.config)
            lines += ["", f"default config (configs/{verb.config}.yaml, composed):", OmegaConf.to_yaml(cfg).rstrip()]
        except ConfigError as e:
            lines += ["", f"(default config not composable without arguments: {e})"]
    return "\n".join(lines)


def parse_overrides(args: Sequence[str], positional: Sequence[str]) -> list[str]:
    """Turn CLI tokens into Hydra overrides: positionals by name, ``--a-b v`` -> ``a_b=v``, ``--f`` -> ``f=true``."""
    overrides: list[str] = []
    names = list(positional)
    i = 0
    while i < len(args):
        tok = args[i]
        if tok.startswith("--"):
            key = tok[2:].replace("-", "_")
            if "=" in key:
                overrides.append(key)
            elif i + 1 < len(args) and not args[i + 1].startswith("--") and "=" not in args[i + 1]:
                overrides.append(f"{key}={args[i + 1]}")
                i += 1
            else:
                overrides.append(f"{key}=true")
        elif "=" in tok:
            overrides.append(tok)
        elif names:
            overrides.append(f"{names.pop(0)}={tok}")
        else:
            raise ConfigError(f"argument '{tok}': expected key=value or one of the positional arguments "
                              f"{list(positional) or '(none)'}, found an extra positional argument")
        i += 1
    return overrides


def _setup_logging() -> None:
    from rich.logging import RichHandler

    level = os.environ.get("RL_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(level=level, format="%(message)s", datefmt="%H:%M:%S",
                        handlers=[RichHandler(show_path=False, rich_tracebacks=False, markup=False)])
    for noisy in ("matplotlib", "PIL", "urllib3", "h5py", "numcodecs", "asyncio", "zarr"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _known_errors() -> tuple[type[BaseException], ...]:
    from robot_learning.data.store import StoreError
    from robot_learning.export.onnx_export import ExportError
    from robot_learning.spec import SpecError

    return ConfigError, SpecError, StoreError, ExportError, FileNotFoundError


def _apply_threads(argv: list[str]) -> list[str]:
    """Remove ``--threads N`` from ``argv`` and cap torch's threads (child processes inherit RL_THREADS)."""
    if "--threads" in argv:
        i = argv.index("--threads")
        if i + 1 >= len(argv) or not argv[i + 1].isdigit() or int(argv[i + 1]) < 1:
            raise ConfigError(f"--threads: expected a positive integer, found {argv[i + 1] if i + 1 < len(argv) else 'nothing'}")
        os.environ["RL_THREADS"] = argv[i + 1]
        argv = argv[:i] + argv[i + 2:]
    threads = os.environ.get("RL_THREADS")
    if threads:
        import torch

        torch.set_num_threads(int(threads))
        os.environ.setdefault("OMP_NUM_THREADS", threads)
    return argv


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``robot-learning`` console script; returns the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        argv = _apply_threads(argv)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    name = next((n for n in (" ".join(argv[:2]), argv[0]) if n in VERBS), None)
    if name is None:
        family = [v for v in VERBS if v.split()[0] == argv[0]]
        hint = f"; '{argv[0]}' takes one of: {', '.join(v.split()[1] for v in family)}" if family else ""
        print(f"error: verb '{' '.join(argv[:2])}': expected one of the verbs below{hint}\n\n{_usage()}", file=sys.stderr)
        return 2
    verb = VERBS[name]
    rest = argv[len(name.split()):]
    if "--help" in rest or "-h" in rest:
        print(_verb_help(name, verb))
        return 0
    _setup_logging()
    try:
        func = _resolve(verb.target)
        if verb.raw:
            result = func(rest)
        else:
            cfg = compose(verb.config, parse_overrides(rest, verb.positional)) if verb.config else OmegaConf.create()
            result = func(cfg)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into e.g. `head`, which closed early
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except _known_errors() as e:
        if os.environ.get("RL_DEBUG"):
            raise
        print(f"error: {e}", file=sys.stderr)
        return 1
    return int(result) if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
