"""Every registered learner exports: torch ``act(deterministic=True)`` equals the ONNX file under onnxruntime.

Parametrised over ``ALGORITHMS`` with the learner harness's cases (tests/algos/test_harness.py: a vector
task and a camera task, image cases skipped for learners without image support), so learners added later
are covered without touching this file. Each learner takes a few updates first (weights away from their
initialisation), goes through the export verb's own path (``export_algorithm``: variant hook, parity gate,
metadata) and is compared on fresh random observations, through :class:`OnnxPolicy` and through a bare
onnxruntime session that knows only the file's metadata. Learners with export variants (Uni-O4's ensemble
members and mean) export every variant; the default one must equal ``act``.
"""

from __future__ import annotations

import inspect
import json

import numpy as np
import onnxruntime as ort
import pytest
import torch

from robot_learning.config import ConfigError
from robot_learning.export import contract as c
from robot_learning.export.command import export_algorithm
from robot_learning.export.runtime import OnnxPolicy
from tests.algos.test_harness import CASES, Case

TOLERANCE = 1e-4


def _numpy(obs: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in obs.items()}


def _variants(algo) -> list[str]:
    """The variants a learner's export offers (its ``export_variants()``, e.g. Uni-O4's members), else the default."""
    if "variant" not in inspect.signature(algo.export_actor).parameters:
        return [""]
    return list(dict.fromkeys(["", *algo.export_variants()]))


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.mark.parametrize("name,kind", CASES)
def test_export_matches_torch_on_fresh_observations(name, kind, tmp_path):
    case = Case(name, kind)
    for _ in range(3):
        case.algo.update(case.batch())
    case.algo.eval()
    parity = _numpy(case.obs(32))
    rng = np.random.default_rng(11)
    fresh = {k: (rng.integers(0, 256, v.shape, dtype=np.uint8) if v.dtype == np.uint8 else
                 rng.normal(1.0, 3.0, v.shape).astype(np.float32)) for k, v in parity.items()}
    for variant in _variants(case.algo):
        out = tmp_path / f"{name}{variant.replace('=', '_')}.onnx"
        report = export_algorithm(case.algo, out, parity, variant=variant, checkpoint_sha256="c0" * 32,
                                  tolerance=TOLERANCE)
        assert report.max_abs_error <= TOLERANCE and out.is_file()
        policy = OnnxPolicy(out, device="cpu")
        assert policy.obs_keys == case.algo.obs_keys and policy.algorithm == name
        assert policy.metadata[c.META_VARIANT] == variant
        batch = {k: torch.from_numpy(v) for k, v in fresh.items()}
        with torch.no_grad():   # the default variant is what act() runs; another is its own torch actor
            expected = (case.algo.act(batch, deterministic=True) if variant == "" else
                        case.algo.export_actor(variant=variant)(batch)).numpy()
        np.testing.assert_allclose(policy(fresh), expected, atol=TOLERANCE, rtol=0,
                                   err_msg=f"{name} ({kind}, variant {variant!r}): onnxruntime differs from torch")
        one = {k: v[0] for k, v in fresh.items()}
        np.testing.assert_allclose(policy(one), expected[0], atol=TOLERANCE, rtol=0)


@pytest.mark.parametrize("name,kind", CASES)
def test_exported_file_runs_from_its_metadata_alone(name, kind, tmp_path):
    case = Case(name, kind)
    case.algo.update(case.batch())
    case.algo.eval()
    out = tmp_path / "policy.onnx"
    export_algorithm(case.algo, out, _numpy(case.obs(16)))
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    task = json.loads(meta[c.META_TASK_SPEC])
    assert meta[c.META_ALGORITHM] == name and meta[c.META_CONTRACT] == c.CONTRACT_VERSION
    assert meta[c.META_PACKAGE_VERSION] and meta[c.META_EXPORTED_AT]
    rng = np.random.default_rng(5)
    feeds = {}
    for key in json.loads(meta[c.META_OBS_KEYS]):
        o = task["observations"][key]
        feeds[key] = rng.integers(0, 256, (3, *o["shape"]), dtype=np.uint8) if o["kind"] == "rgb" else \
            rng.normal(size=(3, *o["shape"])).astype(np.float32)
    (action,) = session.run([c.ACTION_OUTPUT], feeds)
    low, high = np.array(task["action"]["low"]), np.array(task["action"]["high"])
    assert action.shape == (3, task["action"]["dim"]) and action.dtype == np.float32
    assert np.all(action >= low - 1e-5) and np.all(action <= high + 1e-5)


def test_a_variant_for_a_learner_without_variants_is_refused(tmp_path):
    case = Case("iql", "vector")
    with pytest.raises(ConfigError, match="variant=member=1: expected no variant for algorithm 'iql'"):
        export_algorithm(case.algo, tmp_path / "x.onnx", _numpy(case.obs(4)), variant="member=1")
    assert not (tmp_path / "x.onnx").exists()
