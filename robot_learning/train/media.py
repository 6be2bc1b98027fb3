"""Pictures of a policy: an mp4 of one episode and a PNG strip of its camera frames.

One episode runs in a single env that renders: the viewer image (``env.render()``) for the video and
every camera observation of the task for the strip (tasks without cameras use the viewer image).
The mp4 needs imageio's ffmpeg plugin; without it the video is skipped with a log line.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from robot_learning.spec import TaskSpec

log = logging.getLogger(__name__)


def record_episode(policy, spec: TaskSpec, obs_keys: Sequence[str], device, seed: int, *,
                   dynamics: str | None = None, env_kwargs: Mapping[str, Any] | None = None,
                   ) -> tuple[list[np.ndarray], dict[str, list[np.ndarray]]]:
    """Run one deterministic episode; returns (viewer frames, camera key -> frames)."""
    import sim
    from robot_learning.train.envs import to_device  # local: write_strip stays importable without torch

    env = sim.make_env(spec, obs_keys=None, render_mode="rgb_array", dynamics=dynamics, **dict(env_kwargs or {}))
    try:
        obs, _ = env.reset(seed=seed)
        views, cameras = [env.render()], {k: [obs[k]] for k in spec.image_keys}
        done = False
        while not done:
            batch = to_device({k: obs[k][None] for k in obs_keys}, obs_keys, device)
            action = policy(batch).cpu().numpy()[0]
            obs, _, terminated, truncated, _ = env.step(np.clip(action, spec.action.low_array, spec.action.high_array))
            views.append(env.render())
            for k in spec.image_keys:
                cameras[k].append(obs[k])
            done = terminated or truncated
    finally:
        env.close()
    return views, cameras


def write_video(frames: Sequence[np.ndarray], path: Path, fps: float) -> Path | None:
    """Write an mp4 (H.264 via imageio-ffmpeg); None, with a log line, when no encoder is available."""
    try:
        import imageio.v2 as imageio

        imageio.mimwrite(path, list(frames), fps=fps, macro_block_size=1)
    except Exception as e:  # noqa: BLE001 - any missing plugin/backend means: no video on this machine
        path.unlink(missing_ok=True)
        log.info("video skipped: no mp4 encoder available (%s: %s); install imageio[ffmpeg] for videos",
                 type(e).__name__, str(e).splitlines()[0] if str(e) else "")
        return None
    return path


def write_strip(frames: Mapping[str, Sequence[np.ndarray]], path: Path, count: int) -> Path:
    """A PNG with one row per camera and ``count`` frames evenly spaced over the episode (parent dirs created)."""
    from PIL import Image

    rows = []
    for seq in frames.values():
        pick = np.linspace(0, len(seq) - 1, num=min(count, len(seq))).round().astype(int)
        rows.append(np.concatenate([seq[i] for i in pick], axis=1))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in rows]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(rows, axis=0)).save(path)
    return path


def write_media(policy, spec: TaskSpec, obs_keys: Sequence[str], device, seed: int, out_dir: Path, *, video: bool,
                frames: int, dynamics: str | None = None,
                env_kwargs: Mapping[str, Any] | None = None) -> dict[str, str]:
    """Record one episode and write the requested video/strip into ``out_dir``; returns name -> path."""
    if not video and frames <= 0:
        return {}
    out_dir.mkdir(parents=True, exist_ok=True)
    views, cameras = record_episode(policy, spec, obs_keys, device, seed, dynamics=dynamics, env_kwargs=env_kwargs)
    written = {}
    if video and (p := write_video(views, out_dir / "episode.mp4", spec.control_hz)) is not None:
        written["video"] = str(p)
    if frames > 0:
        written["frames"] = str(write_strip(cameras or {"view": views}, out_dir / "frames.png", frames))
    return written
