"""Observation encoder: low-dim normalisation, pass-through features, camera CNN, shared conv stacks."""

import torch

from robot_learning.nn import ObservationEncoder
from robot_learning.spec import TaskSpec

SPEC = TaskSpec.from_dict({
    "name": "enc", "text": "t", "control_hz": 10, "max_episode_steps": 10,
    "observations": {"state": {"shape": [3]}, "clip": {"shape": [4]}, "cam": {"shape": [16, 16, 3], "kind": "rgb"}},
    "action": {"dim": 2, "low": -1.0, "high": 1.0},
})


def _obs(n=5):
    return {"state": torch.randn(n, 3) * 4 + 2, "clip": torch.randn(n, 4),
            "cam": torch.randint(0, 256, (n, 16, 16, 3), dtype=torch.uint8)}


def test_low_dim_and_feature_keys():
    enc = ObservationEncoder(SPEC, ["state", "clip"], feature_keys=["clip"])
    obs = _obs()
    enc.normalizer.fit(obs["state"], eps=0.0)
    out = enc(obs)
    assert out.shape == (5, 7) and enc.output_dim == 7
    torch.testing.assert_close(out[:, 3:], obs["clip"])  # passed through unchanged
    torch.testing.assert_close(out[:, :3].mean(0), torch.zeros(3), atol=1e-5, rtol=0)


def test_images_and_sibling_shares_detached_conv():
    critic = ObservationEncoder(SPEC, ["state", "cam"], image_feature_dim=8)
    actor = critic.sibling()
    assert critic.output_dim == 3 + 8 == actor.output_dim
    assert actor.convs is critic.convs and actor.normalizer is critic.normalizer
    assert actor.heads is not critic.heads
    obs = _obs()
    actor(obs).sum().backward()
    assert all(p.grad is None for p in critic.convs.parameters())  # the actor never trains the conv stack
    assert all(p.grad is not None for p in actor.heads.parameters())
    critic(obs).sum().backward()
    assert all(p.grad is not None for p in critic.convs.parameters())
    assert {id(p) for p in actor.trainable_parameters()} == {id(p) for p in actor.heads.parameters()}
