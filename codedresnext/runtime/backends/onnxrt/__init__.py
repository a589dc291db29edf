"""ONNX Runtime: the embedded default (CPU), with the CUDA / TensorRT execution providers on GPUs.
`session.create_session` is the one place sessions are made."""
