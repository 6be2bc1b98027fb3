"""Export a learner's deterministic actor as one self-describing ONNX file, and prove it matches torch.

The exported graph is ``algo.export_actor()`` (normalisation, image preprocessing, squashing and action
scaling inside) with one input per observation key and a dynamic batch axis (contract.py). The file is
written next to its destination first and moved into place only after onnxruntime reproduces the
torch actor on observations sampled from the store within tolerance, so a failed export leaves no
policy file behind.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path

import numpy as np
import torch
from torch import nn

from robot_learning.export import contract as c
from robot_learning.spec import TaskSpec

log = logging.getLogger(__name__)


class ExportError(RuntimeError):
    """The export failed or the ONNX graph does not reproduce the torch actor."""


@dataclass(frozen=True)
class ExportReport:
    """What was written and how closely onnxruntime matched torch."""

    path: Path
    obs_keys: tuple[str, ...]
    parity_samples: int
    max_abs_error: float
    tolerance: float
    size_bytes: int


class _PositionalActor(nn.Module):
    """Adapts a dict-input actor to positional inputs (one per key), as ONNX graphs take them."""

    def __init__(self, actor: nn.Module, keys: Sequence[str]):
        super().__init__()
        self.actor = actor
        self.keys = tuple(keys)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.actor(dict(zip(self.keys, inputs)))


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file (identifies the checkpoint a policy came from)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _package_version() -> str:
    try:
        return importlib_metadata.version("robot-learning")
    except importlib_metadata.PackageNotFoundError:
        return "unknown"


def export_actor_onnx(actor: nn.Module, spec: TaskSpec, obs_keys: Sequence[str], out: str | Path, *,
                      parity_obs: Mapping[str, np.ndarray], algorithm: str, variant: str = "",
                      checkpoint_sha256: str = "", tolerance: float = 1e-4) -> ExportReport:
    """Write ``actor`` (dict of raw obs tensors -> task-unit actions) to ``out`` with its contract.

    ``parity_obs`` holds a batch of raw observations (B, ...) per key, e.g. rows sampled from the store;
    export fails with ExportError when onnxruntime and torch differ by more than ``tolerance``.
    """
    import onnx
    import onnxruntime as ort

    out = Path(out)
    keys = list(obs_keys)
    missing = [k for k in keys if k not in parity_obs]
    if missing:
        raise ExportError(f"parity observations: expected key '{missing[0]}' (the actor reads {keys}), found {sorted(parity_obs)}")
    batch = {k: np.ascontiguousarray(parity_obs[k]) for k in keys}
    spec.validate_observation(batch, batched=True, keys=keys, where="parity observations")
    n = len(next(iter(batch.values())))
    actor = actor.eval().cpu()
    wrapped = _PositionalActor(actor, keys).eval()
    example = tuple(torch.from_numpy(batch[k][:1]) for k in keys)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    dynamic = {k: {0: "batch"} for k in [*keys, c.ACTION_OUTPUT]}
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # dynamo=False: the TorchScript exporter writes one self-contained file in ~0.1 s (measurements.md);
            # the dynamo exporter takes ~2.7 s and writes weights to a side file. Its deprecation notice is noise here.
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(wrapped, example, str(tmp), input_names=keys, output_names=[c.ACTION_OUTPUT],
                              dynamic_axes=dynamic, opset_version=c.OPSET, dynamo=False)
            expected = wrapped(*(torch.from_numpy(batch[k]) for k in keys)).numpy()
        session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        got = session.run([c.ACTION_OUTPUT], batch)[0]
        if got.shape != expected.shape:
            raise ExportError(f"{out}: parity: expected actions of shape {expected.shape}, found {got.shape}")
        error = float(np.max(np.abs(got - expected))) if expected.size else 0.0
        if not np.isfinite(error) or error > tolerance:
            raise ExportError(f"{out}: torch/ONNX parity on {n} stored observations: expected max |difference| "
                              f"<= {tolerance:g}, found {error:.3g}")
        model = onnx.load(str(tmp))
        meta = {
            c.META_CONTRACT: c.CONTRACT_VERSION,
            c.META_TASK_SPEC: spec.to_json(),
            c.META_OBS_KEYS: json.dumps(keys),
            c.META_ALGORITHM: algorithm,
            c.META_VARIANT: variant,
            c.META_CHECKPOINT_SHA256: checkpoint_sha256,
            c.META_EXPORTED_AT: dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            c.META_PACKAGE_VERSION: _package_version(),
            c.META_PARITY_MAX_ABS: f"{error:.3g}",
        }
        for key, value in meta.items():
            model.metadata_props.add(key=key, value=value)
        onnx.save(model, str(tmp))
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    log.info("exported %s: inputs %s, parity max |diff| %.2g on %d observations", out, keys, error, n)
    return ExportReport(out, tuple(keys), n, error, tolerance, out.stat().st_size)
