"""Offscreen camera rendering with the fast settings (shadows, reflections, skybox and MSAA off).

measurements.md: MuJoCo's default visuals render 23 fps here because of the 4096² shadow map; with
shadows, reflections and anti-aliasing off the same scene renders ~700 fps at 84². One
``mujoco.Renderer`` is created per image size on first use and reused for every frame after.
"""

from __future__ import annotations

import os

# Headless default: EGL (osmesa also works; see measurements.md). Read by mujoco when it first renders.
os.environ.setdefault("MUJOCO_GL", "egl")

import mujoco  # noqa: E402 - after choosing the GL backend
import numpy as np  # noqa: E402

#: Scene flags switched off for every camera image (the expensive, cosmetic passes).
DISABLED_FLAGS = (mujoco.mjtRndFlag.mjRND_SHADOW, mujoco.mjtRndFlag.mjRND_REFLECTION,
                  mujoco.mjtRndFlag.mjRND_SKYBOX)


class CameraRenderer:
    """Renders named cameras of one model into uint8 (H, W, 3) arrays, reusing GL contexts."""

    def __init__(self, model: mujoco.MjModel):
        model.vis.quality.offsamples = 0  # no multisample anti-aliasing (before any context exists)
        self._model = model
        self._renderers: dict[tuple[int, int], mujoco.Renderer] = {}

    def _renderer(self, height: int, width: int) -> mujoco.Renderer:
        key = (height, width)
        if key not in self._renderers:
            r = mujoco.Renderer(self._model, height=height, width=width)
            for flag in DISABLED_FLAGS:
                r.scene.flags[flag] = False
            self._renderers[key] = r
        return self._renderers[key]

    def render(self, data: mujoco.MjData, camera: str | int, height: int, width: int) -> np.ndarray:
        """A fresh (height, width, 3) uint8 image from ``camera``."""
        r = self._renderer(height, width)
        r.update_scene(data, camera=camera)
        return r.render()

    def close(self) -> None:
        for r in self._renderers.values():
            r.close()
        self._renderers.clear()
