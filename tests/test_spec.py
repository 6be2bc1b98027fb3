"""TaskSpec parsing, validation and interface matching."""

from __future__ import annotations

import numpy as np
import pytest

from robot_learning.spec import SpecError, TaskSpec
from tests.helpers import TOY_SPEC, toy_spec


def test_round_trip_and_views():
    spec = toy_spec()
    again = TaskSpec.from_json(spec.to_json())
    assert again.to_dict() == spec.to_dict() and again.fingerprint() == spec.fingerprint()
    assert spec.low_dim_keys == ("state",) and spec.image_keys == ("cam",)
    assert spec.cameras == {"cam": (16, 16)} and spec.dt == pytest.approx(0.1)
    assert spec.action.low == (-1.0, -1.0)


@pytest.mark.parametrize("change, message", [
    ({"control_hz": 0}, "field 'control_hz': expected a positive rate in Hz, found 0.0"),
    ({"max_episode_steps": 2.5}, "field 'max_episode_steps': expected a positive integer, found 2.5"),
    ({"observations": {"cam": {"shape": [16, 16], "kind": "rgb"}}}, "field 'observations.cam.shape': expected [height, width, 3]"),
    ({"observations": {"x": {"shape": [3], "kind": "depth"}}}, "field 'observations.x.kind': expected one of"),
    ({"observations": {"x": {"shape": [3], "dtype": "uint8"}}}, "field 'observations.x.dtype'"),
    ({"action": {"dim": 2, "low": [1, 1], "high": [0, 2]}}, "field 'action.low/high': expected low < high"),
    ({"action": {"dim": 2, "low": [-1], "high": 1}}, "field 'action.low': expected a number or a list of 2 numbers"),
    ({"colour": "red"}, "field 'colour': expected one of"),
])
def test_malformed_specs_name_the_field(change, message):
    with pytest.raises(SpecError) as err:
        TaskSpec.from_dict({**TOY_SPEC, **change}, source="configs/task/toy.yaml")
    assert str(err.value).startswith("configs/task/toy.yaml: ") and message in str(err.value)


def test_missing_field_and_file(tmp_path):
    data = dict(TOY_SPEC)
    del data["action"]
    with pytest.raises(SpecError, match="field 'action': expected a value, found nothing"):
        TaskSpec.from_dict(data)
    with pytest.raises(SpecError, match="task 'no_such_task': expected one of"):
        TaskSpec.load("no_such_task")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed")
    with pytest.raises(SpecError, match="bad.yaml: not valid YAML"):
        TaskSpec.from_yaml(bad)


def test_observation_and_action_validation():
    spec = toy_spec()
    ok = {"state": np.zeros((4, 3), np.float32), "cam": np.zeros((4, 16, 16, 3), np.uint8)}
    spec.validate_observation(ok, batched=True)
    with pytest.raises(SpecError, match=r"'state': expected shape \(N, 3\), found shape \(4, 2\)"):
        spec.validate_observation({**ok, "state": np.zeros((4, 2))}, batched=True)
    with pytest.raises(SpecError, match=r"'action': expected shape \(2,\), found shape \(3,\)"):
        spec.validate_action([0, 0, 0])


def test_interface_differences():
    spec = toy_spec()
    other = toy_spec(control_hz=20, observations={"state": {"shape": [4]}, "cam": {"shape": [16, 16, 3], "kind": "rgb"}})
    diffs = spec.differences(other)
    assert "observation 'state': expected low_dim float32 (3,), found low_dim float32 (4,)" in diffs
    assert "control rate: expected 10.0 Hz, found 20.0 Hz" in diffs
    assert spec.differences(other, keys=["cam"]) == ["control rate: expected 10.0 Hz, found 20.0 Hz"]
    assert spec.fingerprint() != other.fingerprint()
    assert spec.normalized_score(1.0) is None
    scored = toy_spec(reference_returns={"random": 0.0, "expert": 10.0})
    assert scored.normalized_score(5.0) == pytest.approx(50.0)
