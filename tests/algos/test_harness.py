"""One contract test harness for every registered learner (d3rlpy algo_tester style).

Parametrised over ``robot_learning.algos.base.ALGORITHMS``, so learners added later are covered without
touching this file: a few updates give finite metrics; ``act`` has the right shape and stays within the
action limits; the exported actor equals ``act(obs, deterministic=True)``; a checkpoint round trip
(state_dict + training_state into a fresh instance) continues bit-identically; the NaN guard stops a batch
with NaN rewards. Each runs on a vector-observation task and on a task with a camera.
"""

from __future__ import annotations

import copy
import io
import math

import pytest
import torch

import robot_learning.algos  # noqa: F401  (fills the registry)
from robot_learning.algos.base import ALGORITHMS, Algorithm, make_algorithm
from robot_learning.config import ConfigError
from robot_learning.data.tensors import TransitionData
from robot_learning.spec import TaskSpec

BATCH = 16
EPISODES, EPISODE_LEN = 4, 8

_SPEC = {
    "name": "harness", "text": "reach the target", "control_hz": 10, "max_episode_steps": EPISODE_LEN,
    "action": {"dim": 2, "low": [-2.0, 0.0], "high": [2.0, 1.0]},
}
SPECS = {
    "vector": TaskSpec.from_dict({**_SPEC, "observations": {"state": {"shape": [5]}, "goal": {"shape": [2]}}}),
    "image": TaskSpec.from_dict({**_SPEC, "observations": {"state": {"shape": [3]},
                                                           "cam": {"shape": [16, 16, 3], "kind": "rgb"}}}),
}
CASES = [pytest.param(name, kind, id=f"{name}-{kind}") for name in sorted(ALGORITHMS) for kind in SPECS]


def _observations(spec: TaskSpec, n: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    return {k: (torch.randint(0, 256, (n, *o.shape), dtype=torch.uint8, generator=gen) if o.is_image
                else torch.randn(n, *o.shape, generator=gen) * 3 + 1) for k, o in spec.obs.items()}


def _dataset(spec: TaskSpec, seed: int = 0) -> TransitionData:
    gen = torch.Generator().manual_seed(seed)
    n = EPISODES * EPISODE_LEN
    low, high = torch.tensor(spec.action.low), torch.tensor(spec.action.high)
    terminal = torch.zeros(n, dtype=torch.bool)
    terminal[EPISODE_LEN - 1] = True  # episode 0 ends in a true terminal, the others by time limit
    return TransitionData(obs=_observations(spec, n, gen), action=low + (high - low) * torch.rand(n, 2, generator=gen),
                          reward=torch.randn(n, generator=gen), terminal=terminal,
                          episode_ends=torch.arange(1, EPISODES + 1) * EPISODE_LEN)


class Case:
    """A learner on a toy task with its data: builds batches of the learner's kind."""

    def __init__(self, name: str, kind: str):
        cls = ALGORITHMS[name]
        if kind == "image" and not cls.supports_images:
            pytest.skip(f"{name} takes low-dimensional observations only (supports_images = False)")
        if cls.batch_kind == "rollout":
            try:
                from robot_learning.data.rollout import synthetic_rollout
            except ImportError:
                pytest.skip("rollout learners need robot_learning.data.rollout.synthetic_rollout (not available yet)")
            self._rollout = synthetic_rollout
        elif cls.batch_kind != "transition":
            pytest.fail(f"{name}: unknown batch_kind '{cls.batch_kind}'")
        self.name, self.spec = name, SPECS[kind]
        self.overrides = {"obs_keys": list(self.spec.obs_keys)}
        self.algo = self.build()
        self.data = self.algo.prepare(_dataset(self.spec))
        self.gen = torch.Generator().manual_seed(1)

    def build(self) -> Algorithm:
        return make_algorithm(self.name, self.overrides, self.spec)

    def batch(self, seed: int | None = None):
        gen = self.gen if seed is None else torch.Generator().manual_seed(seed)
        if self.algo.batch_kind == "rollout":
            return self._rollout(self.spec, num_steps=4, num_envs=2, obs_keys=self.algo.obs_keys,
                                 seed=int(torch.randint(1 << 30, (1,), generator=gen)))
        return self.data.sample(BATCH, generator=gen)

    @property
    def warm_updates(self) -> int:
        """Transition learners: 3 updates so delayed (every-other) networks have optimiser state too; a
        rollout learner's update is already a whole iteration of epochs x minibatches."""
        return 3 if self.algo.batch_kind == "transition" else 1

    def obs(self, n: int = 6) -> dict[str, torch.Tensor]:
        return _observations(self.spec, n, torch.Generator().manual_seed(7))


@pytest.mark.parametrize("name,kind", CASES)
def test_updates_give_finite_metrics(name, kind):
    case = Case(name, kind)
    for _ in range(case.warm_updates):
        metrics = case.algo.update(case.batch())
    assert metrics, f"{name}: update returned no metrics"
    for key, value in metrics.items():
        assert isinstance(value, torch.Tensor) and value.dim() == 0, f"{name}: metric {key} is not a 0-d tensor"
        assert math.isfinite(float(value)), f"{name}: metric {key} = {float(value)}"
    if hasattr(case.algo, "check_finite"):
        case.algo.check_finite()


@pytest.mark.parametrize("name,kind", CASES)
def test_act_shapes_and_limits(name, kind):
    case = Case(name, kind)
    case.algo.update(case.batch())
    low, high = torch.tensor(case.spec.action.low), torch.tensor(case.spec.action.high)
    for deterministic in (True, False):
        action = case.algo.act(case.obs(), deterministic=deterministic)
        assert action.shape == (6, case.spec.action_dim)
        assert torch.all(action >= low - 1e-5) and torch.all(action <= high + 1e-5), action
    assert torch.equal(case.algo.act(case.obs()), case.algo.act(case.obs())), "deterministic act is not deterministic"


@pytest.mark.parametrize("name,kind", CASES)
def test_exported_actor_equals_deterministic_act(name, kind):
    case = Case(name, kind)
    case.algo.update(case.batch())
    policy = case.algo.export_actor()
    assert not any(p.requires_grad for p in policy.parameters())
    with torch.no_grad():
        exported = policy(case.obs())
    torch.testing.assert_close(exported, case.algo.act(case.obs(), deterministic=True), atol=1e-6, rtol=1e-6)


def _round_trip(obj):
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=False)


@pytest.mark.parametrize("name,kind", CASES)
def test_checkpoint_round_trip_is_bit_identical(name, kind):
    case = Case(name, kind)
    for _ in range(case.warm_updates):
        case.algo.update(case.batch())
    saved = _round_trip({"state_dict": case.algo.state_dict(), "training_state": case.algo.training_state()})
    fresh = case.build()
    fresh.load_state_dict(saved["state_dict"])
    fresh.load_training_state(saved["training_state"])
    batches = [case.batch(seed=100 + i) for i in range(2)]  # two updates: covers delayed (every-other) steps
    for algo in (case.algo, fresh):
        torch.manual_seed(1234)
        for batch in batches:
            algo.update(copy.deepcopy(batch))
    original, restored = case.algo.state_dict(), fresh.state_dict()
    assert original.keys() == restored.keys()
    for key in original:
        assert torch.equal(original[key], restored[key]), f"{name}: {key} differs after resume"


@pytest.mark.parametrize("name,kind", CASES)
def test_nan_guard_stops_training(name, kind):
    case = Case(name, kind)
    if not hasattr(case.algo, "check_finite"):
        pytest.skip(f"{name} has no check_finite(): no NaN guard (see robot_learning.algos.common.FiniteGuard)")
    case.algo.update(case.batch())
    case.algo.check_finite()
    bad = case.batch()
    bad = bad.replace(reward=torch.full_like(bad.reward, float("nan")))
    case.algo.update(bad)
    with pytest.raises(RuntimeError, match=rf"{name}: .*non-finite.* at update 2"):
        case.algo.check_finite()


def _optimizers(algo: Algorithm) -> list[torch.optim.Optimizer]:
    """Every optimiser a learner holds, alone or in a dict (OffPolicyAlgorithm.optimizers, PPO.optimizer,
    Uni-O4's offline_optimizers)."""
    found = []
    for value in vars(algo).values():
        found += [o for o in (value.values() if isinstance(value, dict) else [value])
                  if isinstance(o, torch.optim.Optimizer)]
    return found


@pytest.mark.parametrize("name,kind", CASES)
def test_bf16_update_matches_fp32(name, kind):
    """With the optimisers' steps switched off (every loss then sees the same weights; a first Adam step is
    sign(gradient) and flips on tiny components), a bf16 update gives float32's losses and gradient norms to
    bfloat16's ~3 digits, though not bit-identically: the hidden layers did run in bfloat16."""
    case = Case(name, kind)
    batches = [case.batch(seed=200 + i) for i in range(case.warm_updates)]
    metrics = {}
    for precision in ("fp32", "bf16"):
        case.overrides["precision"] = precision
        torch.manual_seed(0)
        algo = case.build()
        algo.prepare(_dataset(case.spec))
        optimizers = _optimizers(algo)
        assert optimizers, f"{name}: no optimiser found"
        for optimizer in optimizers:
            optimizer.step = lambda *args, **kwargs: None
        torch.manual_seed(1)
        for batch in batches:
            metrics[precision] = {k: float(v) for k, v in algo.update(copy.deepcopy(batch)).items()}
        algo.check_finite()
    compared = [k for k in metrics["fp32"] if k.endswith(("_loss", "_grad_norm"))]
    assert compared, f"{name}: no losses among {sorted(metrics['fp32'])}"
    for key in compared:
        assert metrics["bf16"][key] == pytest.approx(metrics["fp32"][key], rel=0.05, abs=0.02), key
    assert any(metrics["bf16"][k] != metrics["fp32"][k] for k in compared), f"{name}: bf16 changed nothing"


@pytest.mark.parametrize("name,kind", CASES)
def test_bf16_keeps_parameters_and_optimiser_state_fp32(name, kind):
    case = Case(name, kind)
    case.overrides["precision"] = "bf16"
    case.algo = case.build()
    for _ in range(case.warm_updates):
        case.algo.update(case.batch())
    case.algo.check_finite()
    assert all(p.dtype == torch.float32 for p in case.algo.parameters())
    for optimizer in _optimizers(case.algo):
        for state in optimizer.state.values():
            assert all(v.dtype == torch.float32 for k, v in state.items() if k != "step"), f"{name}: {state.keys()}"


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_unknown_precision_is_a_config_error(name):
    with pytest.raises(ConfigError, match=rf"algo \({name}\): precision: expected one of \['fp32', 'bf16'\], "
                                          r"found 'fp16'"):
        make_algorithm(name, {"precision": "fp16"}, SPECS["vector"])
