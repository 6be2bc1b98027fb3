"""RO2O: the smoothness and OOD losses on hand-computed values, the batched perturbation pass, the lambda decay and
the online objective switch."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from robot_learning.algos.base import make_algorithm
from robot_learning.algos.ro2o import (ood_loss, ood_target, perturbed, policy_smooth_loss, q_smooth_loss,
                                       symmetric_gaussian_kl)
from robot_learning.config import ConfigError
from robot_learning.data.tensors import TransitionData
from robot_learning.spec import TaskSpec

SPEC = TaskSpec.from_dict({"name": "r", "text": "t", "control_hz": 10, "max_episode_steps": 10,
                           "observations": {"state": {"shape": [4]}}, "action": {"dim": 2, "low": -1.0, "high": 1.0}})
SMALL = {"hidden": [16, 16], "num_critics": 3, "num_perturbations": 5}


def _learner(**overrides):
    gen = torch.Generator().manual_seed(0)
    n = 32
    data = TransitionData(obs={"state": torch.randn(n, 4, generator=gen)},
                          action=torch.rand(n, 2, generator=gen) * 2 - 1,
                          reward=torch.randn(n, generator=gen), terminal=torch.zeros(n, dtype=torch.bool),
                          episode_ends=torch.tensor([16, 32]))
    algo = make_algorithm("ro2o", {**SMALL, **overrides}, SPEC)
    return algo, algo.prepare(data)


def test_q_smooth_loss_is_asymmetric_and_takes_the_worst_perturbation():
    # 2 members, 1 state, 2 perturbations. D = Q(s^, a) - Q(s, a): member 0 (0.5, -1), member 1 (0, 1)
    # (1 - tau) max(D, 0)^2 + tau min(D, 0)^2 with tau 0.2: member 0 (0.2, 0.2), member 1 (0, 0.8)
    # mean over members (0.1, 0.5) -> max over perturbations 0.5
    q = torch.tensor([[1.0], [2.0]])
    q_perturbed = torch.tensor([[[1.5, 0.0]], [[2.0, 3.0]]])
    torch.testing.assert_close(q_smooth_loss(q_perturbed, q, tau=0.2, weight=1.0), torch.tensor(0.5))
    torch.testing.assert_close(q_smooth_loss(q_perturbed, q, tau=0.2, weight=1e-4), torch.tensor(0.5e-4))


def test_ood_target_subtracts_lambda_times_the_ensemble_std():
    q = torch.tensor([[1.0], [2.0], [3.0]], requires_grad=True)  # unbiased std over members = 1
    torch.testing.assert_close(ood_target(q, 0.5), torch.tensor([[0.5], [1.5], [2.5]]))
    assert not ood_target(q, 0.5).requires_grad
    loss = ood_loss(q, 0.5, weight=0.1)
    torch.testing.assert_close(loss, torch.tensor(0.1 * 0.25))
    loss.backward()
    torch.testing.assert_close(q.grad, torch.full((3, 1), 0.1 * 2 * 0.5 / 3))


def test_symmetric_kl_matches_torch_distributions():
    # N(0, 1) vs N(1, 2): (1 + 1) / 8 + (4 + 1) / 2 - 1 = 1.75
    kl = symmetric_gaussian_kl(torch.tensor([0.0]), torch.tensor([0.0]), torch.tensor([1.0]),
                               torch.log(torch.tensor([2.0])))
    torch.testing.assert_close(kl, torch.tensor(1.75))
    mean_p, mean_q, log_std_p, log_std_q = torch.randn(4, 5, 3).unbind(0)
    p, q = Normal(mean_p, log_std_p.exp()), Normal(mean_q, log_std_q.exp())
    expected = (kl_divergence(p, q) + kl_divergence(q, p)).sum(-1)
    torch.testing.assert_close(symmetric_gaussian_kl(mean_p, log_std_p, mean_q, log_std_q), expected)


def test_policy_smooth_loss_takes_the_worst_perturbation_per_state():
    mean, log_std = torch.zeros(2, 1), torch.zeros(2, 1)
    mean_p = torch.tensor([[[1.0], [0.0]], [[0.0], [2.0]]])  # symmetric KL of a unit shift d: d^2
    loss = policy_smooth_loss(mean, log_std, mean_p, torch.zeros(2, 2, 1), weight=0.5)
    torch.testing.assert_close(loss, torch.tensor(0.5 * (1.0 + 4.0) / 2))


def test_perturbations_are_shared_by_the_batch_and_bounded():
    features = torch.randn(3, 4)
    out = perturbed(features, 6, eps=0.01).view(3, 6, 4)
    delta = out - features.unsqueeze(1)
    assert bool((delta.abs() <= 0.01).all())
    torch.testing.assert_close(delta[0], delta[1])
    torch.testing.assert_close(delta[0], delta[2])


def test_one_ensemble_pass_for_all_perturbations_and_members():
    algo, data = _learner()
    calls = []
    handle = algo.critic.register_forward_hook(lambda module, args, out: calls.append(out.shape))
    batch = data.sample(8)
    out = algo.critic_regularizers(batch, algo.unit_action(batch))
    handle.remove()
    assert calls == [torch.Size([3, 8 + 2 * 8 * 5])], "clean, Q-perturbed and OOD rows in one pass of all members"
    assert set(out) == {"q_smooth_loss", "ood_loss"}


def test_ood_uncertainty_decays_per_update_to_its_floor():
    algo, data = _learner(ood_uncertainty=1.0, ood_uncertainty_min=0.5, ood_uncertainty_decay=0.2)
    values = [float(algo.update(data.sample(8))["ood_uncertainty"]) for _ in range(5)]
    assert values == pytest.approx([1.0, 0.8, 0.6, 0.5, 0.5])


@pytest.mark.parametrize("critic_reg,policy_smooth", [(False, True), (False, False), (True, True)])
def test_online_objective(critic_reg, policy_smooth):
    algo, data = _learner(online_critic_regularizers=critic_reg, online_policy_smoothing=policy_smooth)
    offline = algo.update(data.sample(8))
    assert {"q_smooth_loss", "ood_loss", "policy_smooth_loss"} <= set(offline)
    algo.begin_phase("online")
    online = algo.update(data.sample(8))
    assert ("q_smooth_loss" in online) == critic_reg and ("ood_loss" in online) == critic_reg
    assert ("policy_smooth_loss" in online) == policy_smooth
    if not critic_reg:
        torch.testing.assert_close(online["critic_loss"], online["td_loss"])
    if not policy_smooth:
        torch.testing.assert_close(online["actor_loss"], online["sac_actor_loss"])


def test_ood_target_needs_an_ensemble():
    with pytest.raises(ConfigError, match="num_critics"):
        make_algorithm("ro2o", {"num_critics": 1}, SPEC)


def test_runtime_fine_tunes_from_a_fresh_buffer(tmp_path, caplog):
    """finetune: RO2O's official protocol is the runtime's fresh buffer (online data only, after a warm-up)."""
    import json
    import logging

    import sim
    from robot_learning.cli import main

    torch.set_num_threads(1)
    store = tmp_path / "maze.zarr"
    sim.generate_dataset("point_maze_umaze", "noisy", 6, 0, store, progress_bar=False)
    common = ["eval.episodes=2", "eval.num_envs=2", "eval.frames=0", "train.progress=false", "train.eval_every=0"]
    assert main(["train", "algo=ro2o", "algo.hidden=[8]", "algo.num_critics=2", "algo.num_perturbations=3",
                 "algo.batch_size=8", "task=point_maze_umaze", f"dataset={store}", "train.offline_steps=5",
                 f"run_dir={tmp_path / 'offline'}", *common]) == 0
    with caplog.at_level(logging.INFO):
        assert main(["finetune", f"init={tmp_path / 'offline'}", "train.online_steps=40", "online.warmup_steps=20",
                     "online.capacity=250000", f"run_dir={tmp_path / 'online'}", *common]) == 0
    assert "online data: fresh buffer" in caplog.text
    summary = json.loads((tmp_path / "online" / "summary.json").read_text())
    assert summary["phases"]["online"]["updates"] == 20
