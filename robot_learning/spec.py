"""TaskSpec: the one description of a task's robot interface.

A task (real or simulated) is written once in ``configs/task/<name>.yaml`` and loaded into a frozen
:class:`TaskSpec`. The simulator builds its observation space from it, the recorder knows which ROS
topics to sample from it, the episode store validates episodes against it, the learners size their
networks from it and the ONNX file carries it, so a policy node can refuse a policy made for another
robot. This module depends on numpy only.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

#: Where ``TaskSpec.load("name")`` looks for ``<name>.yaml``.
TASK_CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs" / "task"

OBS_KINDS = ("low_dim", "rgb")
OBS_DTYPES = {"low_dim": ("float32", "float64"), "rgb": ("uint8",)}


class SpecError(ValueError):
    """A task description, or data checked against one, is malformed.

    The message names where (file or data source), the field, what was expected and what was found.
    """


def _fail(where: str, field_name: str, expected: str, found: Any, *, described: bool = False) -> SpecError:
    """``found`` is a value (shown with repr) or, with ``described``, already a description."""
    shown = found if described else repr(found)
    return SpecError(f"{where}: field '{field_name}': expected {expected}, found {shown}")


def _shape_text(shape: Sequence[int], batched: bool) -> str:
    dims = (["N"] if batched else []) + [str(s) for s in shape]
    return f"({', '.join(dims)}{',' if len(dims) == 1 else ''})"


@dataclass(frozen=True)
class RosBinding:
    """Where a value lives on the ROS 2 robot interface (DESIGN.md section 7).

    ``field`` selects the part of the message (``position``, ``velocity``, ``point``, ``twist.linear``,
    ``pose.position``); ``names`` selects JointState entries by joint name (order defines the vector).
    """

    topic: str
    msg: str
    field: str | None = None
    names: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"topic": self.topic, "msg": self.msg, "field": self.field, "names": list(self.names)}


@dataclass(frozen=True)
class ObservationSpec:
    """One observation key: a low-dimensional vector or a camera image (H, W, 3) uint8."""

    key: str
    shape: tuple[int, ...]
    dtype: str = "float32"
    kind: str = "low_dim"
    units: str = ""
    description: str = ""
    ros: RosBinding | None = None

    @property
    def is_image(self) -> bool:
        return self.kind == "rgb"

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "shape": list(self.shape),
            "dtype": self.dtype,
            "kind": self.kind,
            "units": self.units,
            "description": self.description,
        }
        if self.ros is not None:
            d["ros"] = self.ros.to_dict()
        return d


@dataclass(frozen=True)
class ActionSpec:
    """The action vector: dimension, per-dimension limits and units, and its ROS command topic.

    ``max_delta`` is the largest per-step change the robot accepts (the policy node's rate limiter).
    """

    dim: int
    low: tuple[float, ...]
    high: tuple[float, ...]
    names: tuple[str, ...] = ()
    units: str = ""
    max_delta: tuple[float, ...] | None = None
    ros: RosBinding | None = None

    @property
    def low_array(self) -> np.ndarray:
        return np.asarray(self.low, dtype=np.float32)

    @property
    def high_array(self) -> np.ndarray:
        return np.asarray(self.high, dtype=np.float32)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "dim": self.dim,
            "low": list(self.low),
            "high": list(self.high),
            "names": list(self.names),
            "units": self.units,
        }
        if self.max_delta is not None:
            d["max_delta"] = list(self.max_delta)
        if self.ros is not None:
            d["ros"] = self.ros.to_dict()
        return d


@dataclass(frozen=True)
class TaskSpec:
    """A task's interface: observations, action, control rate, cameras and instruction text.

    ``env`` names the gymnasium environment that simulates the task (``None`` for a real-only task);
    ``reference_returns`` (``random``/``expert``) define the normalised score
    ``100 * (R - R_random) / (R_expert - R_random)``; success itself is the simulator's (``info["success"]``)
    or the operator's call when an episode ends.
    """

    name: str
    text: str
    control_hz: float
    max_episode_steps: int
    observations: tuple[ObservationSpec, ...]
    action: ActionSpec
    env: Mapping[str, Any] | None = None
    reference_returns: Mapping[str, float] | None = None
    default_reward: str = "env"
    source: str = "<dict>"
    extras: Mapping[str, Any] = field(default_factory=dict)

    # ----------------------------------------------------------------------------- views
    @property
    def obs(self) -> dict[str, ObservationSpec]:
        return {o.key: o for o in self.observations}

    @property
    def obs_keys(self) -> tuple[str, ...]:
        return tuple(o.key for o in self.observations)

    @property
    def low_dim_keys(self) -> tuple[str, ...]:
        return tuple(o.key for o in self.observations if not o.is_image)

    @property
    def image_keys(self) -> tuple[str, ...]:
        return tuple(o.key for o in self.observations if o.is_image)

    @property
    def cameras(self) -> dict[str, tuple[int, int]]:
        """Camera name -> (height, width)."""
        return {o.key: (o.shape[0], o.shape[1]) for o in self.observations if o.is_image}

    @property
    def action_dim(self) -> int:
        return self.action.dim

    @property
    def dt(self) -> float:
        return 1.0 / self.control_hz

    def normalized_score(self, episode_return: float | np.ndarray) -> float | np.ndarray | None:
        """D4RL-style normalised score, or None when the task has no reference returns."""
        if not self.reference_returns:
            return None
        lo, hi = self.reference_returns["random"], self.reference_returns["expert"]
        return 100.0 * (np.asarray(episode_return) - lo) / (hi - lo)

    # ----------------------------------------------------------------------------- checks
    def validate_observation(self, obs: Mapping[str, Any], *, batched: bool = False, where: str = "observation",
                             keys: Sequence[str] | None = None, check_finite: bool = True) -> None:
        """Raise SpecError unless ``obs`` has every key (or ``keys``) with this spec's shape and dtype.

        With ``batched`` the arrays carry a leading batch (or time) axis.
        """
        if not isinstance(obs, Mapping):
            raise _fail(where, "<root>", "a mapping of observation key -> array", type(obs).__name__)
        for key in keys if keys is not None else self.obs_keys:
            o = self.obs[key]
            if key not in obs:
                raise _fail(where, key, f"an array of shape {_shape_text(o.shape, batched)}", "nothing (missing key)",
                            described=True)
            arr = np.asarray(obs[key])
            shape = arr.shape[1:] if batched else arr.shape
            if tuple(shape) != tuple(o.shape):
                raise _fail(where, key, f"shape {_shape_text(o.shape, batched)}", f"shape {arr.shape}", described=True)
            if o.is_image and arr.dtype != np.uint8:
                raise _fail(where, key, "dtype uint8 (rgb image)", f"dtype {arr.dtype}", described=True)
            if not o.is_image and check_finite and arr.size and not np.all(np.isfinite(arr)):
                bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
                raise _fail(where, key, "finite values", f"{bad} NaN/inf value(s)", described=True)

    def validate_action(self, action: Any, *, batched: bool = False, where: str = "action") -> np.ndarray:
        """Return ``action`` as float32 after checking its shape and finiteness."""
        arr = np.asarray(action, dtype=np.float32)
        shape = arr.shape[1:] if batched else arr.shape
        if tuple(shape) != (self.action.dim,):
            raise _fail(where, "action", f"shape {_shape_text((self.action.dim,), batched)}", f"shape {arr.shape}",
                        described=True)
        if arr.size and not np.all(np.isfinite(arr)):
            raise _fail(where, "action", "finite values", "NaN/inf", described=True)
        return arr

    # ----------------------------------------------------------------------------- identity
    def interface_dict(self) -> dict[str, Any]:
        """The parts that must match between a policy and a robot (no text, env or references)."""
        return {
            "observations": {o.key: {"shape": list(o.shape), "dtype": o.dtype, "kind": o.kind} for o in self.observations},
            "action": {"dim": self.action.dim, "low": list(self.action.low), "high": list(self.action.high)},
            "control_hz": self.control_hz,
        }

    def fingerprint(self) -> str:
        """Short hash of :meth:`interface_dict`."""
        blob = json.dumps(self.interface_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def differences(self, other: TaskSpec, keys: Sequence[str] | None = None) -> list[str]:
        """Human-readable interface mismatches between ``self`` (expected) and ``other`` (found).

        ``keys`` restricts the observation comparison to the keys a policy actually reads.
        """
        diffs: list[str] = []
        mine, theirs = self.obs, other.obs
        for key in keys if keys is not None else mine:
            if key not in mine:
                continue
            if key not in theirs:
                diffs.append(f"observation '{key}': expected shape {mine[key].shape}, found it missing")
                continue
            a, b = mine[key], theirs[key]
            if (a.shape, a.dtype, a.kind) != (b.shape, b.dtype, b.kind):
                diffs.append(f"observation '{key}': expected {a.kind} {a.dtype} {a.shape}, found {b.kind} {b.dtype} {b.shape}")
        if self.action.dim != other.action.dim:
            diffs.append(f"action dim: expected {self.action.dim}, found {other.action.dim}")
        elif not (np.allclose(self.action.low, other.action.low) and np.allclose(self.action.high, other.action.high)):
            diffs.append(f"action limits: expected [{list(self.action.low)}, {list(self.action.high)}], "
                         f"found [{list(other.action.low)}, {list(other.action.high)}]")
        if not math.isclose(self.control_hz, other.control_hz):
            diffs.append(f"control rate: expected {self.control_hz} Hz, found {other.control_hz} Hz")
        return diffs

    # ----------------------------------------------------------------------------- (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "name": self.name,
            "text": self.text,
            "control_hz": self.control_hz,
            "max_episode_steps": self.max_episode_steps,
            "observations": {o.key: o.to_dict() for o in self.observations},
            "action": self.action.to_dict(),
            "default_reward": self.default_reward,
        }
        if self.env is not None:
            d["env"] = _plain(self.env)
        if self.reference_returns is not None:
            d["reference_returns"] = dict(self.reference_returns)
        if self.extras:
            d["extras"] = _plain(self.extras)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: str = "<json>") -> TaskSpec:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise SpecError(f"{source}: not valid JSON task spec ({e})") from None
        return cls.from_dict(data, source=source)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "<dict>") -> TaskSpec:
        """Build and validate a TaskSpec; errors name ``source`` and the offending field."""
        if not isinstance(data, Mapping):
            raise _fail(source, "<root>", "a mapping", type(data).__name__)
        known = {"name", "text", "control_hz", "max_episode_steps", "observations", "action", "env",
                 "reference_returns", "default_reward", "extras"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise _fail(source, unknown[0], f"one of {sorted(known)}", unknown[0])
        for req in ("name", "text", "control_hz", "max_episode_steps", "observations", "action"):
            if req not in data:
                raise _fail(source, req, "a value", "nothing (missing)", described=True)
        name = _str(data["name"], source, "name")
        hz = _num(data["control_hz"], source, "control_hz")
        if not hz > 0:
            raise _fail(source, "control_hz", "a positive rate in Hz", hz)
        steps = data["max_episode_steps"]
        if not isinstance(steps, int) or isinstance(steps, bool) or steps <= 0:
            raise _fail(source, "max_episode_steps", "a positive integer", steps)
        obs_raw = data["observations"]
        if not isinstance(obs_raw, Mapping) or not obs_raw:
            raise _fail(source, "observations", "a non-empty mapping of key -> spec", obs_raw)
        observations = tuple(_obs_from_dict(k, v, source) for k, v in obs_raw.items())
        action = _action_from_dict(data["action"], source)
        refs = data.get("reference_returns")
        if refs is not None:
            if not isinstance(refs, Mapping) or set(refs) != {"random", "expert"}:
                raise _fail(source, "reference_returns", "a mapping with 'random' and 'expert'", refs)
            refs = {k: _num(v, source, f"reference_returns.{k}") for k, v in refs.items()}
            if refs["expert"] == refs["random"]:
                raise _fail(source, "reference_returns", "expert != random", refs)
        env = data.get("env")
        if env is not None and (not isinstance(env, Mapping) or "id" not in env):
            raise _fail(source, "env", "a mapping with a gymnasium 'id' (and optional 'kwargs')", env)
        return cls(
            name=name,
            text=_str(data["text"], source, "text"),
            control_hz=hz,
            max_episode_steps=steps,
            observations=observations,
            action=action,
            env=_plain(env) if env is not None else None,
            reference_returns=refs,
            default_reward=_str(data.get("default_reward", "env"), source, "default_reward"),
            source=source,
            extras=_plain(data.get("extras") or {}),
        )

    @classmethod
    def from_yaml(cls, path: str | Path) -> TaskSpec:
        import yaml  # local: yaml is a loader detail, numpy stays the only hard dependency

        path = Path(path)
        if not path.exists():
            raise SpecError(f"{path}: task file not found")
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as e:
            raise SpecError(f"{path}: not valid YAML ({e})") from None
        return cls.from_dict(data, source=str(path))

    @classmethod
    def load(cls, name_or_path: str | Path) -> TaskSpec:
        """Load ``configs/task/<name>.yaml`` by task name, or a YAML file by path."""
        p = Path(name_or_path)
        if p.suffix in (".yaml", ".yml") or p.exists():
            return cls.from_yaml(p)
        candidate = TASK_CONFIG_DIR / f"{name_or_path}.yaml"
        if not candidate.exists():
            known = sorted(x.stem for x in TASK_CONFIG_DIR.glob("*.yaml"))
            raise SpecError(f"task '{name_or_path}': expected one of {known} or a path to a task YAML, found no such file")
        return cls.from_yaml(candidate)


def available_tasks() -> list[str]:
    """Names of the task YAMLs shipped in ``configs/task``."""
    return sorted(p.stem for p in TASK_CONFIG_DIR.glob("*.yaml"))


# --------------------------------------------------------------------------------- parsing helpers
def _plain(x: Any) -> Any:
    """Deep-convert mappings/sequences (e.g. OmegaConf containers) into plain dicts and lists."""
    if isinstance(x, Mapping):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


def _str(x: Any, source: str, name: str) -> str:
    if not isinstance(x, str) or not x:
        raise _fail(source, name, "a non-empty string", x)
    return x


def _num(x: Any, source: str, name: str) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        raise _fail(source, name, "a finite number", x)
    return float(x)


def _ros_from_dict(d: Any, source: str, name: str) -> RosBinding | None:
    if d is None:
        return None
    if not isinstance(d, Mapping) or "topic" not in d or "msg" not in d:
        raise _fail(source, name, "a mapping with 'topic' and 'msg' (and optional 'field', 'names')", d)
    names = d.get("names") or ()
    return RosBinding(topic=_str(d["topic"], source, f"{name}.topic"), msg=_str(d["msg"], source, f"{name}.msg"),
                      field=d.get("field"), names=tuple(str(n) for n in names))


def _obs_from_dict(key: str, d: Any, source: str) -> ObservationSpec:
    where = f"observations.{key}"
    if not isinstance(d, Mapping):
        raise _fail(source, where, "a mapping with 'shape'", d)
    unknown = sorted(set(d) - {"shape", "dtype", "kind", "units", "description", "ros"})
    if unknown:
        raise _fail(source, f"{where}.{unknown[0]}", "one of shape/dtype/kind/units/description/ros", unknown[0])
    shape = d.get("shape")
    if not isinstance(shape, Sequence) or isinstance(shape, str) or not shape or \
            not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape):
        raise _fail(source, f"{where}.shape", "a non-empty list of positive integers", shape)
    kind = d.get("kind", "low_dim")
    if kind not in OBS_KINDS:
        raise _fail(source, f"{where}.kind", f"one of {OBS_KINDS}", kind)
    dtype = d.get("dtype", "uint8" if kind == "rgb" else "float32")
    if dtype not in OBS_DTYPES[kind]:
        raise _fail(source, f"{where}.dtype", f"one of {OBS_DTYPES[kind]} for kind {kind}", dtype)
    if kind == "rgb" and (len(shape) != 3 or shape[2] != 3):
        raise _fail(source, f"{where}.shape", "[height, width, 3] for an rgb camera", list(shape))
    if kind == "low_dim" and len(shape) != 1:
        raise _fail(source, f"{where}.shape", "[dim] for a low-dimensional key", list(shape))
    ros = _ros_from_dict(d.get("ros"), source, f"{where}.ros")
    if ros is not None and ros.names and kind == "low_dim" and len(ros.names) != shape[0]:
        raise _fail(source, f"{where}.ros.names", f"{shape[0]} joint names (one per dimension)", list(ros.names))
    return ObservationSpec(key=str(key), shape=tuple(int(s) for s in shape), dtype=dtype, kind=kind,
                           units=str(d.get("units", "")), description=str(d.get("description", "")), ros=ros)


def _action_from_dict(d: Any, source: str) -> ActionSpec:
    if not isinstance(d, Mapping):
        raise _fail(source, "action", "a mapping with 'dim', 'low', 'high'", d)
    unknown = sorted(set(d) - {"dim", "low", "high", "names", "units", "max_delta", "ros"})
    if unknown:
        raise _fail(source, f"action.{unknown[0]}", "one of dim/low/high/names/units/max_delta/ros", unknown[0])
    dim = d.get("dim")
    if not isinstance(dim, int) or isinstance(dim, bool) or dim <= 0:
        raise _fail(source, "action.dim", "a positive integer", dim)

    def vec(name: str, value: Any) -> tuple[float, ...]:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = [value] * dim
        if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != dim:
            raise _fail(source, f"action.{name}", f"a number or a list of {dim} numbers", value)
        return tuple(_num(v, source, f"action.{name}") for v in value)

    if "low" not in d or "high" not in d:
        raise _fail(source, "action.low/high", "both limits", "a missing limit", described=True)
    low, high = vec("low", d["low"]), vec("high", d["high"])
    if any(lo >= hi for lo, hi in zip(low, high)):
        raise _fail(source, "action.low/high", "low < high in every dimension", {"low": low, "high": high})
    names = tuple(str(n) for n in d.get("names") or ())
    if names and len(names) != dim:
        raise _fail(source, "action.names", f"{dim} names", list(names))
    max_delta = vec("max_delta", d["max_delta"]) if d.get("max_delta") is not None else None
    if max_delta is not None and any(m <= 0 for m in max_delta):
        raise _fail(source, "action.max_delta", "positive per-step limits", list(max_delta))
    return ActionSpec(dim=dim, low=low, high=high, names=names, units=str(d.get("units", "")),
                      max_delta=max_delta, ros=_ros_from_dict(d.get("ros"), source, "action.ros"))
