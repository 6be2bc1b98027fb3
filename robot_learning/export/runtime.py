"""``OnnxPolicy``: run an exported policy file with onnxruntime, validating inputs against its TaskSpec.

The file is self-describing (see contract.py): the TaskSpec, the observation keys and the algorithm
come from its metadata, so the robot side needs neither torch nor this package's training code.
CUDAExecutionProvider is used when onnxruntime-gpu and a GPU are present, the CPU provider otherwise.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from robot_learning.export import contract as c
from robot_learning.spec import SpecError, TaskSpec

log = logging.getLogger(__name__)


class PolicyFileError(SpecError):
    """An ONNX file that is not a usable policy, or a policy for another task/robot.

    A SpecError: the CLI and the ROS nodes report it as one message (file, field, expected, found).
    """


def choose_providers(device: str = "auto") -> list[str]:
    """``auto``: CUDA when onnxruntime offers it (onnxruntime-gpu on a GPU machine), else CPU."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device in ("auto", "cuda") and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device == "cuda":
        raise PolicyFileError(f"device: expected CUDAExecutionProvider for device=cuda, found only {available} "
                              "(install the 'gpu' extra: pip install 'robot-learning[gpu]')")
    return ["CPUExecutionProvider"]


def read_metadata(path: str | Path) -> dict[str, str]:
    """The policy contract metadata of an ONNX file (raises PolicyFileError when it is not a policy)."""
    import onnx

    path = Path(path)
    if not path.exists():
        raise PolicyFileError(f"{path}: expected an ONNX policy file, found no such file")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # noqa: BLE001 - onnx raises several types for a corrupt file
        raise PolicyFileError(f"{path}: expected an ONNX model, found an unreadable file ({type(e).__name__})") from None
    meta = {p.key: p.value for p in model.metadata_props}
    missing = [k for k in c.REQUIRED_METADATA if k not in meta]
    if missing:
        raise PolicyFileError(f"{path}: metadata '{missing[0]}': expected it in every robot-learning policy, found it "
                              "missing (export with `robot-learning export`)")
    if meta[c.META_CONTRACT] != c.CONTRACT_VERSION:
        raise PolicyFileError(f"{path}: metadata '{c.META_CONTRACT}': expected {c.CONTRACT_VERSION}, "
                              f"found {meta[c.META_CONTRACT]}")
    return meta


class OnnxPolicy:
    """A policy file loaded into an onnxruntime session.

    ``policy(obs)`` takes a mapping key -> array, batched (B, ...) or a single observation, and
    returns float32 actions in task units ((B, A) or (A,) accordingly).
    """

    def __init__(self, path: str | Path, device: str = "auto", intra_op_threads: int = 1, validate: bool = True):
        import onnxruntime as ort

        self.path = Path(path)
        self.metadata = read_metadata(self.path)
        self.spec = TaskSpec.from_json(self.metadata[c.META_TASK_SPEC], source=f"{self.path} (metadata)")
        self.obs_keys: list[str] = json.loads(self.metadata[c.META_OBS_KEYS])
        self.algorithm = self.metadata[c.META_ALGORITHM]
        self.validate = validate
        options = ort.SessionOptions()
        # One intra-op thread is the fastest setting for batch-1 MLP inference here (measurements.md).
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        self.providers = choose_providers(device)
        self.session = ort.InferenceSession(str(self.path), options, providers=self.providers)
        inputs = [i.name for i in self.session.get_inputs()]
        if inputs != self.obs_keys:
            raise PolicyFileError(f"{self.path}: graph inputs: expected {self.obs_keys} (metadata obs_keys), found {inputs}")
        self._dtypes = {k: np.uint8 if self.spec.obs[k].is_image else np.float32 for k in self.obs_keys}

    def check_task(self, spec: TaskSpec) -> None:
        """Refuse to drive a robot configured for another interface: one error listing every mismatch."""
        diffs = [f"observation '{k}': expected the robot's task to provide it (the policy reads it), found no such key"
                 for k in self.obs_keys if k not in spec.obs]
        diffs += spec.differences(self.spec, keys=[k for k in self.obs_keys if k in spec.obs])
        if diffs:
            raise PolicyFileError(f"{self.path}: policy for task '{self.spec.name}' does not match the robot's task "
                                  f"'{spec.name}': " + "; ".join(diffs))

    def __call__(self, obs: Mapping[str, Any]) -> np.ndarray:
        first = np.asarray(obs[self.obs_keys[0]]) if self.obs_keys[0] in obs else None
        single = first is not None and first.ndim == len(self.spec.obs[self.obs_keys[0]].shape)
        feeds = {}
        for k in self.obs_keys:
            if k not in obs:
                raise SpecError(f"{self.path}: observation '{k}': expected an array, found it missing "
                                f"(the policy reads {self.obs_keys})")
            x = np.asarray(obs[k], dtype=self._dtypes[k])
            feeds[k] = x[None] if single else x
        if self.validate:
            self.spec.validate_observation(feeds, batched=True, keys=self.obs_keys, where=f"{self.path} input")
        action = self.session.run([c.ACTION_OUTPUT], feeds)[0]
        return action[0] if single else action

    @property
    def input_names(self) -> Sequence[str]:
        return tuple(self.obs_keys)

    def __repr__(self) -> str:
        return f"OnnxPolicy({str(self.path)!r}, task={self.spec.name!r}, algorithm={self.algorithm!r}, providers={self.providers})"
