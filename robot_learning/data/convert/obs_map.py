"""How a source dataset's observation fields fill a task's observation keys.

A source observation is a tree of per-step arrays ("fields"): one unnamed field ``""`` for a plain vector
(D4RL ``observations``, a Minari Box space), or one field per key path for a dict observation (Minari Dict
space: ``observation``, ``achieved_goal``, ``pixels``, nested ``a/b``; a Tuple space gives ``_index_<i>``).
A mapping entry ``task_key: <part>`` or ``task_key: [<part>, <part>, ...]`` (concatenated along the last
axis) takes each part as ``<field>`` or ``<field>[start:stop]`` (a slice of the field's last axis)::

    obs_map: {position: "[0:2]", velocity: "[2:4]"}                     # one D4RL vector split in two
    obs_map: {state: [observation, desired_goal], front: pixels}        # Minari dict observation

Without a mapping, a single vector fills the task's only observation key, and dict fields fill the task
keys of the same name.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from robot_learning.spec import SpecError, TaskSpec

_PART = re.compile(r"^(?P<field>[^\[\]]*?)\s*(\[(?P<start>-?\d*)\s*:\s*(?P<stop>-?\d*)\])?$")


@dataclass(frozen=True)
class Part:
    """One source field, optionally sliced on its last axis."""

    field: str
    start: int | None = None
    stop: int | None = None

    @classmethod
    def parse(cls, text: str, where: str) -> Part:
        m = _PART.match(str(text).strip())
        if m is None:
            raise SpecError(f"{where}: expected '<field>' or '<field>[start:stop]', found {text!r}")
        start, stop = (int(m[k]) if m[k] not in (None, "") else None for k in ("start", "stop"))
        return cls(m["field"].strip().strip("/"), start, stop)

    def width(self, shape: tuple[int, ...], where: str) -> int:
        """Per-step width this part contributes, given the field's per-step shape."""
        size = shape[-1] if shape else 1
        if any(i is not None and not -size <= i <= size for i in (self.start, self.stop)):
            raise SpecError(f"{where}: expected slice bounds within the {size} values of '{self.label}', found {self}")
        return len(range(size)[slice(self.start, self.stop)])

    def take(self, values: np.ndarray) -> np.ndarray:
        """The part of ``values`` (N, ...) this selects; a scalar-per-step field becomes (N, 1)."""
        values = values.reshape(len(values), 1) if values.ndim == 1 else values
        return values[..., self.start:self.stop] if (self.start, self.stop) != (None, None) else values

    @property
    def label(self) -> str:
        """The field's name in messages (``<vector>`` for the unnamed field of a plain vector)."""
        return self.field or "<vector>"

    def __str__(self) -> str:
        if (self.start, self.stop) == (None, None):
            return self.label
        return f"{self.label}[{'' if self.start is None else self.start}:{'' if self.stop is None else self.stop}]"


class ObsMap:
    """A checked mapping from source fields to every observation key of a task."""

    def __init__(self, spec: TaskSpec, parts: Mapping[str, list[Part]]):
        self.spec = spec
        self.parts = dict(parts)

    @classmethod
    def build(cls, spec: TaskSpec, mapping: Mapping[str, str | list[str]] | None,
              fields: Mapping[str, tuple[int, ...]], where: str) -> ObsMap:
        """Check ``mapping`` (or the default) against the source ``fields`` (name -> per-step shape)."""
        described = {name or "<vector>": list(shape) for name, shape in fields.items()}
        if mapping is None:
            parts = cls._default(spec, fields, described, where)
        else:
            unknown = sorted(set(mapping) - set(spec.obs_keys))
            if unknown:
                raise SpecError(f"{where}: obs_map.{unknown[0]}: expected one of the task's observation keys "
                                f"{list(spec.obs_keys)}, found '{unknown[0]}'")
            missing = [k for k in spec.obs_keys if k not in mapping]
            if missing:
                raise SpecError(f"{where}: obs_map.{missing[0]}: expected a source field for every task key, found "
                                f"none for '{missing[0]}' (source fields: {described})")
            parts = {k: [Part.parse(p, f"{where}: obs_map.{k}") for p in ([v] if isinstance(v, str) else list(v))]
                     for k, v in mapping.items()}
        for key, key_parts in parts.items():
            cls._check(spec, key, key_parts, fields, described, where)
        return cls(spec, parts)

    @staticmethod
    def _default(spec: TaskSpec, fields: Mapping[str, tuple[int, ...]], described: dict,
                 where: str) -> dict[str, list[Part]]:
        if set(fields) == {""}:
            if len(spec.obs_keys) != 1:
                raise SpecError(f"{where}: obs_map: expected a mapping that splits the source vector of shape "
                                f"{described['<vector>']} across the task keys {list(spec.obs_keys)}, found none "
                                f"(pass e.g. obs_map='{{{spec.obs_keys[0]}:\"[0:2]\",...}}')")
            return {spec.obs_keys[0]: [Part("")]}
        missing = [k for k in spec.obs_keys if k not in fields]
        if missing:
            raise SpecError(f"{where}: obs_map.{missing[0]}: expected a source field named '{missing[0]}' or an "
                            f"obs_map entry for it, found neither (source fields: {described})")
        return {k: [Part(k)] for k in spec.obs_keys}

    @staticmethod
    def _check(spec: TaskSpec, key: str, parts: list[Part], fields: Mapping[str, tuple[int, ...]],
               described: dict, where: str) -> None:
        o = spec.obs[key]
        for p in parts:
            if p.field not in fields:
                raise SpecError(f"{where}: obs_map.{key}: expected a source field among {described}, found '{p.label}'")
        if o.is_image:
            shape = fields[parts[0].field]
            if len(parts) != 1 or parts[0].start is not None or parts[0].stop is not None or tuple(shape) != o.shape:
                raise SpecError(f"{where}: obs_map.{key}: expected one unsliced image field of shape {list(o.shape)}, "
                                f"found {[str(p) for p in parts]} with shape(s) {[described[p.label] for p in parts]}")
            return
        for p in parts:
            if len(fields[p.field]) > 1:
                raise SpecError(f"{where}: obs_map.{key}: expected vector fields for a low-dim key, found "
                                f"'{p.label}' with per-step shape {list(fields[p.field])}")
        width = sum(p.width(fields[p.field], f"{where}: obs_map.{key}") for p in parts)
        if width != o.shape[0]:
            raise SpecError(f"{where}: obs_map.{key}: expected {o.shape[0]} values per step (the task's shape), found "
                            f"{width} from {[str(p) for p in parts]}")

    def apply(self, values: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Task observations from source field arrays (N, ...): low-dim keys as float32, images unchanged."""
        out = {}
        for key, parts in self.parts.items():
            if self.spec.obs[key].is_image:
                out[key] = np.asarray(values[parts[0].field])
            else:
                columns = [p.take(np.asarray(values[p.field])) for p in parts]
                out[key] = np.concatenate(columns, axis=-1).astype(np.float32)
        return out
