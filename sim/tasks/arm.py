"""Arm tasks: a 3-joint arm over a table driven by Cartesian end-effector velocity commands.

The action is the fingertip's desired linear velocity (m/s). Each control step turns it into joint
set points by damped least-squares IK on the current Jacobian, integrated into a commanded joint
vector that the position servos track (``q_cmd += J^T (J J^T + lambda^2 I)^-1 v dt``). Integrating the
command, not the measured position, keeps a steady gravity sag from turning into drift; the command
is kept within ``max_lead`` of the measured joints so a blocked arm does not wind up.

- ``arm_reach``: touch a randomly placed target sphere with the fingertip.
- ``arm_push``: push a puck (free body sliding on the table) onto a goal disc.

The cost functions below are vectorised over a leading batch axis: the env uses them for its dense
reward and success, ``sim.progress`` uses them on stored observations.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import mujoco
import numpy as np

from sim.tasks.base import MujocoTaskEnv

#: The arm's joints, base to tip (also the JointState names of the ROS binding).
ARM_JOINTS = ("yaw", "shoulder", "elbow")
#: Push cost: weight of the fingertip-to-puck distance relative to the puck-to-goal distance.
PUSH_EE_WEIGHT = 0.5
#: Puck centre height above the table (half its thickness in arm_push.xml).
PUCK_HALF_HEIGHT = 0.02


def reach_distance(ee_pos: np.ndarray, target_pos: np.ndarray) -> np.ndarray:
    """Fingertip-to-target distance (m); arrays (..., 3)."""
    return np.linalg.norm(ee_pos - target_pos, axis=-1)


def push_distance(object_pos: np.ndarray, goal_pos: np.ndarray) -> np.ndarray:
    """Puck-to-goal distance on the table plane (m); arrays (..., 3)."""
    return np.linalg.norm(object_pos[..., :2] - goal_pos[..., :2], axis=-1)


def push_cost(ee_pos: np.ndarray, object_pos: np.ndarray, goal_pos: np.ndarray) -> np.ndarray:
    """Shaped push cost: puck-to-goal distance plus a smaller fingertip-to-puck term."""
    return push_distance(object_pos, goal_pos) + PUSH_EE_WEIGHT * np.linalg.norm(ee_pos - object_pos, axis=-1)


def sample_annulus(rng: np.random.Generator, radius: Sequence[float], angle: Sequence[float]) -> np.ndarray:
    """A table point (x, y) at a uniform radius and bearing from the arm base."""
    r, a = rng.uniform(*radius), rng.uniform(*angle)
    return np.array([r * np.cos(a), r * np.sin(a)])


class ArmEnv(MujocoTaskEnv):
    """Shared arm machinery: end-effector velocity control through DLS IK, joint observations."""

    view_camera = "front"

    def __init__(self, task_spec, *, home_qpos: Sequence[float], home_noise: float, ik_damping: float,
                 max_lead: float, success_distance: float, **kwargs):
        self.home_qpos = np.asarray(home_qpos, dtype=np.float64)
        self.home_noise = float(home_noise)
        self.ik_damping = float(ik_damping)
        self.max_lead = float(max_lead)
        self.success_distance = float(success_distance)
        super().__init__(task_spec, **kwargs)
        m = self.model
        qadr = [int(m.joint(j).qposadr[0]) for j in ARM_JOINTS]
        dadr = [int(m.joint(j).dofadr[0]) for j in ARM_JOINTS]
        if qadr != list(range(qadr[0], qadr[0] + len(qadr))) or dadr != list(range(dadr[0], dadr[0] + len(dadr))):
            raise RuntimeError(f"{self.asset}: arm joints must be consecutive in qpos/qvel")
        self._q = slice(qadr[0], qadr[0] + len(ARM_JOINTS))
        self._dq = slice(dadr[0], dadr[0] + len(ARM_JOINTS))
        self._ctrl = [int(m.actuator(j).id) for j in ARM_JOINTS]
        self._ee = int(m.site("ee").id)
        self._jnt_low = m.jnt_range[[m.joint(j).id for j in ARM_JOINTS], 0].copy()
        self._jnt_high = m.jnt_range[[m.joint(j).id for j in ARM_JOINTS], 1].copy()
        self._jacp = np.zeros((3, m.nv))
        self._damping_eye = self.ik_damping ** 2 * np.eye(3)
        self._q_cmd = self.home_qpos.copy()

    # ------------------------------------------------------------------------------ state views
    @property
    def ee_pos(self) -> np.ndarray:
        return self.data.site_xpos[self._ee]

    def _arm_observers(self) -> dict[str, Callable[[], np.ndarray]]:
        return {"joint_pos": lambda: self.data.qpos[self._q], "joint_vel": lambda: self.data.qvel[self._dq],
                "ee_pos": lambda: self.ee_pos}

    # ------------------------------------------------------------------------------ control
    def _reset_arm(self) -> None:
        noise = self.np_random.uniform(-self.home_noise, self.home_noise, size=len(ARM_JOINTS))
        q = np.clip(self.home_qpos + noise, self._jnt_low, self._jnt_high)
        self.data.qpos[self._q] = q
        self._q_cmd[:] = q
        self.data.ctrl[self._ctrl] = q

    def _apply_action(self, action: np.ndarray) -> None:
        mujoco.mj_jacSite(self.model, self.data, self._jacp, None, self._ee)
        jac = self._jacp[:, self._dq]
        dq = jac.T @ np.linalg.solve(jac @ jac.T + self._damping_eye, action * self.task_spec.dt)
        q = self.data.qpos[self._q]
        self._q_cmd += dq
        np.clip(self._q_cmd, q - self.max_lead, q + self.max_lead, out=self._q_cmd)
        np.clip(self._q_cmd, self._jnt_low, self._jnt_high, out=self._q_cmd)
        self.data.ctrl[self._ctrl] = self._q_cmd


class ArmReachEnv(ArmEnv):
    """Touch a target sphere placed uniformly in a slice of cylinder in front of the arm."""

    asset = "arm_reach.xml"

    def __init__(self, task_spec, *, target_radius: Sequence[float], target_angle: Sequence[float],
                 target_height: Sequence[float], min_start_distance: float, **kwargs):
        self.target_radius, self.target_angle = tuple(target_radius), tuple(target_angle)
        self.target_height = tuple(target_height)
        self.min_start_distance = float(min_start_distance)
        super().__init__(task_spec, **kwargs)
        self._target = int(self.model.body("target").mocapid[0])

    @property
    def target_pos(self) -> np.ndarray:
        return self.data.mocap_pos[self._target]

    def _low_dim_observers(self) -> dict[str, Callable[[], np.ndarray]]:
        return {**self._arm_observers(), "target_pos": lambda: self.target_pos}

    def _reset_task(self) -> None:
        self._reset_arm()
        mujoco.mj_kinematics(self.model, self.data)
        while True:
            xy = sample_annulus(self.np_random, self.target_radius, self.target_angle)
            target = np.array([xy[0], xy[1], self.np_random.uniform(*self.target_height)])
            if reach_distance(self.ee_pos, target) >= self.min_start_distance:
                break
        self.data.mocap_pos[self._target] = target

    def _evaluate(self) -> tuple[float, bool]:
        d = float(reach_distance(self.ee_pos, self.target_pos))
        return -d, d < self.success_distance


class ArmPushEnv(ArmEnv):
    """Push a puck onto a goal disc; puck and goal are placed in the same annulus in front of the arm."""

    asset = "arm_push.xml"

    def __init__(self, task_spec, *, object_radius: Sequence[float], object_angle: Sequence[float],
                 goal_radius: Sequence[float], goal_angle: Sequence[float], goal_distance: Sequence[float],
                 **kwargs):
        self.object_radius, self.object_angle = tuple(object_radius), tuple(object_angle)
        self.goal_radius, self.goal_angle = tuple(goal_radius), tuple(goal_angle)
        self.goal_distance = tuple(goal_distance)
        super().__init__(task_spec, **kwargs)
        self._goal = int(self.model.body("goal").mocapid[0])
        self._puck_q = int(self.model.joint("puck").qposadr[0])
        self._puck_body = int(self.model.body("puck").id)

    @property
    def object_pos(self) -> np.ndarray:
        return self.data.xpos[self._puck_body]

    @property
    def goal_pos(self) -> np.ndarray:
        return self.data.mocap_pos[self._goal]

    def _low_dim_observers(self) -> dict[str, Callable[[], np.ndarray]]:
        return {**self._arm_observers(), "object_pos": lambda: self.object_pos, "goal_pos": lambda: self.goal_pos}

    def _reset_task(self) -> None:
        self._reset_arm()
        puck = sample_annulus(self.np_random, self.object_radius, self.object_angle)
        while True:
            goal = sample_annulus(self.np_random, self.goal_radius, self.goal_angle)
            if self.goal_distance[0] <= np.linalg.norm(goal - puck) <= self.goal_distance[1]:
                break
        self.data.qpos[self._puck_q:self._puck_q + 7] = [puck[0], puck[1], PUCK_HALF_HEIGHT, 1.0, 0.0, 0.0, 0.0]
        self.data.mocap_pos[self._goal, :2] = goal

    def _evaluate(self) -> tuple[float, bool]:
        cost = float(push_cost(self.ee_pos, self.object_pos, self.goal_pos))
        return -cost, bool(push_distance(self.object_pos, self.goal_pos) < self.success_distance)
