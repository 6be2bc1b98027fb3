"""The ONNX policy contract: what a policy file carries so it can run with nothing but onnxruntime.

Inputs are one tensor per observation key the policy reads, named by the key, with a dynamic batch
axis: low-dimensional keys float32 (B, D), camera keys uint8 (B, H, W, 3) exactly as the robot
publishes them. The output ``action`` is float32 (B, A) in the task's units, within its limits:
normalisation, image preprocessing, squashing and action scaling all happen inside the graph.
``metadata_props`` carry the keys below (values are strings; JSON where structured).
"""

from __future__ import annotations

#: Fixed ONNX opset of every exported policy (onnxruntime >= 1.14 runs it; 17 has LayerNormalization).
OPSET = 17
#: Name of the single output.
ACTION_OUTPUT = "action"
#: Version of this contract; bumped when inputs/outputs/metadata change meaning.
CONTRACT_VERSION = "1"

META_CONTRACT = "robot_learning.contract_version"
META_TASK_SPEC = "robot_learning.task_spec"          # TaskSpec.to_json()
META_OBS_KEYS = "robot_learning.obs_keys"            # JSON list: the inputs, in order
META_ALGORITHM = "robot_learning.algorithm"          # registry name, e.g. "iql"
META_VARIANT = "robot_learning.variant"              # e.g. "member=2" (Uni-O4), "balance=model" (FamO2O); "" if none
META_CHECKPOINT_SHA256 = "robot_learning.checkpoint_sha256"
META_EXPORTED_AT = "robot_learning.exported_at"      # ISO 8601
META_PACKAGE_VERSION = "robot_learning.package_version"
META_PARITY_MAX_ABS = "robot_learning.parity_max_abs_error"

REQUIRED_METADATA = (META_CONTRACT, META_TASK_SPEC, META_OBS_KEYS, META_ALGORITHM)
