"""Dynamics-gap variants: scale a compiled MjModel's masses, friction, gravity and actuator strength.

H2O (and any sim-to-real study) needs a simulator that is *wrong in known ways*: train in a gap
variant, evaluate in nominal dynamics. Presets are data in ``configs/sim/dynamics/<name>.yaml``; a
mapping with the same keys can be passed directly. Scaling is applied once, to a freshly compiled
model, so it never compounds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import mujoco

from sim.config import available, config_error, load_named, positive_number


@dataclass(frozen=True)
class Dynamics:
    """Multipliers on the nominal model (1.0 everywhere is the nominal simulator).

    - ``mass_scale``: every body mass and inertia (geometry unchanged, so inertia scales with mass).
    - ``friction_scale``: geom contact friction (sliding, torsional, rolling) and joint dry friction.
    - ``gravity_scale``: the gravity vector.
    - ``actuator_gain_scale``: actuator gain and bias (a position servo keeps its set point but gets
      stiffer/weaker; a motor gives proportionally more/less force).
    """

    mass_scale: float = 1.0
    friction_scale: float = 1.0
    gravity_scale: float = 1.0
    actuator_gain_scale: float = 1.0

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], where: str = "dynamics") -> Dynamics:
        """Validate keys and values: unknown keys and non-positive scales name the field."""
        known = list(asdict(cls()))
        for key in data:
            if key not in known:
                raise config_error(where, str(key), f"one of {known}", key)
        return cls(**{k: positive_number(v, where, k) for k, v in data.items()})

    @property
    def is_nominal(self) -> bool:
        return self == Dynamics()

    def apply(self, model: mujoco.MjModel) -> None:
        """Scale ``model`` in place (call once, on a freshly compiled model)."""
        model.body_mass[:] *= self.mass_scale
        model.body_inertia[:] *= self.mass_scale
        model.geom_friction[:] *= self.friction_scale
        model.dof_frictionloss[:] *= self.friction_scale
        model.opt.gravity[:] *= self.gravity_scale
        model.actuator_gainprm[:, 0] *= self.actuator_gain_scale
        model.actuator_biasprm[:, :3] *= self.actuator_gain_scale
        # Recompute what the compiler derived from the scaled fields (subtree masses, solver weights).
        mujoco.mj_setConst(model, mujoco.MjData(model))


def resolve_dynamics(dynamics: Dynamics | Mapping[str, Any] | str | None) -> Dynamics:
    """A :class:`Dynamics` from an instance, a mapping of scales, a preset name, or ``None`` (nominal)."""
    if dynamics is None:
        return Dynamics()
    if isinstance(dynamics, Dynamics):
        return dynamics
    if isinstance(dynamics, str):
        data, path = load_named("dynamics", dynamics, "dynamics")
        return Dynamics.from_mapping(data, where=path)
    if isinstance(dynamics, Mapping):
        return Dynamics.from_mapping(dynamics)
    raise config_error("dynamics", "<root>", "a preset name, a mapping of scales or None", type(dynamics).__name__)


def available_dynamics() -> list[str]:
    """Names of the presets in ``configs/sim/dynamics``."""
    return available("dynamics")
