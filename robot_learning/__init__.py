"""robot-learning: from teleoperated demonstrations to a deployed policy that keeps improving."""

import os

# MuJoCo picks its OpenGL backend when it is imported: default to headless EGL (override with MUJOCO_GL=osmesa).
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])
