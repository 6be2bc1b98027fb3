"""ONNX export of learned policies, the policy-file contract and the onnxruntime policy runtime."""
