"""configs/algo presets compose through Hydra onto their dataclass and build a learner."""

from pathlib import Path

import pytest
import yaml

from robot_learning.algos.base import make_algorithm
from robot_learning.config import CONFIG_DIR, ConfigError, compose, to_plain
from robot_learning.spec import TaskSpec

PRESETS = sorted(p for p in (CONFIG_DIR / "algo").glob("*.yaml"))
SPEC = TaskSpec.from_dict({"name": "p", "text": "t", "control_hz": 10, "max_episode_steps": 10,
                           "observations": {"state": {"shape": [4]}}, "action": {"dim": 2, "low": -1.0, "high": 1.0}})
#: Presets written for one task family name its observation keys: they build against that family's task.
PRESET_TASKS = {"robofume_reset_free": "arm_reach"}


@pytest.mark.parametrize("path", PRESETS, ids=[p.stem for p in PRESETS])
def test_preset_composes_and_builds(path: Path):
    listed = yaml.safe_load(path.read_text())
    assert listed["defaults"][-1] == "_self_", "presets extend their dataclass: defaults: [<algo>, _self_]"
    cfg = to_plain(compose("train", [f"algo={path.stem}"]).algo)
    for key, value in listed.items():
        if key != "defaults":
            assert cfg[key] == value, f"{path.name}: {key}"
    spec = TaskSpec.load(PRESET_TASKS[path.stem]) if path.stem in PRESET_TASKS else SPEC
    assert make_algorithm(cfg["name"], cfg, spec).name == cfg["name"]


def test_invalid_value_is_a_config_error():
    with pytest.raises(ConfigError, match="expectile"):
        make_algorithm("iql", {"expectile": 1.5}, SPEC)


def test_bad_override_names_the_field():
    with pytest.raises(Exception, match="expectile"):
        compose("train", ["algo=iql", "algo.expectile=oops"])
