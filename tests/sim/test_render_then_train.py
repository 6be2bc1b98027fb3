"""Rendering with MuJoCo and then training in one process must not crash (Mesa vs triton LLVM clash)."""

import subprocess
import sys

SCRIPT = """
import robot_learning, sim, torch
env = sim.make_env("arm_reach", seed=0)
obs, _ = env.reset(seed=0)
model = torch.nn.Linear(4, 4)
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
model(torch.zeros(1, 4)).sum().backward()
opt.step()
obs, *_ = env.step(env.action_space.sample())
print("ok", obs["front"].shape)
"""


def test_render_then_optimiser_step_in_one_process():
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"exit {done.returncode}: {done.stderr[-2000:]}"
    assert "ok (64, 64, 3)" in done.stdout
