"""The MuJoCo task base class shared by the arm and maze tasks.

It does everything that is not task-specific: compiles the model (from an XML asset, edited by the
task through ``mujoco.MjSpec``), applies the dynamics gap, derives the frame skip from the TaskSpec's
control rate, builds the observation space from the TaskSpec (only the requested keys), assembles the
observation dict, renders camera keys offscreen (only when requested), and computes the dense and
sparse reward plus ``success`` for ``info``. A task subclass supplies the model edits, the reset
distribution, the action -> control mapping, the low-dimensional observation functions and its
dense reward / success test.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import mujoco
import numpy as np

from robot_learning.spec import TaskSpec
from sim.config import config_error
from sim.dynamics import Dynamics, resolve_dynamics
from sim.render import CameraRenderer

ASSETS_DIR = Path(__file__).resolve().parents[1] / "assets"
#: Reward sources the arm and maze tasks compute every step (``reward=`` picks the one returned).
REWARD_KINDS = ("dense", "sparse")
#: Image size of ``env.render()`` (render_mode="rgb_array"): a human-viewable frame, not an observation.
VIEW_SIZE = (240, 240)


def observation_space(spec: TaskSpec, keys: Sequence[str]) -> gym.spaces.Dict:
    """The gymnasium Dict space of ``keys`` as ``spec`` describes them (float32 vectors, uint8 images)."""
    spaces = {}
    for key in keys:
        o = spec.obs[key]
        if o.is_image:
            spaces[key] = gym.spaces.Box(0, 255, o.shape, np.uint8)
        else:
            spaces[key] = gym.spaces.Box(-np.inf, np.inf, o.shape, np.float32)
    return gym.spaces.Dict(spaces)


def action_space(spec: TaskSpec) -> gym.spaces.Box:
    return gym.spaces.Box(spec.action.low_array, spec.action.high_array, dtype=np.float32)


def select_keys(spec: TaskSpec, obs_keys: Sequence[str] | None) -> tuple[str, ...]:
    """The observation keys an env returns: all of the spec's, or the requested subset (checked)."""
    if obs_keys is None:
        return tuple(spec.obs_keys)
    for key in obs_keys:
        if key not in spec.obs:
            raise config_error(f"task '{spec.name}'", "obs_keys", f"keys from {list(spec.obs_keys)}", key)
    return tuple(obs_keys)


class MujocoTaskEnv(gym.Env):
    """A MuJoCo task whose interface is a TaskSpec; subclasses fill in the task.

    ``dynamics``: a gap preset name or mapping of scales (``sim.dynamics``); ``obs_keys``: the subset of
    the spec's keys to return (camera keys left out are never rendered); ``reward``: ``dense`` or
    ``sparse``, the one ``step`` returns (default: the spec's ``default_reward``; ``info`` always has
    both and ``success``); ``terminate_on_success``: end the episode on success.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"]}
    #: XML file in ``sim/assets`` the task model starts from.
    asset: ClassVar[str]
    #: Camera that ``render()`` (render_mode="rgb_array") shows: a view for people, not an observation.
    view_camera: ClassVar[str]

    def __init__(self, task_spec: TaskSpec, *, dynamics: Dynamics | Mapping[str, Any] | str | None = None,
                 obs_keys: Sequence[str] | None = None, reward: str | None = None,
                 terminate_on_success: bool = True, render_mode: str | None = None):
        reward = task_spec.default_reward if reward is None else reward
        if reward not in REWARD_KINDS:
            raise config_error(f"task '{task_spec.name}'", "reward", f"one of {list(REWARD_KINDS)}", reward)
        self.task_spec = task_spec
        self.dynamics = resolve_dynamics(dynamics)
        self.reward_kind = reward
        self.terminate_on_success = bool(terminate_on_success)
        self.render_mode = render_mode
        self.metadata = {**self.metadata, "render_fps": task_spec.control_hz}
        mj_spec = mujoco.MjSpec.from_file(str(ASSETS_DIR / self.asset))
        self._edit_model(mj_spec)
        self.model = mj_spec.compile()
        self.dynamics.apply(self.model)
        self.data = mujoco.MjData(self.model)
        self.frame_skip = round(1.0 / (task_spec.control_hz * self.model.opt.timestep))
        if self.frame_skip < 1 or not np.isclose(self.frame_skip * self.model.opt.timestep, task_spec.dt):
            raise config_error(task_spec.source, "control_hz", f"the physics rate {1 / self.model.opt.timestep:g} Hz "
                               "divided by a whole number of steps", task_spec.control_hz)
        self.obs_keys = select_keys(task_spec, obs_keys)
        self._image_keys = tuple(k for k in self.obs_keys if task_spec.obs[k].is_image)
        self._low_dim_keys = tuple(k for k in self.obs_keys if not task_spec.obs[k].is_image)
        self.observation_space = observation_space(task_spec, self.obs_keys)
        self.action_space = action_space(task_spec)
        self._action_low = task_spec.action.low_array.astype(np.float64)
        self._action_high = task_spec.action.high_array.astype(np.float64)
        self._cameras: CameraRenderer | None = None
        self._observers = self._low_dim_observers()
        missing = [k for k in self._low_dim_keys if k not in self._observers]
        if missing:
            raise config_error(task_spec.source, f"observations.{missing[0]}",
                               f"a key this env computes ({sorted(self._observers)})", missing[0])

    # ------------------------------------------------------------------------------ task hooks
    def _edit_model(self, mj_spec: mujoco.MjSpec) -> None:
        """Add task-specific elements to the model before it is compiled (default: none)."""

    def _low_dim_observers(self) -> dict[str, Callable[[], np.ndarray]]:
        """Observation key -> function returning its current value (any float dtype)."""
        raise NotImplementedError

    def _reset_task(self) -> None:
        """Place the robot and objects for a new episode (use ``self.np_random``)."""
        raise NotImplementedError

    def _apply_action(self, action: np.ndarray) -> None:
        """Turn a clipped action (float64) into ``data.ctrl`` for the next ``frame_skip`` physics steps."""
        raise NotImplementedError

    def _evaluate(self) -> tuple[float, bool]:
        """(dense reward, success) of the current state."""
        raise NotImplementedError

    # ------------------------------------------------------------------------------ gymnasium API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        mujoco.mj_resetData(self.model, self.data)
        self._reset_task()
        mujoco.mj_forward(self.model, self.data)
        dense, success = self._evaluate()
        return self._observation(), {"success": success, "reward_dense": dense, "reward_sparse": float(success)}

    def step(self, action: np.ndarray):
        a = np.clip(np.asarray(action, dtype=np.float64), self._action_low, self._action_high)
        self._apply_action(a)
        mujoco.mj_step(self.model, self.data, nstep=self.frame_skip)
        dense, success = self._evaluate()
        sparse = float(success)
        info = {"success": success, "reward_dense": dense, "reward_sparse": sparse}
        reward = dense if self.reward_kind == "dense" else sparse
        return self._observation(), reward, success and self.terminate_on_success, False, info

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        return self._camera_renderer().render(self.data, self.view_camera, *VIEW_SIZE)

    def close(self) -> None:
        if self._cameras is not None:
            self._cameras.close()
            self._cameras = None

    # ------------------------------------------------------------------------------ observations
    def _camera_renderer(self) -> CameraRenderer:
        if self._cameras is None:
            self._cameras = CameraRenderer(self.model)
        return self._cameras

    def _observation(self) -> dict[str, np.ndarray]:
        obs = {k: np.asarray(self._observers[k](), dtype=np.float32) for k in self._low_dim_keys}
        if self._image_keys:
            cams = self._camera_renderer()
            for k in self._image_keys:
                h, w, _ = self.task_spec.obs[k].shape
                obs[k] = cams.render(self.data, k, h, w)
        return obs
