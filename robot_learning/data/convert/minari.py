"""Minari dataset directories -> episode store.

Layout (Minari's HDF5 storage, ``minari/dataset/_storages/hdf5_storage.py``)::

    <dataset>/data/metadata.json      dataset_id, spaces, total_episodes, ... (optional here)
    <dataset>/data/main_data.hdf5     one group per episode: episode_0, episode_1, ...
        episode_<id>/  attrs: id, total_steps, seed (optional)
            observations   (T+1, ...) dataset, or a group per Dict key (nested; Tuple entries are _index_<i>)
            actions        (T, A)
            rewards        (T,)
            terminations   (T,)   true terminal after the step
            truncations    (T,)   time limit after the step
            infos          (optional, not converted)

Step ``t`` of the store takes observation ``t``, action ``t``, reward ``t`` and terminal =
``terminations[t]``; the final observation (row T) has no action and is not stored: the store keeps no
next observation for an episode's last step. Each episode records ``source`` (the dataset id),
``source_episode`` (its Minari id), ``end_reason`` (terminal | timeout | end_of_data) and ``seed`` when
Minari recorded one.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from robot_learning.data.convert.episodes import ConvertOptions, SourceEpisode, write_episodes
from robot_learning.data.convert.obs_map import ObsMap
from robot_learning.spec import SpecError, TaskSpec

MAIN_FILE = Path("data") / "main_data.hdf5"
METADATA_FILE = Path("data") / "metadata.json"
STEP_KEYS = ("actions", "rewards", "terminations", "truncations")


def observation_fields(node: h5py.Dataset | h5py.Group, prefix: str = "") -> dict[str, h5py.Dataset]:
    """Every leaf dataset of an observation tree, keyed by its path below ``observations`` ('' for a Box)."""
    if isinstance(node, h5py.Dataset):
        return {prefix: node}
    out: dict[str, h5py.Dataset] = {}
    for name in node:
        out.update(observation_fields(node[name], f"{prefix}/{name}" if prefix else name))
    return out


def episode_ids(f: h5py.File, path: Path) -> list[int]:
    """The numeric ids of the ``episode_<id>`` groups, in numeric order."""
    ids = sorted(int(name[len("episode_"):]) for name in f
                 if name.startswith("episode_") and name[len("episode_"):].isdigit())
    if not ids:
        raise SpecError(f"{path}: expected groups named 'episode_<id>', found {sorted(f.keys())[:10]}")
    return ids


def read_episode(group: h5py.Group, where: str) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(observation fields cut to T rows, step arrays) of one episode group, with length checks."""
    for key in ("observations", *STEP_KEYS):
        if key not in group:
            raise SpecError(f"{where}: key '{key}': expected it in every Minari episode, found it missing "
                            f"(keys: {sorted(group.keys())})")
    if not isinstance(group["actions"], h5py.Dataset):
        raise SpecError(f"{where}: key 'actions': expected one dataset (a Box action space), found a group "
                        "(Dict/Tuple action spaces are not supported)")
    steps = {k: np.asarray(group[k][()]) for k in STEP_KEYS}
    t = len(steps["rewards"])
    for key, values in steps.items():
        if values.ndim == 0 or len(values) != t:
            raise SpecError(f"{where}: key '{key}': expected {t} rows (one per step, as 'rewards'), "
                            f"found {len(values) if values.ndim else 'a scalar'}")
    obs = {}
    for name, ds in observation_fields(group["observations"]).items():
        if ds.ndim == 0 or ds.shape[0] != t + 1:
            label = f"observations/{name}" if name else "observations"
            raise SpecError(f"{where}: key '{label}': expected {t + 1} rows (one more than the {t} steps), "
                            f"found {ds.shape[0] if ds.ndim else 'a scalar'}")
        obs[name] = np.asarray(ds[:t])
    return obs, steps


def end_reason(steps: dict[str, np.ndarray]) -> str:
    """terminal | timeout | end_of_data, from the flags of an episode's last step."""
    if len(steps["terminations"]) and steps["terminations"][-1]:
        return "terminal"
    return "timeout" if len(steps["truncations"]) and steps["truncations"][-1] else "end_of_data"


def convert(input: Path, spec: TaskSpec, out: Path, options: ConvertOptions) -> Path:
    """Write the episodes of the Minari dataset directory ``input`` into a new store ``out`` for ``spec``."""
    main = input / MAIN_FILE
    metadata = json.loads((input / METADATA_FILE).read_text()) if (input / METADATA_FILE).is_file() else {}
    try:
        f = h5py.File(main, "r")
    except OSError as e:
        raise SpecError(f"{main}: expected a readable HDF5 file, found an unreadable one ({e})") from None
    with f:
        ids = episode_ids(f, main)
        dataset_id = str(metadata.get("dataset_id") or f.attrs.get("dataset_id") or input.name)
        first = f[f"episode_{ids[0]}"]
        if "observations" not in first:
            raise SpecError(f"{main} episode_{ids[0]}: key 'observations': expected it in every Minari episode, "
                            f"found it missing (keys: {sorted(first.keys())})")
        fields = {name: ds.shape[1:] for name, ds in observation_fields(first["observations"]).items()}
        obs_map = ObsMap.build(spec, options.obs_map, fields, f"{main} episode_{ids[0]} observations")

        def episodes():
            for i in ids:
                group, where = f[f"episode_{i}"], f"{main} episode_{i}"
                obs, steps = read_episode(group, where)
                meta = {"source": dataset_id, "source_episode": i, "end_reason": end_reason(steps)}
                if group.attrs.get("seed") is not None:
                    meta["seed"] = int(group.attrs["seed"])
                yield SourceEpisode(where=where, obs=obs_map.apply(obs), action=steps["actions"],
                                    reward=steps["rewards"], terminal=steps["terminations"].astype(bool), meta=meta)

        provenance = {"format": "minari", "dataset_id": dataset_id}
        return write_episodes(episodes(), spec, out, source=str(input), provenance=provenance, options=options,
                              total=len(ids))
