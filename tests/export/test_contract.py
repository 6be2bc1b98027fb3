"""The ONNX policy contract: export with parity, metadata-only loading, input validation, task matching."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from robot_learning.export import contract as c
from robot_learning.export.onnx_export import ExportError, export_actor_onnx
from robot_learning.export.runtime import OnnxPolicy, PolicyFileError
from robot_learning.spec import SpecError
from tests.helpers import toy_spec


class ImageStateActor(nn.Module):
    """A test actor with every in-graph step of the contract: normalise, uint8 image -> CNN, tanh, scale."""

    def __init__(self, spec):
        super().__init__()
        self.register_buffer("mean", torch.tensor([0.5, -0.5, 0.0]))
        self.register_buffer("std", torch.tensor([2.0, 1.0, 0.5]))
        self.conv = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.ReLU(), nn.Flatten())
        self.head = nn.Linear(3 + 4 * 7 * 7, spec.action.dim)
        self.register_buffer("low", torch.tensor(spec.action.low))
        self.register_buffer("high", torch.tensor(spec.action.high))

    def forward(self, obs):
        image = obs["cam"].permute(0, 3, 1, 2).float() / 255.0
        x = torch.cat([(obs["state"] - self.mean) / self.std, self.conv(image)], dim=-1)
        return self.low + (torch.tanh(self.head(x)) + 1) * 0.5 * (self.high - self.low)


def _obs(n, seed=0):
    rng = np.random.default_rng(seed)
    return {"state": rng.normal(size=(n, 3)).astype(np.float32), "cam": rng.integers(0, 255, (n, 16, 16, 3), dtype=np.uint8)}


@pytest.fixture
def exported(tmp_path):
    spec = toy_spec(action={"dim": 2, "low": [-0.5, 0.0], "high": [0.5, 2.0]})
    actor = ImageStateActor(spec)
    report = export_actor_onnx(actor, spec, ["state", "cam"], tmp_path / "policy.onnx", parity_obs=_obs(64),
                               algorithm="test", checkpoint_sha256="ab" * 32)
    return spec, actor, report


def test_export_parity_and_metadata(exported):
    spec, actor, report = exported
    assert report.parity_samples == 64 and report.max_abs_error <= 1e-4
    meta = {p.key: p.value for p in onnx.load(str(report.path)).metadata_props}
    assert json.loads(meta[c.META_OBS_KEYS]) == ["state", "cam"]
    assert meta[c.META_ALGORITHM] == "test" and meta[c.META_CHECKPOINT_SHA256] == "ab" * 32
    assert json.loads(meta[c.META_TASK_SPEC])["name"] == spec.name


def test_bare_onnxruntime_session_runs_from_metadata_alone(exported):
    spec, actor, report = exported
    session = ort.InferenceSession(str(report.path), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    task = json.loads(meta[c.META_TASK_SPEC])
    feeds = {}
    for key in json.loads(meta[c.META_OBS_KEYS]):
        o = task["observations"][key]
        dtype = np.uint8 if o["kind"] == "rgb" else np.float32
        feeds[key] = np.zeros((5, *o["shape"]), dtype=dtype)   # batch of 5 through the dynamic axis
    action = session.run([c.ACTION_OUTPUT], feeds)[0]
    assert action.shape == (5, task["action"]["dim"])
    assert np.all(action >= np.array(task["action"]["low"]) - 1e-6) and np.all(action <= np.array(task["action"]["high"]) + 1e-6)


def test_onnx_policy_single_and_batched(exported):
    spec, actor, report = exported
    policy = OnnxPolicy(report.path)
    obs = _obs(8, seed=3)
    with torch.no_grad():
        expected = actor({k: torch.from_numpy(v) for k, v in obs.items()}).numpy()
    assert np.allclose(policy(obs), expected, atol=1e-5)
    assert np.allclose(policy({k: v[0] for k, v in obs.items()}), expected[0], atol=1e-5)
    policy.check_task(spec)


def test_onnx_policy_refuses_bad_input_and_other_tasks(exported):
    spec, _, report = exported
    policy = OnnxPolicy(report.path)
    obs = _obs(2)
    with pytest.raises(SpecError, match=r"'state': expected shape \(N, 3\), found shape \(2, 4\)"):
        policy({**obs, "state": np.zeros((2, 4), np.float32)})
    with pytest.raises(SpecError, match="'cam': expected an array, found it missing"):
        policy({"state": obs["state"]})
    with pytest.raises(SpecError, match="expected finite values"):
        policy({**obs, "state": np.full((2, 3), np.nan, np.float32)})
    other = toy_spec(control_hz=50, observations={"state": {"shape": [3]}, "cam": {"shape": [32, 32, 3], "kind": "rgb"}})
    with pytest.raises(PolicyFileError) as err:
        policy.check_task(other)
    message = str(err.value)
    assert "does not match the robot's task 'toy': observation 'cam': expected rgb uint8 (32, 32, 3), found rgb uint8 (16, 16, 3)" in message
    assert "action limits: expected [[-1.0, -1.0], [1.0, 1.0]], found [[-0.5, 0.0], [0.5, 2.0]]" in message
    assert message.endswith("control rate: expected 50.0 Hz, found 10.0 Hz")


def test_parity_failure_leaves_no_file(tmp_path):
    spec = toy_spec()

    class Unexportable(nn.Module):
        """Differs between tracing and a later run: python-side state the graph cannot capture."""

        def __init__(self):
            super().__init__()
            self.calls = 0

        def forward(self, obs):
            self.calls += 1
            return obs["state"][:, :2] * self.calls

    with pytest.raises(ExportError, match=r"parity on 16 stored observations: expected max \|difference\| <= 0.0001"):
        export_actor_onnx(Unexportable(), spec, ["state"], tmp_path / "bad.onnx", parity_obs=_obs(16), algorithm="x")
    assert list(tmp_path.iterdir()) == []


def test_not_a_policy(tmp_path):
    with pytest.raises(PolicyFileError, match="no such file"):
        OnnxPolicy(tmp_path / "missing.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not onnx")
    with pytest.raises(PolicyFileError, match="unreadable file"):
        OnnxPolicy(tmp_path / "junk.onnx")
    plain = nn.Linear(3, 2)
    torch.onnx.export(plain, (torch.zeros(1, 3),), str(tmp_path / "plain.onnx"), dynamo=False)
    with pytest.raises(PolicyFileError, match="metadata 'robot_learning.contract_version': expected it in every"):
        OnnxPolicy(tmp_path / "plain.onnx")
