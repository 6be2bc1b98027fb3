"""``dataset corrupt``: rate and scale statistics, determinism by seed, the layout of dynamics corruption,
provenance, the adversarial attack (against a hand-made Q and a real checkpoint) and the CLI verb."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from robot_learning.algos.base import make_algorithm
from robot_learning.cli import main
from robot_learning.config import ConfigError
from robot_learning.data import corrupt as cr
from robot_learning.data.store import EpisodeStore
from robot_learning.data.tools.corrupt import AttackConfig, CorruptConfig, corrupt_store
from robot_learning.train import checkpoint as ckpt
from tests.data.builders import task, write_store

SPEC = task({"state": 3, "goal": 2})
LENGTHS = (150, 200, 120, 180, 160, 190)
STATE_STD = np.array([1.0, 2.0, 5.0], dtype=np.float32)


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)
    episodes = []
    for i, n in enumerate(LENGTHS):
        terminal = np.zeros(n, bool)
        terminal[-1] = i % 2 == 0
        episodes.append({"obs": {"state": (rng.normal(size=(n, 3)) * STATE_STD).astype(np.float32),
                                 "goal": rng.normal(size=(n, 2)).astype(np.float32)},
                         "action": rng.uniform(-1, 1, (n, 2)).astype(np.float32),
                         "reward": rng.normal(size=n).astype(np.float32), "terminal": terminal})
    path = tmp_path_factory.mktemp("corrupt") / "src.zarr"
    write_store(path, SPEC, episodes).close()
    return path


def run(source: Path, out: Path, **kw) -> EpisodeStore:
    corrupt_store(CorruptConfig(path=str(source), out=str(out), **kw))
    return EpisodeStore.open(out)


def transitions(store: EpisodeStore) -> tuple[np.ndarray, np.ndarray]:
    end = np.repeat(store.episode_ends, store.episode_lengths)
    has_next = np.arange(store.n_steps) + 1 < end
    return np.flatnonzero(has_next | store.read("terminal")), np.flatnonzero(has_next)


def test_random_obs_rate_and_scale(source, tmp_path):
    src = EpisodeStore.open(source)
    out = run(source, tmp_path / "obs.zarr", kind="obs", rate=0.3, scale=0.5, seed=1)
    flags = out.read("corrupted")
    valid, _ = transitions(src)
    n = len(valid)
    assert abs(flags.sum() - 0.3 * n) < 3 * np.sqrt(n * 0.3 * 0.7)
    assert set(np.flatnonzero(flags)) <= set(valid)
    for key in ("state", "goal"):
        before, after = src.read(f"obs/{key}"), out.read(f"obs/{key}")
        std = before.std(0)
        offset = (after - before) / std
        assert np.all(offset[~flags] == 0) and np.all(offset[flags] != 0)
        assert np.abs(offset).max() <= 0.5 + 1e-5
        assert np.abs(offset[flags]).mean() == pytest.approx(0.25, abs=0.02)  # E|U(-0.5, 0.5)| = 0.25
    np.testing.assert_array_equal(out.read("action"), src.read("action"))
    np.testing.assert_array_equal(out.reward("env"), src.reward("env"))
    record = out.attrs["corruption"][-1]
    assert record["kind"] == "obs" and record["rate"] == 0.3 and record["corrupted_transitions"] == int(flags.sum())
    assert record["input"] == str(source)


def test_input_is_never_edited_and_output_must_differ(source, tmp_path):
    before = EpisodeStore.open(source).read("obs/state").copy()
    run(source, tmp_path / "x.zarr", kind="obs")
    np.testing.assert_array_equal(EpisodeStore.open(source).read("obs/state"), before)
    assert "corrupted" not in EpisodeStore.open(source).extra_keys
    with pytest.raises(Exception, match="never edited in place"):
        run(source, source, kind="obs", overwrite=True)


def test_same_seed_same_corruption(source, tmp_path):
    a = run(source, tmp_path / "a.zarr", kind="action", seed=3)
    b = run(source, tmp_path / "b.zarr", kind="action", seed=3)
    c = run(source, tmp_path / "c.zarr", kind="action", seed=4)
    np.testing.assert_array_equal(a.read("action"), b.read("action"))
    np.testing.assert_array_equal(a.read("corrupted"), b.read("corrupted"))
    assert not np.array_equal(a.read("corrupted"), c.read("corrupted"))


def test_random_actions_scale_with_their_std(source, tmp_path):
    src = EpisodeStore.open(source)
    out = run(source, tmp_path / "act.zarr", kind="action", rate=0.5, scale=1.0)
    flags = out.read("corrupted")
    offset = (out.read("action") - src.read("action")) / src.read("action").std(0)
    assert np.abs(offset).max() <= 1.0 + 1e-5 and np.all(offset[~flags] == 0)
    assert offset[flags].std() == pytest.approx(1 / np.sqrt(3), abs=0.03)  # std of U(-1, 1)


def test_random_and_adversarial_rewards(source, tmp_path):
    src = EpisodeStore.open(source)
    rnd = run(source, tmp_path / "r.zarr", kind="reward", rate=0.4, scale=0.5)
    flags = rnd.read("corrupted")
    r = rnd.reward("env")[flags]
    assert np.abs(r).max() <= 15.0 and r.std() == pytest.approx(15 / np.sqrt(3), rel=0.1)
    np.testing.assert_array_equal(rnd.reward("env")[~flags], src.reward("env")[~flags])
    assert rnd.reward_provenance("env")["corruption"]["kind"] == "reward"
    adv = run(source, tmp_path / "ra.zarr", kind="reward", mode="adversarial", rate=0.4, scale=2.0)
    flags = adv.read("corrupted")
    np.testing.assert_allclose(adv.reward("env")[flags], -2.0 * src.reward("env")[flags])


def test_dynamics_corrupts_the_next_observation_row(source, tmp_path):
    src = EpisodeStore.open(source)
    out = run(source, tmp_path / "dyn.zarr", kind="dynamics", rate=0.3, keys=["state"])
    flagged = np.flatnonzero(out.read("corrupted"))
    _, with_next = transitions(src)
    assert set(flagged) <= set(with_next)  # only transitions that have a stored next observation
    changed = np.flatnonzero(np.any(out.read("obs/state") != src.read("obs/state"), axis=1))
    np.testing.assert_array_equal(changed, flagged + 1)  # s' of t is the stored row t + 1
    np.testing.assert_array_equal(out.read("obs/goal"), src.read("obs/goal"))


def test_a_second_pass_keeps_the_first(source, tmp_path):
    first = run(source, tmp_path / "1.zarr", kind="obs", seed=0)
    second = run(tmp_path / "1.zarr", tmp_path / "2.zarr", kind="reward", seed=1)
    assert [r["kind"] for r in second.attrs["corruption"]] == ["obs", "reward"]
    assert np.all(second.read("corrupted") >= first.read("corrupted"))


def test_signed_gradient_attack_reaches_the_bound():
    # Q = sum of observations (and of actions): the minimiser within +-scale std is -scale std everywhere; 200
    # steps of 0.01 scale reach it from any start in [-scale, scale]
    obs = {"state": torch.randn(5, 3), "goal": torch.randn(5, 2)}
    action = torch.randn(5, 2)
    std = {"state": torch.tensor([1.0, 2.0, 5.0])}
    q = lambda o, a: o["state"].sum(1) + o["goal"].sum(1) + (a * torch.tensor([1.0, -1.0])).sum(1)  # noqa: E731
    offsets = cr.attack_observations(obs, action, ["state"], std, q, None, scale=0.5, steps=200, step_size=0.01,
                                     generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(offsets["state"], (-0.5 * std["state"]).expand(5, 3))
    act = cr.attack_actions(obs, action, torch.tensor([0.2, 0.4]), q, scale=1.0, steps=200, step_size=0.01,
                            generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(act, torch.tensor([-0.2, 0.4]).expand(5, 2))


def test_adversarial_obs_against_a_checkpoint_lowers_q(source, tmp_path):
    store = EpisodeStore.open(source)
    algo = make_algorithm("iql", {"hidden": [16, 16]}, store.spec)
    payload = {"algo": {"name": "iql", "config": {"name": "iql", "hidden": [16, 16]}, "state_dict": algo.state_dict()},
               "task_spec": store.spec.to_dict()}
    path = ckpt.save(tmp_path / "critic.pt", payload)
    out = run(source, tmp_path / "adv.zarr", kind="obs", mode="adversarial", scale=1.0,
              attack=AttackConfig(critic=str(path), steps=20))
    attack = out.attrs["corruption"][-1]["attack"]
    assert attack["q_mean_after"] < attack["q_mean_before"] and attack["algo"] == "iql"
    flags = out.read("corrupted")
    offset = (out.read("obs/state") - store.read("obs/state")) / store.read("obs/state").std(0)
    assert np.abs(offset).max() <= 1.0 + 1e-4 and np.all(offset[~flags] == 0)


def test_config_errors_and_cli(source, tmp_path, capsys):
    with pytest.raises(ConfigError, match="'kind'"):
        corrupt_store(CorruptConfig(path=str(source), out=str(tmp_path / "e.zarr"), kind="noise"))
    with pytest.raises(ConfigError, match="attack.critic"):
        corrupt_store(CorruptConfig(path=str(source), out=str(tmp_path / "e.zarr"), kind="obs", mode="adversarial"))
    assert main(["dataset", "corrupt", str(source), f"out={tmp_path / 'cli.zarr'}", "kind=reward", "rate=0.3"]) == 0
    assert "random reward corruption" in capsys.readouterr().out
    assert main(["dataset", "corrupt", str(source), f"out={tmp_path / 'bad.zarr'}", "kind=obs", "rate=2"]) == 1
    assert "'rate'" in capsys.readouterr().err
