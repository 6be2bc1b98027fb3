"""These tests use tiny batches: one intra-op thread is faster and immune to oversubscription on a busy machine."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread(_deterministic_torch):
    torch.set_num_threads(1)
    yield
