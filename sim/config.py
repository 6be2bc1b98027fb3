"""Where the simulator's data configs live and how they are read: one error style for all of them.

Dynamics presets (``configs/sim/dynamics/*.yaml``) and dataset tiers (``configs/sim/tier/*.yaml``) are data;
this module finds them by name and turns a malformed file or an unknown name into one
:class:`~robot_learning.spec.SpecError` naming the file, the field, what was expected and what was found.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from robot_learning.spec import SpecError

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs" / "sim"


def config_error(where: str, field: str, expected: str, found: Any) -> SpecError:
    """The project's error message shape (DESIGN.md section 10)."""
    return SpecError(f"{where}: field '{field}': expected {expected}, found {found!r}")


def available(group: str) -> list[str]:
    """Names of the YAML files in ``configs/sim/<group>``."""
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


def load_named(group: str, name: str, field: str) -> tuple[dict[str, Any], str]:
    """Read ``configs/sim/<group>/<name>.yaml`` as a mapping; returns (data, file path for messages)."""
    path = CONFIG_DIR / group / f"{name}.yaml"
    if not path.exists():
        raise config_error(f"configs/sim/{group}", field, f"one of {available(group)}", name)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise SpecError(f"{path}: not valid YAML ({e})") from None
    if not isinstance(data, dict):
        raise config_error(str(path), "<root>", "a mapping", type(data).__name__)
    return data, str(path)


def positive_number(value: Any, where: str, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or value == float("inf"):
        raise config_error(where, field, "a positive finite number", value)
    return float(value)


def non_negative_number(value: Any, where: str, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
        raise config_error(where, field, "a non-negative finite number", value)
    return float(value)


def fraction(value: Any, where: str, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise config_error(where, field, "a number in [0, 1]", value)
    return float(value)
