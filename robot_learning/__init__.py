"""robot-learning: from teleoperated demonstrations to a deployed policy that keeps improving."""

import importlib.util
import os

# MuJoCo picks its OpenGL backend when it is imported: default to headless EGL (override with MUJOCO_GL=osmesa).
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])

# Mesa's software renderer (used by both EGL and OSMesa here) and triton's C extension each bring their own
# LLVM; whichever loads second crashes the process. torch imports triton lazily (the first optimiser step
# does), i.e. after MuJoCo has rendered, so load it first. Costs ~0.5 s once per process.
if importlib.util.find_spec("triton") is not None:
    import triton  # noqa: F401
