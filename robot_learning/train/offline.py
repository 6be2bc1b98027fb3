"""The offline loop: gradient steps on batches drawn from the device-resident dataset.

The same loop serves offline pre-training and offline fine-tuning on newly logged data (``init=`` a
checkpoint, ``dataset=`` the new store: d3rlpy#215); logging, evaluation and checkpoints are the run's.
"""

from __future__ import annotations

from robot_learning.train.logger import MetricMeter
from robot_learning.train.run import Run


def run_offline(run: Run) -> None:
    """``train.offline_steps`` updates of ``run.algo`` on ``run.data`` (drawn by ``dataset.sampler``), continuing
    from the run's counter."""
    algo, sampler, state = run.algo, run.offline_sampler, run.state
    batch_size = algo.config.batch_size
    meter = MetricMeter()
    run.start_phase("offline", "update")
    algo.train()
    while state.offline_step < run.cfg.train.offline_steps:
        meter.add(algo.update(sampler.sample(batch_size, run.streams.device)))
        state.offline_step += 1
        run.after_step("offline", state.offline_step - 1, meter)
