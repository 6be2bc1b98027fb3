"""Configuration plumbing shared by every CLI verb: Hydra composition, typed dataclass configs, run files.

Configs are data: each verb has a primary YAML in ``configs/`` composed with config groups
(``task=``, ``algo=``, ...) and ``key=value`` overrides. Algorithm and component configs are dataclasses
(a comment on every field, every default sourced); :func:`build` turns a config node into one with
errors that name the field, what was expected and what was found.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import DictConfig, OmegaConf

from robot_learning.spec import TaskSpec, available_tasks

#: The Hydra config directory (config groups: task, algo, dynamics, ...; one primary YAML per verb).
CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"

T = TypeVar("T")


class ConfigError(ValueError):
    """A malformed configuration: names the config/field, what was expected and what was found."""


def register_structured_configs() -> None:
    """Make every registered algorithm's config dataclass the Hydra option ``algo=<name>``.

    The dataclass is the single source of defaults; YAML presets in ``configs/algo/`` extend it
    (``defaults: [iql, _self_]``) and only list what they change. Overrides are type-checked.
    """
    from hydra.core.config_store import ConfigStore

    from robot_learning.algos.base import ALGORITHMS
    import robot_learning.algos  # noqa: F401  (imports every algorithm module, filling the registry)

    store = ConfigStore.instance()
    for name, cls in ALGORITHMS.items():
        store.store(group="algo", name=name, node=cls.Config(name=name))


def compose(config_name: str, overrides: Sequence[str] = ()) -> DictConfig:
    """Compose ``configs/<config_name>.yaml`` with Hydra overrides (``key=value``, ``group=option``)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    register_structured_configs()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
            return hydra_compose(config_name=config_name, overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as e:
        text = f"{e}\n{e.__cause__ or ''}"
        lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith(
            ("full_key:", "object_type=", "reference_type=", "Config search path", "provider="))]
        raise ConfigError(f"configs/{config_name}.yaml with overrides {list(overrides)}: "
                          f"{' '.join(lines) or type(e).__name__}") from None


def task_from_config(node: Any, key: str = "task") -> TaskSpec:
    """The TaskSpec a verb was given: the composed ``task=<name>`` group (configs/task/<name>.yaml).

    Every verb selects its task through the Hydra group, so ``cfg.task`` holds the YAML's content.
    """
    data = to_plain(node)
    if not isinstance(data, Mapping) or not data:
        raise ConfigError(f"{key}: expected task=<name> (one of {available_tasks()}), found {data!r}")
    return TaskSpec.from_dict(data, source=f"configs/task/{data.get('name', '?')}.yaml")


def to_plain(node: Any) -> Any:
    """A config node (or anything) as plain Python containers, interpolations resolved."""
    if isinstance(node, DictConfig) or OmegaConf.is_config(node):
        return OmegaConf.to_container(node, resolve=True)
    return node


def _check_type(value: Any, tp: Any, where: str) -> Any:
    """Coerce/validate ``value`` against a dataclass field type (simple types, Optional, lists, tuples)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check_type(value, arg, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{where}: unexpected value {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: expected one of {list(args)}, found {value!r}")
        return value
    if origin in (list, tuple, Sequence) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, found {value!r}")
        inner = args[0] if args and args[0] is not Ellipsis else Any
        items = [_check_type(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if (origin is tuple or tp is tuple) else items
    if origin in (dict, Mapping) or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, found {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        return build(tp, value, where)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, found {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{where}: expected an integer, found {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, found {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, found {value!r}")
        return value
    return value


def build(cls: type[T], node: Any, where: str | None = None) -> T:
    """Instantiate dataclass ``cls`` from a config mapping, checking names and types.

    Missing fields take the dataclass defaults; an unknown field is an error listing the known ones.
    """
    where = where or cls.__name__
    data = to_plain(node) if node is not None else {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping of {cls.__name__} fields, found {data!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: expected one of the {cls.__name__} fields {sorted(known)}, "
                          f"found unknown field '{unknown[0]}'")
    kwargs = {name: _check_type(value, hints[name], f"{where}.{name}") for name, value in data.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from None


def asdict(obj: Any) -> dict[str, Any]:
    """A config dataclass as plain JSON-ready data (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(obj), default=str))


def save_resolved(cfg: Any, path: str | Path) -> Path:
    """Write the fully resolved config next to a run's outputs (diffusion_policy-style reproducibility)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    plain = to_plain(cfg) if not dataclasses.is_dataclass(cfg) else asdict(cfg)
    path.write_text(OmegaConf.to_yaml(OmegaConf.create(plain)))
    return path
